#include "loom/core/json_fields.hpp"

#include <nlohmann/json.hpp>

#include "loom/core/error.hpp"

namespace loom {

namespace {

template <typename Json>
std::string requireStringOf(const Json& record, const char* field, const std::string& where,
                            const char* expected) {
  const auto it = record.find(field);
  LOOM_INPUT_CHECK(it != record.end() && !it->is_null(),
                   where << ": missing field '" << field << "' (" << expected << ")");
  LOOM_INPUT_CHECK(it->is_string(),
                   where << ": field '" << field << "' must be a string, got " << it->type_name());
  return it->template get<std::string>();
}

template <typename Json>
std::string optionalStringOf(const Json& record, const char* field, const std::string& where) {
  const auto it = record.find(field);
  if (it == record.end() || it->is_null()) return {};
  LOOM_INPUT_CHECK(it->is_string(),
                   where << ": field '" << field << "' must be a string, got " << it->type_name());
  return it->template get<std::string>();
}

}  // namespace

std::string requireString(const nlohmann::json& record, const char* field, const std::string& where,
                          const char* expected) {
  return requireStringOf(record, field, where, expected);
}

std::string optionalString(const nlohmann::json& record, const char* field,
                           const std::string& where) {
  return optionalStringOf(record, field, where);
}

std::string requireString(const nlohmann::ordered_json& record, const char* field,
                          const std::string& where, const char* expected) {
  return requireStringOf(record, field, where, expected);
}

std::string optionalString(const nlohmann::ordered_json& record, const char* field,
                           const std::string& where) {
  return optionalStringOf(record, field, where);
}

}  // namespace loom
