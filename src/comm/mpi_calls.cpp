#include "mpi_calls.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "loom/core/error.hpp"

namespace loom::detail {

void checkMpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  LOOM_CHECK(false, call << " failed: " << std::string(text, len));
}

void waitWithDeadline(int count, MPI_Request* requests, const std::string& what,
                      const CollectiveWaiter& waiter) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // Spinning answers a collective that completes in microseconds without delay; after
  // that, sleeping leaves the cores to ranks that share them (CPU ranks on one host). The
  // pause grows to 100 us, no more: without a progress thread the collective advances only
  // while this rank polls, so each pause can delay the peers by as much (a cap of 1 ms cost
  // two CPU ranks ~4 ms per step, ~10% of a small model's step; 100 us wakes cost ~1% of a
  // core).
  constexpr int kSpins = 2000;
  constexpr auto kMaxPause = std::chrono::microseconds(100);
  auto pause = std::chrono::microseconds(10);
  for (int polls = 0;; ++polls) {
    int done = 0;
    checkMpi(MPI_Testall(count, requests, &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done) return;
    if (polls < kSpins) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > waiter.timeout_s) {
      char seconds[32];
      std::snprintf(seconds, sizeof(seconds), "%.1f", waited);
      LOOM_CHECK(false, "rank " << waiter.rank << " (host " << waiter.host << ") waited " << seconds
                                << " s in " << what
                                << " and not every rank arrived: a peer is stalled or dead "
                                   "(cluster.collective_timeout_s = "
                                << waiter.timeout_s
                                << "; raise it if a checkpoint write, an evaluation or loading "
                                   "the model legitimately takes longer on one rank); ending "
                                   "the job");
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, kMaxPause);
  }
}

}  // namespace loom::detail
