#include "loom/comm/communicator.hpp"

#include "loom/comm/world.hpp"
#include "loom/core/error.hpp"
#include "loom/core/strings.hpp"

namespace loom {

#if !LOOM_WITH_CUDA
std::unique_ptr<Communicator> makeNcclCommunicator(const World&, int, double) {
  LOOM_CHECK(false, "this build has no CUDA/NCCL (LOOM_WITH_CUDA=OFF); use cluster.backend: mpi");
}
#endif

std::unique_ptr<Communicator> makeCommunicator(Backend backend, const World& world,
                                               const std::string& device) {
  switch (backend) {
    case Backend::kMpi:
      return makeMpiCommunicator(world);
    case Backend::kNccl: {
      LOOM_CHECK(startsWith(device, "cuda:"), "NCCL needs a CUDA device, got " << device);
      return makeNcclCommunicator(world, std::stoi(device.substr(5)), world.collectiveTimeout());
    }
    case Backend::kAuto:
      break;
  }
  LOOM_CHECK(false, "makeCommunicator needs a resolved backend (nccl or mpi), not auto");
}

}  // namespace loom
