#include "sampling.h"

#include <algorithm>
#include <cmath>

#include "spillway/noise.h"

namespace spw {

double sample_uniform(uint64_t seed, uint32_t step, uint32_t seq) {
    Philox4 r = philox4x32_10(step, seq, 0x53414D50u /* "SAMP" */, 0u, (uint32_t)seed, (uint32_t)(seed >> 32));
    uint64_t bits = ((uint64_t)(r.x[0] >> 5) << 26) | (uint64_t)(r.x[1] >> 6);
    return (double)bits * 0x1p-53;
}

namespace {

int32_t arg_max(const float* l, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[best]) best = i;
    return best;
}

// Tokens whose weights are below this fraction of the total are left out of the top-p sort; their
// mass (at most V times it) cannot reach the nucleus unless p is within that of 1, and then
// every kept token is sorted instead.
constexpr double kNucleusFloor = 1e-12;

}  // namespace

int32_t choose_token(float* l, int V, const std::vector<int32_t>& context, const SamplingParams& p, uint32_t step,
                     uint32_t seq) {
    if (p.repetition_penalty != 1.f) {
        std::vector<int32_t> seen(context);
        std::sort(seen.begin(), seen.end());
        seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
        for (int32_t id : seen) {
            if (id < 0 || id >= V) continue;
            float x = l[id];
            l[id] = x < 0.f ? x * p.repetition_penalty : x / p.repetition_penalty;
        }
    }
    if (p.temperature <= 0.f) return arg_max(l, V);
    for (int i = 0; i < V; i++) l[i] = l[i] / p.temperature;

    // Top-k: the k-th largest logit is the bar (ties with it stay).
    std::vector<int32_t> kept;
    if (p.top_k > 0 && p.top_k < V) {
        std::vector<float> vals(l, l + V);
        std::nth_element(vals.begin(), vals.begin() + (p.top_k - 1), vals.end(), std::greater<float>());
        const float bar = vals[(size_t)p.top_k - 1];
        for (int i = 0; i < V; i++)
            if (l[i] >= bar) kept.push_back(i);
    } else {
        kept.reserve((size_t)V);
        for (int i = 0; i < V; i++)
            if (l[i] > -INFINITY) kept.push_back(i);
    }
    if (kept.empty()) return arg_max(l, V);

    float mx = -INFINITY;
    for (int32_t i : kept) mx = std::max(mx, l[i]);
    std::vector<double> w(kept.size());
    double total = 0;
    for (size_t j = 0; j < kept.size(); j++) total += (w[j] = std::exp((double)l[kept[j]] - (double)mx));

    // Top-p: the most likely tokens (by logit, lower id first on ties) while the mass before them is below p.
    if (p.top_p < 1.f) {
        const double target = (double)p.top_p * total;
        std::vector<size_t> order;
        double above = 0;
        for (size_t j = 0; j < kept.size(); j++)
            if (w[j] >= kNucleusFloor * total) {
                order.push_back(j);
                above += w[j];
            }
        if (above < target) {
            order.resize(kept.size());
            for (size_t j = 0; j < kept.size(); j++) order[j] = j;
        }
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
            return l[kept[a]] != l[kept[b]] ? l[kept[a]] > l[kept[b]] : kept[a] < kept[b];
        });
        std::vector<int32_t> nucleus;
        std::vector<double> nw;
        double acc = 0;
        for (size_t j : order) {
            if (acc >= target && !nucleus.empty()) break;
            nucleus.push_back(kept[j]);
            nw.push_back(w[j]);
            acc += w[j];
        }
        // Back in id order, the order of the draw.
        std::vector<size_t> by_id(nucleus.size());
        for (size_t j = 0; j < by_id.size(); j++) by_id[j] = j;
        std::sort(by_id.begin(), by_id.end(), [&](size_t a, size_t b) { return nucleus[a] < nucleus[b]; });
        kept.clear();
        w.clear();
        for (size_t j : by_id) {
            kept.push_back(nucleus[j]);
            w.push_back(nw[j]);
        }
        total = acc;
    }

    // One draw: the first token, in id order, whose cumulative weight passes u * total.
    const double target = sample_uniform(p.seed, step, seq) * total;
    double acc = 0;
    for (size_t j = 0; j < kept.size(); j++) {
        acc += w[j];
        if (acc > target) return kept[j];
    }
    return kept.back();
}

}  // namespace spw
