// NCCL collectives on CUDA tensors, on the current CUDA stream. Compiled only with
// LOOM_WITH_CUDA. Rank 0 makes the NCCL id and MPI broadcasts it (MPI starts the world,
// NCCL only moves tensors). NCCL calls are asynchronous: a peer that died leaves them
// pending forever, so every wait polls the communicator's async error and a deadline and
// aborts the communicator instead of hanging (DESIGN invariant 5).
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>
#include <torch/torch.h>

#include <chrono>
#include <optional>
#include <thread>

#include "loom/comm/communicator.hpp"
#include "loom/comm/world.hpp"
#include "loom/core/error.hpp"

namespace loom {

namespace {

#define LOOM_NCCL_CHECK(call)                                                                     \
  do {                                                                                            \
    const ncclResult_t loom_nccl_rc_ = (call);                                                    \
    LOOM_CHECK(loom_nccl_rc_ == ncclSuccess, #call << ": " << ncclGetErrorString(loom_nccl_rc_)); \
  } while (false)

#define LOOM_CUDA_CHECK(call)                                                                     \
  do {                                                                                            \
    const cudaError_t loom_cuda_rc_ = (call);                                                     \
    LOOM_CHECK(loom_cuda_rc_ == cudaSuccess, #call << ": " << cudaGetErrorString(loom_cuda_rc_)); \
  } while (false)

ncclDataType_t ncclType(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return ncclFloat32;
    case at::kHalf:
      return ncclFloat16;
    case at::kBFloat16:
      return ncclBfloat16;
    case at::kDouble:
      return ncclFloat64;
    case at::kInt:
      return ncclInt32;
    case at::kLong:
      return ncclInt64;
    case at::kByte:
      return ncclUint8;
    case at::kChar:
      return ncclInt8;
    default:
      break;
  }
  LOOM_CHECK(false, "no NCCL datatype for " << c10::toString(t));
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const World& world, int device_index, double timeout_seconds)
      : rank_(world.rank()), size_(world.size()), device_(device_index), timeout_(timeout_seconds) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    ncclUniqueId id;
    if (rank_ == 0) LOOM_NCCL_CHECK(ncclGetUniqueId(&id));
    MPI_Comm mpi = *static_cast<MPI_Comm*>(world.nativeComm());
    MPI_Request request = MPI_REQUEST_NULL;
    LOOM_CHECK(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, mpi, &request) == MPI_SUCCESS,
               "MPI_Ibcast of the NCCL id failed");
    world.waitFor(&request, 1, "MPI_Bcast of the NCCL id");
    // Non-blocking init, so that a rank that never arrives is caught by the deadline too.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    try {
      complete(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config), "ncclCommInitRankConfig");
    } catch (...) {
      // No destructor runs for a half-built object: abort the communicator here.
      if (comm_ != nullptr && !aborted_) ncclCommAbort(comm_);
      comm_ = nullptr;
      throw;
    }
  }

  ~NcclCommunicator() override {
    if (comm_ != nullptr) {
      if (aborted_) {
        ncclCommAbort(comm_);
      } else {
        ncclCommDestroy(comm_);
      }
    }
  }

  void allReduceSum(at::Tensor& tensor) override {
    checkTensor(tensor);
    auto stream = currentStream();
    complete(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                           ncclType(tensor.scalar_type()), ncclSum, comm_, stream),
             "ncclAllReduce");
  }

  /// On the communication stream, after the work queued so far on the current stream (an
  /// event orders them): the sum runs while the current stream goes on with backward.
  void startAllReduceSum(at::Tensor& tensor) override {
    checkTensor(tensor);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    if (!comm_stream_) {
      comm_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/true,
                                                  static_cast<c10::DeviceIndex>(device_));
    }
    const cudaStream_t comm_stream = comm_stream_->stream();
    streamWaits(comm_stream, currentStream());
    // The caching allocator must not hand this memory out again before the sum is done.
    c10::cuda::CUDACachingAllocator::recordStream(tensor.storage().data_ptr(), *comm_stream_);
    complete(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                           ncclType(tensor.scalar_type()), ncclSum, comm_, comm_stream),
             "ncclAllReduce");
    started_ = true;
  }

  void waitStarted() override {
    if (!started_) return;
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    synchronize(comm_stream_->stream());  // watches the deadline and async errors
    streamWaits(currentStream(), comm_stream_->stream());
    started_ = false;
  }

  bool canStartFromBackward(const c10::Device& device) const override { return device.is_cuda(); }

  void broadcast(at::Tensor& tensor, int root) override {
    checkTensor(tensor);
    complete(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), tensor.numel(),
                           ncclType(tensor.scalar_type()), root, comm_, currentStream()),
             "ncclBroadcast");
    // Set-up values the host reads next: wait here, under the deadline, rather than in an
    // unbounded copy to the host later.
    synchronize(currentStream());
  }

  at::Tensor allGather(const at::Tensor& tensor) override {
    checkTensor(tensor);
    std::vector<int64_t> shape = {size_};
    for (auto d : tensor.sizes()) shape.push_back(d);
    at::Tensor out = at::empty(shape, tensor.options());  // [world, *shape]
    complete(ncclAllGather(tensor.data_ptr(), out.data_ptr(), tensor.numel(),
                           ncclType(tensor.scalar_type()), comm_, currentStream()),
             "ncclAllGather");
    // Small values (the per-step losses, counts and timings) that the host reads next: the
    // one wait of a step happens here, under the deadline, not in an unbounded copy later.
    synchronize(currentStream());
    return out;
  }

  void barrier() override {
    at::Tensor one =
        at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    allReduceSum(one);
    synchronize(currentStream());
  }

  Backend backend() const override { return Backend::kNccl; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

 private:
  cudaStream_t currentStream() const {
    return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).stream();
  }

  void checkTensor(const at::Tensor& t) const {
    LOOM_CHECK(t.is_cuda() && t.get_device() == device_,
               "NCCL rank " << rank_ << " got a tensor on " << t.device()
                            << ", expected cuda:" << device_);
    LOOM_CHECK(t.is_contiguous(), "NCCL collectives need contiguous tensors");
    LOOM_CHECK(!aborted_, "the NCCL communicator was aborted after an earlier failure");
  }

  [[noreturn]] void fail(const std::string& why) {
    aborted_ = true;
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    LOOM_CHECK(false, "NCCL rank " << rank_ << "/" << size_ << ": " << why);
  }

  void checkAsync() {
    ncclResult_t async = ncclSuccess;
    LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      fail(std::string("asynchronous NCCL error: ") + ncclGetErrorString(async));
    }
  }

  /// A non-blocking communicator answers ncclInProgress until a call has been taken up
  /// (init, or a collective being enqueued): poll until it is, with the deadline, before
  /// anything else touches the communicator.
  void complete(ncclResult_t rc, const char* what) {
    if (rc != ncclSuccess && rc != ncclInProgress) {
      fail(std::string(what) + ": " + ncclGetErrorString(rc));
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    ncclResult_t state = rc;
    while (state == ncclInProgress) {
      if (std::chrono::steady_clock::now() > deadline) {
        fail(std::string(what) + " did not complete within " + std::to_string(timeout_) +
             " s (is a rank missing?)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      LOOM_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    }
    if (state != ncclSuccess) fail(std::string(what) + ": " + ncclGetErrorString(state));
  }

 public:
  /// Waits on the host for the work queued on `stream`, watching for errors and the deadline.
  void synchronize(cudaStream_t stream) {
    cudaEvent_t done;
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    LOOM_CUDA_CHECK(cudaEventRecord(done, stream));
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        cudaEventDestroy(done);
        LOOM_CUDA_CHECK(q);
      }
      checkAsync();
      if (std::chrono::steady_clock::now() > deadline) {
        cudaEventDestroy(done);
        fail("a collective did not finish within " + std::to_string(timeout_) +
             " s (cluster.collective_timeout_s): a peer rank is stalled or dead");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    cudaEventDestroy(done);
  }

  /// Work queued on `waiter` from now on runs after the work queued so far on `waited`.
  static void streamWaits(cudaStream_t waiter, cudaStream_t waited) {
    if (waiter == waited) return;
    cudaEvent_t event;
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    LOOM_CUDA_CHECK(cudaEventRecord(event, waited));
    LOOM_CUDA_CHECK(cudaStreamWaitEvent(waiter, event, 0));
    LOOM_CUDA_CHECK(cudaEventDestroy(event));  // released once the wait is satisfied
  }

 private:
  ncclComm_t comm_ = nullptr;
  std::optional<c10::cuda::CUDAStream> comm_stream_;
  bool started_ = false;
  int rank_;
  int size_;
  int device_;
  double timeout_;
  bool aborted_ = false;
};

}  // namespace

std::unique_ptr<Communicator> makeNcclCommunicator(const World& world, int device_index,
                                                   double timeout_seconds) {
  return std::make_unique<NcclCommunicator>(world, device_index, timeout_seconds);
}

}  // namespace loom
