#pragma once
// The training job: one call per rank, collective. Everything a step does is in the .cpp;
// the shape of a step, for one rank:
//   planner says which samples this rank takes (its weighted share of the global batch) ->
//   the dataset reads only those -> micro-batches (packed rows) run forward/backward with
//   summed losses -> gradients all-reduced in fp32 buckets and divided by the global number
//   of loss tokens -> clip -> AdamW -> metrics -> the balancer may re-weight the ranks.

namespace loom {

class World;
struct Config;

/// Collective: every rank calls it with the same config. Returns the process exit code
/// (0 done or stopped cleanly by SIGTERM/SIGUSR1 after a checkpoint). Throws on failure;
/// the caller ends the whole job.
int runTraining(World& world, const Config& config);

}  // namespace loom
