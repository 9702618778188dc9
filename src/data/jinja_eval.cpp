// The Jinja evaluator: runs a parsed Program over a JSON context. Scoping follows Jinja2:
// {% set %} writes to the innermost scope; each for-loop iteration has a fresh scope (so a
// variable set in a loop body is gone after the loop and not carried to the next
// iteration), {% if %} has none; namespace() objects are the way to carry state out.
// A macro call sees the template's own scope as it is at the call (the context and the
// top-level {% set %}s, made before or after the definition), the scopes its definition
// sat in (a copy), and its arguments; not the caller's loop variables.

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "jinja_ast.hpp"
#include "loom/core/error.hpp"
#include "loom/data/jinja.hpp"

namespace loom {

namespace detail::jinja {

namespace {

[[noreturn]] void typeError(const std::string& op, const Value& a, const Value& b) {
  throw EvalError{"unsupported operand type(s) for " + op + ": '" + typeName(a) + "' and '" +
                  typeName(b) + "'"};
}

int64_t floorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

Value repeat(const Value& seq, int64_t n) {
  if (seq.kind == Value::Kind::String) {
    std::string out;
    for (int64_t k = 0; k < n; ++k) out += seq.s;
    return Value::string(std::move(out));
  }
  ValueList out;
  for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.list->begin(), seq.list->end());
  return Value::makeList(std::move(out));
}

}  // namespace

Value binaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::string(toStr(a) + toStr(b));
  if (a.isUndefined()) failUndefined(a);
  if (b.isUndefined()) failUndefined(b);
  using K = Value::Kind;
  const bool ints =
      (a.kind == K::Int || a.kind == K::Bool) && (b.kind == K::Int || b.kind == K::Bool);
  const bool nums = a.isNumber() && b.isNumber();
  if (op == "+") {
    if (ints) return Value::integer(a.asInt() + b.asInt());
    if (nums) return Value::number(a.asDouble() + b.asDouble());
    if (a.kind == K::String && b.kind == K::String) {
      // Markup + str and str + Markup escape the str (`"<b>"|safe + name` in functionary).
      Value out = Value::string((b.markup && !a.markup ? htmlEscape(a.s) : a.s) +
                                (a.markup && !b.markup ? htmlEscape(b.s) : b.s));
      out.markup = a.markup || b.markup;
      return out;
    }
    if (a.kind == K::List && b.kind == K::List) {
      ValueList out = *a.list;
      out.insert(out.end(), b.list->begin(), b.list->end());
      return Value::makeList(std::move(out));
    }
    if (a.kind == K::String) {
      throw EvalError{std::string("can only concatenate str (not \"") + typeName(b) + "\") to str"};
    }
    typeError(op, a, b);
  }
  if (op == "-") {
    if (ints) return Value::integer(a.asInt() - b.asInt());
    if (nums) return Value::number(a.asDouble() - b.asDouble());
    typeError(op, a, b);
  }
  if (op == "*") {
    if (ints) return Value::integer(a.asInt() * b.asInt());
    if (nums) return Value::number(a.asDouble() * b.asDouble());
    if ((a.kind == K::String || a.kind == K::List) && (b.kind == K::Int || b.kind == K::Bool)) {
      return repeat(a, b.asInt());
    }
    if ((b.kind == K::String || b.kind == K::List) && (a.kind == K::Int || a.kind == K::Bool)) {
      return repeat(b, a.asInt());
    }
    typeError(op, a, b);
  }
  if (!nums) typeError(op, a, b);
  if (op == "**") {
    if (ints && b.asInt() >= 0) {
      int64_t r = 1;
      for (int64_t k = 0; k < b.asInt(); ++k) r *= a.asInt();
      return Value::integer(r);
    }
    return Value::number(std::pow(a.asDouble(), b.asDouble()));
  }
  if ((ints && b.asInt() == 0) || (!ints && b.asDouble() == 0.0)) {
    throw EvalError{op == "%" ? "integer modulo by zero" : "division by zero"};
  }
  if (op == "/") return Value::number(a.asDouble() / b.asDouble());
  if (op == "//") {
    if (ints) return Value::integer(floorDiv(a.asInt(), b.asInt()));
    return Value::number(std::floor(a.asDouble() / b.asDouble()));
  }
  if (op == "%") {
    if (ints) return Value::integer(a.asInt() - floorDiv(a.asInt(), b.asInt()) * b.asInt());
    double r = std::fmod(a.asDouble(), b.asDouble());
    if (r != 0.0 && ((r < 0) != (b.asDouble() < 0))) r += b.asDouble();
    return Value::number(r);
  }
  throw EvalError{"unknown operator " + op};
}

Value Args::get(size_t index, const std::string& name, Value fallback) const {
  if (index < positional.size()) return positional[index];
  for (const auto& [key, value] : named) {
    if (key == name) return value;
  }
  return fallback;
}

namespace {

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  Renderer(const Program& program, const nlohmann::ordered_json& context) : where_(program.where) {
    LOOM_INPUT_CHECK(
        context.is_object(),
        where_ << ": the template context must be a JSON object, got " << context.type_name());
    scopes_.emplace_back();
    for (const auto& [key, value] : context.items()) scopes_.back()[key] = Value::fromJson(value);
  }

  /// Records the [begin, end) byte offsets of each {% generation %} block's output.
  void recordGenerationSpans(std::vector<std::pair<size_t, size_t>>* spans) {
    generation_spans_ = spans;
  }

  std::string run(const Body& body) {
    execBody(body);
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(int line, int col, const std::string& message) const {
    LOOM_INPUT_CHECK(false, where_ << ":" << line << ":" << col << ": " << message);
    throw;  // unreachable
  }

  // The scopes from floor_ up, then the template's own (scopes_[0]), then the globals.
  Value lookup(const std::string& name) const {
    for (size_t k = scopes_.size(); k-- > floor_;) {
      const auto found = scopes_[k].find(name);
      if (found != scopes_[k].end()) return found->second;
    }
    const auto found = scopes_[0].find(name);
    if (found != scopes_[0].end()) return found->second;
    if (isGlobalFunction(name)) {
      auto fn = std::make_shared<Callable>();
      fn->name = name;
      return Value::callable(std::move(fn));
    }
    return Value::undefined("'" + name + "' is undefined");
  }

  // Renders `body` into a string of its own (a {% set %} block, a macro, a filter block).
  std::string capture(const Body& body, Flow* flow = nullptr) {
    std::string saved = std::move(out_);
    out_.clear();
    ++capturing_;
    const Flow f = execBody(body);
    --capturing_;
    if (flow) *flow = f;
    std::string text = std::move(out_);
    out_ = std::move(saved);
    return text;
  }

  // ---------------------------------------------------------------- statements

  Flow execBody(const Body& body) {
    for (const auto& stmt : body) {
      const Flow flow = exec(*stmt);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  Flow exec(const Stmt& s) {
    switch (s.kind) {
      case Stmt::Kind::Text:
        out_ += s.text;
        return Flow::kNormal;
      case Stmt::Kind::Output:
        out_ += toStr(eval(*s.expr));
        return Flow::kNormal;
      case Stmt::Kind::If:
        for (size_t k = 0; k < s.branches.size(); ++k) {
          if (k >= s.conditions.size() || truthy(eval(*s.conditions[k]))) {
            return execBody(s.branches[k]);
          }
        }
        return Flow::kNormal;
      case Stmt::Kind::For:
        execFor(s);
        return Flow::kNormal;
      case Stmt::Kind::Set:
        execSet(s);
        return Flow::kNormal;
      case Stmt::Kind::SetBlock: {
        Flow flow;
        scopes_.back()[s.targets[0]] = Value::string(capture(s.body, &flow));
        return flow;
      }
      case Stmt::Kind::FilterBlock: {
        Flow flow;
        const Value saved = filter_input_;
        filter_input_ = Value::string(capture(s.body, &flow));
        out_ += toStr(eval(*s.expr));
        filter_input_ = saved;
        return flow;
      }
      case Stmt::Kind::Macro: {
        auto fn = std::make_shared<Callable>();
        fn->name = s.text;
        fn->macro = &s;
        fn->closure.assign(scopes_.begin() + static_cast<std::ptrdiff_t>(floor_), scopes_.end());
        scopes_.back()[s.text] = Value::callable(std::move(fn));
        return Flow::kNormal;
      }
      case Stmt::Kind::Generation: {
        // Offsets into the final text only: a block rendered into a {% set %} capture has
        // none (transformers' renderer records them the same way, from the output stream).
        const size_t begin = out_.size();
        const Flow flow = execBody(s.body);
        if (generation_spans_ && capturing_ == 0)
          generation_spans_->push_back({begin, out_.size()});
        return flow;
      }
      case Stmt::Kind::Break:
        return Flow::kBreak;
      case Stmt::Kind::Continue:
        return Flow::kContinue;
    }
    return Flow::kNormal;
  }

  void bindTargets(const Stmt& s, const std::vector<std::string>& targets, const Value& value) {
    auto& scope = scopes_.back();
    if (targets.size() == 1) {
      scope[targets[0]] = value;
      return;
    }
    ValueList items;
    try {
      items = iterate(value);
    } catch (const EvalError& e) {
      fail(s.line, s.col, "cannot unpack: " + e.message);
    }
    if (items.size() != targets.size()) {
      fail(s.line, s.col,
           "cannot unpack " + std::to_string(items.size()) + " values into " +
               std::to_string(targets.size()) + " names");
    }
    for (size_t k = 0; k < targets.size(); ++k) scope[targets[k]] = items[k];
  }

  void execSet(const Stmt& s) {
    Value value = eval(*s.expr);
    if (s.attr.empty()) {
      bindTargets(s, s.targets, value);
      return;
    }
    const Value target = lookup(s.targets[0]);
    if (target.kind != Value::Kind::Namespace) {
      fail(s.line, s.col, "cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
    }
    if (s.attr.rfind("_", 0) == 0) {
      fail(s.line, s.col, "namespace attributes cannot start with '_': '" + s.attr + "'");
    }
    target.ns->set(s.attr, std::move(value));
  }

  void execFor(const Stmt& s) {
    const Value iterable = eval(*s.expr);
    ValueList items;
    try {
      items = iterate(iterable);
    } catch (const EvalError& e) {
      fail(s.expr->line, s.expr->col, e.message);
    }
    if (s.loop_filter) {
      ValueList kept;
      for (auto& item : items) {
        scopes_.emplace_back();
        bindTargets(s, s.targets, item);
        const bool keep = truthy(eval(*s.loop_filter));
        scopes_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const auto n = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < n; ++k) {
      ValueDict loop;
      loop.set("index", Value::integer(k + 1));
      loop.set("index0", Value::integer(k));
      loop.set("revindex", Value::integer(n - k));
      loop.set("revindex0", Value::integer(n - k - 1));
      loop.set("first", Value::boolean(k == 0));
      loop.set("last", Value::boolean(k == n - 1));
      loop.set("length", Value::integer(n));
      loop.set("depth", Value::integer(loop_depth_ + 1));
      loop.set("depth0", Value::integer(loop_depth_));
      loop.set("previtem", k > 0 ? items[k - 1] : Value::undefined("there is no previous item"));
      loop.set("nextitem", k + 1 < n ? items[k + 1] : Value::undefined("there is no next item"));
      auto cycle = std::make_shared<Callable>();
      cycle->name = "loop.cycle";
      cycle->bound = k;
      loop.set("cycle", Value::callable(std::move(cycle)));
      scopes_.emplace_back();
      scopes_.back()["loop"] = Value::makeDict(std::move(loop));
      bindTargets(s, s.targets, items[k]);
      ++loop_depth_;
      const Flow flow = execBody(s.body);
      --loop_depth_;
      scopes_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    if (n == 0) execBody(s.else_body);
  }

  // ---------------------------------------------------------------- expressions

  // Evaluates `e`; failures without a place get this node's line and column.
  Value eval(const Expr& e) {
    try {
      return evalNode(e);
    } catch (const EvalError& err) {
      fail(e.line, e.col, err.message);
    } catch (const TemplateRaise& raised) {
      fail(e.line, e.col, "the template raised an error: " + raised.message);
    }
  }

  Args evalArgs(const Expr& e, size_t first) {
    Args args;
    for (size_t k = first; k < e.args.size(); ++k) args.positional.push_back(eval(*e.args[k]));
    for (const auto& [key, value] : e.kwargs) args.named.emplace_back(key, eval(*value));
    return args;
  }

  Value evalNode(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal:
        return e.literal;
      case Expr::Kind::Name:
        return lookup(e.name);
      case Expr::Kind::List: {
        ValueList items;
        for (const auto& item : e.args) items.push_back(eval(*item));
        return Value::makeList(std::move(items),
                               e.name == "tuple" ? Value::Flavor::kTuple : Value::Flavor::kList);
      }
      case Expr::Kind::Dict: {
        ValueDict dict;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const std::string key = dictKey(eval(*e.args[k]));
          dict.set(key, eval(*e.args[k + 1]));
        }
        return Value::makeDict(std::move(dict));
      }
      case Expr::Kind::Attr:
        return getAttr(eval(*e.args[0]), e.name);
      case Expr::Kind::Item:
        return getItem(eval(*e.args[0]), eval(*e.args[1]));
      case Expr::Kind::Slice: {
        const auto part = [&](size_t k) { return e.args[k] ? eval(*e.args[k]) : Value::none(); };
        const Value obj = eval(*e.args[0]);
        return slice(obj, part(1), part(2), part(3));
      }
      case Expr::Kind::Call:
        return evalCall(e);
      case Expr::Kind::Filter: {
        // Unknown filters and tests got past the parser only where Jinja2 fails at run time.
        if (!isKnownFilter(e.name)) throw EvalError{"the filter '" + e.name + "' is not supported"};
        const Value value = e.args[0] ? eval(*e.args[0]) : filter_input_;
        return applyFilter(e.name, value, evalArgs(e, 1));
      }
      case Expr::Kind::Test: {
        if (!isKnownTest(e.name)) throw EvalError{"the test '" + e.name + "' is not supported"};
        const Value value = eval(*e.args[0]);
        return Value::boolean(applyTest(e.name, value, evalArgs(e, 1)) != e.negated);
      }
      case Expr::Kind::Unary: {
        const Value v = eval(*e.args[0]);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.isUndefined()) failUndefined(v);
        if (v.kind == Value::Kind::Float) return Value::number(e.name == "-" ? -v.f : v.f);
        if (v.isNumber()) return Value::integer(e.name == "-" ? -v.asInt() : v.asInt());
        throw EvalError{std::string("bad operand type for unary ") + e.name + ": '" + typeName(v) +
                        "'"};
      }
      case Expr::Kind::Binary: {
        Value lhs = eval(*e.args[0]);
        if (e.name == "and") return truthy(lhs) ? eval(*e.args[1]) : lhs;
        if (e.name == "or") return truthy(lhs) ? lhs : eval(*e.args[1]);
        return binaryOp(e.name, lhs, eval(*e.args[1]));
      }
      case Expr::Kind::Compare: {
        Value lhs = eval(*e.args[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value rhs = eval(*e.args[k + 1]);
          const std::string& op = e.ops[k];
          bool ok;
          if (op == "==") {
            ok = equals(lhs, rhs);
          } else if (op == "!=") {
            ok = !equals(lhs, rhs);
          } else if (op == "in") {
            ok = contains(rhs, lhs);
          } else if (op == "not in") {
            ok = !contains(rhs, lhs);
          } else {
            const int c = compare(lhs, rhs);
            ok = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
          }
          if (!ok) return Value::boolean(false);
          lhs = std::move(rhs);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::Cond:
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("the condition was false");
    }
    return Value::undefined();
  }

  Value evalCall(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::Attr) {
      const Value obj = eval(*callee.args[0]);
      if (obj.isUndefined()) failUndefined(obj);
      const Args args = evalArgs(e, 1);
      bool found = false;
      Value result = callMethod(obj, callee.name, args, found);
      if (found) return result;
      const Value attr = getAttr(obj, callee.name);
      if (attr.kind == Value::Kind::Callable) return call(*attr.fn, args);
      if (attr.isUndefined()) failUndefined(attr);
      throw EvalError{std::string("'") + typeName(attr) + "' object is not callable"};
    }
    const Value fn = eval(callee);
    if (fn.kind == Value::Kind::Callable) return call(*fn.fn, evalArgs(e, 1));
    if (fn.isUndefined()) failUndefined(fn);
    throw EvalError{std::string("'") + typeName(fn) + "' object is not callable"};
  }

  Value call(const Callable& fn, const Args& args) {
    if (fn.macro) return callMacro(fn, args);
    if (fn.name == "loop.cycle") {
      if (args.positional.empty()) throw EvalError{"no items for cycling given"};
      return args.positional[static_cast<size_t>(fn.bound) % args.positional.size()];
    }
    return callGlobal(fn.name, args);
  }

  // Jinja2's Macro.__call__: positional arguments, then keywords, then the defaults, each
  // evaluated in the macro's scope after the parameters before it; a parameter left without
  // a value is undefined. Returns the rendered body (Jinja2's Markup, a str here).
  Value callMacro(const Callable& fn, const Args& args) {
    const Stmt& m = *fn.macro;
    const std::vector<std::string>& params = m.targets;
    if (args.positional.size() > params.size()) {
      throw EvalError{"macro '" + m.text + "' takes not more than " +
                      std::to_string(params.size()) + " argument(s)"};
    }
    for (const auto& [key, value] : args.named) {
      const auto at = std::find(params.begin(), params.end(), key);
      if (at == params.end()) {
        throw EvalError{"macro '" + m.text + "' takes no keyword argument '" + key + "'"};
      }
      if (static_cast<size_t>(at - params.begin()) < args.positional.size()) {
        throw EvalError{"macro '" + m.text + "' got multiple values for argument '" + key + "'"};
      }
    }
    const size_t saved_floor = floor_;
    const int64_t saved_depth = loop_depth_;
    scopes_.insert(scopes_.end(), fn.closure.begin(), fn.closure.end());
    floor_ = scopes_.size() - fn.closure.size();
    scopes_.emplace_back();
    loop_depth_ = 0;
    for (size_t k = 0; k < params.size(); ++k) {
      Value value = Value::undefined("parameter '" + params[k] + "' was not provided");
      if (k < args.positional.size()) {
        value = args.positional[k];
      } else if (const auto named =
                     std::find_if(args.named.begin(), args.named.end(),
                                  [&](const auto& kv) { return kv.first == params[k]; });
                 named != args.named.end()) {
        value = named->second;
      } else if (m.defaults[k]) {
        value = eval(*m.defaults[k]);
      }
      scopes_.back()[params[k]] = std::move(value);
    }
    std::string text = capture(m.body);
    scopes_.resize(floor_);
    floor_ = saved_floor;
    loop_depth_ = saved_depth;
    return Value::string(std::move(text));
  }

  const std::string& where_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  std::string out_;
  int capturing_ = 0;  // depth of {% set %} blocks being captured
  std::vector<std::pair<size_t, size_t>>* generation_spans_ = nullptr;
  int64_t loop_depth_ = 0;
  size_t floor_ = 1;    // the lowest scope above scopes_[0] that lookup() sees
  Value filter_input_;  // the rendered body of the {% filter %} block being applied
};

}  // namespace

}  // namespace detail::jinja

JinjaTemplate::JinjaTemplate(std::shared_ptr<const detail::jinja::Program> program)
    : program_(std::move(program)) {}

JinjaTemplate JinjaTemplate::parse(const std::string& source, const std::string& where) {
  const auto tokens = detail::jinja::lex(source, where);
  return JinjaTemplate(detail::jinja::parseProgram(tokens, where));
}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context) const {
  return detail::jinja::Renderer(*program_, context).run(program_->body);
}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context,
                                  std::vector<std::pair<size_t, size_t>>& generation_spans) const {
  generation_spans.clear();
  detail::jinja::Renderer renderer(*program_, context);
  renderer.recordGenerationSpans(&generation_spans);
  return renderer.run(program_->body);
}

bool JinjaTemplate::hasGeneration() const { return program_->has_generation; }

const std::string& JinjaTemplate::where() const { return program_->where; }

}  // namespace loom
