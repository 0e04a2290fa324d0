// A model as the engine sees it: a normalised config, its tensors, the units
// they stream in, and each unit's parameters as plain structs of tensor
// indices, resolved once at load from the spec's roles (native/src/arch/params.h).
// The TypeScript side (electron/model/arch/) resolves Hugging Face names and
// layouts; this side maps the files, checks every byte range again and keeps
// float32 masters.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace spw {

// RmsNormPlus1: Gemma's RMSNorm, scaled by (1 + w) (its weights are stored as offsets from 1).
enum class NormKind : int { LayerNorm = 0, RmsNorm = 1, RmsNormPlus1 = 2 };
enum class Dtype : int { F32 = 0, F16 = 1, BF16 = 2 };
enum class UnitKind : int { Embed = 0, Block = 1, Head = 2 };

// Rotary position embeddings and their scalings, as transformers' rope_parameters
// name them (native/src/arch/rope.h computes the frequencies).
enum class RopeType : int { None = 0, Default, Linear, Dynamic, Yarn, Longrope, Llama3 };

struct RopeConfig {
    RopeType type = RopeType::None;  // None: learned absolute positions
    double theta = 10000.0;          // rope_theta, the base
    int rotary_dim = 0;              // dims rotated per head: head_dim * partial_rotary_factor, even
    int max_positions = 0;           // max_position_embeddings (dynamic; yarn and longrope's default factor)
    double factor = 0;               // linear, dynamic, yarn, longrope, llama3 (0: yarn and longrope derive it)
    int original_max_positions = 0;  // llama3, yarn, longrope: the pretraining length
    double low_freq_factor = 0, high_freq_factor = 0;  // llama3
    double beta_fast = 32, beta_slow = 1;              // yarn's ramp bounds
    bool truncate = true;                              // yarn: floor/ceil the ramp bounds
    double mscale = 0, mscale_all_dim = 0;             // yarn: the attention factor's ratio (0: unset)
    double attention_factor = 0;                       // yarn, longrope: cos/sin scale (0: derived)
    std::vector<float> short_factor, long_factor;      // longrope: rotary_dim / 2 each
};

// How one block attends: its sliding window and the rotary table it turns q and k with.
struct LayerAttention {
    int window = 0;  // sliding-window span: a query sees itself and the window - 1 tokens before it; 0: full causal
    int rope = 0;    // index into ModelConfig::ropes; -1: no rotary positions in this block (SmolLM3's NoPE layers)
};

struct ModelConfig {
    std::string family;    // the block recipe (native/src/arch/family.h): "opt", "gpt2", "llama", "gpt_neox", "olmo2", "gemma2", "gemma3"
    int vocab = 0;         // V
    int hidden = 0;        // C
    int layers = 0;        // L
    int heads = 0;         // NH
    int kv_heads = 0;      // KV
    int head_dim = 0;      // HD
    int intermediate = 0;  // I
    int max_positions = 0;
    float norm_eps = 1e-5f;
    NormKind norm = NormKind::LayerNorm;
    int activation = 0;    // Act
    int position_offset = 0;
    // Rotary tables (empty: learned positions). Blocks pick theirs in layer_attention: [0] is the
    // model's rope_parameters; a family with another table for some layers (Gemma 3's local base)
    // adds it after.
    std::vector<RopeConfig> ropes;
    std::vector<LayerAttention> layer_attention;  // one per block, by block index
    bool tied = false;
    // GPT-NeoX: both branches read the block's input, h + attn(ln1 h) + mlp(ln2 h)
    bool parallel_residual = false;
    // OPT-350m (do_layer_norm_before false): each branch reads h unnormed and the block's norms
    // follow their residuals, h = norm(h + f(h))
    bool post_norm = false;
    // The final norm before the head (OPT-350m and _remove_final_layer_norm have none)
    bool final_norm = true;
    // E: the embeddings' width (OPT's word_embed_proj_dim); when it differs from C, project_in
    // (C, E) widens the tokens' rows and project_out (E, C) narrows h before the head
    int embed_dim = 0;
    // Gemma: the embeddings' rows times sqrt(hidden) (rounded to float32, as transformers does)
    float embed_scale = 1.f;
    // Gemma: attention scores scaled by query_pre_attn_scalar^-1/2 instead of head_dim^-1/2 (0: head_dim)
    float attn_scalar = 0.f;
    // Gemma 2: attention scores soft-capped, cap * tanh(s / cap), before the mask (0: none)
    float attn_softcap = 0.f;
    // Gemma 2: the head's logits soft-capped the same way before the log-softmax (0: none)
    float final_softcap = 0.f;
};

struct TensorSource {
    std::string file;
    uint64_t offset = 0;
    uint64_t nbytes = 0;
    Dtype dtype = Dtype::F32;
};

struct Tensor {
    std::string name;
    uint32_t id = 0;              // fnv1a32(name): the key of its noise
    std::vector<int64_t> shape;
    size_t numel = 0;
    bool transposed = false;      // stored [in, out] (GPT-2 Conv1D)
    bool decay = true;            // weight decay applies (not biases, not norms)
    TensorSource source;
    float* master = nullptr;      // float32 master, host memory
    // What kernels read and the ZO update writes: the master itself on a
    // host-addressable backend, else a device copy uploaded once by the
    // engine (then the device copy is authoritative: read it back with
    // Engine::read_tensor).
    float* device = nullptr;
    // A streamed unit with bf16/fp16 masters while staged: its data on the device in that
    // format (device is then null; kernels get widened or perturbed float32 copies).
    uint16_t* device16 = nullptr;
    // What a ZO step does with it (the trainable set, native/src/zo/trainable.h): a frozen tensor is
    // neither perturbed nor updated; with a finite mask_below only its elements with
    // |theta| < mask_below are (sparse training), the mask read from the master as it is.
    bool frozen = false;
    float mask_below = INFINITY;
};

// ---- parameters: which tensors each unit's kernels read (llm.c style) ----
// Indices into Model::tensors, -1 where absent. Shapes in the Hugging Face layout,
// with C hidden, I MLP width, V vocabulary, P positions, NH heads, KV kv heads, HD
// head dim; a tensor stored [in, out] (GPT-2 Conv1D, Tensor::transposed) keeps it.

// A kernel's weight and its optional bias. Perturbed together, right before the kernel
// that reads them: one group of the working copy.
struct WeightBias {
    int w = -1;
    int b = -1;
};

struct EmbedParams {
    int tok = -1;   // (V, E)
    int pos = -1;   // (P + position_offset, C): learned absolute positions
    int proj = -1;  // (C, E): project_in, when E differs from C
};

// A superset of what the families' recipes read; each recipe uses its part.
struct BlockParams {
    WeightBias attn_norm;  // w, b (C)
    WeightBias qkv;        // fused q|k|v: w (GPT-2: (C, 3C) stored [in, out]; GPT-NeoX: (3C, C) laid out per head [NH, 3, HD]), b (3C)
    WeightBias q;          // w (NH*HD, C), b (NH*HD)
    WeightBias k;          // w (KV*HD, C), b (KV*HD)
    WeightBias v;          // w (KV*HD, C), b (KV*HD)
    WeightBias o;          // w (C, NH*HD) (GPT-2: (C, C) stored [in, out]), b (C)
    WeightBias mlp_norm;   // w, b (C)
    WeightBias fc1;        // w (I, C) (GPT-2: (C, I) stored [in, out]), b (I)
    WeightBias fc2;        // w (C, I) (GPT-2: (I, C) stored [in, out]), b (C)
    WeightBias gate;       // w (I, C), b (I)
    WeightBias up;         // w (I, C), b (I)
    WeightBias down;       // w (C, I), b (C)
    WeightBias q_norm;     // w (HD) per head (Qwen3, Gemma 3); w (NH*HD) over the whole projection (OLMo 2)
    WeightBias k_norm;     // w (HD) per head (Qwen3, Gemma 3); w (KV*HD) (OLMo 2)
    WeightBias gate_up;    // w (2I, C): Phi-3's fused gate (rows 0..I-1) and up projections
    WeightBias post_attn_norm;  // w (C): the attention's output normed before its residual (OLMo 2, Gemma)
    WeightBias post_mlp_norm;   // w (C): the MLP's output normed before its residual (OLMo 2, Gemma)
};

struct HeadParams {
    WeightBias norm;   // the final norm: w, b (C); absent without one (ModelConfig::final_norm)
    int proj = -1;     // (E, C): project_out, when E differs from C
    int lm_head = -1;  // (V, E); the embedding's tok when tied
};

struct ModelParams {
    EmbedParams embed;
    std::vector<BlockParams> blocks;  // by block index (Unit::index)
    HeadParams head;
};

struct Unit {
    UnitKind kind = UnitKind::Block;
    int index = -1;            // block index for blocks, -1 otherwise
    std::vector<int> tensors;  // every tensor the unit holds (indices into Model::tensors)
};

struct Model {
    ModelConfig config;
    std::vector<Tensor> tensors;
    std::vector<Unit> units;
    ModelParams params;
    size_t parameter_count = 0;

    ~Model();
    Model() = default;
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const Tensor* tensor(const std::string& name) const;
};

bool tensor_is_no_decay(const std::string& name);

// Maps every source file, checks each tensor's byte range against the file
// size and its shape against its dtype, and converts to float32 masters.
// Throws std::runtime_error naming the file and the tensor on any problem.
// `progress(done_bytes, total_bytes)` is called as tensors load.
// Tensors flagged in `skip` are checked but not loaded (their master stays null):
// the SSD tier reads them straight into the spill file, unit by unit.
void model_load_masters(Model& model, const std::function<void(uint64_t, uint64_t)>& progress,
                        const std::vector<bool>* skip = nullptr);

// Converts one tensor from its file into dst (numel floats), bounds-checked again.
void model_read_tensor(const Tensor& t, float* dst);

}  // namespace spw
