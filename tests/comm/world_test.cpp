// Runs under mpiexec -n N (see CMakeLists): expectations are computed from rank and size.
#include "loom/comm/world.hpp"
#include "support/mpi_test_main.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>

namespace loom {
namespace {

TEST(World, RanksAreDistinctAndCoverTheJob) {
  const World& w = testing::world();
  EXPECT_GE(w.size(), 2);
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), w.size());
  const auto ranks = w.allGather(std::to_string(w.rank()));
  ASSERT_EQ(static_cast<int>(ranks.size()), w.size());
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(ranks[r], std::to_string(r));
}

TEST(World, LocalRanksNumberTheRanksOfEachHost) {
  const World& w = testing::world();
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
  const World& w = testing::world();
  const auto all = w.allGather(std::string(static_cast<size_t>(w.rank() * 3), 'x'));
  for (int r = 0; r < w.size(); ++r) EXPECT_EQ(all[r].size(), static_cast<size_t>(r * 3));
}

TEST(World, AnyTrueIsAnOr) {
  const World& w = testing::world();
  EXPECT_FALSE(w.anyTrue(false));
  EXPECT_TRUE(w.anyTrue(w.rank() == w.size() - 1));
  w.barrier();
}

}  // namespace
}  // namespace loom
