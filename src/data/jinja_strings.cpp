// Python's str and dict methods for the Jinja interpreter (strip, split, startswith,
// replace, title, get, items, ...) and the str helpers the filters share. Case mappings are
// Unicode's simple one-to-one mappings (utf8proc): Python's full mappings such as
// "ß".upper() == "SS" are not reproduced.

#include <utf8proc.h>

#include <algorithm>
#include <set>

#include "jinja_ast.hpp"
#include "loom/core/format.hpp"
#include "tokenizer_text.hpp"

namespace loom::detail::jinja {

using K = Value::Kind;

// Python's str.isspace(): Unicode White_Space plus the separators U+001C..U+001F.
bool isPySpace(char32_t cp) { return isUnicodeSpace(cp) || (cp >= 0x1C && cp <= 0x1F); }

namespace {

bool isLetter(char32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

char32_t upperOf(char32_t cp) { return static_cast<char32_t>(utf8proc_toupper(cp)); }
char32_t lowerOf(char32_t cp) { return static_cast<char32_t>(utf8proc_tolower(cp)); }

}  // namespace

std::string mapCase(const std::string& s, bool upper) {
  std::u32string u = utf8Decode(s);
  for (auto& cp : u) cp = upper ? upperOf(cp) : lowerOf(cp);
  return utf8Encode(u);
}

std::string capitalize(const std::string& s) {
  std::u32string u = utf8Decode(s);
  for (size_t k = 0; k < u.size(); ++k) u[k] = k == 0 ? upperOf(u[k]) : lowerOf(u[k]);
  return utf8Encode(u);
}

namespace {

// Python str.title(): a letter after a non-letter is upper-cased, others lower-cased.
std::string pyTitle(const std::string& s) {
  std::u32string u = utf8Decode(s);
  bool prev_letter = false;
  for (auto& cp : u) {
    const bool letter = isLetter(cp);
    cp = letter && !prev_letter ? upperOf(cp) : lowerOf(cp);
    prev_letter = letter;
  }
  return utf8Encode(u);
}

}  // namespace

// Jinja's title filter: words start after runs of [-\s({[<].
std::string jinjaTitle(const std::string& s) {
  std::u32string u = utf8Decode(s);
  bool word_start = true;
  for (auto& cp : u) {
    const bool sep =
        isPySpace(cp) || cp == U'-' || cp == U'(' || cp == U'{' || cp == U'[' || cp == U'<';
    if (sep) {
      word_start = true;
      continue;
    }
    cp = word_start ? upperOf(cp) : lowerOf(cp);
    word_start = false;
  }
  return utf8Encode(u);
}

// Python str.strip / lstrip / rstrip; `chars` undefined or None means whitespace.
std::string pyStrip(const std::string& s, const Value& chars, bool left, bool right) {
  const std::u32string u = utf8Decode(s);
  const bool ws = chars.isUndefined() || chars.kind == K::None;
  const std::u32string set = ws ? std::u32string() : utf8Decode(toStr(chars));
  const auto strip = [&](char32_t cp) {
    return ws ? isPySpace(cp) : set.find(cp) != std::u32string::npos;
  };
  size_t begin = 0;
  size_t end = u.size();
  if (left) {
    while (begin < end && strip(u[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip(u[end - 1])) --end;
  }
  return utf8Encode(u.substr(begin, end - begin));
}

namespace {

// Python str.split(sep=None, maxsplit=-1).
Value pySplit(const std::string& s, const Value& sep, int64_t maxsplit) {
  ValueList parts;
  if (sep.isUndefined() || sep.kind == K::None) {
    const std::u32string u = utf8Decode(s);
    size_t k = 0;
    while (true) {
      while (k < u.size() && isPySpace(u[k])) ++k;
      if (k >= u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        parts.push_back(Value::string(utf8Encode(u.substr(k))));
        break;
      }
      const size_t start = k;
      while (k < u.size() && !isPySpace(u[k])) ++k;
      parts.push_back(Value::string(utf8Encode(u.substr(start, k - start))));
    }
    return Value::makeList(std::move(parts));
  }
  if (sep.kind != K::String) throw EvalError{"split() separator must be a string or None"};
  if (sep.s.empty()) throw EvalError{"empty separator"};
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep.s, start);
    if (at == std::string::npos ||
        (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit)) {
      parts.push_back(Value::string(s.substr(start)));
      break;
    }
    parts.push_back(Value::string(s.substr(start, at - start)));
    start = at + sep.s.size();
  }
  return Value::makeList(std::move(parts));
}

}  // namespace

std::string pyReplace(const std::string& s, const std::string& old, const std::string& repl,
                      int64_t count) {
  if (old.empty()) {  // Python inserts between every character
    std::string out;
    int64_t done = 0;
    for (const char32_t cp : utf8Decode(s)) {
      if (count < 0 || done < count) {
        out += repl;
        ++done;
      }
      out += utf8Encode(std::u32string(1, cp));
    }
    if (count < 0 || done < count) out += repl;
    return out;
  }
  std::string out;
  size_t start = 0;
  for (int64_t done = 0; count < 0 || done < count; ++done) {
    const size_t at = s.find(old, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start);
    out += repl;
    start = at + old.size();
  }
  return out + s.substr(start);
}

namespace {

bool affix(const std::string& s, const Value& probe, bool prefix) {
  const auto one = [&](const Value& p) {
    if (p.kind != K::String) throw EvalError{"startswith/endswith takes a string or a tuple"};
    return p.s.size() <= s.size() &&
           (prefix ? s.compare(0, p.s.size(), p.s) == 0
                   : s.compare(s.size() - p.s.size(), p.s.size(), p.s) == 0);
  };
  if (probe.kind == K::List) return std::any_of(probe.list->begin(), probe.list->end(), one);
  return one(probe);
}

}  // namespace

int64_t intArg(const Value& v, int64_t fallback) {
  if (v.isUndefined() || v.kind == K::None) return fallback;
  if (v.kind != K::Int && v.kind != K::Bool) {
    throw EvalError{std::string("an integer is required, got '") + typeName(v) + "'"};
  }
  return v.asInt();
}

// Python int(text): optional sign and surrounding whitespace, digits with underscores.
bool parseInt(const std::string& text, int64_t& out) {
  const std::string t = pyStrip(text, Value::undefined(), true, true);
  size_t k = 0;
  bool neg = false;
  if (k < t.size() && (t[k] == '+' || t[k] == '-')) neg = t[k++] == '-';
  if (k >= t.size()) return false;
  int64_t v = 0;
  for (; k < t.size(); ++k) {
    if (t[k] == '_') continue;
    if (t[k] < '0' || t[k] > '9') return false;
    v = v * 10 + (t[k] - '0');
  }
  out = neg ? -v : v;
  return true;
}

bool parseFloat(const std::string& text, double& out) {
  const std::string t = pyStrip(text, Value::undefined(), true, true);
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}

Value callMethod(const Value& obj, const std::string& name, const Args& args, bool& found) {
  found = true;
  if (obj.kind == K::String) {
    const std::string& s = obj.s;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      Value out =
          Value::string(pyStrip(s, args.get(0, "chars"), name != "rstrip", name != "lstrip"));
      out.markup = obj.markup;  // Markup's strips stay Markup
      return out;
    }
    if (name == "split") return pySplit(s, args.get(0, "sep"), intArg(args.get(1, "maxsplit"), -1));
    if (name == "startswith") return Value::boolean(affix(s, args.get(0, "prefix"), true));
    if (name == "endswith") return Value::boolean(affix(s, args.get(0, "suffix"), false));
    if (name == "upper" || name == "lower") return Value::string(mapCase(s, name == "upper"));
    if (name == "title") return Value::string(pyTitle(s));
    if (name == "capitalize") return Value::string(capitalize(s));
    if (name == "replace") {
      return Value::string(pyReplace(s, toStr(args.get(0, "old")), toStr(args.get(1, "new")),
                                     intArg(args.get(2, "count"), -1)));
    }
    if (name == "find" || name == "count") {
      const std::string sub = toStr(args.get(0, "sub"));
      if (name == "find") {
        const size_t at = s.find(sub);
        return Value::integer(at == std::string::npos
                                  ? -1
                                  : static_cast<int64_t>(utf8Decode(s.substr(0, at)).size()));
      }
      int64_t n = 0;
      for (size_t at = s.find(sub); at != std::string::npos && !sub.empty();
           at = s.find(sub, at + sub.size()))
        ++n;
      return Value::integer(sub.empty() ? length(obj) + 1 : n);
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const Value& item : iterate(args.get(0, "iterable"))) {
        if (item.kind != K::String) throw EvalError{"sequence item: expected str instance"};
        out += (first ? "" : s) + item.s;
        first = false;
      }
      return Value::string(std::move(out));
    }
  } else if (obj.kind == K::Dict) {
    if (name == "get") {
      const Value key = args.get(0, "key");
      const Value* v = obj.dict->find(dictKey(key));
      return v ? *v : args.get(1, "default", Value::none());
    }
    if (name == "items") return dictItems(obj, Value::Flavor::kItems);
    if (name == "keys") return Value::makeList(iterate(obj), Value::Flavor::kKeys);
    if (name == "values") {
      ValueList out;
      for (const auto& item : obj.dict->items) out.push_back(item.second);
      return Value::makeList(std::move(out), Value::Flavor::kValues);
    }
  }
  static const std::set<std::string> kMutators = {"append",  "extend", "insert", "pop",
                                                  "remove",  "clear",  "update", "setdefault",
                                                  "popitem", "sort",   "reverse"};
  if ((obj.kind == K::List || obj.kind == K::Dict) && kMutators.count(name)) {
    throw EvalError{"access to attribute '" + name + "' of '" + typeName(obj) +
                    "' object is unsafe (the sandbox is immutable)"};
  }
  found = false;
  return Value::undefined();
}

std::string htmlEscape(const std::string& s) { return escapeXml(s, "&#34;"); }

}  // namespace loom::detail::jinja
