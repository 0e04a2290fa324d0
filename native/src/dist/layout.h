// How the ranks of a run share a ZO step (ALGORITHMS.md §7, DistZO2). The ranks form
// `groups` perturbation groups of `shards` data-parallel ranks each (ranks = groups x
// shards): rank r is in group r / shards and computes that group's share of the q
// perturbations on shard r % shards of the global batch.
//   data parallel:          groups = 1      (every rank: all q perturbations, its shard)
//   perturbation parallel:  shards = 1      (every rank: q / ranks perturbations, whole batch)
//   2d:                     both above 1
// After the forwards every rank sends its per-example losses (2 x its perturbations x its
// examples, doubles) and a few timings; every rank then holds the losses of every
// perturbation on every example, in the order one process would have computed them, and
// applies the same update. Pure code: the transport is comm.h.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace spw::dist {

// What each rank reports of its step beside its losses (per-rank telemetry).
struct RankTimes {
    double forward_ms = 0, io_ms = 0, noise_ms = 0, head_ms = 0;
    double compute_ms = 0;  // from the start of its step to its arrival at the exchange
    double examples = 0;    // examples in its shard
    double tokens = 0;      // tokens in its shard
};
constexpr int kRankTimesDoubles = 7;

struct StepLayout {
    int ranks = 1, groups = 1, shards = 1;

    // Throws std::runtime_error unless groups divides ranks.
    static StepLayout make(int ranks, int groups);
    int group(int r) const { return r / shards; }
    int shard(int r) const { return r % shards; }
    // Perturbations [first, end) of the q computed by group g (q a multiple of groups).
    std::pair<int, int> perturbations(int g, int q) const;
    // Examples [first, end) of a global batch of B in shard d: contiguous, sizes differ by at most one.
    std::pair<int, int> examples(int d, int B) const;
    // Throws std::runtime_error naming the problem when q or B cannot be shared this way.
    void check(int q, int B) const;

    // Doubles each rank contributes to the exchange (the same for all).
    size_t contribution(int q, int B) const;
    // Rank r's contribution: times, then plus and minus losses, [its perturbation][its example].
    void pack(int r, int q, int B, const RankTimes& t, const std::vector<std::vector<double>>& plus,
              const std::vector<std::vector<double>>& minus, double* out) const;
    // Every rank's contribution (ranks x contribution()) -> plus/minus [q][B], times per rank.
    void assemble(int q, int B, const double* all, std::vector<std::vector<double>>& plus,
                  std::vector<std::vector<double>>& minus, std::vector<RankTimes>& times) const;
};

}  // namespace spw::dist
