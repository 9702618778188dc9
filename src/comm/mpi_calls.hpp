#pragma once
// MPI calls shared by the World and the MPI communicator (private to src/comm): errors
// become exceptions, and every wait for peers is bounded by the collective deadline
// (cluster.collective_timeout_s), so that a stalled peer ends the job instead of hanging it.

#include <mpi.h>

#include <string>

namespace loom::detail {

/// Throws loom::Error naming `call` and MPI's message when `rc` is not MPI_SUCCESS.
void checkMpi(int rc, const char* call);

/// Who is waiting, for the message of an expired deadline.
struct CollectiveWaiter {
  int rank = 0;
  std::string host;
  double timeout_s = 600.0;  ///< cluster.collective_timeout_s
};

/// Waits for `count` requests of a non-blocking collective by polling MPI_Testall (which also
/// progresses them), first spinning, then sleeping a little longer each time up to 1 ms. If
/// they are not all done after `waiter.timeout_s` seconds, throws loom::Error saying which
/// collective (`what`, e.g. "MPI_Allreduce of 4096 x float32") this rank waited in and for
/// how long: the caller's error path then ends the job (MPI_Abort).
void waitWithDeadline(int count, MPI_Request* requests, const std::string& what,
                      const CollectiveWaiter& waiter);

}  // namespace loom::detail
