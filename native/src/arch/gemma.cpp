// Gemma 2 and Gemma 3 (text): RMSNorms scaled by (1 + w); four norms per
// block, a "sandwich" around each branch (h + post(attn(pre(h))), the same for
// the MLP); a GeGLU MLP with the tanh GELU; scores scaled by
// query_pre_attn_scalar^-1/2; grouped-query heads. Gemma 2 soft-caps the
// attention scores; Gemma 3 RMS-norms each q and k head before RoPE. What
// differs by layer (the sliding window, Gemma 3's local or global rotary base)
// comes from the block's LayerAttention; the embeddings' sqrt(hidden) scale and
// the final soft-cap are the engine's (ModelConfig).
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void gemma_block(BlockPass& p, const BlockParams& w) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const float scale = 1.0f / sqrtf(c.attn_scalar > 0.f ? c.attn_scalar : (float)HD);
    const AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, scale, p.layer().window, c.attn_softcap};

    p.norm(&Acts::a, w.attn_norm);
    p.linear(&Acts::q, &Acts::a, w.q, C, qd);
    p.linear(&Acts::k, &Acts::a, w.k, C, kvd);
    p.linear(&Acts::v, &Acts::a, w.v, C, kvd);
    if (w.q_norm.w >= 0) {  // Gemma 3: each head normed over head_dim
        p.norm(&Acts::q, &Acts::q, w.q_norm, HD, c.heads);
        p.norm(&Acts::k, &Acts::k, w.k_norm, HD, c.kv_heads);
    }
    rotary_attention(p, s);
    p.linear(&Acts::tmp, &Acts::att, w.o, qd, C);
    p.norm(&Acts::tmp, &Acts::tmp, w.post_attn_norm, C);
    p.residual(&Acts::tmp);

    p.norm(&Acts::a, w.mlp_norm);
    gated_mlp(p, w, &Acts::tmp, &Acts::a);
    p.norm(&Acts::tmp, &Acts::tmp, w.post_mlp_norm, C);
    p.residual(&Acts::tmp);
}

std::vector<ParamRule> gemma_rules(bool qk_norm) {
    std::vector<ParamRule> r = {
        {&BlockParams::attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
        {&BlockParams::q, Need::Yes, Need::Maybe, Dim::QD, Dim::C},
        {&BlockParams::k, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
        {&BlockParams::v, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
        {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::QD},
        {&BlockParams::post_attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
        {&BlockParams::mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
        {&BlockParams::gate, Need::Yes, Need::No, Dim::I, Dim::C},
        {&BlockParams::up, Need::Yes, Need::No, Dim::I, Dim::C},
        {&BlockParams::down, Need::Yes, Need::No, Dim::C, Dim::I},
        {&BlockParams::post_mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
    };
    if (qk_norm) {
        r.push_back({&BlockParams::q_norm, Need::Yes, Need::No, Dim::HD, Dim::None});
        r.push_back({&BlockParams::k_norm, Need::Yes, Need::No, Dim::HD, Dim::None});
    }
    return r;
}

}  // namespace

const Family& gemma2_family() {
    static const Family f{"gemma2", true, gemma_block, gemma_rules(false)};
    return f;
}

const Family& gemma3_family() {
    static const Family f{"gemma3", true, gemma_block, gemma_rules(true)};
    return f;
}

}  // namespace spw
