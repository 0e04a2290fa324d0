// The spec's role names of each unit's parameters (the TypeScript arch files
// name tensors by them), bound to the fields of the parameter structs in
// spillway/model.h once at load. Kernels never see a role name.
#pragma once

#include <string>
#include <vector>

#include "spillway/model.h"

namespace spw {

// A block's field and its role stem: the spec names its tensors `<stem>_w` and `<stem>_b`.
struct BlockField {
    const char* stem;
    WeightBias BlockParams::*field;
};

// Every field of BlockParams, in the order of the struct.
const std::vector<BlockField>& block_fields();

// Binds one role of unit `u` to `tensor` in `params` (a block's own struct by its index):
// embeddings "tok", "pos", "proj"; blocks "<stem>_w", "<stem>_b"; the head "norm_w", "norm_b",
// "proj", "lm_head". Throws naming the role when the unit kind has none such or it is bound twice.
void bind_role(ModelParams& params, const Unit& u, const std::string& role, int tensor);

}  // namespace spw
