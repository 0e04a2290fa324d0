// Llama, Mistral, Ministral, Qwen2 and SmolLM3 (llama), Qwen3 and Phi-3: pre-RMSNorm
// blocks with rotary positions on q and k (grouped-query heads, the block's
// sliding window and rotary table, none in SmolLM3's NoPE layers), and a gated
// SiLU MLP (down(silu(gate) * up)); biases only where the config asks (Qwen2's
// q/k/v, Llama's attention_bias and mlp_bias). Qwen3 adds an RMSNorm of each
// query and key head before RoPE. Phi-3 fuses q|k|v into qkv_proj and gate|up
// into gate_up_proj (no biases), each computed piece by piece into the unfused
// buffers, and may turn only part of each head (partial rotary).
#include <cmath>

#include "family.h"

namespace spw {

namespace {

void llama_like(BlockPass& p, const BlockParams& w, bool qk_norm) {
    const ModelConfig& c = p.config();
    const int C = c.hidden, I = c.intermediate, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, 1.0f / sqrtf((float)HD), p.layer().window};

    p.norm(&Acts::a, w.attn_norm);
    if (w.qkv.w >= 0) {
        p.linear_pieces(&Acts::a, w.qkv, C, {{&Acts::q, qd}, {&Acts::k, kvd}, {&Acts::v, kvd}});
    } else {
        p.linear(&Acts::q, &Acts::a, w.q, C, qd);
        p.linear(&Acts::k, &Acts::a, w.k, C, kvd);
        p.linear(&Acts::v, &Acts::a, w.v, C, kvd);
    }
    if (qk_norm) {
        p.norm_pieces(&Acts::q, w.q_norm, c.heads, HD);
        p.norm_pieces(&Acts::k, w.k_norm, c.kv_heads, HD);
    }
    p.each([&](Acts& x, float*) {
        p.rope(x.q, qd, c.heads);
        p.rope(x.k, kvd, c.kv_heads);
        p.attention(x.att, x.q, x.k, x.v, s);
    });
    p.linear(&Acts::tmp, &Acts::att, w.o, qd, C);
    p.residual(&Acts::tmp);

    p.norm(&Acts::a, w.mlp_norm);
    if (w.gate_up.w >= 0) {
        p.linear_pieces(&Acts::a, w.gate_up, C, {{&Acts::m1, I}, {&Acts::m2, I}});
    } else {
        p.linear(&Acts::m1, &Acts::a, w.gate, C, I);
        p.linear(&Acts::m2, &Acts::a, w.up, C, I);
    }
    p.each([&](Acts& x, float*) { p.gated_silu(x.m1, x.m2, I); });
    p.linear(&Acts::tmp, &Acts::m1, w.down, I, C);
    p.residual(&Acts::tmp);
}

void llama_block(BlockPass& p, const BlockParams& w) { llama_like(p, w, false); }
void qwen3_block(BlockPass& p, const BlockParams& w) { llama_like(p, w, true); }

const std::vector<ParamRule> llama_rules = {
    {&BlockParams::attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
    {&BlockParams::q, Need::Yes, Need::Maybe, Dim::QD, Dim::C},
    {&BlockParams::k, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
    {&BlockParams::v, Need::Yes, Need::Maybe, Dim::KVD, Dim::C},
    {&BlockParams::o, Need::Yes, Need::Maybe, Dim::C, Dim::QD},
    {&BlockParams::mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
    {&BlockParams::gate, Need::Yes, Need::Maybe, Dim::I, Dim::C},
    {&BlockParams::up, Need::Yes, Need::Maybe, Dim::I, Dim::C},
    {&BlockParams::down, Need::Yes, Need::Maybe, Dim::C, Dim::I},
};

std::vector<ParamRule> with(std::vector<ParamRule> rules, std::initializer_list<ParamRule> more) {
    rules.insert(rules.end(), more);
    return rules;
}

}  // namespace

const Family& llama_family() {
    static const Family f{"llama", true, llama_block, llama_rules};
    return f;
}

const Family& phi3_family() {
    static const Family f{"phi3",
                          true,
                          llama_block,
                          {
                              {&BlockParams::attn_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                              {&BlockParams::qkv, Need::Yes, Need::No, Dim::QKVD, Dim::C},
                              {&BlockParams::o, Need::Yes, Need::No, Dim::C, Dim::QD},
                              {&BlockParams::mlp_norm, Need::Yes, Need::No, Dim::C, Dim::None},
                              {&BlockParams::gate_up, Need::Yes, Need::No, Dim::I2, Dim::C},
                              {&BlockParams::down, Need::Yes, Need::No, Dim::C, Dim::I},
                          }};
    return f;
}

const Family& qwen3_family() {
    static const Family f{"qwen3", true, qwen3_block,
                          with(llama_rules, {{&BlockParams::q_norm, Need::Yes, Need::No, Dim::HD, Dim::None},
                                             {&BlockParams::k_norm, Need::Yes, Need::No, Dim::HD, Dim::None}})};
    return f;
}

}  // namespace spw
