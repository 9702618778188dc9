// The Jinja parser's statements: tokens -> Program, the tags on top of the expressions of
// jinja_parser_expr.cpp. Unsupported tags are refused here, so a template fails at load
// time rather than on some sample. An unknown filter or test is refused here too, except
// where Jinja2's compiler lets it through to fail only when evaluated: inside an {% if %}
// (its conditions and branches) or an inline `a if c else b`, and not below a frame of its
// own (a loop body, a macro, a block) opened there. DeepSeek-V3.2's `{% if args is string
// %}{% set args = args | from_json %}{% endif %}` renders while the branch is not taken.

#include <set>

#include "jinja_parser.hpp"
#include "loom/core/error.hpp"

namespace loom::detail::jinja {

namespace {

using TK = Token::Kind;

const std::set<std::string> kUnsupportedTags = {"call",    "include", "import", "from",
                                                "extends", "block",   "with",   "autoescape",
                                                "do",      "print",   "trans",  "pluralize"};

class Parser : public ExpressionParser {
 public:
  using ExpressionParser::ExpressionParser;

  Body parseTemplate() {
    Body body = parseBody({});
    checkBody(body, false);
    return body;
  }
  /// Whether parseTemplate() met a {% generation %} block.
  bool hasGeneration() const { return has_generation_; }

 private:
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
    } else if (name == "macro") {
      parseMacro(*s);
    } else if (name == "filter") {
      parseFilterBlock(*s);
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

  // {% macro name(a, b=default) %}: defaults are expressions evaluated at each call.
  void parseMacro(Stmt& s) {
    s.kind = Stmt::Kind::Macro;
    s.text = expectIdentifier();
    expectOp("(");
    while (!isOp(")")) {
      if (!s.targets.empty()) expectOp(",");
      const Token& at = peek();
      s.targets.push_back(expectIdentifier());
      if (isOp("=")) {
        next();
        s.defaults.push_back(parseExpression());
      } else {
        if (!s.defaults.empty() && s.defaults.back()) {
          fail(at, "non-default argument follows default argument");
        }
        s.defaults.push_back(nullptr);
      }
    }
    next();
    expectBlockEnd();
    s.body = parseBody({"endmacro"});
    next();
    expectBlockEnd();
    refuseCallerArguments(s.body);
  }

  // Jinja2 gives a macro whose body names caller, varargs or kwargs those extra parameters;
  // Loom does not, and says so rather than rendering them as undefined.
  void refuseCallerArguments(const Body& body) {
    for (const auto& stmt : body) {
      const auto refuse = [&](const Expr& e) { refuseCallerArguments(e); };
      if (stmt->expr) refuse(*stmt->expr);
      if (stmt->loop_filter) refuse(*stmt->loop_filter);
      for (const auto& c : stmt->conditions) refuse(*c);
      for (const auto& d : stmt->defaults) {
        if (d) refuse(*d);
      }
      for (const auto& b : stmt->branches) refuseCallerArguments(b);
      refuseCallerArguments(stmt->body);
      refuseCallerArguments(stmt->else_body);
    }
  }

  void refuseCallerArguments(const Expr& e) {
    if (e.kind == Expr::Kind::Name &&
        (e.name == "caller" || e.name == "varargs" || e.name == "kwargs")) {
      failAt(e.line, e.col, "'" + e.name + "' in a macro is not supported");
    }
    for (const auto& a : e.args) {
      if (a) refuseCallerArguments(*a);
    }
    for (const auto& kw : e.kwargs) refuseCallerArguments(*kw.second);
  }

  // {% filter f(args) | g %}body{% endfilter %}: the chain applies to the rendered body.
  void parseFilterBlock(Stmt& s) {
    s.kind = Stmt::Kind::FilterBlock;
    const Token& name = peek();
    auto first = node(Expr::Kind::Filter, name);
    first->name = expectIdentifier();
    first->args.push_back(nullptr);
    if (isOp("(")) parseArgs(*first);
    s.expr = parseFilterChain(std::move(first));
    expectBlockEnd();
    s.body = parseBody({"endfilter"});
    next();
    expectBlockEnd();
  }

  // ---------------------------------------------------------------- unknown filters and tests

  [[noreturn]] void failAt(int line, int col, const std::string& message) const {
    Token at;
    at.line = line;
    at.col = col;
    fail(at, message);
  }

  // `soft`: inside an {% if %} or an inline if, where Jinja2 defers the error to run time.
  void checkBody(const Body& body, bool soft) {
    for (const auto& s : body) {
      switch (s->kind) {
        case Stmt::Kind::If:
          for (const auto& c : s->conditions) checkExpr(*c, true);
          for (const auto& b : s->branches) checkBody(b, true);
          break;
        case Stmt::Kind::For:
          checkExpr(*s->expr, soft);
          if (s->loop_filter) checkExpr(*s->loop_filter, false);
          checkBody(s->body, false);
          checkBody(s->else_body, false);
          break;
        case Stmt::Kind::Macro:
          for (const auto& d : s->defaults) {
            if (d) checkExpr(*d, false);
          }
          checkBody(s->body, false);
          break;
        case Stmt::Kind::FilterBlock:
          checkExpr(*s->expr, false);
          checkBody(s->body, false);
          break;
        default:
          if (s->expr) checkExpr(*s->expr, soft);
          checkBody(s->body, false);
      }
    }
  }

  void checkExpr(const Expr& e, bool soft) {
    if (e.kind == Expr::Kind::Cond) soft = true;
    if (!soft && e.kind == Expr::Kind::Filter && !isKnownFilter(e.name)) {
      failAt(e.line, e.col, "the filter '" + e.name + "' is not supported");
    }
    if (!soft && e.kind == Expr::Kind::Test && !isKnownTest(e.name)) {
      failAt(e.line, e.col, "the test '" + e.name + "' is not supported");
    }
    for (const auto& a : e.args) {
      if (a) checkExpr(*a, soft);
    }
    for (const auto& kw : e.kwargs) checkExpr(*kw.second, soft);
  }

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
