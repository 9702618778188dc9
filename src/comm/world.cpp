#include "loom/comm/world.hpp"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "loom/core/error.hpp"
#include "mpi_calls.hpp"

namespace loom {

using detail::checkMpi;

namespace {
std::atomic<bool> g_world_exists{false};
}  // namespace

struct World::Impl {
  MPI_Comm world = MPI_COMM_NULL;  // a duplicate of MPI_COMM_WORLD owned by us
  MPI_Comm local = MPI_COMM_NULL;  // the ranks sharing this host
  bool finalize = false;
};

World::World(int* argc, char*** argv) : impl_(std::make_unique<Impl>()) {
  LOOM_CHECK(!g_world_exists.exchange(true), "a World already exists in this process");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    checkMpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    impl_->finalize = true;
    // The data prefetcher and autograd run threads; only the main thread calls MPI.
    LOOM_CHECK(provided >= MPI_THREAD_FUNNELED,
               "this MPI library provides thread level "
                   << provided << ", below MPI_THREAD_FUNNELED (" << MPI_THREAD_FUNNELED
                   << ") which the trainer needs: use an MPI built with thread support");
  }
  // Errors come back as codes (and become exceptions) instead of aborting inside MPI.
  checkMpi(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->world), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(impl_->world, MPI_ERRORS_RETURN);
  checkMpi(MPI_Comm_rank(impl_->world, &rank_), "MPI_Comm_rank");
  checkMpi(MPI_Comm_size(impl_->world, &size_), "MPI_Comm_size");
  checkMpi(
      MPI_Comm_split_type(impl_->world, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &impl_->local),
      "MPI_Comm_split_type");
  checkMpi(MPI_Comm_rank(impl_->local, &local_rank_), "MPI_Comm_rank(local)");
  checkMpi(MPI_Comm_size(impl_->local, &local_size_), "MPI_Comm_size(local)");
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  host_ = name;
}

World::~World() {
  if (impl_->local != MPI_COMM_NULL) MPI_Comm_free(&impl_->local);
  if (impl_->world != MPI_COMM_NULL) MPI_Comm_free(&impl_->world);
  if (impl_->finalize) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  g_world_exists = false;
}

void World::setCollectiveTimeout(double seconds) {
  LOOM_CHECK(seconds > 0, "the collective timeout must be positive, got " << seconds);
  collective_timeout_s_ = seconds;
}

void World::waitFor(void* requests, int count, const std::string& what) const {
  detail::waitWithDeadline(count, static_cast<MPI_Request*>(requests), what,
                           {rank_, host_, collective_timeout_s_});
}

std::vector<std::string> World::allGather(const std::string& mine) const {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_);
  MPI_Request request = MPI_REQUEST_NULL;
  checkMpi(MPI_Iallgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, impl_->world, &request),
           "MPI_Iallgather");
  waitFor(&request, 1, "MPI_Allgather of string lengths");
  std::vector<int> displs(size_, 0);
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  checkMpi(MPI_Iallgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                           MPI_CHAR, impl_->world, &request),
           "MPI_Iallgatherv");
  waitFor(&request, 1, "MPI_Allgatherv of strings");
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

bool World::anyTrue(bool flag) const {
  int mine = flag ? 1 : 0;
  int any = 0;
  MPI_Request request = MPI_REQUEST_NULL;
  checkMpi(MPI_Iallreduce(&mine, &any, 1, MPI_INT, MPI_MAX, impl_->world, &request),
           "MPI_Iallreduce");
  waitFor(&request, 1, "MPI_Allreduce of a flag");
  return any != 0;
}

void World::barrier() const {
  MPI_Request request = MPI_REQUEST_NULL;
  checkMpi(MPI_Ibarrier(impl_->world, &request), "MPI_Ibarrier");
  waitFor(&request, 1, "MPI_Barrier");
}

void World::abort(int exit_code) const {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

void* World::nativeComm() const { return static_cast<void*>(&impl_->world); }

}  // namespace loom
