// Values of the Jinja interpreter with Python's semantics: str(), repr(), ==, ordering,
// arithmetic, json.dumps, and Jinja's sandboxed getattr/getitem with its Undefined.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "jinja_ast.hpp"
#include "loom/core/text_encoding.hpp"

namespace loom::detail::jinja {

const Value* ValueDict::find(const std::string& key) const {
  for (const auto& [k, v] : items) {
    if (k == key) return &v;
  }
  return nullptr;
}

void ValueDict::set(const std::string& key, Value value) {
  for (auto& [k, v] : items) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(key, std::move(value));
}

Value Value::undefined(std::string what) {
  Value v;
  v.s = std::move(what);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.b = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.i = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind = Kind::Float;
  v.f = f;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.s = std::move(s);
  return v;
}
Value Value::makeList(ValueList l, Flavor flavor) {
  Value v;
  v.kind = Kind::List;
  v.flavor = flavor;
  v.list = std::make_shared<const ValueList>(std::move(l));
  return v;
}
Value Value::makeDict(ValueDict d) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<const ValueDict>(std::move(d));
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> fn) {
  Value v;
  v.kind = Kind::Callable;
  v.fn = std::move(fn);
  return v;
}

Value Value::fromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::json::value_t::null:
      return none();
    case nlohmann::json::value_t::boolean:
      return boolean(json.get<bool>());
    case nlohmann::json::value_t::number_integer:
      return integer(json.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned:
      return integer(static_cast<int64_t>(json.get<uint64_t>()));
    case nlohmann::json::value_t::number_float:
      return number(json.get<double>());
    case nlohmann::json::value_t::string:
      return string(json.get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList l;
      for (const auto& item : json) l.push_back(fromJson(item));
      return makeList(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      ValueDict d;
      for (const auto& [k, item] : json.items()) d.set(k, fromJson(item));
      return makeDict(std::move(d));
    }
    default:
      return undefined();
  }
}

double Value::asDouble() const {
  return kind == Kind::Float ? f : kind == Kind::Bool ? (b ? 1.0 : 0.0) : static_cast<double>(i);
}
int64_t Value::asInt() const { return kind == Kind::Bool ? (b ? 1 : 0) : i; }

const char* typeName(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return "Undefined";
    case Value::Kind::None:
      return "NoneType";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Dict:
      return "dict";
    case Value::Kind::Namespace:
      return "Namespace";
    case Value::Kind::Callable:
      return v.fn->macro ? "Macro" : "function";
  }
  return "object";
}

std::string dictKey(const Value& key) {
  switch (key.kind) {
    case Value::Kind::String:
      return key.s;
    case Value::Kind::Int:
    case Value::Kind::Float:
    case Value::Kind::Bool:
    case Value::Kind::None:
      // By repr: 1, 1.0 and True are three keys here, one in Python (never seen in templates).
      return std::string(1, '\0') + toRepr(key);
    default:
      throw EvalError{std::string("unhashable type: '") + typeName(key) + "'"};
  }
}

Value dictKeyValue(const std::string& stored) {
  if (stored.empty() || stored[0] != '\0') return Value::string(stored);
  const std::string repr = stored.substr(1);
  int64_t i;
  double f;
  if (repr == "None") return Value::none();
  if (repr == "True" || repr == "False") return Value::boolean(repr == "True");
  if (parseInt(repr, i)) return Value::integer(i);
  parseFloat(repr, f);
  return Value::number(f);
}

std::string dictKeyRepr(const std::string& stored) {
  if (!stored.empty() && stored[0] == '\0') return stored.substr(1);
  return toRepr(Value::string(stored));
}

void failUndefined(const Value& v) { throw EvalError{v.s.empty() ? "a value is undefined" : v.s}; }

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return false;
    case Value::Kind::Bool:
      return v.b;
    case Value::Kind::Int:
      return v.i != 0;
    case Value::Kind::Float:
      return v.f != 0.0;
    case Value::Kind::String:
      return !v.s.empty();
    case Value::Kind::List:
      return v.flavor == Value::Flavor::kGenerator || !v.list->empty();
    case Value::Kind::Dict:
      return !v.dict->items.empty();
    case Value::Kind::Namespace:
    case Value::Kind::Callable:
      return true;
  }
  return false;
}

// ---------------------------------------------------------------- UTF-8

std::u32string utf8Decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t p = 0; p < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[p]);
    const int extra = b0 < 0x80 ? 0 : b0 >= 0xF0 ? 3 : b0 >= 0xE0 ? 2 : 1;
    uint32_t cp = extra == 0 ? b0 : (b0 & (0x3F >> extra));
    ++p;
    for (int k = 0; k < extra && p < s.size(); ++k) cp = (cp << 6) | (s[p++] & 0x3F);
    out.push_back(cp);
  }
  return out;
}

std::string utf8Encode(const std::u32string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char32_t cp : s) appendUtf8(out, cp);
  return out;
}

// ---------------------------------------------------------------- printing

// Python's repr(float): the shortest round-trip digits, fixed notation for exponents in
// [-4, 16), else scientific with a two-digit exponent.
std::string floatRepr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const auto e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exponent = std::stoi(sci.substr(e_pos + 1));
  std::string sign;
  if (mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  if (exponent >= -4 && exponent < 16) {
    std::string out;
    if (exponent < 0) {
      out = "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out = digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return sign + out;
  }
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof exp_buf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + out + exp_buf;
}

namespace {

std::string stringRepr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (const char32_t cp : utf8Decode(s)) {
    if (cp == static_cast<char32_t>(quote) || cp == U'\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == U'\n') {
      out += "\\n";
    } else if (cp == U'\r') {
      out += "\\r";
    } else if (cp == U'\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out += utf8Encode(std::u32string(1, cp));
    }
  }
  return out + quote;
}

}  // namespace

std::string toRepr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String:
      return stringRepr(v.s);
    case Value::Kind::Undefined:
      return "Undefined";
    case Value::Kind::List: {
      using F = Value::Flavor;
      if (v.flavor == F::kGenerator) return "<generator object>";
      const bool tuple = v.flavor == F::kTuple;
      std::string out = tuple ? "(" : "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + toRepr((*v.list)[k]);
      out += tuple ? (v.list->size() == 1 ? ",)" : ")") : "]";
      if (v.flavor == F::kItems) return "dict_items(" + out + ")";
      if (v.flavor == F::kKeys) return "dict_keys(" + out + ")";
      if (v.flavor == F::kValues) return "dict_values(" + out + ")";
      return out;
    }
    case Value::Kind::Dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : v.dict->items) {
        out += (first ? "" : ", ") + dictKeyRepr(key) + ": " + toRepr(item);
        first = false;
      }
      return out + "}";
    }
    case Value::Kind::Namespace: {
      Value as_dict;
      as_dict.kind = Value::Kind::Dict;
      as_dict.dict = v.ns;
      return "<Namespace " + toRepr(as_dict) + ">";
    }
    case Value::Kind::Callable:
      // Jinja2 prints a macro so; a Python function's repr has its address, never matched.
      return v.fn->macro ? "<Macro '" + v.fn->name + "'>" : "<function " + v.fn->name + ">";
    default:
      return toStr(v);
  }
}

std::string toStr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return "";
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return v.b ? "True" : "False";
    case Value::Kind::Int:
      return std::to_string(v.i);
    case Value::Kind::Float:
      return floatRepr(v.f);
    case Value::Kind::String:
      return v.s;
    default:
      return toRepr(v);
  }
}

// ---------------------------------------------------------------- comparison

bool equals(const Value& a, const Value& b) {
  if (a.isNumber() && b.isNumber()) {
    if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) {
      return a.asDouble() == b.asDouble();
    }
    return a.asInt() == b.asInt();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::Undefined:
    case Value::Kind::None:
      return true;
    case Value::Kind::String:
      return a.s == b.s;
    case Value::Kind::List:
      if (a.flavor != b.flavor || a.flavor == Value::Flavor::kGenerator) return a.list == b.list;
      return a.list->size() == b.list->size() &&
             std::equal(a.list->begin(), a.list->end(), b.list->begin(), equals);
    case Value::Kind::Dict: {
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (const auto& [k, item] : a.dict->items) {
        const Value* other = b.dict->find(k);
        if (!other || !equals(item, *other)) return false;
      }
      return true;
    }
    case Value::Kind::Namespace:
      return a.ns == b.ns;
    case Value::Kind::Callable:
      return a.fn == b.fn || (!a.fn->macro && !b.fn->macro && a.fn->name == b.fn->name);
    default:
      return false;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.isUndefined()) failUndefined(a);
  if (b.isUndefined()) failUndefined(b);
  if (a.isNumber() && b.isNumber()) {
    if (a.kind == Value::Kind::Float || b.kind == Value::Kind::Float) {
      return a.asDouble() < b.asDouble() ? -1 : a.asDouble() > b.asDouble() ? 1 : 0;
    }
    return a.asInt() < b.asInt() ? -1 : a.asInt() > b.asInt() ? 1 : 0;
  }
  if (a.kind == Value::Kind::String && b.kind == Value::Kind::String) {
    return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;  // UTF-8 byte order is code point order
  }
  if (a.kind == Value::Kind::List && b.kind == Value::Kind::List && a.flavor == b.flavor &&
      (a.flavor == Value::Flavor::kList || a.flavor == Value::Flavor::kTuple)) {
    for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k) {
      if (!equals((*a.list)[k], (*b.list)[k])) return compare((*a.list)[k], (*b.list)[k]);
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  throw EvalError{std::string("'<' not supported between instances of '") + typeName(a) +
                  "' and '" + typeName(b) + "'"};
}

// ---------------------------------------------------------------- json.dumps

namespace {

void jsonString(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  for (const char32_t cp : utf8Decode(s)) {
    switch (cp) {
      case U'"':
        out += "\\\"";
        break;
      case U'\\':
        out += "\\\\";
        break;
      case U'\n':
        out += "\\n";
        break;
      case U'\r':
        out += "\\r";
        break;
      case U'\t':
        out += "\\t";
        break;
      case U'\b':
        out += "\\b";
        break;
      case U'\f':
        out += "\\f";
        break;
      default: {
        char buf[16];
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F && cp < 0x10000)) {
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
          out += buf;
        } else if (ensure_ascii && cp >= 0x10000) {
          const uint32_t v = cp - 0x10000;
          std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF));
          out += buf;
        } else {
          out += utf8Encode(std::u32string(1, cp));
        }
      }
    }
  }
  out += '"';
}

struct JsonWriter {
  bool ensure_ascii;
  int indent;
  std::string item_sep;
  std::string key_sep;
  bool sort_keys;
  std::string out;

  void newline(int level) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * level, ' ');
  }

  void write(const Value& v, int level) {
    switch (v.kind) {
      case Value::Kind::None:
        out += "null";
        return;
      case Value::Kind::Bool:
        out += v.b ? "true" : "false";
        return;
      case Value::Kind::Int:
        out += std::to_string(v.i);
        return;
      case Value::Kind::Float:
        out += std::isnan(v.f)   ? "NaN"
               : std::isinf(v.f) ? (v.f < 0 ? "-Infinity" : "Infinity")
                                 : floatRepr(v.f);
        return;
      case Value::Kind::String:
        jsonString(v.s, ensure_ascii, out);
        return;
      case Value::Kind::List: {
        if (v.flavor != Value::Flavor::kList && v.flavor != Value::Flavor::kTuple) {
          throw EvalError{"Object of type generator is not JSON serializable"};
        }
        if (v.list->empty()) {
          out += "[]";
          return;
        }
        out += '[';
        for (size_t k = 0; k < v.list->size(); ++k) {
          if (k) out += item_sep;
          newline(level + 1);
          write((*v.list)[k], level + 1);
        }
        newline(level);
        out += ']';
        return;
      }
      case Value::Kind::Dict: {
        if (v.dict->items.empty()) {
          out += "{}";
          return;
        }
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& item : v.dict->items) items.push_back(&item);
        if (sort_keys) {
          std::stable_sort(items.begin(), items.end(),
                           [](const auto* x, const auto* y) { return x->first < y->first; });
        }
        out += '{';
        for (size_t k = 0; k < items.size(); ++k) {
          if (k) out += item_sep;
          newline(level + 1);
          // json.dumps quotes a number key as written, None as null, True as true
          const std::string& key = items[k]->first;
          const bool plain = key.empty() || key[0] != '\0';
          const std::string repr = plain ? key : key.substr(1);
          jsonString(plain             ? key
                     : repr == "None"  ? "null"
                     : repr == "True"  ? "true"
                     : repr == "False" ? "false"
                                       : repr,
                     ensure_ascii, out);
          out += key_sep;
          write(items[k]->second, level + 1);
        }
        newline(level);
        out += '}';
        return;
      }
      default:
        throw EvalError{std::string("Object of type ") + typeName(v) + " is not JSON serializable"};
    }
  }
};

}  // namespace

std::string toJson(const Value& v, bool ensure_ascii, int indent, const std::string& item_sep,
                   const std::string& key_sep, bool sort_keys) {
  JsonWriter writer{ensure_ascii, indent, item_sep, key_sep, sort_keys, {}};
  writer.write(v, 0);
  return writer.out;
}

}  // namespace loom::detail::jinja
