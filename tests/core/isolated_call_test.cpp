// core/isolated_call: a forked child's report (ok, input error, other error), its crash
// (a signal, an exit without a report) and its timeout, as the caller sees them.

#include "loom/core/isolated_call.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "loom/core/error.hpp"

namespace loom {
namespace {

using Kind = IsolatedOutcome::Kind;
constexpr std::chrono::seconds kGenerous{60};

TEST(IsolatedCall, ABodyThatReturnsIsOk) {
  int touched = 0;
  const IsolatedOutcome out = runIsolated([&] { touched = 1; }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kOk);
  EXPECT_EQ(touched, 0) << "the body ran in the child; the parent's memory is untouched";
}

TEST(IsolatedCall, AnInputErrorComesBackWithItsMessage) {
  const IsolatedOutcome out =
      runIsolated([] { throw InputError("data.h5: attribute 'format' is 'x'"); }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kInputError);
  EXPECT_EQ(out.message, "data.h5: attribute 'format' is 'x'");
}

TEST(IsolatedCall, AnotherExceptionIsAnError) {
  const IsolatedOutcome out =
      runIsolated([] { throw std::runtime_error("disk on fire"); }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kError);
  EXPECT_EQ(out.message, "disk on fire");
}

TEST(IsolatedCall, ASegfaultInTheChildIsACrashNamingTheSignal) {
  const IsolatedOutcome out = runIsolated([] { ::raise(SIGSEGV); }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kCrashed);
  EXPECT_EQ(out.signal, SIGSEGV);
  EXPECT_NE(describeCrash(out).find("SIGSEGV"), std::string::npos) << describeCrash(out);
}

TEST(IsolatedCall, AbortIsACrashEvenWhereAHandlerWasInstalled) {
  // The parent's handler (as a runtime's crash reporter would install) is reset in the child.
  struct sigaction action {};
  struct sigaction previous {};
  action.sa_handler = [](int) { ::_exit(0); };
  sigaction(SIGABRT, &action, &previous);
  const IsolatedOutcome out = runIsolated([] { std::abort(); }, kGenerous);
  sigaction(SIGABRT, &previous, nullptr);
  EXPECT_EQ(out.kind, Kind::kCrashed);
  EXPECT_EQ(out.signal, SIGABRT);
}

TEST(IsolatedCall, AnExitWithoutAReportIsACrashWithItsStatus) {
  const IsolatedOutcome out = runIsolated([] { ::_exit(3); }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kCrashed);
  EXPECT_EQ(out.signal, 0);
  EXPECT_EQ(out.exit_status, 3);
  EXPECT_EQ(describeCrash(out), "exit status 3");
}

TEST(IsolatedCall, AChildPastTheTimeoutIsKilled) {
  const auto start = std::chrono::steady_clock::now();
  const IsolatedOutcome out = runIsolated([] { ::sleep(30); }, std::chrono::seconds(1));
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(out.kind, Kind::kTimedOut);
  EXPECT_LT(waited, 10.0) << "the child sleeps 30 s; the caller must not wait for it";
}

TEST(IsolatedCall, ALongReportArrivesWhole) {
  const std::string long_message(100000, 'x');  // more than a pipe's buffer
  const IsolatedOutcome out = runIsolated([&] { throw InputError(long_message); }, kGenerous);
  EXPECT_EQ(out.kind, Kind::kInputError);
  EXPECT_EQ(out.message.size(), long_message.size());
}

}  // namespace
}  // namespace loom
