#pragma once
// The World: this process's place in the MPI job (rank, size, local rank, host). It owns
// MPI's lifetime (init in the constructor, finalize in the destructor) and works as a
// singleton process without mpirun. Communicators (NCCL, MPI) are built from it.

#include <memory>
#include <string>
#include <vector>

namespace loom {

class World {
 public:
  /// Initialises MPI (thread level FUNNELED). At most one World per process.
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int localRank() const { return local_rank_; }  ///< index among the ranks on this host
  int localSize() const { return local_size_; }
  const std::string& host() const { return host_; }
  bool isRoot() const { return rank_ == 0; }

  /// How long any collective (here, in the MPI communicator and in NCCL's) may wait for the
  /// other ranks before this rank gives up and the job ends: cluster.collective_timeout_s.
  /// 600 s until the config is read.
  void setCollectiveTimeout(double seconds);
  double collectiveTimeout() const { return collective_timeout_s_; }
  /// Waits for `count` MPI requests (`MPI_Request*`) of the collective `what` within the
  /// collective timeout; throws loom::Error naming it and the time waited when they are late.
  void waitFor(void* requests, int count, const std::string& what) const;

  /// Collective: every rank must call. Returns every rank's string, by rank.
  std::vector<std::string> allGather(const std::string& mine) const;
  /// Collective: true on every rank if `flag` is true on any rank.
  bool anyTrue(bool flag) const;
  /// Collective: every rank must call.
  void barrier() const;
  /// Ends every rank of the job now (MPI_Abort). Use after logging the reason.
  [[noreturn]] void abort(int exit_code) const;

  /// The MPI communicator handle (an `MPI_Comm`), for communicators built on this world.
  void* nativeComm() const;

 private:
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string host_;
  double collective_timeout_s_ = 600.0;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
