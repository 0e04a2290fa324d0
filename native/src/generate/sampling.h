// Choosing a sequence's next token from its logits (docs/ENGINE-SPEC.md,
// "Decoding"): the repetition penalty, then the arg-max (greedy), or
// temperature, top-k and top-p and one draw from a counter-based uniform, so a
// seed reproduces every choice whatever else is decoded beside it.
#pragma once

#include <cstdint>
#include <vector>

#include "spillway/engine.h"

namespace spw {

// The uniform in [0, 1) of sequence `seq`'s draw at decoding step `step`: Philox4x32-10 keyed by
// the seed, counter (step, seq, "SAMP", 0), 53 bits of its first two words.
double sample_uniform(uint64_t seed, uint32_t step, uint32_t seq);

// The next token of a sequence: `logits` [V] (changed in place: penalised and scaled), `context`
// the sequence's tokens so far (the repetition penalty's), `step` and `seq` the draw's counter.
int32_t choose_token(float* logits, int V, const std::vector<int32_t>& context, const SamplingParams& p,
                     uint32_t step, uint32_t seq);

}  // namespace spw
