#include "loom/core/env_expand.hpp"

#include <cctype>
#include <cstdlib>

namespace loom {

namespace {

bool validName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '_') return false;
  }
  return true;
}

}  // namespace

std::optional<std::string> processEnv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (!value) return std::nullopt;
  return std::string(value);
}

std::string expandEnv(const std::string& text, const EnvLookup& lookup) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$') {
      out += text[i];
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (i + 1 >= text.size() || text[i + 1] != '{') {
      throw EnvExpandError("'" + text + "': a '$' must start a placeholder ${NAME} or " +
                               "${NAME:-default} (write $$ for a literal '$')",
                           "");
    }
    const size_t close = text.find('}', i + 2);
    if (close == std::string::npos) {
      throw EnvExpandError(
          "'" + text + "': placeholder '" + text.substr(i) + "' has no closing '}'", "");
    }
    const std::string body = text.substr(i + 2, close - i - 2);
    const size_t sep = body.find(":-");
    const std::string name = body.substr(0, sep);
    if (!validName(name)) {
      throw EnvExpandError("'" + text + "': '${" + body +
                               "}' is not a placeholder; expected ${NAME} or ${NAME:-default} "
                               "with NAME of letters, digits and '_'",
                           "");
    }
    const std::optional<std::string> value = lookup(name);
    if (sep != std::string::npos) {
      out += value && !value->empty() ? *value : body.substr(sep + 2);
    } else if (value) {
      out += *value;
    } else {
      throw EnvExpandError("environment variable " + name + " is not set (in '" + text +
                               "'); set it, or give a default: ${" + name + ":-value}",
                           name);
    }
    i = close;
  }
  return out;
}

std::string escapeEnv(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '$') out += '$';
  }
  return out;
}

}  // namespace loom
