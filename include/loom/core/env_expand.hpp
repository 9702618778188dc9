#pragma once
// Environment placeholders in config values: `runs/${SLURM_JOB_ID}` becomes `runs/4242` in a
// Slurm job. `${NAME}` must be set; `${NAME:-text}` falls back to `text` when NAME is unset or
// empty; `$$` is a literal `$`. Anything else after a `$` is refused, so a shell habit like
// `$SLURM_JOB_ID` is caught instead of becoming a folder of that name.

#include <functional>
#include <optional>
#include <string>

#include "loom/core/error.hpp"

namespace loom {

/// Looks a variable up; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

/// The process environment (getenv).
std::optional<std::string> processEnv(const std::string& name);

/// A placeholder that cannot be expanded: an unset variable or a malformed `${...}`.
/// `what()` says which and how to fix it, without a location: the caller adds the file,
/// line and key.
class EnvExpandError : public InputError {
 public:
  EnvExpandError(const std::string& what, std::string variable)
      : InputError(what), variable_(std::move(variable)) {}
  /// The unset variable's name ("" for a malformed placeholder).
  const std::string& variable() const { return variable_; }

 private:
  std::string variable_;
};

/// `text` with every placeholder replaced. Throws EnvExpandError.
std::string expandEnv(const std::string& text, const EnvLookup& lookup = processEnv);

/// `text` with each `$` doubled, so that expandEnv gives `text` back (for writing an
/// expanded value where it will be read, and expanded, again).
std::string escapeEnv(const std::string& text);

}  // namespace loom
