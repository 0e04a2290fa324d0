// A rank's share of a ZO step (engine.h StepShare) over the ranks of comm: the perturbations
// of its group, and the exchange of its per-example losses, with its timings, with every rank.
#pragma once

#include <vector>

#include "dist/comm.h"
#include "dist/layout.h"
#include "spillway/engine.h"

namespace spw::dist {

struct SharedStep {
    StepShare share;
    // Filled by the exchange: every rank's timings of this step (per-rank telemetry).
    std::vector<RankTimes> ranks;
};

// `examples`, `tokens`: this rank's shard; global_examples: B of the whole step. Throws
// std::runtime_error when the layout cannot share this step (layout.check) or the shard is not
// the one the layout gives this rank.
void make_shared_step(SharedStep& out, Comm& comm, const StepLayout& layout, int q, int global_examples, int examples, int tokens,
                      double timeout_s);

}  // namespace spw::dist
