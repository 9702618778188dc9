#pragma once
// The Jinja parser in two halves: ExpressionParser (jinja_parser_expr.cpp) walks the tokens
// and parses expressions; the statement parser in jinja_parser.cpp extends it with the tags
// and builds the Program.

#include <set>
#include <string>
#include <vector>

#include "jinja_ast.hpp"

namespace loom::detail::jinja {

/// A cursor over a template's tokens with Jinja2's expression grammar. Operator precedence
/// (loosest first): `x if c else y`, or, and, not, comparisons and `in`, + -, ~,
/// * / // %, **, unary - +, then filters `|f` and tests `is t` on the postfix chain
/// (`.attr`, `[item]`, `[a:b:c]`, `(call)`).
class ExpressionParser {
 public:
  ExpressionParser(const std::vector<Token>& tokens, const std::string& where);

 protected:
  const Token& peek(size_t ahead = 0) const;
  const Token& next();
  [[noreturn]] void fail(const Token& at, const std::string& message) const;
  static std::string describe(const Token& t);
  bool isOp(const char* op, size_t ahead = 0) const;
  bool isName(const char* name, size_t ahead = 0) const;
  void expectOp(const char* op);
  void expectName(const char* name);
  std::string expectIdentifier();
  void expectBlockEnd();

  ExprPtr node(Expr::Kind kind, const Token& at);
  /// An expression, or a tuple when commas follow (`{% set a, b = 1, 2 %}`).
  ExprPtr parseTuple(bool with_condexpr = true);
  ExprPtr parseExpression();
  /// "(a, b, key=c)" into e.args (after whatever is there) and e.kwargs.
  void parseArgs(Expr& e);
  /// `|f(...)`, `is t ...` and calls after `e`.
  ExprPtr parseFilterChain(ExprPtr e);

  const std::vector<Token>& tokens_;
  const std::string& where_;
  size_t pos_ = 0;

 private:
  ExprPtr binary(const Token& at, const std::string& op, ExprPtr lhs, ExprPtr rhs);
  ExprPtr parseOr();
  ExprPtr parseAnd();
  ExprPtr parseNot();
  ExprPtr parseCompare();
  ExprPtr parseMath(size_t level = 0);
  ExprPtr parseUnary(bool with_filter);
  ExprPtr parsePrimary();
  ExprPtr parsePostfix(ExprPtr e);
  ExprPtr parseSubscript(const Token& at, ExprPtr obj);
  ExprPtr parseCall(const Token& at, ExprPtr callee);
  bool startsTestArgument() const;
};

}  // namespace loom::detail::jinja
