// The Jinja parser: tokens -> statements and expressions, with Jinja2's operator
// precedence (loosest first): `x if c else y`, or, and, not, comparisons and `in`, + -,
// ~, * / // %, **, unary - +, then filters `|f` and tests `is t` on the postfix chain
// (`.attr`, `[item]`, `[a:b:c]`, `(call)`). Unsupported tags and unknown filters or tests
// are refused here, so a template fails at load time rather than on some sample.

#include <set>

#include "jinja_ast.hpp"
#include "loom/core/error.hpp"

namespace loom::detail::jinja {

namespace {

using TK = Token::Kind;

const std::set<std::string> kUnsupportedTags = {
    "macro", "call",   "include",    "import", "from",  "extends", "block",
    "with",  "filter", "autoescape", "do",     "print", "trans",   "pluralize"};

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& where)
      : tokens_(tokens), where_(where) {}

  Body parseTemplate() { return parseBody({}); }
  /// Whether parseTemplate() met a {% generation %} block.
  bool hasGeneration() const { return has_generation_; }

 private:
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }

  [[noreturn]] void fail(const Token& at, const std::string& message) const {
    LOOM_INPUT_CHECK(false, where_ << ":" << at.line << ":" << at.col << ": " << message);
    throw;  // unreachable
  }

  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TK::End:
        return "the end of the template";
      case TK::BlockEnd:
        return "'%}'";
      case TK::VarEnd:
        return "'}}'";
      case TK::Text:
        return "text";
      case TK::String:
        return "a string";
      default:
        return "'" + t.text + "'";
    }
  }

  bool isOp(const char* op, size_t ahead = 0) const {
    return peek(ahead).kind == TK::Op && peek(ahead).text == op;
  }
  bool isName(const char* name, size_t ahead = 0) const {
    return peek(ahead).kind == TK::Name && peek(ahead).text == name;
  }
  void expectOp(const char* op) {
    if (!isOp(op)) fail(peek(), std::string("expected '") + op + "', got " + describe(peek()));
    next();
  }
  void expectName(const char* name) {
    if (!isName(name))
      fail(peek(), std::string("expected '") + name + "', got " + describe(peek()));
    next();
  }
  std::string expectIdentifier() {
    if (peek().kind != TK::Name) fail(peek(), "expected a name, got " + describe(peek()));
    return next().text;
  }
  void expectBlockEnd() {
    if (peek().kind != TK::BlockEnd) fail(peek(), "expected '%}', got " + describe(peek()));
    next();
  }

  // ---------------------------------------------------------------- statements

  static StmtPtr stmt(Stmt::Kind kind, const Token& at) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = at.line;
    s->col = at.col;
    return s;
  }

  // Statements up to a {% tag %} named in `stops` (left unconsumed, positioned at the name).
  Body parseBody(const std::set<std::string>& stops) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == TK::End) {
        if (!stops.empty()) {
          fail(t, "unexpected end of template: expected {% " + *stops.begin() + " %}");
        }
        return body;
      }
      if (t.kind == TK::Text) {
        auto s = stmt(Stmt::Kind::Text, t);
        s->text = next().text;
        body.push_back(std::move(s));
      } else if (t.kind == TK::VarBegin) {
        next();
        auto s = stmt(Stmt::Kind::Output, t);
        s->expr = parseTuple();
        if (peek().kind != TK::VarEnd) fail(peek(), "expected '}}', got " + describe(peek()));
        next();
        body.push_back(std::move(s));
      } else if (t.kind == TK::BlockBegin) {
        const Token& name = peek(1);
        if (name.kind == TK::Name && stops.count(name.text)) {
          next();
          return body;
        }
        next();
        body.push_back(parseStatement(t));
      } else {
        fail(t, "unexpected " + describe(t));
      }
    }
  }

  StmtPtr parseStatement(const Token& begin) {
    const Token& tag = peek();
    if (tag.kind != TK::Name) fail(tag, "expected a tag name after '{%'");
    auto s = stmt(Stmt::Kind::Text, begin);
    const std::string name = next().text;
    if (name == "if") {
      parseIf(*s);
    } else if (name == "for") {
      parseFor(*s);
    } else if (name == "set") {
      parseSet(*s);
    } else if (name == "generation") {
      s->kind = Stmt::Kind::Generation;
      has_generation_ = true;
      expectBlockEnd();
      s->body = parseBody({"endgeneration"});
      next();
      expectBlockEnd();
    } else if (name == "break" || name == "continue") {
      s->kind = name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
      expectBlockEnd();
    } else if (kUnsupportedTags.count(name)) {
      fail(tag, "the {% " + name + " %} tag is not supported");
    } else {
      fail(tag, "unknown tag '" + name + "'");
    }
    return s;
  }

  void parseIf(Stmt& s) {
    s.kind = Stmt::Kind::If;
    s.conditions.push_back(parseTuple());
    expectBlockEnd();
    while (true) {
      s.branches.push_back(parseBody({"elif", "else", "endif"}));
      const std::string tag = next().text;
      if (tag == "elif") {
        s.conditions.push_back(parseTuple());
        expectBlockEnd();
      } else if (tag == "else") {
        expectBlockEnd();
        s.branches.push_back(parseBody({"endif"}));
        next();
        expectBlockEnd();
        return;
      } else {
        expectBlockEnd();
        return;
      }
    }
  }

  std::vector<std::string> parseTargets() {
    std::vector<std::string> names{expectIdentifier()};
    while (isOp(",")) {
      next();
      names.push_back(expectIdentifier());
    }
    return names;
  }

  void parseFor(Stmt& s) {
    s.kind = Stmt::Kind::For;
    if (isOp("(")) fail(peek(), "parenthesized loop targets are not supported");
    s.targets = parseTargets();
    expectName("in");
    s.expr = parseTuple(/*with_condexpr=*/false);
    if (isName("if")) {
      next();
      s.loop_filter = parseExpression();
    }
    if (isName("recursive")) fail(peek(), "recursive for loops are not supported");
    expectBlockEnd();
    s.body = parseBody({"endfor", "else"});
    if (next().text == "else") {
      expectBlockEnd();
      s.else_body = parseBody({"endfor"});
      next();
    }
    expectBlockEnd();
  }

  void parseSet(Stmt& s) {
    s.kind = Stmt::Kind::Set;
    const Token& first = peek();
    s.targets.push_back(expectIdentifier());
    if (isOp(".")) {
      next();
      s.attr = expectIdentifier();
    } else {
      while (isOp(",")) {
        next();
        s.targets.push_back(expectIdentifier());
      }
    }
    if (peek().kind == TK::BlockEnd || isOp("|")) {
      if (isOp("|")) fail(peek(), "filters on {% set %} blocks are not supported");
      if (!s.attr.empty() || s.targets.size() != 1) fail(first, "a {% set %} block takes one name");
      next();
      s.kind = Stmt::Kind::SetBlock;
      s.body = parseBody({"endset"});
      next();
      expectBlockEnd();
      return;
    }
    expectOp("=");
    s.expr = parseTuple();
    expectBlockEnd();
  }

  // ---------------------------------------------------------------- expressions

  ExprPtr node(Expr::Kind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  // An expression, or a tuple when commas follow (`{% set a, b = 1, 2 %}`).
  ExprPtr parseTuple(bool with_condexpr = true) {
    const Token& start = peek();
    ExprPtr first = with_condexpr ? parseExpression() : parseOr();
    if (!isOp(",")) return first;
    auto tuple = node(Expr::Kind::List, start);
    tuple->name = "tuple";
    tuple->args.push_back(std::move(first));
    while (isOp(",")) {
      next();
      if (peek().kind == TK::BlockEnd || peek().kind == TK::VarEnd || isName("if")) break;
      tuple->args.push_back(with_condexpr ? parseExpression() : parseOr());
    }
    return tuple;
  }

  ExprPtr parseExpression() {
    ExprPtr expr = parseOr();
    while (isName("if")) {
      const Token& at = next();
      auto cond = node(Expr::Kind::Cond, at);
      cond->args.push_back(std::move(expr));
      cond->args.push_back(parseOr());
      if (isName("else")) {
        next();
        cond->args.push_back(parseExpression());
      } else {
        cond->args.push_back(nullptr);
      }
      expr = std::move(cond);
    }
    return expr;
  }

  ExprPtr binary(const Token& at, const std::string& op, ExprPtr lhs, ExprPtr rhs) {
    auto e = node(Expr::Kind::Binary, at);
    e->name = op;
    e->args.push_back(std::move(lhs));
    e->args.push_back(std::move(rhs));
    return e;
  }

  ExprPtr parseOr() {
    ExprPtr lhs = parseAnd();
    while (isName("or")) {
      const Token& at = next();
      lhs = binary(at, "or", std::move(lhs), parseAnd());
    }
    return lhs;
  }

  ExprPtr parseAnd() {
    ExprPtr lhs = parseNot();
    while (isName("and")) {
      const Token& at = next();
      lhs = binary(at, "and", std::move(lhs), parseNot());
    }
    return lhs;
  }

  ExprPtr parseNot() {
    if (isName("not")) {
      const Token& at = next();
      auto e = node(Expr::Kind::Unary, at);
      e->name = "not";
      e->args.push_back(parseNot());
      return e;
    }
    return parseCompare();
  }

  ExprPtr parseCompare() {
    const Token& start = peek();
    ExprPtr first = parseMath();
    std::unique_ptr<Expr> cmp;
    while (true) {
      std::string op;
      const Token& t = peek();
      if (t.kind == TK::Op && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == ">" ||
                               t.text == "<=" || t.text == ">=")) {
        op = next().text;
      } else if (isName("in")) {
        next();
        op = "in";
      } else if (isName("not") && isName("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(Expr::Kind::Compare, start);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parseMath());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  // The arithmetic levels, loosest first: + -, then ~, then * / // %, then **.
  ExprPtr parseMath(size_t level = 0) {
    static const std::vector<std::set<std::string>> kLevels = {
        {"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
    if (level == kLevels.size()) return parseUnary(true);
    ExprPtr lhs = parseMath(level + 1);
    while (peek().kind == TK::Op && kLevels[level].count(peek().text)) {
      const Token& at = next();
      lhs = binary(at, at.text, std::move(lhs), parseMath(level + 1));
    }
    return lhs;
  }

  ExprPtr parseUnary(bool with_filter) {
    ExprPtr e;
    if (isOp("-") || isOp("+")) {
      const Token& at = next();
      e = node(Expr::Kind::Unary, at);
      e->name = at.text;
      e->args.push_back(parseUnary(false));
    } else {
      e = parsePrimary();
    }
    e = parsePostfix(std::move(e));
    if (with_filter) e = parseFilterChain(std::move(e));
    return e;
  }

  ExprPtr parsePrimary() {
    const Token& t = peek();
    if (t.kind == TK::Name) {
      next();
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto e = node(Expr::Kind::Literal, t);
        e->literal = Value::boolean(t.text == "true" || t.text == "True");
        return e;
      }
      if (t.text == "none" || t.text == "None") {
        auto e = node(Expr::Kind::Literal, t);
        e->literal = Value::none();
        return e;
      }
      auto e = node(Expr::Kind::Name, t);
      e->name = t.text;
      return e;
    }
    if (t.kind == TK::String) {
      std::string text;
      while (peek().kind == TK::String) text += next().text;  // adjacent literals join
      auto e = node(Expr::Kind::Literal, t);
      e->literal = Value::string(std::move(text));
      return e;
    }
    if (t.kind == TK::Int || t.kind == TK::Float) {
      next();
      auto e = node(Expr::Kind::Literal, t);
      e->literal = t.kind == TK::Int ? Value::integer(t.ival) : Value::number(t.fval);
      return e;
    }
    if (isOp("(")) {
      next();
      if (isOp(")")) {
        next();
        auto empty = node(Expr::Kind::List, t);
        empty->name = "tuple";
        return empty;
      }
      ExprPtr inner = parseExpression();
      if (isOp(",")) {
        auto tuple = node(Expr::Kind::List, t);
        tuple->name = "tuple";
        tuple->args.push_back(std::move(inner));
        while (isOp(",")) {
          next();
          if (isOp(")")) break;
          tuple->args.push_back(parseExpression());
        }
        inner = std::move(tuple);
      }
      expectOp(")");
      return inner;
    }
    if (isOp("[")) {
      next();
      auto list = node(Expr::Kind::List, t);
      while (!isOp("]")) {
        if (!list->args.empty()) expectOp(",");
        if (isOp("]")) break;
        list->args.push_back(parseExpression());
      }
      next();
      return list;
    }
    if (isOp("{")) {
      next();
      auto dict = node(Expr::Kind::Dict, t);
      while (!isOp("}")) {
        if (!dict->args.empty()) expectOp(",");
        if (isOp("}")) break;
        dict->args.push_back(parseExpression());
        expectOp(":");
        dict->args.push_back(parseExpression());
      }
      next();
      return dict;
    }
    fail(t, "unexpected " + describe(t) + " in an expression");
  }

  // Postfix nodes take the place of the expression they extend (`message` in
  // `message.content`), which is where errors about them point.
  ExprPtr parsePostfix(ExprPtr e) {
    while (true) {
      Token t = peek();
      t.line = e->line;
      t.col = e->col;
      if (isOp(".")) {
        next();
        auto attr = node(Expr::Kind::Attr, t);
        if (peek().kind == TK::Int) {
          attr->kind = Expr::Kind::Item;
          attr->args.push_back(std::move(e));
          auto index = node(Expr::Kind::Literal, peek());
          index->literal = Value::integer(next().ival);
          attr->args.push_back(std::move(index));
        } else {
          attr->name = expectIdentifier();
          attr->args.push_back(std::move(e));
        }
        e = std::move(attr);
      } else if (isOp("[")) {
        next();
        e = parseSubscript(t, std::move(e));
      } else if (isOp("(")) {
        e = parseCall(t, std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parseSubscript(const Token& at, ExprPtr obj) {
    ExprPtr parts[3];
    bool is_slice = false;
    for (int k = 0; k < 3; ++k) {
      if (!isOp(":") && !isOp("]")) parts[k] = parseExpression();
      if (k < 2 && isOp(":")) {
        next();
        is_slice = true;
      } else {
        break;
      }
    }
    expectOp("]");
    auto e = node(is_slice ? Expr::Kind::Slice : Expr::Kind::Item, at);
    e->args.push_back(std::move(obj));
    if (!is_slice) {
      if (!parts[0]) fail(at, "empty subscript");
      e->args.push_back(std::move(parts[0]));
    } else {
      for (auto& p : parts) e->args.push_back(std::move(p));
    }
    return e;
  }

  // "(a, b, key=c)" into e->args (after whatever is there) and e->kwargs.
  void parseArgs(Expr& e) {
    expectOp("(");
    while (!isOp(")")) {
      if (isOp("*") || isOp("**")) fail(peek(), "*args and **kwargs in calls are not supported");
      if (peek().kind == TK::Name && isOp("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(std::move(key), parseExpression());
      } else {
        if (!e.kwargs.empty()) fail(peek(), "a positional argument follows a keyword argument");
        e.args.push_back(parseExpression());
      }
      if (!isOp(",")) break;
      next();
    }
    expectOp(")");
  }

  ExprPtr parseCall(const Token& at, ExprPtr callee) {
    auto e = node(Expr::Kind::Call, at);
    e->args.push_back(std::move(callee));
    parseArgs(*e);
    return e;
  }

  ExprPtr parseFilterChain(ExprPtr e) {
    while (true) {
      if (isOp("|")) {
        next();
        const Token& name = peek();
        auto f = node(Expr::Kind::Filter, name);
        f->name = expectIdentifier();
        // An unknown filter fails when it is applied, as in jinja2, where a template may hold
        // one in a branch that never runs (DeepSeek-V3.2's `args | from_json`).
        f->args.push_back(std::move(e));
        if (isOp("(")) parseArgs(*f);
        e = std::move(f);
      } else if (isName("is")) {
        next();
        auto test = node(Expr::Kind::Test, peek());
        if (isName("not")) {
          next();
          test->negated = true;
        }
        const Token& name = peek();
        if (name.kind == TK::Name) {
          test->name = next().text;
        } else if (name.kind == TK::Op &&
                   (name.text == "==" || name.text == "!=" || name.text == "<" ||
                    name.text == ">" || name.text == "<=" || name.text == ">=")) {
          test->name = next().text;  // `is ==` is Jinja's alias of `is eq`
        } else {
          fail(name, "expected a test name after 'is'");
        }
        test->args.push_back(std::move(e));
        if (isOp("(")) {
          parseArgs(*test);
        } else if (startsTestArgument()) {
          test->args.push_back(parsePostfix(parsePrimary()));
        }
        e = std::move(test);
      } else if (isOp("(")) {
        Token at = peek();
        at.line = e->line;
        at.col = e->col;
        e = parseCall(at, std::move(e));
      } else {
        return e;
      }
    }
  }

  // Jinja's parse_test: a bare argument follows unless the next token ends the expression.
  bool startsTestArgument() const {
    const Token& t = peek();
    if (t.kind == TK::String || t.kind == TK::Int || t.kind == TK::Float) return true;
    if (t.kind == TK::Op) return t.text == "[" || t.text == "{";
    if (t.kind != TK::Name) return false;
    static const std::set<std::string> kStop = {"else", "or", "and", "is", "if", "in", "not"};
    return !kStop.count(t.text);
  }

  const std::vector<Token>& tokens_;
  const std::string& where_;
  size_t pos_ = 0;
  bool has_generation_ = false;
};

}  // namespace

std::unique_ptr<Program> parseProgram(const std::vector<Token>& tokens, const std::string& where) {
  auto program = std::make_unique<Program>();
  program->where = where;
  Parser parser(tokens, where);
  program->body = parser.parseTemplate();
  program->has_generation = parser.hasGeneration();
  return program;
}

}  // namespace loom::detail::jinja
