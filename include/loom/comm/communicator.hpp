#pragma once
// The collectives the trainer needs, on tensors, behind one interface: NCCL between CUDA
// ranks, MPI otherwise (CPU ranks, or mixed CPU/GPU jobs, staging GPU tensors through host
// memory). Every call is collective: every rank must make it, in the same order, with
// tensors of the same shape and dtype.

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "loom/config/config.hpp"

namespace loom {

class World;

class Communicator {
 public:
  virtual ~Communicator() = default;

  /// In place: `tensor` becomes the sum over ranks. Collective.
  virtual void allReduceSum(at::Tensor& tensor) = 0;
  /// Starts an in-place sum over ranks and returns, where the backend can, before it is
  /// done, so that communication overlaps the caller's compute. Ordered after the work
  /// already queued on the calling thread's current stream. Collective: every rank starts
  /// the same sums in the same order, and calls no other collective until waitStarted().
  /// `tensor` must stay alive and untouched until then. The default is allReduceSum.
  virtual void startAllReduceSum(at::Tensor& tensor) { allReduceSum(tensor); }
  /// Waits for every sum begun with startAllReduceSum: their results are then visible to
  /// the host and to work queued later on the current stream. Not collective by itself.
  virtual void waitStarted() {}
  /// Whether startAllReduceSum may be called from autograd's backward (a device thread on
  /// GPU) for tensors on `device`. MPI may only be called from the main thread.
  virtual bool canStartFromBackward(const c10::Device& device) const = 0;

  /// In place: every rank's `tensor` becomes root's. Collective.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  /// Returns [world_size, *tensor.shape]: every rank's tensor, by rank. For small values
  /// (losses, timings, token counts). Collective.
  virtual at::Tensor allGather(const at::Tensor& tensor) = 0;
  /// Waits for every rank (and for this rank's queued collectives to finish). Collective.
  virtual void barrier() = 0;

  virtual Backend backend() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
};

/// MPI collectives over the World's communicator. CPU tensors directly; CUDA tensors are
/// staged through host memory. fp16/bf16 sums are computed in fp32.
std::unique_ptr<Communicator> makeMpiCommunicator(const World& world);

/// NCCL over the CUDA device `device_index` (rank 0 creates the id, MPI broadcasts it).
/// Works on the current CUDA stream. Throws loom::Error in a build without CUDA.
/// `timeout_seconds`: a collective that does not finish in time (a dead peer) aborts the
/// communicator and throws instead of hanging.
std::unique_ptr<Communicator> makeNcclCommunicator(const World& world, int device_index,
                                                   double timeout_seconds = 600.0);

/// The factory the trainer uses: `backend` must be resolved (nccl or mpi, not auto).
std::unique_ptr<Communicator> makeCommunicator(Backend backend, const World& world,
                                               const std::string& device);

}  // namespace loom
