// What a pass over the units reads, derived once per batch (training, scoring) or
// per decoding step and shared by every stream and unit: the batch's index arrays
// (pointers into the engine's int arena) and what the head computes.
#pragma once

#include <cstdint>

#include "spillway/engine.h"

namespace spw {

struct Engine::Prepared {
    int N = 0, M = 0, nseq = 0;
    int longest = 0;  // tokens of the longest sequence (decoding: its cached length plus the new tokens)
    const int32_t *ids = nullptr, *posidx = nullptr, *positions = nullptr, *seq_start = nullptr, *rows = nullptr,
                  *targets = nullptr;
    const KvCache* kv = nullptr;  // decoding: the cache the blocks fill and read
    bool logits = false;          // the head's output: the logits of the M rows, not the targets' log-probs
};

}  // namespace spw
