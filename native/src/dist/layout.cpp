#include "dist/layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace spw::dist {

StepLayout StepLayout::make(int ranks, int groups) {
    if (ranks < 1) throw std::runtime_error("a run needs at least one rank");
    if (groups < 1 || ranks % groups != 0)
        throw std::runtime_error(std::to_string(ranks) + " ranks cannot form " + std::to_string(groups) +
                                 " perturbation groups of equal size");
    return StepLayout{ranks, groups, ranks / groups};
}

std::pair<int, int> StepLayout::perturbations(int g, int q) const {
    int per = q / groups;
    return {g * per, (g + 1) * per};
}

std::pair<int, int> StepLayout::examples(int d, int B) const {
    return {(int)((long long)d * B / shards), (int)((long long)(d + 1) * B / shards)};
}

void StepLayout::check(int q, int B) const {
    if (q % groups != 0)
        throw std::runtime_error("perturbation parallelism shares the q perturbations of a step among " + std::to_string(groups) +
                                 " groups of ranks: q (" + std::to_string(q) + ") must be a multiple of " + std::to_string(groups));
    if (B < shards)
        throw std::runtime_error("the global batch of " + std::to_string(B) + " examples is smaller than the " +
                                 std::to_string(shards) + " data-parallel shards it is split into");
}

size_t StepLayout::contribution(int q, int B) const {
    size_t per = (size_t)(q / groups), most = (size_t)((B + shards - 1) / shards);
    return kRankTimesDoubles + 2 * per * most;
}

void StepLayout::pack(int r, int q, int B, const RankTimes& t, const std::vector<std::vector<double>>& plus,
                      const std::vector<std::vector<double>>& minus, double* out) const {
    auto [e0, e1] = examples(shard(r), B);
    size_t per = (size_t)(q / groups), most = (size_t)((B + shards - 1) / shards), n = (size_t)(e1 - e0);
    if (plus.size() != per || minus.size() != per)
        throw std::runtime_error("rank " + std::to_string(r) + " computed " + std::to_string(plus.size()) + " perturbations; its share is " +
                                 std::to_string(per));
    const double head[kRankTimesDoubles] = {t.forward_ms, t.io_ms, t.noise_ms, t.head_ms, t.compute_ms, t.examples, t.tokens};
    std::copy(head, head + kRankTimesDoubles, out);
    double* p = out + kRankTimesDoubles;
    double* m = p + per * most;
    std::fill(p, p + 2 * per * most, 0.0);
    for (size_t j = 0; j < per; j++) {
        if (plus[j].size() != n || minus[j].size() != n)
            throw std::runtime_error("rank " + std::to_string(r) + " has losses for " + std::to_string(plus[j].size()) +
                                     " examples; its shard holds " + std::to_string(n));
        std::copy(plus[j].begin(), plus[j].end(), p + j * most);
        std::copy(minus[j].begin(), minus[j].end(), m + j * most);
    }
}

void StepLayout::assemble(int q, int B, const double* all, std::vector<std::vector<double>>& plus,
                          std::vector<std::vector<double>>& minus, std::vector<RankTimes>& times) const {
    size_t per = (size_t)(q / groups), most = (size_t)((B + shards - 1) / shards), stride = contribution(q, B);
    plus.assign((size_t)q, std::vector<double>((size_t)B));
    minus.assign((size_t)q, std::vector<double>((size_t)B));
    times.assign((size_t)ranks, RankTimes{});
    for (int r = 0; r < ranks; r++) {
        const double* c = all + (size_t)r * stride;
        times[(size_t)r] = RankTimes{c[0], c[1], c[2], c[3], c[4], c[5], c[6]};
        auto [j0, j1] = perturbations(group(r), q);
        auto [e0, e1] = examples(shard(r), B);
        const double* p = c + kRankTimesDoubles;
        const double* m = p + per * most;
        for (int j = j0; j < j1; j++)
            for (int e = e0; e < e1; e++) {
                plus[(size_t)j][(size_t)e] = p[(size_t)(j - j0) * most + (size_t)(e - e0)];
                minus[(size_t)j][(size_t)e] = m[(size_t)(j - j0) * most + (size_t)(e - e0)];
            }
    }
}

}  // namespace spw::dist
