#include "params.h"

#include <stdexcept>

namespace spw {

const std::vector<BlockField>& block_fields() {
    static const std::vector<BlockField> f = {
        {"attn_norm", &BlockParams::attn_norm}, {"qkv", &BlockParams::qkv},   {"q", &BlockParams::q},
        {"k", &BlockParams::k},                 {"v", &BlockParams::v},       {"o", &BlockParams::o},
        {"mlp_norm", &BlockParams::mlp_norm},   {"fc1", &BlockParams::fc1},   {"fc2", &BlockParams::fc2},
        {"gate", &BlockParams::gate},           {"up", &BlockParams::up},     {"down", &BlockParams::down},
        {"q_norm", &BlockParams::q_norm},       {"k_norm", &BlockParams::k_norm},
        {"post_attn_norm", &BlockParams::post_attn_norm},
        {"post_mlp_norm", &BlockParams::post_mlp_norm},
    };
    return f;
}

// A field added to BlockParams must be named above too (the table is the only way roles reach it).
static_assert(sizeof(BlockParams) == 16 * sizeof(WeightBias), "block_fields() must list every BlockParams field");

namespace {

void bind(int& slot, const std::string& role, const Unit& u, int tensor) {
    if (slot >= 0) {
        std::string where = u.kind == UnitKind::Block ? "block " + std::to_string(u.index) : "unit";
        throw std::runtime_error(where + " binds role '" + role + "' twice");
    }
    slot = tensor;
}

// "q_w" -> (q, w); "attn_norm_b" -> (attn_norm, b).
bool split_role(const std::string& role, std::string& stem, char& part) {
    if (role.size() < 3 || role[role.size() - 2] != '_') return false;
    part = role.back();
    stem = role.substr(0, role.size() - 2);
    return part == 'w' || part == 'b';
}

}  // namespace

void bind_role(ModelParams& params, const Unit& u, const std::string& role, int tensor) {
    switch (u.kind) {
        case UnitKind::Embed:
            if (role == "tok") return bind(params.embed.tok, role, u, tensor);
            if (role == "pos") return bind(params.embed.pos, role, u, tensor);
            if (role == "proj") return bind(params.embed.proj, role, u, tensor);
            throw std::runtime_error("the embeddings have no role '" + role + "' (tok, pos, proj)");
        case UnitKind::Head:
            if (role == "norm_w") return bind(params.head.norm.w, role, u, tensor);
            if (role == "norm_b") return bind(params.head.norm.b, role, u, tensor);
            if (role == "lm_head") return bind(params.head.lm_head, role, u, tensor);
            if (role == "proj") return bind(params.head.proj, role, u, tensor);
            throw std::runtime_error("the head has no role '" + role + "' (norm_w, norm_b, proj, lm_head)");
        case UnitKind::Block: {
            if (u.index < 0 || (size_t)u.index >= params.blocks.size())
                throw std::runtime_error("block index " + std::to_string(u.index) + " is outside the model's " +
                                         std::to_string(params.blocks.size()) + " blocks");
            BlockParams& b = params.blocks[(size_t)u.index];
            std::string stem;
            char part = 0;
            if (split_role(role, stem, part))
                for (const BlockField& f : block_fields())
                    if (stem == f.stem) return bind(part == 'w' ? (b.*f.field).w : (b.*f.field).b, role, u, tensor);
            throw std::runtime_error("block " + std::to_string(u.index) + " has no role '" + role +
                                     "' (a block's roles are <stem>_w and <stem>_b)");
        }
    }
}

}  // namespace spw
