// Runs under mpiexec -n N (see CMakeLists): expectations are computed from rank and size.
#include "loom/comm/world.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>

namespace loom {
namespace {

World* g_world = nullptr;

TEST(World, RanksAreDistinctAndCoverTheJob) {
  ASSERT_NE(g_world, nullptr);
  const World& w = *g_world;
  EXPECT_GE(w.size(), 2);
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), w.size());
  const auto ranks = w.allGather(std::to_string(w.rank()));
  ASSERT_EQ(static_cast<int>(ranks.size()), w.size());
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(ranks[r], std::to_string(r));
}

TEST(World, LocalRanksNumberTheRanksOfEachHost) {
  const World& w = *g_world;
  const auto entries = w.allGather(w.host() + "|" + std::to_string(w.localRank()) + "|" +
                                   std::to_string(w.localSize()));
  std::set<std::string> seen;
  for (const auto& e : entries) EXPECT_TRUE(seen.insert(e).second) << "duplicate " << e;
  // Everything runs on one machine in the test suite: local rank == rank.
  EXPECT_EQ(w.localRank(), w.rank());
  EXPECT_EQ(w.localSize(), w.size());
  EXPECT_FALSE(w.host().empty());
}

TEST(World, AllGatherHandlesUnequalLengths) {
  const World& w = *g_world;
  const auto all = w.allGather(std::string(static_cast<size_t>(w.rank() * 3), 'x'));
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(all[r].size(), static_cast<size_t>(r * 3));
}

TEST(World, AnyTrueIsAnOr) {
  const World& w = *g_world;
  EXPECT_FALSE(w.anyTrue(false));
  EXPECT_TRUE(w.anyTrue(w.rank() == w.size() - 1));
  w.barrier();
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = std::make_unique<loom::World>(&argc, &argv);
  loom::g_world = world.get();
  // Only rank 0 prints the report; every rank's result decides the exit code.
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  const bool any_failed = world->anyTrue(failed != 0);
  world.reset();
  return any_failed ? 1 : 0;
}
