#include "loom/core/isolated_call.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>

#include "loom/core/error.hpp"

namespace loom {
namespace {

// The child's report: one tag byte ('0' ok, '2' input error, '1' other error), then the
// message. Written with write(2) and ended with _exit: the child never runs the parent's
// atexit handlers or flushes the parent's stdio buffers a second time.
void writeAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

[[noreturn]] void runChild(int fd, const std::function<void()>& body) {
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    sigemptyset(&action.sa_mask);
    sigaction(sig, &action, nullptr);
  }
  std::string report;
  try {
    body();
    report = "0";
  } catch (const InputError& e) {
    report = std::string("2") + e.what();
  } catch (const std::exception& e) {
    report = std::string("1") + e.what();
  } catch (...) {
    report = "1unknown exception";
  }
  writeAll(fd, report.data(), report.size());
  ::close(fd);
  ::_exit(0);
}

}  // namespace

IsolatedOutcome runIsolated(const std::function<void()>& body, std::chrono::seconds timeout) {
  int fds[2];
  LOOM_CHECK(::pipe(fds) == 0, "cannot create a pipe: " << std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    LOOM_CHECK(false, "cannot fork a child process: " << std::strerror(err));
  }
  if (pid == 0) {
    ::close(fds[0]);
    runChild(fds[1], body);
  }
  ::close(fds[1]);

  // Read the report until the child closes its end, within the deadline.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string report;
  bool timed_out = false;
  char buffer[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p {};
    p.fd = fds[0];
    p.events = POLLIN;
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child finished or died
    report.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  IsolatedOutcome outcome;
  if (timed_out) {
    outcome.kind = IsolatedOutcome::Kind::kTimedOut;
    return outcome;
  }
  const bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!report.empty() && clean_exit) {
    outcome.message = report.substr(1);
    switch (report[0]) {
      case '0':
        outcome.kind = IsolatedOutcome::Kind::kOk;
        break;
      case '2':
        outcome.kind = IsolatedOutcome::Kind::kInputError;
        break;
      default:
        outcome.kind = IsolatedOutcome::Kind::kError;
        break;
    }
    return outcome;
  }
  outcome.kind = IsolatedOutcome::Kind::kCrashed;
  if (WIFSIGNALED(status)) {
    outcome.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    outcome.exit_status = WEXITSTATUS(status);
  }
  return outcome;
}

std::string describeCrash(const IsolatedOutcome& outcome) {
  if (outcome.signal != 0) {
    const char* abbrev = sigabbrev_np(outcome.signal);
    const char* text = strsignal(outcome.signal);
    return std::string("SIG") + (abbrev ? abbrev : std::to_string(outcome.signal)) + " (" +
           (text ? text : "unknown signal") + ")";
  }
  return "exit status " + std::to_string(outcome.exit_status);
}

}  // namespace loom
