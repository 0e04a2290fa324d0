#include "family.h"

#include <stdexcept>
#include <tuple>

#include "params.h"
#include "rope.h"

namespace spw {

namespace {

const std::vector<const Family*>& families() {
    static const std::vector<const Family*> f = {&opt_family(),      &gpt2_family(),    &llama_family(),
                                                  &qwen3_family(),    &phi3_family(),    &gpt_neox_family(),
                                                  &olmo2_family(),    &gemma2_family(),  &gemma3_family()};
    return f;
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
    return r + "]";
}

void expect_shape(const Tensor& t, const std::vector<int64_t>& shape, bool in_out) {
    if (t.shape != shape)
        throw std::runtime_error("tensor " + t.name + " has shape " + shape_str(t.shape) + ", expected " +
                                 shape_str(shape));
    if (t.transposed != in_out)
        throw std::runtime_error("tensor " + t.name + (in_out ? " must be" : " must not be") +
                                 " stored [in, out] (transposed)");
}

}  // namespace

int dim_of(Dim d, const ModelConfig& c) {
    switch (d) {
        case Dim::None: return 0;
        case Dim::C: return c.hidden;
        case Dim::I: return c.intermediate;
        case Dim::QD: return c.heads * c.head_dim;
        case Dim::KVD: return c.kv_heads * c.head_dim;
        case Dim::C3: return 3 * c.hidden;
        case Dim::HD: return c.head_dim;
        case Dim::QKVD: return (c.heads + 2 * c.kv_heads) * c.head_dim;
        case Dim::I2: return 2 * c.intermediate;
    }
    return 0;
}

void plain_mlp(BlockPass& p, const BlockParams& w, float* Acts::*out, float* Acts::*in) {
    const int C = p.config().hidden, I = p.config().intermediate;
    // OPT's ReLU is stored by fc1's products where the backend can (the same bits).
    if (p.config().activation != (int)Act::Relu || !p.linear_relu(&Acts::m1, in, w.fc1, C, I)) {
        p.linear(&Acts::m1, in, w.fc1, C, I);
        p.each([&](Acts& x, float*) { p.activation(x.m1, I); });
    }
    p.linear(out, &Acts::m1, w.fc2, I, C);
}

void gated_mlp(BlockPass& p, const BlockParams& w, float* Acts::*out, float* Acts::*in) {
    const int C = p.config().hidden, I = p.config().intermediate;
    const bool silu = p.config().activation == (int)Act::Silu;
    p.linear(&Acts::m1, in, w.gate, C, I);
    p.linear(&Acts::m2, in, w.up, C, I);
    p.each([&](Acts& x, float*) {
        if (silu)
            p.gated_silu(x.m1, x.m2, I);
        else
            p.gated_act(x.m1, x.m2, I);
    });
    p.linear(out, &Acts::m1, w.down, I, C);
}

void rotary_attention(BlockPass& p, const AttentionShape& s) {
    p.each([&](Acts& x, float*) {
        p.rope(x.q, s.ldq, s.heads);
        p.rope(x.k, s.ldk, s.kv_heads);
        p.attention(x.att, x.q, x.k, x.v, s);
    });
}

const Family& family_of(const std::string& name) {
    std::string known;
    for (const Family* f : families()) {
        if (name == f->name) return *f;
        known += (known.empty() ? "" : ", ") + std::string(f->name);
    }
    throw std::runtime_error("unknown model family '" + name + "' (the engine has " + known + ")");
}

void check_params(const Family& f, const Model& m) {
    const ModelConfig& c = m.config;
    const ModelParams& p = m.params;
    auto tensor = [&](int i) -> const Tensor& { return m.tensors[(size_t)i]; };
    const int64_t C = c.hidden, V = c.vocab, E = c.embed_dim;

    if (p.embed.tok < 0) throw std::runtime_error("the embeddings need a 'tok' tensor");
    expect_shape(tensor(p.embed.tok), {V, E}, false);
    const bool projected = E != C;
    for (auto [ti, role, shape] : {std::make_tuple(p.embed.proj, "the embeddings' 'proj'", std::vector<int64_t>{C, E}),
                                   std::make_tuple(p.head.proj, "the head's 'proj'", std::vector<int64_t>{E, C})}) {
        if (projected && ti < 0)
            throw std::runtime_error(std::string("embeddings of width ") + std::to_string(E) + " in a model of width " +
                                     std::to_string(C) + " need " + role);
        if (!projected && ti >= 0) throw std::runtime_error(std::string(role) + " projects embeddings of the model's own width");
        if (ti >= 0) expect_shape(tensor(ti), shape, false);
    }
    const bool learned = !f.rotary;
    if (f.rotary && c.ropes.empty())
        throw std::runtime_error(std::string("a ") + f.name + " model needs rotary positions (config.ropes)");
    if (!f.rotary && !c.ropes.empty())
        throw std::runtime_error(std::string("a ") + f.name + " model has learned positions, not rotary ones");
    for (const RopeConfig& r : c.ropes) {
        if (r.type == RopeType::None) throw std::runtime_error("a rotary table of type none");
        rope_check(r, c.head_dim);
    }
    if (c.layer_attention.size() != (size_t)c.layers)
        throw std::runtime_error("the config has " + std::to_string(c.layer_attention.size()) +
                                 " layer_attention entries for " + std::to_string(c.layers) + " layers");
    for (size_t li = 0; li < c.layer_attention.size(); li++) {
        const LayerAttention& la = c.layer_attention[li];
        if (la.window < 0) throw std::runtime_error("layer " + std::to_string(li) + " has a negative sliding window");
        if (la.rope < -1 || la.rope >= (int)c.ropes.size())
            throw std::runtime_error("layer " + std::to_string(li) + " names rotary table " + std::to_string(la.rope) +
                                     "; the config has " + std::to_string(c.ropes.size()));
    }
    if (learned && p.embed.pos < 0) throw std::runtime_error("learned positions need a 'pos' tensor in the embeddings");
    if (!learned && p.embed.pos >= 0) throw std::runtime_error("a model with rotary positions has no 'pos' tensor");
    if (learned) expect_shape(tensor(p.embed.pos), {(int64_t)c.max_positions + c.position_offset, C}, false);

    if (c.final_norm && p.head.norm.w < 0) throw std::runtime_error("the head needs 'norm_w'");
    if (!c.final_norm && (p.head.norm.w >= 0 || p.head.norm.b >= 0))
        throw std::runtime_error("a model without a final norm has no 'norm_w' or 'norm_b' in its head");
    if (p.head.norm.w >= 0) expect_shape(tensor(p.head.norm.w), {C}, false);
    if (p.head.norm.b >= 0) expect_shape(tensor(p.head.norm.b), {C}, false);
    if (p.head.lm_head < 0) throw std::runtime_error("an untied head needs 'lm_head'");
    expect_shape(tensor(p.head.lm_head), {V, E}, false);

    for (size_t bi = 0; bi < p.blocks.size(); bi++) {
        const BlockParams& b = p.blocks[bi];
        std::string where = "block " + std::to_string(bi);
        for (const BlockField& field : block_fields()) {
            const WeightBias& wb = b.*field.field;
            const ParamRule* rule = nullptr;
            for (const ParamRule& r : f.rules)
                if (r.field == field.field) rule = &r;
            Need nw = rule ? rule->w : Need::No, nb = rule ? rule->b : Need::No;
            for (int part = 0; part < 2; part++) {
                int ti = part == 0 ? wb.w : wb.b;
                Need need = part == 0 ? nw : nb;
                std::string role = std::string(field.stem) + (part == 0 ? "_w" : "_b");
                if (ti < 0 && need == Need::Yes)
                    throw std::runtime_error(where + " of a " + f.name + " model needs '" + role + "'");
                if (ti >= 0 && need == Need::No)
                    throw std::runtime_error(where + ": the " + std::string(f.name) + " recipe reads no '" + role +
                                             "' (" + tensor(ti).name + ")");
                if (ti < 0) continue;
                int64_t out = dim_of(rule->out, c), in = dim_of(rule->in, c);
                if (part == 1 || rule->in == Dim::None)
                    expect_shape(tensor(ti), {out}, false);
                else if (rule->in_out)
                    expect_shape(tensor(ti), {in, out}, true);
                else
                    expect_shape(tensor(ti), {out, in}, false);
            }
        }
    }
}

}  // namespace spw
