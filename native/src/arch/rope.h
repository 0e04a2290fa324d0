// Rotary position embeddings in one place: the inverse frequencies of a
// RopeConfig (spillway/model.h) and every scaling transformers defines
// (modeling_rope_utils.py: default, linear, dynamic NTK, yarn, longrope,
// llama3), with partial rotary (rotary_dim < head_dim) and the factor cos and
// sin are scaled by. Computed in the precision transformers uses: float32 for
// the tensors, double for the scalars. tests/native/rope.test.ts checks every
// scaling against transformers' ROPE_INIT_FUNCTIONS.
#pragma once

#include <vector>

#include "spillway/model.h"

namespace spw {

struct RopeTable {
    std::vector<float> inv_freq;  // rotary_dim / 2: pair i rotates by position * inv_freq[i]
    float attention_scale = 1.f;  // cos and sin are multiplied by it (yarn, longrope)
};

// Throws naming the field when `r` cannot give frequencies for heads of `head_dim`.
void rope_check(const RopeConfig& r, int head_dim);

// The table of a pass whose longest sequence has `seq_len` tokens.
RopeTable rope_table(const RopeConfig& r, int seq_len);

// Whether the table changes with the pass's length (dynamic NTK past max_positions,
// longrope past original_max_positions); otherwise one table serves every pass.
bool rope_depends_on_length(const RopeConfig& r);

// Whether the scaling defines positions past max_position_embeddings: dynamic NTK grows its base
// with the length. The others were trained up to it (yarn and longrope by construction) and stop there.
bool rope_extends_past_max(const RopeConfig& r);

// The name transformers gives the type ("llama3", "yarn", ...), for messages.
const char* rope_type_name(RopeType t);

}  // namespace spw
