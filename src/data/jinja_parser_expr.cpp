// The Jinja parser's expressions (jinja_parser.hpp): the token cursor and Jinja2's
// expression grammar, one precedence level per function.

#include <algorithm>
#include <set>

#include "jinja_parser.hpp"
#include "loom/core/error.hpp"

namespace loom::detail::jinja {

using TK = Token::Kind;

ExpressionParser::ExpressionParser(const std::vector<Token>& tokens, const std::string& where)
    : tokens_(tokens), where_(where) {}

const Token& ExpressionParser::peek(size_t ahead) const {
  return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
}

const Token& ExpressionParser::next() { return tokens_[pos_ < tokens_.size() - 1 ? pos_++ : pos_]; }

void ExpressionParser::fail(const Token& at, const std::string& message) const {
  LOOM_INPUT_CHECK(false, where_ << ":" << at.line << ":" << at.col << ": " << message);
  throw;  // unreachable
}

std::string ExpressionParser::describe(const Token& t) {
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

bool ExpressionParser::isOp(const char* op, size_t ahead) const {
  return peek(ahead).kind == TK::Op && peek(ahead).text == op;
}

bool ExpressionParser::isName(const char* name, size_t ahead) const {
  return peek(ahead).kind == TK::Name && peek(ahead).text == name;
}

void ExpressionParser::expectOp(const char* op) {
  if (!isOp(op)) fail(peek(), std::string("expected '") + op + "', got " + describe(peek()));
  next();
}

void ExpressionParser::expectName(const char* name) {
  if (!isName(name)) fail(peek(), std::string("expected '") + name + "', got " + describe(peek()));
  next();
}

std::string ExpressionParser::expectIdentifier() {
  if (peek().kind != TK::Name) fail(peek(), "expected a name, got " + describe(peek()));
  return next().text;
}

void ExpressionParser::expectBlockEnd() {
  if (peek().kind != TK::BlockEnd) fail(peek(), "expected '%}', got " + describe(peek()));
  next();
}

ExprPtr ExpressionParser::node(Expr::Kind kind, const Token& at) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = at.line;
  e->col = at.col;
  return e;
}

ExprPtr ExpressionParser::parseTuple(bool with_condexpr) {
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

ExprPtr ExpressionParser::parseExpression() {
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

ExprPtr ExpressionParser::binary(const Token& at, const std::string& op, ExprPtr lhs, ExprPtr rhs) {
  auto e = node(Expr::Kind::Binary, at);
  e->name = op;
  e->args.push_back(std::move(lhs));
  e->args.push_back(std::move(rhs));
  return e;
}

ExprPtr ExpressionParser::parseOr() {
  ExprPtr lhs = parseAnd();
  while (isName("or")) {
    const Token& at = next();
    lhs = binary(at, "or", std::move(lhs), parseAnd());
  }
  return lhs;
}

ExprPtr ExpressionParser::parseAnd() {
  ExprPtr lhs = parseNot();
  while (isName("and")) {
    const Token& at = next();
    lhs = binary(at, "and", std::move(lhs), parseNot());
  }
  return lhs;
}

ExprPtr ExpressionParser::parseNot() {
  if (isName("not")) {
    const Token& at = next();
    auto e = node(Expr::Kind::Unary, at);
    e->name = "not";
    e->args.push_back(parseNot());
    return e;
  }
  return parseCompare();
}

ExprPtr ExpressionParser::parseCompare() {
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
ExprPtr ExpressionParser::parseMath(size_t level) {
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

ExprPtr ExpressionParser::parseUnary(bool with_filter) {
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

ExprPtr ExpressionParser::parsePrimary() {
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
ExprPtr ExpressionParser::parsePostfix(ExprPtr e) {
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

ExprPtr ExpressionParser::parseSubscript(const Token& at, ExprPtr obj) {
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

void ExpressionParser::parseArgs(Expr& e) {
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

ExprPtr ExpressionParser::parseCall(const Token& at, ExprPtr callee) {
  auto e = node(Expr::Kind::Call, at);
  e->args.push_back(std::move(callee));
  parseArgs(*e);
  return e;
}

ExprPtr ExpressionParser::parseFilterChain(ExprPtr e) {
  while (true) {
    if (isOp("|")) {
      next();
      const Token& name = peek();
      auto f = node(Expr::Kind::Filter, name);
      f->name = expectIdentifier();
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
                 (name.text == "==" || name.text == "!=" || name.text == "<" || name.text == ">" ||
                  name.text == "<=" || name.text == ">=")) {
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
bool ExpressionParser::startsTestArgument() const {
  const Token& t = peek();
  if (t.kind == TK::String || t.kind == TK::Int || t.kind == TK::Float) return true;
  if (t.kind == TK::Op) return t.text == "[" || t.text == "{";
  if (t.kind != TK::Name) return false;
  static const std::set<std::string> kStop = {"else", "or", "and", "is", "if", "in", "not"};
  return !kStop.count(t.text);
}

}  // namespace loom::detail::jinja
