#include "loom/train/step_profiler.hpp"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/test_support.hpp"

namespace loom {
namespace {

// Intervals chosen so every number in the table is known by hand (ns; wall 100):
// thread 1: A [0,100] holds B [10,40], which holds C [20,30]; D [50,60] is A's too.
//   self: A 100-30-10 = 60, B 30-10 = 20, C 10, D 10. Thread 2: A [0,50], self 50.
// device: k1 [0,30] and [20,50] overlap, k2 [70,80]: busy = 50 + 10 = 60 (60%).
std::vector<ProfiledEvent> handMadeEvents() {
  return {{"A", false, 1, 0, 100}, {"B", false, 1, 10, 40}, {"C", false, 1, 20, 30},
          {"D", false, 1, 50, 60}, {"A", false, 2, 0, 50},  {"k1", true, 0, 0, 30},
          {"k1", true, 0, 20, 50}, {"k2", true, 0, 70, 80}};
}

TEST(StepProfiler, TableGivesSelfTimesAndTheDevicesBusyUnion) {
  const std::string t = profileTable(handMadeEvents(), 100, 10);
  EXPECT_NE(t.find("device: busy 0.000 s = 60.0% of the traced time"), std::string::npos) << t;
  EXPECT_NE(t.find("3 kernels, copies and sets"), std::string::npos) << t;
  // k1: 60 ns in 2 calls (0.000060 ms, 60.0%, 0.0 us avg); listed before k2.
  EXPECT_NE(t.find("0.000   60.0%        2       0.0  k1\n"), std::string::npos) << t;
  EXPECT_LT(t.find("  k1\n"), t.find("  k2\n")) << t;
  // Host self times: A 60 + 50 over 2 calls (110%: two threads), then B 20, C 10, D 10.
  EXPECT_NE(t.find("0.000  110.0%        2  A\n"), std::string::npos) << t;
  EXPECT_NE(t.find("0.000   20.0%        1  B\n"), std::string::npos) << t;
  EXPECT_NE(t.find("0.000   10.0%        1  C\n"), std::string::npos) << t;
  // top = 2 keeps the two largest of each table.
  const std::string two = profileTable(handMadeEvents(), 100, 2);
  EXPECT_EQ(two.find("  C\n"), std::string::npos) << two;
  EXPECT_NE(two.find("  B\n"), std::string::npos) << two;
}

TEST(StepProfiler, TracesOnlyTheWindowsStepsAndWritesTraceAndTable) {
  testing::TempDir dir;
  const auto out = dir.path() / "profile";
  StepProfiler profiler(out, 3, c10::Device(c10::kCPU), 2, 2);
  auto w = torch::randn({64, 64}, torch::requires_grad());
  auto x = torch::randn({32, 64});
  for (int64_t step = 1; step <= 4; ++step) {
    profiler.beforeStep(step);
    if (step == 1) (void)torch::cumsum(x, 0);   // before the window: not in the trace
    if (step == 4) (void)torch::cumprod(x, 0);  // after it: not either
    auto loss = torch::mm(x, w).tanh().sum();
    loss.backward();
    const auto table = profiler.afterStep(step);
    EXPECT_EQ(table.empty(), step != 3) << "step " << step;
  }
  std::ifstream trace_file(out / "rank-3.trace.json");
  ASSERT_TRUE(trace_file.good());
  const auto trace = nlohmann::json::parse(trace_file);
  int mm = 0, cumsum = 0, cumprod = 0;
  for (const auto& e : trace["traceEvents"]) {
    const std::string name = e.value("name", "");
    mm += name == "aten::mm";
    cumsum += name == "aten::cumsum";
    cumprod += name == "aten::cumprod";
  }
  // Two steps of x @ w forward, and in backward the gradient of w (x^T @ grad): 4 mm at least.
  EXPECT_GE(mm, 4);
  EXPECT_EQ(cumsum, 0);
  EXPECT_EQ(cumprod, 0);
  std::stringstream table;
  table << std::ifstream(out / "rank-3.txt").rdbuf();
  EXPECT_NE(table.str().find("profile of steps 2-3 on rank 3 (cpu)"), std::string::npos)
      << table.str();
  EXPECT_NE(table.str().find("aten::mm"), std::string::npos) << table.str();
  EXPECT_EQ(table.str().find("device: busy"), std::string::npos) << table.str();
  // Nothing but the two files: no temporary left behind.
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(out)) files += f.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST(StepProfiler, AProfileThatCannotBeWrittenThrowsAndStopsTracing) {
  testing::TempDir dir;
  const auto blocked = dir.write("profile", "a file where the folder would go");
  StepProfiler profiler(blocked, 0, c10::Device(c10::kCPU), 1, 1);
  profiler.beforeStep(1);
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
  EXPECT_ANY_THROW(profiler.afterStep(1));
  // Tracing stopped: a second window can start and write.
  StepProfiler next(dir.path() / "again", 0, c10::Device(c10::kCPU), 1, 1);
  next.beforeStep(1);
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
  EXPECT_FALSE(next.afterStep(1).empty());
}

TEST(StepProfiler, NoStepsMeansNoProfiler) {
  testing::TempDir dir;
  StepProfiler profiler(dir.path() / "profile", 0, c10::Device(c10::kCPU), 1, 0);
  profiler.beforeStep(1);
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
  EXPECT_TRUE(profiler.afterStep(1).empty());
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "profile"));
}

}  // namespace
}  // namespace loom
