// See field_template.hpp.

#include "field_template.hpp"

#include "loom/core/error.hpp"
#include "loom/data/tokenizer.hpp"

namespace loom::detail {

std::vector<TemplatePart> parseTemplate(const std::string& text, const std::string& option) {
  // Checked here, first: the template is recorded in JSON (the files' `template` attribute).
  size_t bad = 0;
  LOOM_INPUT_CHECK(isValidUtf8(text, &bad),
                   option << ": not valid UTF-8 (at byte " << bad << " of the template)");
  std::vector<TemplatePart> parts;
  std::string literal;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      ++i;
    } else if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      literal += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = text.find('}', i + 1);
      LOOM_INPUT_CHECK(close != std::string::npos,
                       option << ": '{' at character " << i
                              << " has no closing '}' (write {{ for a literal brace)");
      const std::string name = text.substr(i + 1, close - i - 1);
      LOOM_INPUT_CHECK(!name.empty() && name.find('{') == std::string::npos,
                       option << ": empty or malformed placeholder at character " << i
                              << "; expected {FieldName}");
      if (!literal.empty()) parts.push_back({false, std::move(literal)});
      literal.clear();
      parts.push_back({true, name});
      i = close;
    } else if (c == '}') {
      LOOM_INPUT_CHECK(false, option << ": '}' at character " << i
                                     << " closes nothing (write }} for a literal brace)");
    } else {
      literal += c;
    }
  }
  if (!literal.empty()) parts.push_back({false, std::move(literal)});
  return parts;
}

namespace {

std::string fieldText(const nlohmann::ordered_json& record, const std::string& field,
                      const std::string& where) {
  const auto it = record.find(field);
  LOOM_INPUT_CHECK(it != record.end(),
                   where << ": the template uses field '" << field << "', which this record lacks");
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  LOOM_INPUT_CHECK(false, where << ": field '" << field << "' is " << it->type_name()
                                << "; the template needs a string or number");
  return {};
}

}  // namespace

std::string renderTemplate(const std::vector<TemplatePart>& parts,
                           const nlohmann::ordered_json& record, const std::string& where) {
  std::string out;
  for (const auto& p : parts) out += p.is_field ? fieldText(record, p.text, where) : p.text;
  return out;
}

std::string templateSource(const std::vector<TemplatePart>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.is_field) {
      out += "{" + p.text + "}";
      continue;
    }
    for (char c : p.text) {
      if (c == '{' || c == '}') out += c;
      out += c;
    }
  }
  return out;
}

}  // namespace loom::detail
