#pragma once
// For test binaries that run whole under mpiexec (loom_add_test ... MPI_RANKS n): the
// shared main (mpi_test_main.cpp) starts the World before the tests and hands it out here.

namespace loom {
class World;
namespace testing {

/// The process's World, valid while tests run.
World& world();

}  // namespace testing
}  // namespace loom
