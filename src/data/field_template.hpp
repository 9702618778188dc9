#pragma once
// `--format template`'s templates: literal text with `{Field}` placeholders over a record's
// fields (`{{` and `}}` are literal braces).

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace loom::detail {

struct TemplatePart {
  bool is_field = false;
  std::string text;  // literal text, or the field name
};

/// Parses a template; InputError naming `option` for invalid UTF-8, an unclosed or empty
/// placeholder, or a stray '}'.
std::vector<TemplatePart> parseTemplate(const std::string& text, const std::string& option);

/// The template filled from `record`; InputError naming `where` and the field when the record
/// lacks it or it is neither a string nor a number.
std::string renderTemplate(const std::vector<TemplatePart>& parts,
                           const nlohmann::ordered_json& record, const std::string& where);

/// The template as written (braces escaped again): recorded in the dataset's attributes.
std::string templateSource(const std::vector<TemplatePart>& parts);

}  // namespace loom::detail
