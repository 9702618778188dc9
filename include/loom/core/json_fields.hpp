#pragma once
// String fields of JSON records (data and prompt files), read with errors that name the
// record's place ("data.jsonl:12") and the field.

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace loom {

/// The string `field` of `record`. InputError "<where>: missing field 'f' (<expected>)" when
/// absent or null, "<where>: field 'f' must be a string, got <type>" when not a string.
std::string requireString(const nlohmann::json& record, const char* field, const std::string& where,
                          const char* expected);

/// The string `field` of `record`, or "" when absent or null; InputError when not a string.
std::string optionalString(const nlohmann::json& record, const char* field,
                           const std::string& where);

/// The same for records parsed with their key order kept (chat data, whose key order a
/// template's tojson shows).
std::string requireString(const nlohmann::ordered_json& record, const char* field,
                          const std::string& where, const char* expected);
std::string optionalString(const nlohmann::ordered_json& record, const char* field,
                           const std::string& where);

}  // namespace loom
