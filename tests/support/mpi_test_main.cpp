// main() of every test binary run under mpiexec: starts the World, lets only rank 0 print
// the GoogleTest report, and exits non-zero on every rank when a test failed on any rank.
#include <gtest/gtest.h>

#include <memory>

#include "loom/comm/world.hpp"
#include "support/mpi_test_main.hpp"

namespace loom::testing {
namespace {
World* g_world = nullptr;
}  // namespace

World& world() { return *g_world; }

}  // namespace loom::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = std::make_unique<loom::World>(&argc, &argv);
  loom::testing::g_world = world.get();
  if (world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  const bool any_failed = world->anyTrue(failed != 0);
  world.reset();
  return any_failed ? 1 : 0;
}
