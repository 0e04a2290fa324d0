// Llama, Mistral and Qwen2: pre-RMSNorm blocks with rotary positions on q and
// k (grouped-query heads, an optional sliding window), and a gated SiLU MLP
// (down(silu(gate) * up)); biases only where the config asks (Qwen2's q/k/v,
// Llama's attention_bias and mlp_bias).
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void llama_block(BlockPass& p, const BlockParams& w) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, I = c.intermediate, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, 1.0f / sqrtf((float)HD), p.layer().window};

    p.norm(&Acts::a, w.attn_norm);
    p.linear(&Acts::q, &Acts::a, w.q, C, qd);
    p.linear(&Acts::k, &Acts::a, w.k, C, kvd);
    p.linear(&Acts::v, &Acts::a, w.v, C, kvd);
    p.each([&](Acts& x, float*) {
        p.rope(x.q, qd, c.heads);
        p.rope(x.k, kvd, c.kv_heads);
        p.attention(x.att, x.q, x.k, x.v, s);
    });
    p.linear(&Acts::tmp, &Acts::att, w.o, qd, C);
    p.residual(&Acts::tmp);

    p.norm(&Acts::a, w.mlp_norm);
    p.linear(&Acts::m1, &Acts::a, w.gate, C, I);
    p.linear(&Acts::m2, &Acts::a, w.up, C, I);
    p.each([&](Acts& x, float*) { p.gated_silu(x.m1, x.m2, I); });
    p.linear(&Acts::tmp, &Acts::m1, w.down, I, C);
    p.residual(&Acts::tmp);
}

}  // namespace

const Family& llama_family() {
    static const Family f{"llama",
                          true,
                          llama_block,
                          {
                              {&BlockParams::attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                              {&BlockParams::q, Need::Yes, Need::Maybe, Dim::QD, Dim::C},
                              {&BlockParams::k, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::v, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::QD},
                              {&BlockParams::mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                              {&BlockParams::gate, Need::Yes, Need::Maybe, Dim::I, Dim::C},
                              {&BlockParams::up, Need::Yes, Need::Maybe, Dim::I, Dim::C},
                              {&BlockParams::down, Need::Yes, Need::Maybe, Dim::C, Dim::I},
                          }};
    return f;
}

}  // namespace spw
