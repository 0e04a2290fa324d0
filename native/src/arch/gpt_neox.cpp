// GPT-NeoX (Pythia): pre-LayerNorm blocks with biases everywhere, one fused
// query_key_value projection laid out per head ([heads, 3, head_dim]: each
// head's q, k and v side by side), rotary positions on the first rotary_dim
// dims of each head only, a plain GELU MLP, and a parallel residual (both
// branches read the block's input) unless use_parallel_residual is false.
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void gpt_neox_block(BlockPass& p, const BlockParams& w) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, HD = c.head_dim, NH = c.heads;
    const AttentionShape s{NH, NH, HD, C, C, C, 1.0f / sqrtf((float)HD), p.layer().window};

    p.norm(&Acts::a, w.attn_norm);
    // The fused [N, 3C] output spans the contiguous q, att and k buffers; its per-head thirds are
    // split into m1 (q), m2 (k) and v, and attention writes att once they are read.
    p.linear(&Acts::q, &Acts::a, w.qkv, C, 3 * C);
    p.each([&](Acts& x, float*) {
        const int rows = p.tokens() * NH;
        p.copy_rows(x.m1, HD, x.q, 3 * HD, rows, HD);
        p.copy_rows(x.m2, HD, x.q + HD, 3 * HD, rows, HD);
        p.copy_rows(x.v, HD, x.q + 2 * HD, 3 * HD, rows, HD);
        p.rope(x.m1, C, NH);
        p.rope(x.m2, C, NH);
        p.attention(x.att, x.m1, x.m2, x.v, s);
    });
    p.linear(&Acts::tmp, &Acts::att, w.o, C, C);

    if (c.parallel_residual) {
        // h + attn(ln1 h) + mlp(ln2 h), summed as transformers does: (mlp + attn) + h.
        p.norm(&Acts::a, w.mlp_norm);
        plain_mlp(p, w, &Acts::a, &Acts::a);
        p.add(&Acts::a, &Acts::tmp);
        p.residual(&Acts::a);
    } else {
        p.residual(&Acts::tmp);
        p.norm(&Acts::a, w.mlp_norm);
        plain_mlp(p, w, &Acts::tmp, &Acts::a);
        p.residual(&Acts::tmp);
    }
}

}  // namespace

const Family& gpt_neox_family() {
    static const Family f{"gpt_neox",
                          true,
                          gpt_neox_block,
                          {
                              {&BlockParams::attn_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::qkv, Need::Yes, Need::Maybe, Dim::C3, Dim::C},
                              {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::C},
                              {&BlockParams::mlp_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::fc1, Need::Yes, Need::Yes, Dim::I, Dim::C},
                              {&BlockParams::fc2, Need::Yes, Need::Yes, Dim::C, Dim::I},
                          }};
    return f;
}

}  // namespace spw
