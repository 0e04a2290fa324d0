// One home per architecture family: its block recipe (the order of its
// kernels over the block's parameter struct) and the tensors its blocks hold.
// The engine, calibration and (later) decoding run a block only through its
// family's recipe.
//
// Adding a family: a recipe file here (its Family: block function and
// parameter rules), its line in family.cpp, any new kernel (CPU, CUDA and a
// backend-ops case), electron/model/arch/<family>.ts, and a golden fixture.
#pragma once

#include <string>
#include <vector>

#include "block.h"
#include "spillway/model.h"

namespace spw {

// Dimensions a parameter's shape is made of (ModelConfig's letters).
enum class Dim : int { None = 0, C, I, QD /* NH*HD */, KVD /* KV*HD */, C3 /* 3C */, HD };

enum class Need : int { No = 0, Maybe, Yes };

// What a family's block holds in one field: whether the weight and the bias are there, and
// the weight's shape [out, in] (a vector [out] when in is Dim::None); stored [in, out] when
// in_out (GPT-2 Conv1D). A bias is [out].
struct ParamRule {
    WeightBias BlockParams::*field;
    Need w, b;
    Dim out, in;
    bool in_out = false;
};

struct Family {
    const char* name;
    // Rotary positions (ModelConfig::rope set), or learned ones (the embeddings' pos).
    bool rotary;
    // Runs one block over every stream of the pass (through BlockPass::run).
    BlockRecipe block;
    // The fields its blocks hold; every other field stays absent.
    std::vector<ParamRule> rules;
};

// The family of ModelConfig::family; throws naming the known ones.
const Family& family_of(const std::string& name);

// Throws naming the tensor or field when the model does not fit its family and config: a tensor
// missing, one the recipe would not read, a shape or layout that differs, a rotary table the
// engine cannot compute, a block without its LayerAttention or naming a table that is not there.
void check_params(const Family& f, const Model& m);

int dim_of(Dim d, const ModelConfig& c);

// ---- pieces the recipes share ----
// out = fc2(act(fc1(in))), the plain MLP (OPT, GPT-2, GPT-NeoX); m1 holds its hidden layer.
void plain_mlp(BlockPass& p, const BlockParams& w, float* Acts::*out, float* Acts::*in);
// out = down(act(gate(in)) * up(in)) with the config's activation (SiLU through gated_silu); m1
// and m2 hold its hidden layer.
void gated_mlp(BlockPass& p, const BlockParams& w, float* Acts::*out, float* Acts::*in);
// RoPE on q and k (the block's table), then attention into att, for every stream.
void rotary_attention(BlockPass& p, const AttentionShape& s);

// The recipes (opt.cpp, llama.cpp, gpt_neox.cpp, olmo2.cpp, gemma.cpp).
const Family& opt_family();
const Family& gpt2_family();
const Family& llama_family();
const Family& gpt_neox_family();
const Family& olmo2_family();
const Family& gemma2_family();
const Family& gemma3_family();

}  // namespace spw
