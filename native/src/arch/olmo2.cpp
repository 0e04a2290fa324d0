// OLMo 2: no norm before attention or the MLP; each branch's output is
// RMS-normed before its residual (h + norm(attn(h)), h + norm(mlp(h))). q and
// k are RMS-normed over the whole projection width (all heads at once) before
// RoPE; grouped-query heads, a gated SiLU MLP, no biases, an untied head.
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void olmo2_block(BlockPass& p, const BlockParams& w) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, 1.0f / sqrtf((float)HD), p.layer().window};

    p.linear(&Acts::q, &Acts::h, w.q, C, qd);
    p.linear(&Acts::k, &Acts::h, w.k, C, kvd);
    p.linear(&Acts::v, &Acts::h, w.v, C, kvd);
    p.norm(&Acts::q, &Acts::q, w.q_norm, qd);
    p.norm(&Acts::k, &Acts::k, w.k_norm, kvd);
    rotary_attention(p, s);
    p.linear(&Acts::tmp, &Acts::att, w.o, qd, C);
    p.norm(&Acts::tmp, &Acts::tmp, w.post_attn_norm, C);
    p.residual(&Acts::tmp);

    gated_mlp(p, w, &Acts::tmp, &Acts::h);
    p.norm(&Acts::tmp, &Acts::tmp, w.post_mlp_norm, C);
    p.residual(&Acts::tmp);
}

}  // namespace

const Family& olmo2_family() {
    static const Family f{"olmo2",
                          true,
                          olmo2_block,
                          {
                              {&BlockParams::q, Need::Yes, Need::Maybe, Dim::QD, Dim::C},
                              {&BlockParams::k, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::v, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::q_norm, Need::Yes, Need::No, Dim::QD, Dim::None},
                              {&BlockParams::k_norm, Need::Yes, Need::No, Dim::KVD, Dim::None},
                              {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::QD},
                              {&BlockParams::post_attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                              {&BlockParams::gate, Need::Yes, Need::No, Dim::I, Dim::C},
                              {&BlockParams::up, Need::Yes, Need::No, Dim::I, Dim::C},
                              {&BlockParams::down, Need::Yes, Need::No, Dim::C, Dim::I},
                              {&BlockParams::post_mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                          }};
    return f;
}

}  // namespace spw
