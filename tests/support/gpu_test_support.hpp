#pragma once
// For tests labelled gpu: why this machine cannot run them (empty when it can), and the
// one-process World they build communicators on. Header-only: gpu tests link loom_comm.
//   if (auto why = loom::testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;

#include <torch/cuda.h>

#include <string>

#include "loom/comm/device.hpp"
#include "loom/comm/world.hpp"

namespace loom::testing {

inline std::string cudaUnavailable() {
#if !LOOM_WITH_CUDA
  return "built without CUDA (LOOM_WITH_CUDA=OFF)";
#else
  if (listCudaDevices().empty() || !torch::cuda::is_available()) {
    return "no CUDA device visible on this machine";
  }
  return "";
#endif
}

/// A singleton World (no mpirun), made on first use.
inline World& singletonWorld() {
  static int argc = 0;
  static char** argv = nullptr;
  static World world(&argc, &argv);
  return world;
}

}  // namespace loom::testing
