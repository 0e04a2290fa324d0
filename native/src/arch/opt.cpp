// OPT and GPT-2: pre-LayerNorm blocks with learned positions, attention from
// separate q/k/v projections (OPT) or one fused [C, 3C] Conv1D (GPT-2), and a
// plain MLP (fc1, the config's activation, fc2); linears carry biases (OPT's
// enable_bias may drop them). OPT-350m's blocks are post-LayerNorm
// (do_layer_norm_before false): h = norm(h + f(h)).
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void opt_block(BlockPass& p, const BlockParams& w) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, 1.0f / sqrtf((float)HD), p.layer().window};
    // Pre-norm: each branch reads norm(h) from a. Post-norm (OPT-350m): it reads h, and the norm
    // follows the residual, in place.
    float* Acts::*in = c.post_norm ? &Acts::h : &Acts::a;

    if (!c.post_norm) p.norm(&Acts::a, w.attn_norm);
    if (w.qkv.w >= 0) {
        // The fused [N, 3C] projection spans the contiguous q, att and k buffers; attention reads
        // it in place and writes into m1, which is free until the MLP.
        p.linear(&Acts::q, in, w.qkv, C, 3 * C);
        AttentionShape s3 = s;
        s3.ldq = s3.ldk = s3.ldv = 3 * C;
        p.each([&](Acts& x, float*) { p.attention(x.m1, x.q, x.q + C, x.q + 2 * C, s3); });
        p.linear(&Acts::tmp, &Acts::m1, w.o, qd, C);
    } else {
        p.linear(&Acts::q, in, w.q, C, qd);
        p.linear(&Acts::k, in, w.k, C, kvd);
        p.linear(&Acts::v, in, w.v, C, kvd);
        p.each([&](Acts& x, float*) { p.attention(x.att, x.q, x.k, x.v, s); });
        p.linear(&Acts::tmp, &Acts::att, w.o, qd, C);
    }
    p.residual(&Acts::tmp);
    if (c.post_norm) p.norm(&Acts::h, &Acts::h, w.attn_norm, C);

    if (!c.post_norm) p.norm(&Acts::a, w.mlp_norm);
    plain_mlp(p, w, &Acts::tmp, in);
    p.residual(&Acts::tmp);
    if (c.post_norm) p.norm(&Acts::h, &Acts::h, w.mlp_norm, C);
}

}  // namespace

const Family& opt_family() {
    static const Family f{"opt",
                          false,
                          opt_block,
                          {
                              {&BlockParams::attn_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::q, Need::Yes, Need::Maybe, Dim::QD, Dim::C},
                              {&BlockParams::k, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::v, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
                              {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::QD},
                              {&BlockParams::mlp_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::fc1, Need::Yes, Need::Maybe, Dim::I, Dim::C},
                              {&BlockParams::fc2, Need::Yes, Need::Maybe, Dim::C, Dim::I},
                          }};
    return f;
}

const Family& gpt2_family() {
    static const Family f{"gpt2",
                          false,
                          opt_block,
                          {
                              {&BlockParams::attn_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::qkv, Need::Yes, Need::Yes, Dim::C3, Dim::C, true},
                              {&BlockParams::o, Need::Yes, Need::Yes, Dim::C, Dim::C, true},
                              {&BlockParams::mlp_norm, Need::Yes, Need::Yes, Dim::C, Dim::None},
                              {&BlockParams::fc1, Need::Yes, Need::Yes, Dim::I, Dim::C, true},
                              {&BlockParams::fc2, Need::Yes, Need::Yes, Dim::C, Dim::I, true},
                          }};
    return f;
}

}  // namespace spw
