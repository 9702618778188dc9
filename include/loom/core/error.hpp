#pragma once
// Typed errors for Loom. Code deep inside the library never exits: it throws, and the
// entry point (src/main) turns the exception into a message and an exit code.
//
//   loom::InputError  - the user's input is wrong (config, data, checkpoint, command line).
//                       The message names the file, the place and what was expected. Exit 2.
//   loom::Error       - everything else (a failing library call, a broken invariant). Exit 1.

#include <sstream>
#include <stdexcept>
#include <string>

namespace loom {

/// Exit codes of the `trainer` executable.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitBadInput = 2;

/// An internal or environmental failure; carries the source location of the check.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Bad user input. The message must say where (file, line, key, sample) and what was
/// expected, so the user can fix it without reading code.
class InputError : public Error {
 public:
  explicit InputError(const std::string& what) : Error(what) {}
};

namespace detail {
[[noreturn]] void throwCheckFailure(const char* file, int line, const char* condition,
                                    const std::string& message);
}  // namespace detail

}  // namespace loom

/// Throws loom::Error with file, line, the failed condition and a streamed message:
///   LOOM_CHECK(n > 0, "expected a positive count, got " << n);
#define LOOM_CHECK(condition, message)                                                             \
  do {                                                                                             \
    if (!(condition)) {                                                                            \
      std::ostringstream loom_check_stream_;                                                       \
      loom_check_stream_ << message;                                                               \
      ::loom::detail::throwCheckFailure(__FILE__, __LINE__, #condition, loom_check_stream_.str()); \
    }                                                                                              \
  } while (false)

/// Throws loom::InputError with a streamed message (no source location: the message
/// is for the user and must name the user's file and place instead).
#define LOOM_INPUT_CHECK(condition, message)              \
  do {                                                    \
    if (!(condition)) {                                   \
      std::ostringstream loom_check_stream_;              \
      loom_check_stream_ << message;                      \
      throw ::loom::InputError(loom_check_stream_.str()); \
    }                                                     \
  } while (false)
