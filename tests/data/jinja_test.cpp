// The Jinja interpreter renders byte-identical to Jinja2 set up the way transformers sets it
// up (tests/python/jinja_reference.py): small templates covering each construct, and the
// real chat templates of Qwen3, Qwen2.5 and Llama 3.1 over a fixed set of conversations.
// Unsupported constructs are refused with the construct, line and column.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "loom/core/error.hpp"
#include "loom/data/jinja.hpp"
#include "support/test_support.hpp"

namespace loom {
namespace {

using json = nlohmann::ordered_json;
using testing::TempDir;

struct Case {
  std::string name;
  std::string template_text;
  json context;  // `{}` in a case list is JSON null: contextOf() makes it an empty object
};

json contextOf(const Case& c) { return c.context.is_null() ? json::object() : c.context; }

// Jinja2's answer for each case: {"ok": text} or {"error": message}.
json reference(const std::vector<Case>& cases) {
  json list = json::array();
  for (const auto& c : cases)
    list.push_back({{"template", c.template_text}, {"context", contextOf(c)}});
  TempDir tmp("loom-jinja");
  const auto in = tmp.write("cases.json", list.dump());
  const auto out = tmp.path() / "rendered.json";
  const auto r = testing::runPythonScript("jinja_reference.py", {in.string(), out.string()});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return json::parse(testing::readFile(out));
}

// Renders every case with Loom and compares with Jinja2; returns how many matched.
size_t compareWithJinja2(const std::vector<Case>& cases) {
  const json expected = reference(cases);
  EXPECT_EQ(expected.size(), cases.size());
  size_t identical = 0;
  for (size_t k = 0; k < cases.size() && k < expected.size(); ++k) {
    const Case& c = cases[k];
    std::string ours;
    std::string error;
    try {
      ours = JinjaTemplate::parse(c.template_text, c.name).render(contextOf(c));
    } catch (const InputError& e) {
      error = e.what();
    }
    // Only a case named "..._error" is meant to fail; elsewhere two failures hide the check.
    const bool meant_to_fail = c.name.size() >= 6 && c.name.substr(c.name.size() - 6) == "_error";
    EXPECT_EQ(expected[k].contains("error"), meant_to_fail)
        << c.name << ": Jinja2 gives " << expected[k].dump();
    if (expected[k].contains("ok")) {
      const std::string want = expected[k]["ok"].get<std::string>();
      EXPECT_TRUE(error.empty()) << c.name << ": Jinja2 renders, Loom fails: " << error;
      EXPECT_EQ(ours, want) << c.name << "\ntemplate: " << c.template_text
                            << "\ncontext: " << c.context.dump();
      identical += error.empty() && ours == want;
    } else {
      EXPECT_FALSE(error.empty()) << c.name << ": Jinja2 fails ("
                                  << expected[k]["error"].get<std::string>()
                                  << "), Loom renders: " << ours;
      identical += !error.empty();
    }
  }
  return identical;
}

std::vector<Case> constructCases() {
  const json msgs = json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "  Héllo wörld \n"},
    {"role": "assistant", "content": "Hi!", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1, "b": "ü"}}}]}
  ])");
  const json ctx = {{"messages", msgs},
                    {"flag", true},
                    {"n", 3},
                    {"x", 2.5},
                    {"name", "Loom"},
                    {"empty", ""},
                    {"items", json::array({3, 1, 2})},
                    {"nothing", nullptr}};
  return {
      {"text", "plain text\nwith lines\n", {}},
      {"output", "{{ name }} {{ n }} {{ x }} {{ flag }} {{ nothing }} {{ items }}", ctx},
      {"literals",
       R"({{ 'a\'b' }}|{{ "q\"\n\t\\" }}|{{ 1_000 }}|{{ 1.5e3 }}|{{ true }}{{ True }}{{ none }}{{ None }}|{{ 'x' 'y' }}|{{ '\u00e9\x41' }})",
       {}},
      {"lists_dicts",
       R"({{ [1, 'two', [3.0], none] }}|{{ {'a': 1, "b": {'c': [true]}} }}|{{ (1, 2) }})",
       {}},
      {"arithmetic",
       "{{ 7 + 2 }} {{ 7 - 2.5 }} {{ 7 * 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7 // 2 }} {{ -7 // 2 }} "
       "{{ 7 % 3 }} {{ -7 % 3 }} {{ 7.5 % 2 }} {{ 2 ** 8 }} {{ -n }} {{ 'ab' * 3 }} {{ 0.1 + 0.2 "
       "}}",
       ctx},
      {"floats",
       "{{ 1.0 }} {{ 1e16 }} {{ 1.5e-7 }} {{ 123456789.125 }} {{ 0.0001 }} {{ 1e15 }} {{ -0.0 }}",
       {}},
      {"concat", "{{ 'a' + name + '!' }} {{ 'n=' ~ n ~ x ~ nothing ~ undefined_thing }}", ctx},
      {"compare",
       "{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ true == 1 }} {{ [1,2] == [1,2] "
       "}} "
       "{{ 1 != 2 }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ {'a':1} == {'a':1} }}",
       {}},
      {"logic",
       "{{ true and 'yes' }} {{ 0 or 'fallback' }} {{ not empty }} {{ not (n > 2) }} {{ empty or "
       "none }} "
       "{{ n and x }}",
       ctx},
      {"in",
       "{{ 'ell' in 'hello' }} {{ 2 in items }} {{ 5 not in items }} {{ 'role' in messages[0] }} "
       "{{ 'x' in messages[0] }} {{ 'a' in missing }}",
       ctx},
      {"conditional_expr",
       "{{ 'big' if n > 2 else 'small' }}|{{ 'yes' if false }}|{{ 1 if 0 else 2 if 0 else 3 }}",
       ctx},
      {"attr_and_item",
       "{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].role }} "
       "{{ messages[2].tool_calls[0].function.arguments.b }} {{ messages.0.role }}",
       ctx},
      {"missing_keys",
       "[{{ messages[0].nope }}][{{ messages[9] }}][{{ nothing.x }}][{{ name.nope }}]", ctx},
      {"slices",
       "{{ items[::-1] }} {{ items[1:] }} {{ items[:-1] }} {{ items[::2] }} {{ name[1:3] }} "
       "{{ 'héllo'[::-1] }} {{ items[5:] }} {{ items[-10:2] }} {{ name[-1] }}",
       ctx},
      {"if_elif_else",
       "{% if n == 1 %}one{% elif n == 3 %}three{% else %}other{% endif %}|"
       "{% if empty %}E{% elif nothing %}N{% else %}else{% endif %}|{% if flag %}F{% endif %}",
       ctx},
      {"for_loop_vars",
       "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.length }}/{{ "
       "loop.revindex }}/"
       "{{ loop.revindex0 }}/{{ loop.first }}/{{ loop.last }}:{{ m.role }};{% endfor %}",
       ctx},
      {"for_prev_next",
       "{% for i in items %}{{ loop.previtem }}>{{ i }}>{{ loop.nextitem }} {% endfor %}", ctx},
      {"for_items_unpack",
       "{% for k, v in messages[2].tool_calls[0].function.arguments.items() %}{{ k }}={{ v }},{% "
       "endfor %}"
       "{% for k, v in {'z': 1, 'a': 2} | items %}{{ k }}{{ v }}{% endfor %}",
       ctx},
      {"for_if_filter",
       "{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role }}{{ loop.last }} "
       "{% endfor %}",
       ctx},
      {"for_else",
       "{% for i in [] %}x{% else %}empty{% endfor %}|{% for i in missing %}x{% else %}none{% "
       "endfor %}",
       {}},
      {"for_over_dict_and_string",
       "{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}|{% for c in 'hé' %}[{{ c }}]{% endfor "
       "%}",
       {}},
      {"nested_loops",
       "{% for a in [1, 2] %}{% for b in ['x', 'y'] %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}"
       "{{ loop.index }} {% endfor %}",
       {}},
      {"break_continue",
       "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break "
       "%}{% endif %}"
       "{{ i }}{% endfor %}",
       {}},
      {"set_scoping",
       "{% set c = 0 %}{% for i in [1, 2, 3] %}{% set c = c + i %}{{ c }}{% endfor %}{{ c }}"
       "{% if true %}{% set d = 'D' %}{% endif %}{{ d }}",
       {}},
      {"set_tuple_and_block",
       "{% set a, b = 1, 'two' %}{{ a }}{{ b }}{% set blk %}in {{ a }} block{% endset %}[{{ blk "
       "}}]",
       {}},
      {"namespace",
       "{% set ns = namespace(found=false, count=0, last=none) %}{% for m in messages %}"
       "{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.last = loop.index0 %}{% endif "
       "%}"
       "{% set ns.count = ns.count + 1 %}{% endfor %}{{ ns.found }} {{ ns.count }} {{ ns.last }}",
       ctx},
      {"shadow_context",
       "{% set messages = messages[1:] %}{{ messages | length }}{{ messages[0].role }}", ctx},
      {"tests_types",
       "{{ name is string }}{{ n is number }}{{ x is number }}{{ flag is boolean }}{{ flag is "
       "number }}"
       "{{ messages is sequence }}{{ messages[0] is mapping }}{{ name is iterable }}{{ n is "
       "iterable }}"
       "{{ nothing is none }}{{ n is integer }}{{ x is float }}{{ missing is iterable }}",
       ctx},
      {"tests_defined",
       "{{ missing is defined }}{{ missing is not defined }}{{ name is defined }}{{ missing is "
       "undefined }}"
       "{{ nothing is not none }}{{ flag is true }}{{ 1 is true }}{{ false is false }}{{ n is odd "
       "}}"
       "{{ n is divisibleby 3 }}{{ n is divisibleby(2) }}{{ n is eq 3 }}{{ 'a' is in 'abc' }}",
       ctx},
      {"filters_text",
       R"({{ messages[1].content | trim }}|{{ '  x ' | trim }}|{{ name | lower }}{{ name | upper }}|{{ 'hELLO wORLD' | capitalize }}|{{ 'hello big-world (x)' | title }}|{{ 'a-b-a' | replace('a', 'o') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 3 | string }}{{ none | string }})",
       ctx},
      {"filters_seq",
       "{{ items | length }}{{ name | length }}{{ 'héllo' | length }}{{ messages[0] | length }}|{{ "
       "items | first }}"
       "{{ items | last }}{{ name | first }}|{{ items | join(', ') }}|{{ items | join }}|{{ 'abc' "
       "| list }}"
       "|{{ items | sort }}{{ items | reverse | list }}{{ items | sum }}|{{ [1, 1, 2] | unique | "
       "list }}"
       "|{{ missing | length }}{{ missing | join(',') }}[{{ [] | first }}]",
       ctx},
      {"filters_default",
       "{{ missing | default('dflt') }}|{{ missing | d('d') }}|{{ empty | default('e') }}|"
       "{{ empty | default('e', true) }}|{{ nothing | default('n') }}|{{ name | default('x') }}|{{ "
       "missing | default }}",
       ctx},
      {"filters_numbers",
       "{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ "
       "'2.5' | float }} "
       "{{ 3 | float }} {{ 'z' | float }} {{ 2.675 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round "
       "}} "
       "{{ 1.2345 | round(2, 'floor') }} {{ 1.2 | round(0, 'ceil') }} {{ -3 | abs }} {{ 7 | round "
       "}}",
       {}},
      {"filters_map_select",
       "{{ messages | map(attribute='role') | join(',') }}|{{ messages | selectattr('role', "
       "'equalto', 'user') "
       "| map(attribute='content') | list }}|{{ messages | rejectattr('role', 'eq', 'system') | "
       "list | length }}|"
       "{{ items | select('odd') | list }}|{{ items | reject('equalto', 2) | list }}|{{ ['a', 'B'] "
       "| map('upper') | list }}"
       "|{{ messages | selectattr('tool_calls') | list | length }}|{{ messages | "
       "selectattr('tool_calls', "
       "'defined') | list | length }}",
       ctx},
      {"generators_and_views",
       "{% if messages | selectattr('role', 'eq', 'nobody') %}always true{% endif %}|"
       "{{ messages | selectattr('role', 'eq', 'user') | list | length }}|{{ items | reverse | "
       "list }}|"
       "{{ messages[0].items() | length }}{{ messages[0].items() }}{{ messages[0].keys() }}|"
       "{{ (1,) }}{{ (1, 2) == [1, 2] }}{{ messages | map(attribute='role') | first }}",
       ctx},
      {"generator_last_error", "{{ items | select('odd') | last }}", ctx},
      {"filter_items_dict",
       "{% for k, v in messages[0] | items %}{{ k }}:{{ v }};{% endfor %}{{ messages[0].items() | "
       "list }}",
       ctx},
      {"tojson",
       "{{ messages | tojson }}\n{{ messages[2] | tojson(indent=2) }}\n{{ 'é\"\\\\\n\t' | tojson "
       "}}\n"
       "{{ [1, 2.0, true, none, [], {}] | tojson }}\n{{ {'b': 1, 'a': [1, {'c': 'ü'}]} | "
       "tojson(indent=4) }}\n"
       "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}\n{{ {'a': [1, 2]} | "
       "tojson(separators=(',', ':')) }}\n"
       "{{ 'é' | tojson(ensure_ascii=true) }}{{ '\x01' | tojson }}",
       ctx},
      {"string_methods",
       R"({{ '  ab  '.strip() }}|{{ 'xxabxx'.strip('x') }}|{{ '\n\nab\n'.lstrip('\n') }}|{{ 'ab\n\n'.rstrip() }}|{{ 'a b  c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' a b '.split(none, 1) }}|{{ name.startswith('Lo') }}{{ name.endswith('x') }}{{ name.startswith(('x', 'L')) }}|{{ name.replace('o', '0') }}|{{ name.upper() }}{{ name.lower() }}|{{ "they're bill's".title() }}|{{ 'abcb'.find('b') }}{{ 'abcb'.count('b') }}|{{ '-'.join(['a', 'b']) }})",
       ctx},
      {"dict_methods",
       "{{ messages[0].get('role') }}|{{ messages[0].get('nope') }}|{{ messages[0].get('nope', "
       "'dflt') }}|"
       "{{ messages[0].keys() | list }}|{{ messages[0].values() | list }}|{{ messages[0].items() | "
       "list }}",
       ctx},
      {"qwen_think_split",
       R"({% set c = '<think>\nreason\n</think>\n\nanswer' %}{{ c.split('</think>')[-1].lstrip('\n') }}|{{ c.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') }})",
       {}},
      {"whitespace_control",
       "a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}  \n e {#- note -#} f",
       {}},
      {"trim_blocks",
       "{% if true %}\nline1\n{% endif %}\nline2\n{# comment #}\nline3\n{% if true +%}\nkept\n{% "
       "endif %}",
       {}},
      {"lstrip_blocks",
       "x\n    {% if true %}\n    indented\n    {% endif %}\n  {{ 'var' }}\n\t{# c #}\nafter  {% "
       "if true %}mid{% endif %}\n"
       "    {%+ if true %}plus{% endif %}\n",
       {}},
      {"lstrip_at_start_and_crlf",
       "   {% if true %}A{% endif %}\r\n  {% for i in [1] %}\r\n{{ i }}\r\n  {% endfor %}\r\n",
       {}},
      {"trailing_newline", "text\n\n", {}},
      {"raw",
       "{% raw %}{{ not evaluated }} {% if %}{% endraw %}\n|{%- raw -%}  x  {%- endraw %}",
       {}},
      {"generation",
       "{% for m in messages %}{% generation %}{{ m.role }}\n{% endgeneration %}{% endfor %}", ctx},
      {"nested_data_unicode",
       "{% for m in messages %}{{ m.content | tojson }}{{ m.tool_calls | default([]) | tojson }}{% "
       "endfor %}",
       ctx},
      {"dict_global_range",
       "{{ dict(a=1, b='x') }}{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(3, 0, -1) | "
       "list }}",
       {}},
      {"undefined_arith_error", "{{ missing + 1 }}", {}},
      {"undefined_attr_error", "{{ missing.role }}", {}},
      {"none_iter_error", "{% for x in nothing %}{% endfor %}", ctx},
      {"str_plus_int_error", "{{ 'a' + 1 }}", {}},
      {"raise_exception_error", "{% if n > 2 %}{{ raise_exception('too many: ' ~ n) }}{% endif %}",
       ctx},
      {"sandbox_append_error", "{% set l = [1] %}{{ l.append(2) }}", {}},
      {"namespace_on_dict_error", "{% set d = {} %}{% set d.x = 1 %}", {}},
      // macros: defaults evaluated per call (seeing earlier parameters and later top-level
      // sets), keywords, recursion, the rendered text as a str value
      {"macro_arguments",
       "{% macro m(a, b=a + 1, c='C') %}[{{ a }}{{ b }}{{ c }}]{% endmacro %}{{ m(1) }}{{ m(1, 5) "
       "}}{{ m(b=3, a=2) }}{{ m(0, c=none) }}",
       {}},
      {"macro_missing_parameter",
       "{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m(1) }}",
       {}},
      {"macro_missing_parameter_used_error",
       "{% macro m(a, b=a + 1) %}{{ b }}{% endmacro %}{{ m() }}",
       {}},
      {"macro_recursion",
       "{% macro py(t) %}{% if t.type == 'array' %}list[{{ py(t['items']) }}]{% elif t.type == "
       "'object' %}dict{% else %}{{ {'string': 'str', 'integer': 'int'}[t.type] }}{% endif %}"
       "{% endmacro %}{{ py({'type': 'array', 'items': {'type': 'array', 'items': {'type': "
       "'integer'}}}) }}|{{ py({'type': 'string'}) }}",
       {}},
      {"macro_value_as_str",
       "{%- macro visible(c) %}  {{ c }} x {% endmacro %}{%- set v = visible('hi') %}[{{ v | trim "
       "}}][{{ v ~ '!' }}][{{ v + '?' }}]{{ 'hi' in v }}{{ v == '  hi x ' }}{{ v | length }}"
       "{{ v.strip() }}{{ v | tojson }}{{ visible }}{{ visible is defined }}{{ visible is callable "
       "}}",
       {}},
      {"macro_scoping",
       "{% set x = 1 %}{% macro m() %}[{{ x }}{{ y }}{{ i }}{{ loop is defined }}]{% endmacro %}"
       "{{ m() }}{% set x = 2 %}{% for i in [7] %}{% set x = 3 %}{{ m() }}{% endfor %}"
       "{% macro n(a, b=x) %}{{ b }}{% set a = a + 1 %}{{ a }}{% endmacro %}{{ n(1) }}",
       {{"y", "Y"}, {"i", "I"}}},
      {"macro_in_loop_and_namespace",
       "{% set ns = namespace(n=0) %}{% macro bump(k) %}{% set ns.n = ns.n + k %}{{ ns.n }}{% "
       "endmacro %}{% for m in messages %}{{ bump(loop.index) }},{% endfor %}{{ ns.n }}"
       "{% for i in [1, 2] %}{% macro inner() %}<{{ i }}>{% endmacro %}{{ inner() }}{% endfor %}",
       ctx},
      {"macro_too_many_args_error", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}},
      {"macro_unknown_keyword_error", "{% macro m(a) %}{% endmacro %}{{ m(c=1) }}", {}},
      {"dictsort",
       "{{ {'b': 1, 'A': 2, 'a': 0} | dictsort }}{{ {'b': 1, 'A': 2, 'a': 0} | dictsort(true) }}"
       "{{ {'b': 1, 'A': 2, 'a': 0} | dictsort(by='value', reverse=true) }}"
       "{% for k, v in messages[2].tool_calls[0].function.arguments | dictsort(reverse=true) %}"
       "{{ k }}={{ v }};{% endfor %}",
       ctx},
      {"dict_non_string_keys",
       "{% set d = {0: 'zero', 512: 128, 2.5: 'f', none: 'n', 'k': 1, 1.0: 'one'} %}{{ "
       "d }}|"
       "{{ d[512] }}{{ d[0] }}{{ d[2.5] }}{{ d[none] }}{{ d[1.0] }}{{ d['512'] }}|{{ 512 in d }}"
       "{{ '0' in d }}|{{ d.get(0) }}|{{ d | tojson }}|{% for k in d %}{{ k + 1 if k is number "
       "else k }},{% endfor %}|{% for k, v in {4096: 512, 0: 0, 1024: 256} | dictsort %}{{ k }}:"
       "{{ v }};{% endfor %}|{{ d.items() | list }}|{{ d[missing] is defined }}{{ d[[1]] is "
       "defined }}",
       {}},
      {"markup",
       "{% macro m() %}<a>{% endmacro %}{{ m() + '<b>' }}|{{ 'x' | safe + '<' }}|{{ '<' + 'x' | "
       "safe "
       "}}|{{ 'x' | safe ~ '<' }}|{{ ('x' | safe).strip() + '<' }}|{{ 'x' | safe | trim + '<' }}|"
       "{{ 'x' | safe | tojson }}|{{ '<' | e + '>' }}|{{ '<' | e | e }}|{{ 'x' | safe | string + "
       "'&' }}|{{ \"Use '\" | safe + name + \"' \" | safe + {'k': 'v\"'} | tojson }}",
       ctx},
      {"escape_quotes",
       "{{ '<a href=\"x\">' | e }}{{ \"it's & co\" | e }}|{{ '\"' | escape | e }}",
       {}},
      {"loop_cycle",
       "{% for m in messages %}{{ loop.cycle('odd', 'even') }}{{ loop.cycle(1) }},{% endfor %}",
       ctx},
      {"dictsort_none_error", "{{ nothing | dictsort }}", ctx},
      {"indent",
       "[{{ 'a\nb\n\nc' | indent }}][{{ 'a\nb\n\nc\n' | indent(2, true) }}]"
       "[{{ 'a\nb\n\nc' | indent('> ', blank=true) }}][{{ '' | indent(first=true) }}]"
       "[{{ 'a\r\nb\\x0bc' | indent(1) }}][{{ messages[2] | tojson(indent=2) | indent(4) }}]",
       ctx},
      {"indent_int_error", "{{ 5 | indent }}", {}},
      {"filter_block",
       "{%- filter trim -%}\n  {{ name }}  \n{%- endfilter -%}|{% filter upper | replace('O', "
       "'0') %} {{ name }} {% endfilter %}|{% filter indent(2, true) %}a\nb{% endfilter %}",
       ctx},
      {"unknown_filter_in_untaken_branch",
       "{% if name is string %}ok{% else %}{% set args = name | from_json %}{% endif %}"
       "{{ name | from_json if false else 'inline' }}{% if false %}{{ name is prime }}{% endif %}",
       ctx},
      {"unknown_filter_taken_error", "{% if name is string %}{{ name | from_json }}{% endif %}",
       ctx},
      {"unknown_filter_in_loop_in_if_error",
       "{% if false %}{% for i in [] %}{{ i | from_json }}{% endfor %}{% endif %}",
       {}},
      {"globals_defined",
       "{{ strftime_now is defined }}{{ raise_exception is defined }}{{ namespace is defined }}"
       "{{ range is defined }}{{ dict is defined }}{{ cycler is defined }}{{ strftime_now is "
       "callable }}{% set r = range %}{{ r(3) | list }}{% if strftime_now is defined %}"
       "{{ strftime_now('%Y') | length }}{% endif %}",
       {}},
      {"select_map_on_none",
       "{{ nothing | selectattr('type', 'equalto', 'code') | list | length }}"
       "{{ missing | select | list }}{{ nothing | map(attribute='a') | list }}{{ [] | "
       "rejectattr('a', 'nosuchtest') | list }}{{ 0 | reject | list }}",
       ctx},
  };
}

TEST(JinjaParity, ConstructsMatchJinja2) {
  const auto cases = constructCases();
  const size_t identical = compareWithJinja2(cases);
  std::cout << "[jinja] " << identical << "/" << cases.size()
            << " construct templates identical to Jinja2\n";
  EXPECT_GE(cases.size(), 40u);
}

// ---------------------------------------------------------------- real chat templates

std::filesystem::path tokenizersDir() { return testing::sharedTokenizersDir(); }

std::vector<json> conversations() {
  return {
      json::parse(R"([{"role": "user", "content": "Hi!"}])"),
      json::parse(
          R"([{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi!"},
                      {"role": "assistant", "content": "Hello! How can I help?"}])"),
      json::parse(R"([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                      {"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6."}])"),
      json::parse(R"([{"role": "system", "content": ""}, {"role": "user", "content": ""},
                      {"role": "assistant", "content": ""}])"),
      json::parse(R"([{"role": "user", "content": "  Grüße, 世界! Ünïcødé 🚀 \n"},
                      {"role": "assistant", "content": "Привет — ça va? ✓"}])"),
      json::parse(R"([{"role": "user", "content": "Think first."},
                      {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nThe answer is 42."},
                      {"role": "user", "content": "Again."},
                      {"role": "assistant", "content": "<think>\nStill\n\n</think>\n\n\nStill 42."}])"),
      json::parse(R"([{"role": "user", "content": "Q"},
                      {"role": "assistant", "content": "A", "reasoning_content": "\nbecause\n"},
                      {"role": "user", "content": "Q2"},
                      {"role": "assistant", "content": "A2", "reasoning_content": "reasoning two"}])"),
      json::parse(R"([{"role": "system", "content": "Use tools."},
                      {"role": "user", "content": "Weather in Paris?"},
                      {"role": "assistant", "content": "",
                       "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                       "arguments": {"city": "Paris", "unit": "°C"}}}]},
                      {"role": "tool", "content": "{\"temp\": 21}"},
                      {"role": "assistant", "content": "It is 21 °C in Paris."}])"),
      json::parse(R"([{"role": "user", "content": "Two lookups"},
                      {"role": "assistant", "content": "Checking.",
                       "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"a\"}"}}]},
                      {"role": "tool", "content": "result a"},
                      {"role": "tool", "content": "<tool_response>nested</tool_response>"},
                      {"role": "user", "content": "<tool_response>x</tool_response>"}])"),
  };
}

json weatherTools() {
  return json::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Current weather — in °C", "parameters": {"type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["°C", "°F"]}},
    "required": ["city"]}}}])");
}

// Special tokens as transformers passes them (tokenizer.special_tokens_map: the non-null
// bos/eos/unk/pad/sep/cls/mask tokens of tokenizer_config.json).
json baseContext(const json& config) {
  json ctx = json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    if (!config.contains(key) || config[key].is_null()) continue;
    const json& token = config[key];
    ctx[key] = token.is_object() ? token.at("content") : token;
  }
  return ctx;
}

void checkRealTemplate(const std::string& model) {
  const auto dir = tokenizersDir() / model;
  const auto config_path = dir / "tokenizer_config.json";
  if (tokenizersDir().empty() || !std::filesystem::exists(config_path)) {
    GTEST_SKIP() << "no " << model << " tokenizer at " << dir << "; its chat template not checked";
  }
  const json config = json::parse(testing::readFile(config_path));
  ASSERT_TRUE(config.contains("chat_template")) << config_path;
  const std::string source = config["chat_template"].get<std::string>();
  const JinjaTemplate parsed = JinjaTemplate::parse(source, config_path.string());
  std::vector<Case> cases;
  size_t k = 0;
  for (const json& messages : conversations()) {
    const bool has_tool_turn = messages.dump().find("tool_calls") != std::string::npos;
    for (const bool generation_prompt : {false, true}) {
      for (const bool with_tools : {false, true}) {
        if (with_tools && !has_tool_turn && k % 3 != 0) continue;
        json ctx = baseContext(config);
        ctx["messages"] = messages;
        ctx["tools"] = with_tools ? weatherTools() : json(nullptr);
        ctx["documents"] = nullptr;
        ctx["add_generation_prompt"] = generation_prompt;
        if (model == "llama3_1") ctx["date_string"] = "26 Jul 2024";
        cases.push_back({model + " #" + std::to_string(cases.size()), source, ctx});
        if (model == "llama3_1" && with_tools) {
          // Tools in the system message, and Llama's built-in tools (ipython, <|eom_id|>).
          ctx["tools_in_user_message"] = false;
          cases.push_back(
              {model + " #" + std::to_string(cases.size()) + " system tools", source, ctx});
          ctx["builtin_tools"] = json::array({"code_interpreter", "get_weather"});
          cases.push_back({model + " #" + std::to_string(cases.size()) + " builtin", source, ctx});
        }
        if (model == "qwen3") {
          ctx["enable_thinking"] = false;
          cases.push_back(
              {model + " #" + std::to_string(cases.size()) + " no thinking", source, ctx});
        }
      }
    }
    ++k;
  }
  for (const Case& c : cases) EXPECT_NO_THROW(parsed.render(c.context)) << c.name;
  const size_t identical = compareWithJinja2(cases);
  std::cout << "[jinja] " << model << ": " << identical << "/" << cases.size()
            << " renderings identical to Jinja2\n";
  EXPECT_GE(cases.size(), 20u);
}

TEST(JinjaParity, Qwen3ChatTemplate) { checkRealTemplate("qwen3"); }
TEST(JinjaParity, Qwen2_5ChatTemplate) { checkRealTemplate("qwen2_5"); }
TEST(JinjaParity, Llama3_1ChatTemplate) { checkRealTemplate("llama3_1"); }

// ---------------------------------------------------------------- survey (opt-in)

// Every *.jinja in $LOOM_JINJA_SURVEY_DIR (published chat templates) over a few plain
// conversations, with and without the generation prompt, and one with a tool (for the
// macros that render tool schemas), against Jinja2: one line per template, saying how many
// cases Jinja2 itself refuses (those count as identical when Loom refuses them too). Skipped unless
// the variable is set; fails when any template is refused or renders differently. strftime_now is
// compared as is: both sides render the same day unless the run straddles midnight.
TEST(JinjaSurvey, PublishedTemplatesMatchJinja2) {
  const char* dir = std::getenv("LOOM_JINJA_SURVEY_DIR");
  if (!dir || !*dir) GTEST_SKIP() << "set LOOM_JINJA_SURVEY_DIR to a folder of *.jinja templates";
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".jinja") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  const std::vector<json> messages = {
      json::parse(R"([{"role": "user", "content": "What is 2+2?"},
                      {"role": "assistant", "content": "2+2 equals 4."}])"),
      json::parse(R"([{"role": "system", "content": "You are a terse assistant."},
                      {"role": "user", "content": "Name a prime."},
                      {"role": "assistant", "content": "7"}])"),
      json::parse(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                      {"role": "user", "content": "Grüße 🚀"},
                      {"role": "assistant", "content": " Привет \n"}])"),
  };
  std::vector<Case> cases;
  for (const auto& file : files) {
    for (size_t m = 0; m <= messages.size(); ++m) {
      for (const bool prompt : {false, true}) {
        const bool tools = m == messages.size();
        json ctx = {{"messages", messages[tools ? 1 : m]},
                    {"tools", tools ? weatherTools() : json(nullptr)},
                    {"bos_token", "<s>"},
                    {"eos_token", "</s>"},
                    {"add_generation_prompt", prompt}};
        cases.push_back({file.filename().string(), testing::readFile(file), ctx});
      }
    }
  }
  const json expected = reference(cases);
  ASSERT_EQ(expected.size(), cases.size());
  const size_t per_template = cases.size() / std::max<size_t>(files.size(), 1);
  size_t identical_templates = 0;
  for (size_t t = 0; t < files.size(); ++t) {
    std::string verdict;
    size_t identical = 0;
    size_t refused_by_jinja2 = 0;
    for (size_t k = t * per_template; k < (t + 1) * per_template; ++k) {
      refused_by_jinja2 += expected[k].contains("error");
      std::string ours;
      std::string error;
      try {
        ours = JinjaTemplate::parse(cases[k].template_text, cases[k].name).render(cases[k].context);
      } catch (const InputError& e) {
        error = e.what();
      }
      const bool want_ok = expected[k].contains("ok");
      const std::string want = want_ok ? expected[k]["ok"].get<std::string>() : "";
      if (want_ok ? (error.empty() && ours == want) : !error.empty()) {
        ++identical;
      } else if (verdict.empty()) {
        const size_t c = k - t * per_template;
        if (!error.empty()) {
          verdict = "case " + std::to_string(c) + ": Loom fails: " + error;
        } else if (!want_ok) {
          verdict = "case " + std::to_string(c) + ": Jinja2 fails (" +
                    expected[k]["error"].get<std::string>() + "), Loom renders";
        } else {
          size_t at = 0;
          while (at < ours.size() && at < want.size() && ours[at] == want[at]) ++at;
          const size_t from = at < 40 ? 0 : at - 40;
          verdict = "case " + std::to_string(c) + ": differs at byte " + std::to_string(at) +
                    "\n    jinja2: " + json(want.substr(from, 120)).dump() +
                    "\n    loom:   " + json(ours.substr(from, 120)).dump();
        }
      }
    }
    identical_templates += identical == per_template;
    std::cout << "[survey] " << files[t].filename().string() << ": " << identical << "/"
              << per_template << (verdict.empty() ? " identical" : " " + verdict);
    if (refused_by_jinja2) std::cout << " (Jinja2 fails " << refused_by_jinja2 << ")";
    std::cout << "\n";
  }
  std::cout << "[survey] " << identical_templates << "/" << files.size()
            << " templates identical to Jinja2\n";
  EXPECT_EQ(identical_templates, files.size());
}

// ---------------------------------------------------------------- refusals (no Python)

std::string parseError(const std::string& source) {
  try {
    JinjaTemplate::parse(source, "tpl.jinja");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string renderError(const std::string& source, const json& context = json::object()) {
  try {
    JinjaTemplate::parse(source, "tpl.jinja").render(context);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(JinjaErrors, UnsupportedConstructsNameTheConstructAndPlace) {
  EXPECT_EQ(parseError("ok\n  {% call m() %}x{% endcall %}"),
            "tpl.jinja:2:6: the {% call %} tag is not supported");
  EXPECT_EQ(parseError("{% macro m() %}\n{{ caller() }}{% endmacro %}"),
            "tpl.jinja:2:4: 'caller' in a macro is not supported");
  EXPECT_EQ(parseError("{% macro m() %}{{ varargs }}{% endmacro %}"),
            "tpl.jinja:1:19: 'varargs' in a macro is not supported");
  EXPECT_EQ(parseError("{% include 'other.jinja' %}"),
            "tpl.jinja:1:4: the {% include %} tag is not supported");
  EXPECT_EQ(parseError("line\n{{ x | frobnicate }}"),
            "tpl.jinja:2:8: the filter 'frobnicate' is not supported");
  EXPECT_EQ(parseError("{{ x is prime }}"), "tpl.jinja:1:9: the test 'prime' is not supported");
  // Where Jinja2 defers the error to run time (an if, an inline if), so does Loom.
  EXPECT_EQ(parseError("{% if x is prime %}{% endif %}"), "(no error)");
  EXPECT_EQ(renderError("{% if x is prime %}{% endif %}"),
            "tpl.jinja:1:12: the test 'prime' is not supported");
  EXPECT_EQ(renderError("{% if true %}\n {{ 'a' | from_json }}{% endif %}"),
            "tpl.jinja:2:11: the filter 'from_json' is not supported");
  EXPECT_EQ(parseError("{% frob %}"), "tpl.jinja:1:4: unknown tag 'frob'");
  EXPECT_NE(parseError("{% if x %}never closed").find("tpl.jinja:1:"), std::string::npos);
  EXPECT_NE(parseError("{{ 'open }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(parseError("{# open").find("missing end of comment"), std::string::npos);
}

TEST(JinjaErrors, RuntimeErrorsNamePlaceAndTemplateMessage) {
  EXPECT_EQ(renderError("\n  {{ raise_exception('Only user and assistant roles!') }}"),
            "tpl.jinja:2:6: the template raised an error: Only user and assistant roles!");
  EXPECT_EQ(renderError("{{ message.content }}"), "tpl.jinja:1:4: 'message' is undefined");
  EXPECT_NE(renderError("{{ 'a' + 1 }}").find("can only concatenate str"), std::string::npos);
  EXPECT_NE(renderError("{{ x }}", json::array()).find("must be a JSON object"), std::string::npos);
}

TEST(JinjaTemplate, RendersWithoutPython) {
  const auto t = JinjaTemplate::parse(
      "{%- for m in messages %}<{{ m.role }}>{{ m.content | trim }}\n{% endfor %}"
      "{%- if add_generation_prompt %}<assistant>{% endif %}",
      "mini");
  const json ctx = {{"messages", json::parse(R"([{"role": "user", "content": " hi "}])")},
                    {"add_generation_prompt", true}};
  EXPECT_EQ(t.render(ctx), "<user>hi\n<assistant>");
  EXPECT_EQ(t.where(), "mini");
}

}  // namespace
}  // namespace loom
