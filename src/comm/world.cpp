#include "loom/comm/world.hpp"

#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "loom/core/error.hpp"

namespace loom {

namespace {
std::atomic<bool> g_world_exists{false};

void checkMpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  LOOM_CHECK(false, call << " failed: " << std::string(text, len));
}
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

std::vector<std::string> World::allGather(const std::string& mine) const {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size_);
  checkMpi(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, impl_->world), "MPI_Allgather");
  std::vector<int> displs(size_, 0);
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[r] = total;
    total += lens[r];
  }
  std::string all(static_cast<size_t>(total), '\0');
  checkMpi(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(),
                          MPI_CHAR, impl_->world),
           "MPI_Allgatherv");
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

bool World::anyTrue(bool flag) const {
  int mine = flag ? 1 : 0;
  int any = 0;
  checkMpi(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, impl_->world), "MPI_Allreduce");
  return any != 0;
}

void World::barrier() const { checkMpi(MPI_Barrier(impl_->world), "MPI_Barrier"); }

void World::abort(int exit_code) const {
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

void* World::nativeComm() const { return static_cast<void*>(&impl_->world); }

}  // namespace loom
