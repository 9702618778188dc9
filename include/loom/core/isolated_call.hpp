#pragma once
// Running a piece of work in a forked child process, so that a crash inside a third-party
// library (seen: libhdf5 reading a damaged token file) becomes an error the caller can report
// instead of ending the whole process. The child runs `body` and reports back through a pipe
// whether it returned, threw an InputError (with its message) or another error; a child that
// dies without reporting (a signal, a sanitizer's exit) is a crash.
//
// Only for work whose effects the caller does not need from the child (a check, a probe):
// the child's memory is gone when it exits. The child has one thread, the caller's: `body`
// must not wait on locks other threads of the parent may have held at the fork (re-create
// them first, as the caller knows which), and must not touch MPI or a GPU.

#include <chrono>
#include <functional>
#include <string>

namespace loom {

struct IsolatedOutcome {
  enum class Kind {
    kOk,          // body returned
    kInputError,  // body threw loom::InputError; `message` is its text
    kError,       // body threw another exception; `message` is its text
    kCrashed,     // the child died without reporting; `signal` or `exit_status` says how
    kTimedOut,    // the child ran past the timeout and was killed
  };
  Kind kind = Kind::kOk;
  std::string message;
  int signal = 0;        // the signal that ended a crashed child, else 0
  int exit_status = -1;  // a crashed child's exit status when it exited without a signal
};

/// Forks, runs `body` in the child, and waits up to `timeout` for its report. Crash-related
/// signal handlers (SEGV, BUS, FPE, ILL, ABRT) are reset to the default in the child, so a
/// crash ends it by that signal. Throws loom::Error when the process cannot fork.
IsolatedOutcome runIsolated(const std::function<void()>& body, std::chrono::seconds timeout);

/// "SIGSEGV (Segmentation fault)" for a signal number; "exit status N" for a crashed child
/// that exited without a signal.
std::string describeCrash(const IsolatedOutcome& outcome);

}  // namespace loom
