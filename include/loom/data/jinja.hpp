#pragma once
// A Jinja2 interpreter for chat templates: renders a model's own `chat_template` (from
// tokenizer_config.json or chat_template.jinja) byte-identical to transformers'
// apply_chat_template(..., tokenize=False), which renders with Jinja2's
// ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), the loopcontrols
// extension, the globals raise_exception / strftime_now / namespace / dict and a tojson
// filter that calls json.dumps(ensure_ascii=False).
//
// The subset is what published chat templates use: text, {{ }}, {% if %}, {% for %} (with
// loop.*, unpacking, `if` filters, {% else %}, break/continue), {% set %} (plain, tuple,
// namespace attribute, block), {% macro %} (defaults, keywords, recursion; no caller,
// varargs or kwargs), {% filter %} blocks, {% generation %}, {% raw %}, comments and
// whitespace control; expressions with Python semantics; the common filters, tests and
// str/dict methods. Anything else ({% include %}, {% call %}, ...) is refused at parse time
// with an InputError that names the construct, the file, line and column. An unknown filter
// or test is refused there too, except inside an {% if %} or an inline if, where Jinja2
// (and so Loom) fails only when it is evaluated.
//
// Values follow Jinja2's default Undefined: printing a missing name gives "", iterating it
// is empty, it is false; its attributes, items and arithmetic are errors.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom {

namespace detail::jinja {
struct Program;
}  // namespace detail::jinja

/// A parsed template; cheap to copy, immutable, safe to render from several threads.
class JinjaTemplate {
 public:
  /// Parses `source`; `where` names it in errors (a file path, or "qwen3 chat_template").
  /// Throws loom::InputError on a syntax error or an unsupported construct.
  static JinjaTemplate parse(const std::string& source, const std::string& where);

  /// Renders with `context` (a JSON object) as the template's variables, e.g.
  /// {"messages": [...], "add_generation_prompt": true, "bos_token": "<s>"}. Throws
  /// loom::InputError naming where, line and column on a runtime error (an undefined
  /// value used, a type error) and with the template's own message on raise_exception().
  std::string render(const nlohmann::ordered_json& context) const;

  /// render(), and the byte ranges [begin, end) of the text that each {% generation %}
  /// block produced, in order: the assistant's output, as transformers'
  /// return_assistant_tokens_mask reads it.
  std::string render(const nlohmann::ordered_json& context,
                     std::vector<std::pair<size_t, size_t>>& generation_spans) const;

  /// True when the template marks the assistant's output with {% generation %} blocks.
  bool hasGeneration() const;

  /// The name given to parse().
  const std::string& where() const;

 private:
  explicit JinjaTemplate(std::shared_ptr<const detail::jinja::Program> program);
  std::shared_ptr<const detail::jinja::Program> program_;
};

}  // namespace loom
