// Jinja's access to containers with Python semantics: iteration, len(), `in`, the
// sandbox's getattr/getitem (a missing attribute or item is Undefined, never an error, but
// any access on Undefined is) and slicing.

#include <algorithm>
#include <climits>

#include "jinja_ast.hpp"

namespace loom::detail::jinja {

ValueList iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
      return *v.list;
    case Value::Kind::Dict: {
      ValueList keys;
      for (const auto& item : v.dict->items) keys.push_back(dictKeyValue(item.first));
      return keys;
    }
    case Value::Kind::String: {
      ValueList chars;
      for (const char32_t cp : utf8Decode(v.s)) {
        chars.push_back(Value::string(utf8Encode(std::u32string(1, cp))));
      }
      return chars;
    }
    default:
      throw EvalError{std::string("'") + typeName(v) + "' object is not iterable"};
  }
}

int64_t length(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined:
      return 0;
    case Value::Kind::String:
      return static_cast<int64_t>(utf8Decode(v.s).size());
    case Value::Kind::List:
      if (v.flavor == Value::Flavor::kGenerator)
        throw EvalError{"object of type 'generator' has no len()"};
      return static_cast<int64_t>(v.list->size());
    case Value::Kind::Dict:
      return static_cast<int64_t>(v.dict->items.size());
    default:
      throw EvalError{std::string("object of type '") + typeName(v) + "' has no len()"};
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::Undefined:
      return false;
    case Value::Kind::String:
      if (item.kind != Value::Kind::String) {
        throw EvalError{"'in <string>' requires string as left operand"};
      }
      return container.s.find(item.s) != std::string::npos;
    case Value::Kind::List:
      return std::any_of(container.list->begin(), container.list->end(),
                         [&](const Value& x) { return equals(x, item); });
    case Value::Kind::Dict:
      return container.dict->find(dictKey(item)) != nullptr;
    default:
      throw EvalError{std::string("argument of type '") + typeName(container) +
                      "' is not iterable"};
  }
}

Value getAttr(const Value& obj, const std::string& name) {
  if (obj.isUndefined()) failUndefined(obj);
  if (name.rfind("_", 0) == 0) return Value::undefined("'" + name + "' is unsafe");
  if (obj.kind == Value::Kind::Namespace) {
    const Value* v = obj.ns->find(name);
    return v ? *v : Value::undefined("'Namespace' object has no attribute '" + name + "'");
  }
  if (obj.kind == Value::Kind::Dict) {
    if (const Value* v = obj.dict->find(name)) return *v;
  }
  return Value::undefined(std::string("'") + typeName(obj) + " object' has no attribute '" + name +
                          "'");
}

namespace {
// A Python index into a sequence of `size`; false when out of range.
bool normalizeIndex(int64_t& index, size_t size) {
  if (index < 0) index += static_cast<int64_t>(size);
  return index >= 0 && index < static_cast<int64_t>(size);
}
}  // namespace

Value getItem(const Value& obj, const Value& key) {
  if (obj.isUndefined()) failUndefined(obj);
  const auto missing = [&] {
    return Value::undefined(std::string("'") + typeName(obj) + " object' has no attribute " +
                            toRepr(key));
  };
  if (obj.kind == Value::Kind::Dict) {
    // An unhashable or undefined key finds nothing, as Jinja2's getitem swallows the TypeError.
    const bool hashable = key.kind != Value::Kind::List && key.kind != Value::Kind::Dict &&
                          key.kind != Value::Kind::Undefined &&
                          key.kind != Value::Kind::Namespace && key.kind != Value::Kind::Callable;
    if (hashable) {
      if (const Value* v = obj.dict->find(dictKey(key))) return *v;
    }
    return missing();
  }
  if (obj.kind == Value::Kind::Namespace && key.kind == Value::Kind::String) {
    return getAttr(obj, key.s);
  }
  const bool sequence = obj.kind == Value::Kind::String ||
                        (obj.kind == Value::Kind::List && (obj.flavor == Value::Flavor::kList ||
                                                           obj.flavor == Value::Flavor::kTuple));
  if (sequence && (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool)) {
    int64_t index = key.asInt();
    if (obj.kind == Value::Kind::List) {
      return normalizeIndex(index, obj.list->size()) ? (*obj.list)[index] : missing();
    }
    const std::u32string chars = utf8Decode(obj.s);
    if (!normalizeIndex(index, chars.size())) return missing();
    return Value::string(utf8Encode(chars.substr(index, 1)));
  }
  return missing();
}

Value slice(const Value& obj, const Value& start_v, const Value& stop_v, const Value& step_v) {
  if (obj.isUndefined()) failUndefined(obj);
  const auto part = [](const Value& v, int64_t fallback) {
    if (v.isUndefined() || v.kind == Value::Kind::None) return fallback;
    if (v.kind != Value::Kind::Int && v.kind != Value::Kind::Bool) {
      throw EvalError{"slice indices must be integers or None"};
    }
    return v.asInt();
  };
  const int64_t step = part(step_v, 1);
  if (step == 0) throw EvalError{"slice step cannot be zero"};
  std::u32string chars;
  int64_t n = 0;
  if (obj.kind == Value::Kind::List &&
      (obj.flavor == Value::Flavor::kList || obj.flavor == Value::Flavor::kTuple)) {
    n = static_cast<int64_t>(obj.list->size());
  } else if (obj.kind == Value::Kind::String) {
    chars = utf8Decode(obj.s);
    n = static_cast<int64_t>(chars.size());
  } else {
    throw EvalError{std::string("'") + typeName(obj) + "' object is not subscriptable"};
  }
  // CPython's PySlice_AdjustIndices.
  const auto adjust = [&](int64_t v, int64_t fallback) {
    if (v == INT64_MIN) return fallback;
    if (v < 0) {
      v += n;
      if (v < 0) v = step < 0 ? -1 : 0;
    } else if (v >= n) {
      v = step < 0 ? n - 1 : n;
    }
    return v;
  };
  const int64_t start = adjust(part(start_v, INT64_MIN), step < 0 ? n - 1 : 0);
  const int64_t stop = adjust(part(stop_v, INT64_MIN), step < 0 ? -1 : n);
  std::vector<int64_t> picked;
  for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) picked.push_back(k);
  if (obj.kind == Value::Kind::List) {
    ValueList out;
    for (int64_t k : picked) out.push_back((*obj.list)[k]);
    return Value::makeList(std::move(out), obj.flavor);
  }
  std::u32string out;
  for (int64_t k : picked) out += chars[k];
  return Value::string(utf8Encode(out));
}

Value dictItems(const Value& v, Value::Flavor flavor) {
  ValueList out;
  for (const auto& [k, item] : v.dict->items) {
    out.push_back(Value::makeList({dictKeyValue(k), item}, Value::Flavor::kTuple));
  }
  return Value::makeList(std::move(out), flavor);
}

}  // namespace loom::detail::jinja
