// MPI collectives on tensors. CUDA tensors go through host memory; 16-bit floats are summed
// in fp32 (MPI has no bf16/fp16 reduction), so a sum here equals the fp32 sum of the inputs.
#include <mpi.h>
#include <torch/torch.h>

#include <vector>

#include "loom/comm/communicator.hpp"
#include "loom/comm/world.hpp"
#include "loom/core/error.hpp"
#include "mpi_calls.hpp"

namespace loom {

namespace {

using detail::checkMpi;

MPI_Datatype mpiType(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return MPI_FLOAT;
    case at::kDouble:
      return MPI_DOUBLE;
    case at::kInt:
      return MPI_INT32_T;
    case at::kLong:
      return MPI_INT64_T;
    case at::kByte:
      return MPI_UINT8_T;
    case at::kChar:
      return MPI_INT8_T;
    default:
      break;
  }
  LOOM_CHECK(false, "no MPI datatype for " << c10::toString(t));
}

/// A contiguous host tensor MPI can use directly: `t` itself when it already is one.
at::Tensor hostStaging(const at::Tensor& t) {
  at::Tensor h = t;
  if (h.scalar_type() == at::kHalf || h.scalar_type() == at::kBFloat16) h = h.to(at::kFloat);
  if (!h.device().is_cpu()) h = h.to(at::kCPU);
  return h.contiguous();
}

/// "MPI_Allreduce of 4096 x float32": what a rank waits in, for the deadline's message.
std::string describe(const char* call, const at::Tensor& t) {
  return std::string(call) + " of " + std::to_string(t.numel()) + " x " +
         c10::toString(t.scalar_type());
}

/// Writes `staged` back into `t` when staging made a copy.
void copyBack(at::Tensor& t, const at::Tensor& staged) {
  if (!staged.is_same(t)) t.copy_(staged);
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const World& world)
      : world_(world),
        comm_(*static_cast<MPI_Comm*>(world.nativeComm())),
        rank_(world.rank()),
        size_(world.size()) {}

  void allReduceSum(at::Tensor& tensor) override {
    at::Tensor h = hostStaging(tensor);
    MPI_Request request = MPI_REQUEST_NULL;
    checkMpi(MPI_Iallreduce(MPI_IN_PLACE, h.data_ptr(), static_cast<int>(h.numel()),
                            mpiType(h.scalar_type()), MPI_SUM, comm_, &request),
             "MPI_Iallreduce");
    world_.waitFor(&request, 1, describe("MPI_Allreduce", h));
    copyBack(tensor, h);
  }

  /// Non-blocking for contiguous fp32/fp64 CPU tensors (MPI_Iallreduce, progressed by each
  /// later start and completed by waitStarted); anything else is summed at once.
  void startAllReduceSum(at::Tensor& tensor) override {
    if (!tensor.device().is_cpu() || !tensor.is_contiguous() ||
        (tensor.scalar_type() != at::kFloat && tensor.scalar_type() != at::kDouble)) {
      allReduceSum(tensor);
      return;
    }
    MPI_Request request = MPI_REQUEST_NULL;
    checkMpi(MPI_Iallreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()),
                            mpiType(tensor.scalar_type()), MPI_SUM, comm_, &request),
             "MPI_Iallreduce");
    pending_.push_back(request);
    pending_tensors_.push_back(tensor);  // keeps the buffer alive until waitStarted
    // Open MPI has no progress thread by default: testing moves earlier sums along.
    int done = 0;
    checkMpi(
        MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
        "MPI_Testall");
  }

  void waitStarted() override {
    if (pending_.empty()) return;
    int64_t elements = 0;
    for (const auto& t : pending_tensors_) elements += t.numel();
    world_.waitFor(pending_.data(), static_cast<int>(pending_.size()),
                   "MPI_Allreduce of gradients (" + std::to_string(pending_.size()) +
                       " bucket(s), " + std::to_string(elements) + " values)");
    pending_.clear();
    pending_tensors_.clear();
  }

  bool canStartFromBackward(const c10::Device& device) const override {
    // The world is MPI_THREAD_FUNNELED; autograd runs CPU graphs on the calling thread,
    // CUDA graphs on its own device threads.
    return device.is_cpu();
  }

  void broadcast(at::Tensor& tensor, int root) override {
    at::Tensor h = hostStaging(tensor);
    MPI_Request request = MPI_REQUEST_NULL;
    checkMpi(MPI_Ibcast(h.data_ptr(), static_cast<int>(h.numel()), mpiType(h.scalar_type()), root,
                        comm_, &request),
             "MPI_Ibcast");
    world_.waitFor(&request, 1, describe("MPI_Bcast", h) + " from rank " + std::to_string(root));
    copyBack(tensor, h);
  }

  at::Tensor allGather(const at::Tensor& tensor) override {
    at::Tensor h = hostStaging(tensor);
    std::vector<int64_t> shape = {size_};
    for (auto d : h.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, h.options());
    MPI_Request request = MPI_REQUEST_NULL;
    checkMpi(MPI_Iallgather(h.data_ptr(), static_cast<int>(h.numel()), mpiType(h.scalar_type()),
                            out.data_ptr(), static_cast<int>(h.numel()), mpiType(h.scalar_type()),
                            comm_, &request),
             "MPI_Iallgather");
    world_.waitFor(&request, 1, describe("MPI_Allgather", h));
    return out.to(tensor.device()).to(tensor.scalar_type());
  }

  void barrier() override { world_.barrier(); }

  Backend backend() const override { return Backend::kMpi; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

 private:
  const World& world_;
  MPI_Comm comm_;
  std::vector<MPI_Request> pending_;
  std::vector<at::Tensor> pending_tensors_;
  int rank_;
  int size_;
};

}  // namespace

std::unique_ptr<Communicator> makeMpiCommunicator(const World& world) {
  return std::make_unique<MpiCommunicator>(world);
}

}  // namespace loom
