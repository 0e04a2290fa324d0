// The state of one decode (Engine::decode_begin .. decode_end): every block's
// KV cache on the device, a fixed number of rows per sequence, and each
// sequence's tokens so far. docs/ENGINE-SPEC.md, "Decoding", is the contract.
#pragma once

#include <cstdint>
#include <vector>

#include "arch/block.h"
#include "spillway/backend.h"
#include "spillway/engine.h"

namespace spw {

struct Decoding {
    Decoding(Backend& be, int layers, int nseq, int rows_per_seq, int kv_width);
    ~Decoding();
    Decoding(const Decoding&) = delete;
    Decoding& operator=(const Decoding&) = delete;

    Backend& be;
    int rows_per_seq;         // cache rows per sequence: its longest prompt + max_new_tokens, within the model's limit
    KvCache kv;               // per block, [nseq * rows_per_seq, kv_width]
    DecodeRequest request;    // prompts, limits, sampling and stop ids
    std::vector<std::vector<int32_t>> tokens;  // per sequence: prompt then generated tokens
    std::vector<int32_t> cached;               // per sequence: tokens whose keys and values are in the cache
    std::vector<int32_t> finish;               // per sequence: FinishReason
    int step = 0;                              // tokens chosen per sequence so far (the draws' counter)
};

}  // namespace spw
