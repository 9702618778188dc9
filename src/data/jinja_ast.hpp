#pragma once
// Private pieces of the Jinja interpreter (include/loom/data/jinja.hpp): the value type,
// the tokens of the lexer, the syntax tree of the parser and the built-in filters, tests
// and methods of the evaluator.
//
//   jinja_lexer.cpp        source -> tokens (whitespace control, trim_blocks, lstrip_blocks)
//   jinja_parser.cpp       tokens -> Program: the tags (jinja_parser.hpp)
//   jinja_parser_expr.cpp  the token cursor and the expressions
//   jinja_value.cpp        Value: Python semantics of printing, equality, order, json.dumps
//   jinja_access.cpp       iteration, len, `in`, getattr/getitem, slicing
//   jinja_builtins.cpp     filters, tests, globals
//   jinja_strings.cpp      str and dict methods, str helpers
//   jinja_eval.cpp         Program + context -> text

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::detail::jinja {

// ---------------------------------------------------------------- values

struct Value;
struct Callable;
using ValueList = std::vector<Value>;

/// A dict in insertion order. Keys are strings; an int, float, bool or None key (a template's
/// own `{0: 'a'}`) is stored as dictKey() encodes it, behind a NUL no text key starts with.
struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value value);
};

struct Value {
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };
  /// What Python object a List stands for: they print and behave differently.
  /// kGenerator (map, select, items filter...): always true, no len(), no indexing, printed
  /// as "<generator object>"; kItems/kKeys/kValues: dict views, printed "dict_items([...])".
  enum class Flavor { kList, kTuple, kGenerator, kItems, kKeys, kValues };
  Kind kind = Kind::Undefined;
  Flavor flavor = Flavor::kList;
  bool b = false;
  /// String: Jinja2's Markup (from |safe or |escape), whose + escapes a plain str operand.
  bool markup = false;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                          // String; for Undefined, what was missing
  std::shared_ptr<const ValueList> list;  // List (tuples too)
  std::shared_ptr<const ValueDict> dict;  // Dict
  std::shared_ptr<ValueDict> ns;          // Namespace attributes (shared, mutable)
  std::shared_ptr<const Callable> fn;     // Callable

  static Value undefined(std::string what = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value makeList(ValueList v, Flavor flavor = Flavor::kList);
  static Value makeDict(ValueDict v);
  static Value callable(std::shared_ptr<const Callable> fn);
  static Value fromJson(const nlohmann::ordered_json& json);

  bool isUndefined() const { return kind == Kind::Undefined; }
  bool isNumber() const { return kind == Kind::Int || kind == Kind::Float || kind == Kind::Bool; }
  double asDouble() const;
  int64_t asInt() const;  // Int or Bool
};

/// A runtime failure without a place; the evaluator adds where, line and column.
struct EvalError {
  std::string message;
};
/// raise_exception() in the template: its message goes to the user as written.
struct TemplateRaise {
  std::string message;
};

const char* typeName(const Value& v);  // Python's name: 'str', 'dict', 'NoneType', ...
bool truthy(const Value& v);
std::string toStr(const Value& v);   // Python str()
std::string toRepr(const Value& v);  // Python repr()
std::string floatRepr(double v);
bool equals(const Value& a, const Value& b);
int compare(const Value& a, const Value& b);  // <0, 0, >0; EvalError when unordered
/// Python json.dumps(v, ensure_ascii, indent, separators, sort_keys); indent < 0 means None.
std::string toJson(const Value& v, bool ensure_ascii, int indent, const std::string& item_sep,
                   const std::string& key_sep, bool sort_keys);
/// The items a for loop visits: list items, dict keys, string characters, nothing for undefined.
ValueList iterate(const Value& v);
int64_t length(const Value& v);
Value binaryOp(const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
/// Jinja's environment.getattr / getitem (attribute first vs item first; missing -> undefined).
Value getAttr(const Value& obj, const std::string& name);
Value getItem(const Value& obj, const Value& key);
/// A dict's (key, value) tuples as a list of the given flavor (dict.items(), the items filter).
Value dictItems(const Value& dict, Value::Flavor flavor);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
[[noreturn]] void failUndefined(const Value& v);
/// A dict key as ValueDict stores it; EvalError for an unhashable key (list, dict).
std::string dictKey(const Value& key);
/// The key a stored dict key stands for (a str, or the int/float/bool/None dictKey() encoded).
Value dictKeyValue(const std::string& stored);
/// Python's repr() of a stored dict key.
std::string dictKeyRepr(const std::string& stored);

std::u32string utf8Decode(const std::string& s);
std::string utf8Encode(const std::u32string& s);

// ---------------------------------------------------------------- tokens

struct Token {
  enum class Kind {
    Text,
    BlockBegin,
    BlockEnd,
    VarBegin,
    VarEnd,
    Name,
    String,
    Int,
    Float,
    Op,
    End
  };
  Kind kind = Kind::End;
  std::string text;  // Text data, name, operator, decoded string
  int64_t ival = 0;
  double fval = 0.0;
  int line = 1;
  int col = 1;
};

/// Splits the template into tokens the way Jinja2's lexer does with trim_blocks and
/// lstrip_blocks; comments vanish, {% raw %} bodies become Text.
std::vector<Token> lex(const std::string& source, const std::string& where);

// ---------------------------------------------------------------- syntax tree

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // literal
    Name,     // name
    List,     // args (a tuple too)
    Dict,     // kwargs as (key expr in args[i], value in args[i+1]) pairs
    Attr,     // args[0].name
    Item,     // args[0][args[1]]
    Slice,    // args[0][args[1]:args[2]:args[3]], missing parts null
    Call,     // args[0](args[1:], kwargs)
    Filter,   // args[0] | name(args[1:], kwargs)
    Test,     // args[0] is [not] name(args[1:])
    Unary,    // name in {"-", "+", "not"} applied to args[0]
    Binary,   // args[0] name args[1]: + - * / // % ** ~ and or
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    Cond,     // args[0] if args[1] else args[2] (args[2] may be null)
  };
  Kind kind = Kind::Literal;
  int line = 1;
  int col = 1;
  Value literal;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    Text,
    Output,
    If,
    For,
    Set,
    SetBlock,
    Break,
    Continue,
    Generation,
    Macro,       // {% macro text(targets...) %}body{% endmacro %}
    FilterBlock  // {% filter expr %}body{% endfilter %}: expr's innermost value is null
  };
  Kind kind = Kind::Text;
  int line = 1;
  int col = 1;
  std::string text;                  // Text; Macro name
  ExprPtr expr;                      // Output value, For iterable, Set value
  std::vector<ExprPtr> conditions;   // If: one per branch (else has none)
  std::vector<Body> branches;        // If: conditions.size() or one more for else
  std::vector<std::string> targets;  // For / Set names (several: unpacking); Macro parameters
  std::vector<ExprPtr> defaults;     // Macro: a default per parameter, null where none
  std::string attr;                  // Set targets[0].attr (namespace attribute)
  ExprPtr loop_filter;               // For ... if cond
  Body body;                         // For, SetBlock, Generation, Macro, FilterBlock
  Body else_body;                    // For
};

using Scope = std::unordered_map<std::string, Value>;

/// Something a template can call: a global function (name), a macro (its definition in the
/// Program, which outlives every render, and the scopes it was defined in besides the
/// template's own), or a loop's cycle() (bound: the loop index).
struct Callable {
  std::string name;
  const Stmt* macro = nullptr;
  std::vector<Scope> closure;
  int64_t bound = 0;
};

struct Program {
  std::string where;
  Body body;
  bool has_generation = false;  // holds a {% generation %} block
};

/// Parses tokens into a program; refuses unknown and unsupported constructs.
std::unique_ptr<Program> parseProgram(const std::vector<Token>& tokens, const std::string& where);

// ---------------------------------------------------------------- built-ins

struct Args {
  ValueList positional;
  std::vector<std::pair<std::string, Value>> named;
  /// The argument at `index` or named `name`, else `fallback`.
  Value get(size_t index, const std::string& name, Value fallback = Value::undefined()) const;
};

// Python str helpers shared by filters and methods (jinja_strings.cpp).
bool isPySpace(char32_t cp);  // str.isspace()
std::string mapCase(const std::string& s, bool upper);
std::string capitalize(const std::string& s);
std::string jinjaTitle(const std::string& s);  // the title filter, not str.title()
/// str.strip/lstrip/rstrip; `chars` undefined or None strips whitespace.
std::string pyStrip(const std::string& s, const Value& chars, bool left, bool right);
/// markupsafe.escape: & < > " ' as HTML entities.
std::string htmlEscape(const std::string& s);
std::string pyReplace(const std::string& s, const std::string& old, const std::string& repl,
                      int64_t count);
int64_t intArg(const Value& v, int64_t fallback);       // an int argument, `fallback` when absent
bool parseInt(const std::string& text, int64_t& out);   // Python int(text)
bool parseFloat(const std::string& text, double& out);  // Python float(text)

bool isKnownFilter(const std::string& name);
bool isKnownTest(const std::string& name);
Value applyFilter(const std::string& name, const Value& value, const Args& args);
bool applyTest(const std::string& name, const Value& value, const Args& args);
/// obj.name(args) for str, dict and list methods; `found` false when there is no such method.
Value callMethod(const Value& obj, const std::string& name, const Args& args, bool& found);
/// Globals: raise_exception, strftime_now, namespace, dict, range; Jinja2's lipsum, cycler and
/// joiner are defined (`is defined` holds) but refuse to run.
bool isGlobalFunction(const std::string& name);
Value callGlobal(const std::string& name, const Args& args);

}  // namespace loom::detail::jinja
