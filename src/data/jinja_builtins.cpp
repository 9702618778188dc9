// Built-ins of the Jinja interpreter: Jinja2's filters and tests, and the globals
// transformers adds (raise_exception, strftime_now, namespace, dict) plus Jinja's range().
// Each follows the Python original; where a corner is not reproduced the comment says so.
// Python's str and dict methods are in jinja_strings.cpp.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <set>

#include "jinja_ast.hpp"
#include "tokenizer_text.hpp"

namespace loom::detail::jinja {

namespace {

using K = Value::Kind;

// Jinja's attribute paths for map/selectattr/sort: "a.b" or "0".
Value attributePath(const Value& item, const Value& path) {
  if (path.kind == K::Int) return getItem(item, path);
  Value v = item;
  const std::string p = toStr(path);
  size_t start = 0;
  while (true) {
    const size_t dot = p.find('.', start);
    const std::string part =
        p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    int64_t index;
    Value next = getItem(v, Value::string(part));
    if (next.isUndefined() && parseInt(part, index)) next = getItem(v, Value::integer(index));
    v = next;
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

// Jinja's round(value, precision, method): 'common' is Python's round() (half to even on
// the exact binary value), 'ceil' and 'floor' work on value * 10**precision.
Value roundValue(const Value& v, int64_t precision, const std::string& method) {
  if (!v.isNumber())
    throw EvalError{std::string("round() needs a number, got '") + typeName(v) + "'"};
  if (method == "common" && v.kind != K::Float) return Value::integer(v.asInt());
  const double x = v.asDouble();
  if (method == "common") {
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::clamp<int64_t>(precision, 0, 300)),
                  x);
    return Value::number(std::strtod(buf, nullptr));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value::number(std::ceil(x * scale) / scale);
  if (method == "floor") return Value::number(std::floor(x * scale) / scale);
  throw EvalError{"method must be common, ceil or floor"};
}

Value tojson(const Value& v, const Args& args) {
  const bool ensure_ascii = truthy(args.get(0, "ensure_ascii", Value::boolean(false)));
  const Value indent_v = args.get(1, "indent", Value::none());
  const Value separators = args.get(2, "separators", Value::none());
  const bool sort_keys = truthy(args.get(3, "sort_keys", Value::boolean(false)));
  int indent = -1;
  if (indent_v.kind == K::Int) {
    indent = static_cast<int>(std::max<int64_t>(0, indent_v.i));
  } else if (indent_v.kind != K::None && !indent_v.isUndefined()) {
    throw EvalError{"tojson: only an integer indent is supported"};
  }
  std::string item_sep = indent >= 0 ? "," : ", ";
  std::string key_sep = ": ";
  if (separators.kind == K::List && separators.list->size() == 2) {
    item_sep = toStr((*separators.list)[0]);
    key_sep = toStr((*separators.list)[1]);
  } else if (separators.kind != K::None && !separators.isUndefined()) {
    throw EvalError{"tojson: separators must be a pair of strings"};
  }
  return Value::string(toJson(v, ensure_ascii, indent, item_sep, key_sep, sort_keys));
}

// select / reject / selectattr / rejectattr.
// Like map, Jinja2's select family yields nothing for a false sequence (None, undefined, empty)
// before looking at its arguments.
Value selectItems(const Value& seq, const Args& args, bool by_attr, bool keep) {
  ValueList out;
  if (!truthy(seq)) return Value::makeList({}, Value::Flavor::kGenerator);
  const size_t test_at = by_attr ? 1 : 0;
  const bool has_test = args.positional.size() > test_at;
  const std::string test = has_test ? toStr(args.positional[test_at]) : "";
  if (has_test && !isKnownTest(test)) throw EvalError{"the test '" + test + "' is not supported"};
  Args test_args;
  for (size_t k = test_at + 1; k < args.positional.size(); ++k) {
    test_args.positional.push_back(args.positional[k]);
  }
  for (const Value& item : iterate(seq)) {
    const Value probe = by_attr ? attributePath(item, args.get(0, "attribute")) : item;
    const bool pass = has_test ? applyTest(test, probe, test_args) : truthy(probe);
    if (pass == keep) out.push_back(item);
  }
  return Value::makeList(std::move(out), Value::Flavor::kGenerator);
}

Value mapItems(const Value& seq, const Args& args) {
  ValueList out;
  if (!truthy(seq)) return Value::makeList({}, Value::Flavor::kGenerator);
  const Value attribute = args.get(99, "attribute");
  if (!attribute.isUndefined()) {
    const Value fallback = args.get(99, "default");
    for (const Value& item : iterate(seq)) {
      Value v = attributePath(item, attribute);
      out.push_back(v.isUndefined() && !fallback.isUndefined() ? fallback : v);
    }
    return Value::makeList(std::move(out), Value::Flavor::kGenerator);
  }
  if (args.positional.empty()) throw EvalError{"map() needs a filter name or attribute="};
  const std::string filter = toStr(args.positional[0]);
  if (!isKnownFilter(filter)) throw EvalError{"the filter '" + filter + "' is not supported"};
  Args rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.named = args.named;
  for (const Value& item : iterate(seq)) out.push_back(applyFilter(filter, item, rest));
  return Value::makeList(std::move(out), Value::Flavor::kGenerator);
}

Value sortItems(const Value& seq, const Args& args) {
  const bool reverse = truthy(args.get(0, "reverse", Value::boolean(false)));
  const bool case_sensitive = truthy(args.get(1, "case_sensitive", Value::boolean(false)));
  const Value attribute = args.get(2, "attribute", Value::none());
  ValueList items = iterate(seq);
  const auto key = [&](const Value& item) {
    Value k = attribute.kind == K::None ? item : attributePath(item, attribute);
    if (!case_sensitive && k.kind == K::String) k.s = mapCase(k.s, false);
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? compare(key(b), key(a)) < 0 : compare(key(a), key(b)) < 0;
  });
  return Value::makeList(std::move(items));
}

// dictsort(value, case_sensitive=False, by='key', reverse=False): the (key, value) tuples in
// order of the key or the value, case-insensitively for strings unless asked.
Value dictSort(const Value& v, const Args& args) {
  const bool case_sensitive = truthy(args.get(0, "case_sensitive", Value::boolean(false)));
  const Value by = args.get(1, "by", Value::string("key"));
  const bool reverse = truthy(args.get(2, "reverse", Value::boolean(false)));
  const bool by_key = by.kind == K::String && by.s == "key";
  if (!by_key && !(by.kind == K::String && by.s == "value")) {
    throw EvalError{"You can only sort by either \"key\" or \"value\""};
  }
  if (v.isUndefined()) failUndefined(v);
  if (v.kind != K::Dict) {
    throw EvalError{std::string("'") + typeName(v) + "' object has no attribute 'items'"};
  }
  ValueList items = *dictItems(v, Value::Flavor::kList).list;
  const auto key = [&](const Value& item) {
    Value k = (*item.list)[by_key ? 0 : 1];
    if (!case_sensitive && k.kind == K::String) k.s = mapCase(k.s, false);
    return k;
  };
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    return reverse ? compare(key(b), key(a)) < 0 : compare(key(a), key(b)) < 0;
  });
  return Value::makeList(std::move(items));
}

// Python's str.splitlines() line boundaries.
bool isLineBreak(char32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) ||
         cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

std::vector<std::u32string> splitLines(const std::u32string& s) {
  std::vector<std::u32string> lines;
  size_t start = 0;
  for (size_t k = 0; k < s.size(); ++k) {
    if (!isLineBreak(s[k])) continue;
    lines.push_back(s.substr(start, k - start));
    if (s[k] == '\r' && k + 1 < s.size() && s[k + 1] == '\n') ++k;
    start = k + 1;
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

// indent(s, width=4, first=False, blank=False): width is a count of spaces or the string to
// indent with; Jinja2 appends a newline before splitting, so a trailing one is kept.
Value indentText(const Value& v, const Args& args) {
  if (v.isUndefined()) failUndefined(v);
  if (v.kind != K::String) {
    throw EvalError{std::string("unsupported operand type(s) for +=: '") + typeName(v) +
                    "' and 'str'"};
  }
  const Value width = args.get(0, "width", Value::integer(4));
  const bool first = truthy(args.get(1, "first", Value::boolean(false)));
  const bool blank = truthy(args.get(2, "blank", Value::boolean(false)));
  std::u32string indention;
  if (width.kind == K::String) {
    indention = utf8Decode(width.s);
  } else if (width.kind == K::Int || width.kind == K::Bool) {
    indention.assign(static_cast<size_t>(std::max<int64_t>(0, width.asInt())), U' ');
  } else {
    throw EvalError{std::string("can't multiply sequence by non-int of type '") + typeName(width) +
                    "'"};
  }
  const std::vector<std::u32string> lines = splitLines(utf8Decode(v.s) + U"\n");
  std::u32string out;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k) out += U'\n';
    if (k && (blank || !lines[k].empty())) out += indention;
    out += lines[k];
  }
  if (first) out = indention + out;
  return Value::string(utf8Encode(out));
}

const std::set<std::string> kFilters = {
    "length",   "count",  "trim",       "tojson",     "string", "lower", "upper",
    "first",    "last",   "join",       "default",    "d",      "items", "list",
    "replace",  "int",    "float",      "capitalize", "title",  "round", "map",
    "select",   "reject", "selectattr", "rejectattr", "abs",    "safe",  "reverse",
    "sort",     "sum",    "unique",     "escape",     "e",      "attr",  "wordcount",
    "dictsort", "indent"};

const std::set<std::string> kTests = {
    "defined",  "undefined",   "none",  "string",  "mapping", "iterable", "sequence",
    "number",   "integer",     "float", "boolean", "true",    "false",    "odd",
    "even",     "divisibleby", "eq",    "equalto", "==",      "ne",       "!=",
    "lt",       "lessthan",    "<",     "le",      "<=",      "gt",       "greaterthan",
    ">",        "ge",          ">=",    "in",      "lower",   "upper",    "sameas",
    "callable", "escaped"};

}  // namespace

bool isKnownFilter(const std::string& name) { return kFilters.count(name) > 0; }
bool isKnownTest(const std::string& name) { return kTests.count(name) > 0; }

Value applyFilter(const std::string& name, const Value& v, const Args& args) {
  if (name == "default" || name == "d") {
    const bool boolean = truthy(args.get(1, "boolean", Value::boolean(false)));
    if (v.isUndefined() || (boolean && !truthy(v))) {
      return args.get(0, "default_value", Value::string(""));
    }
    return v;
  }
  if (name == "length" || name == "count") return Value::integer(length(v));
  if (name == "string") return v.kind == K::String ? v : Value::string(toStr(v));
  if (name == "safe") {
    Value out = Value::string(toStr(v));
    out.markup = true;
    return out;
  }
  if (name == "trim") {
    Value out = Value::string(pyStrip(toStr(v), args.get(0, "chars"), true, true));
    out.markup = v.kind == K::String && v.markup;  // Markup.strip() stays Markup
    return out;
  }
  if (name == "lower" || name == "upper") return Value::string(mapCase(toStr(v), name == "upper"));
  if (name == "capitalize") return Value::string(capitalize(toStr(v)));
  if (name == "title") return Value::string(jinjaTitle(toStr(v)));
  if (name == "tojson") return tojson(v, args);
  if (name == "first" || name == "last") {
    if (name == "last" && v.kind == K::List && v.flavor == Value::Flavor::kGenerator) {
      throw EvalError{"'generator' object is not reversible"};
    }
    const ValueList items = iterate(v);
    if (items.empty()) return Value::undefined("no " + name + " item, sequence was empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    const Value attribute = args.get(1, "attribute", Value::none());
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first) out += toStr(args.get(0, "d", Value::string("")));
      out += toStr(attribute.kind == K::None ? item : attributePath(item, attribute));
      first = false;
    }
    return Value::string(std::move(out));
  }
  if (name == "items") {
    if (v.isUndefined()) return Value::makeList({});
    if (v.kind != K::Dict) throw EvalError{"Can only get item pairs from a mapping."};
    return dictItems(v, Value::Flavor::kGenerator);
  }
  if (name == "list") return Value::makeList(iterate(v));
  if (name == "reverse") {
    if (v.kind == K::String) {
      std::u32string u = utf8Decode(v.s);
      std::reverse(u.begin(), u.end());
      return Value::string(utf8Encode(u));
    }
    // Python's reversed() gives an iterator; a generator has no reversed() and becomes a list.
    ValueList items = iterate(v);
    std::reverse(items.begin(), items.end());
    const bool iterator = v.kind == K::List && v.flavor != Value::Flavor::kGenerator;
    return Value::makeList(std::move(items),
                           iterator ? Value::Flavor::kGenerator : Value::Flavor::kList);
  }
  if (name == "replace") {
    return Value::string(pyReplace(toStr(v), toStr(args.get(0, "old")), toStr(args.get(1, "new")),
                                   intArg(args.get(2, "count"), -1)));
  }
  if (name == "int") {
    const Value fallback = args.get(0, "default", Value::integer(0));
    if (v.kind == K::Int || v.kind == K::Bool) return Value::integer(v.asInt());
    if (v.kind == K::Float) {
      if (!std::isfinite(v.f)) return fallback;
      return Value::integer(static_cast<int64_t>(v.f));
    }
    int64_t i;
    double f;
    if (v.kind == K::String && parseInt(v.s, i)) return Value::integer(i);
    if (v.kind == K::String && parseFloat(v.s, f) && std::isfinite(f)) {
      return Value::integer(static_cast<int64_t>(f));
    }
    return fallback;
  }
  if (name == "float") {
    const Value fallback = args.get(0, "default", Value::number(0.0));
    if (v.isNumber()) return Value::number(v.asDouble());
    double f;
    if (v.kind == K::String && parseFloat(v.s, f)) return Value::number(f);
    return fallback;
  }
  if (name == "abs") {
    if (v.kind == K::Float) return Value::number(std::fabs(v.f));
    if (v.isNumber()) return Value::integer(std::llabs(v.asInt()));
    throw EvalError{std::string("bad operand type for abs(): '") + typeName(v) + "'"};
  }
  if (name == "round") {
    return roundValue(v, intArg(args.get(0, "precision"), 0),
                      toStr(args.get(1, "method", Value::string("common"))));
  }
  if (name == "map") return mapItems(v, args);
  if (name == "select" || name == "reject") return selectItems(v, args, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") {
    return selectItems(v, args, true, name == "selectattr");
  }
  if (name == "sort") return sortItems(v, args);
  if (name == "sum") {
    const Value attribute = args.get(0, "attribute", Value::none());
    Value total = args.get(1, "start", Value::integer(0));
    for (const Value& item : iterate(v)) {
      total =
          binaryOp("+", total, attribute.kind == K::None ? item : attributePath(item, attribute));
    }
    return total;
  }
  if (name == "unique") {
    ValueList out;
    for (const Value& item : iterate(v)) {
      const bool seen = std::any_of(out.begin(), out.end(), [&](const Value& o) {
        if (o.kind == K::String && item.kind == K::String)
          return mapCase(o.s, false) == mapCase(item.s, false);
        return equals(o, item);
      });
      if (!seen) out.push_back(item);
    }
    return Value::makeList(std::move(out), Value::Flavor::kGenerator);
  }
  if (name == "escape" || name == "e") {
    if (v.kind == K::String && v.markup) return v;
    Value out = Value::string(htmlEscape(toStr(v)));
    out.markup = true;
    return out;
  }
  if (name == "attr") return getAttr(v, toStr(args.get(0, "name")));
  if (name == "dictsort") return dictSort(v, args);
  if (name == "indent") return indentText(v, args);
  if (name == "wordcount") {
    int64_t words = 0;
    bool in_word = false;
    for (const char32_t cp : utf8Decode(toStr(v))) {
      const bool w = isWordChar(cp);
      words += w && !in_word;
      in_word = w;
    }
    return Value::integer(words);
  }
  throw EvalError{"the filter '" + name + "' is not supported"};
}

bool applyTest(const std::string& name, const Value& v, const Args& args) {
  const Value other = args.get(0, "b");
  if (name == "defined") return !v.isUndefined();
  if (name == "undefined") return v.isUndefined();
  if (name == "none") return v.kind == K::None;
  if (name == "string") return v.kind == K::String;
  if (name == "mapping") return v.kind == K::Dict;
  if (name == "iterable" || name == "sequence") {
    return v.kind == K::Undefined || v.kind == K::String || v.kind == K::List || v.kind == K::Dict;
  }
  if (name == "number") return v.isNumber();
  if (name == "integer") return v.kind == K::Int;
  if (name == "float") return v.kind == K::Float;
  if (name == "boolean") return v.kind == K::Bool;
  if (name == "true") return v.kind == K::Bool && v.b;
  if (name == "false") return v.kind == K::Bool && !v.b;
  if (name == "callable") return v.kind == K::Callable;
  if (name == "escaped") return false;
  if (name == "lower") return toStr(v) == mapCase(toStr(v), false);
  if (name == "upper") return toStr(v) == mapCase(toStr(v), true);
  if (name == "odd" || name == "even" || name == "divisibleby") {
    const int64_t n = intArg(v, 0);
    if (name == "divisibleby") {
      const int64_t d = intArg(args.get(0, "num"), 1);
      if (d == 0) throw EvalError{"integer modulo by zero"};
      return n % d == 0;
    }
    return (n % 2 != 0) == (name == "odd");
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, other);
  if (name == "ne" || name == "!=") return !equals(v, other);
  if (name == "sameas") return equals(v, other) && v.kind == other.kind;
  if (name == "in") return contains(args.get(0, "seq"), v);
  const int c = compare(v, other);
  if (name == "lt" || name == "lessthan" || name == "<") return c < 0;
  if (name == "le" || name == "<=") return c <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return c > 0;
  if (name == "ge" || name == ">=") return c >= 0;
  throw EvalError{"the test '" + name + "' is not supported"};
}

bool isGlobalFunction(const std::string& name) {
  return name == "raise_exception" || name == "strftime_now" || name == "namespace" ||
         name == "dict" || name == "range" || name == "lipsum" || name == "cycler" ||
         name == "joiner";
}

Value callGlobal(const std::string& name, const Args& args) {
  if (name == "raise_exception") throw TemplateRaise{toStr(args.get(0, "message"))};
  if (name == "lipsum" || name == "cycler" || name == "joiner") {
    throw EvalError{"the global '" + name + "' is not supported"};
  }
  if (name == "strftime_now") {
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    localtime_r(&now, &local);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof buf, toStr(args.get(0, "format")).c_str(), &local);
    return Value::string(std::string(buf, n));
  }
  if (name == "range") {
    std::vector<int64_t> p;
    for (const Value& v : args.positional) p.push_back(intArg(v, 0));
    if (p.empty() || p.size() > 3) throw EvalError{"range expected 1 to 3 arguments"};
    const int64_t start = p.size() > 1 ? p[0] : 0;
    const int64_t stop = p.size() > 1 ? p[1] : p[0];
    const int64_t step = p.size() > 2 ? p[2] : 1;
    if (step == 0) throw EvalError{"range() arg 3 must not be zero"};
    ValueList out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step)
      out.push_back(Value::integer(k));
    return Value::makeList(std::move(out));
  }
  // namespace(...) and dict(...): an optional mapping, then keyword arguments.
  ValueDict attrs;
  if (!args.positional.empty()) {
    const Value& first = args.positional[0];
    if (first.kind != K::Dict || args.positional.size() > 1) {
      throw EvalError{name + "() takes one optional mapping and keyword arguments"};
    }
    attrs = *first.dict;
  }
  for (const auto& [key, value] : args.named) attrs.set(key, value);
  if (name == "dict") return Value::makeDict(std::move(attrs));
  for (const auto& item : attrs.items) {
    if (item.first.rfind("_", 0) == 0) {
      throw EvalError{"namespace attributes cannot start with '_': '" + item.first + "'"};
    }
  }
  Value ns;
  ns.kind = K::Namespace;
  ns.ns = std::make_shared<ValueDict>(std::move(attrs));
  return ns;
}

}  // namespace loom::detail::jinja
