// Label gpu: runs where a CUDA device is visible, skips with the reason elsewhere.
#include <gtest/gtest.h>

#include "loom/comm/device.hpp"
#include "loom/comm/rank_settings.hpp"
#include "support/gpu_test_support.hpp"

namespace loom {
namespace {

TEST(DeviceGpu, ListsVisibleDevicesAndResolvesTheFirst) {
  if (auto why = testing::cudaUnavailable(); !why.empty()) GTEST_SKIP() << why;
  const auto gpus = listCudaDevices();
  for (const auto& g : gpus) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GE(g.major, 3);
    EXPECT_GT(g.total_memory, 0);
    std::printf("cuda:%d %s %s %.1f GiB\n", g.index, g.name.c_str(), g.capability().c_str(),
                g.total_memory / double(1LL << 30));
  }
  const Config c = parseConfig(
      "model: {path: m, dtype: bf16}\ndata: {train: t.h5}\ntrain: {global_batch_size: 8, "
      "max_steps: 1}\n",
      "c.yaml");
  const auto s = resolveRankSettings(c, 0, 0, "host", gpus);
  EXPECT_EQ(s.device, "cuda:0");
  EXPECT_EQ(s.gpu_name, gpus[0].name);
  EXPECT_EQ(s.dtype, gpus[0].hasBf16() ? DType::kBF16 : DType::kFP16);
}

}  // namespace
}  // namespace loom
