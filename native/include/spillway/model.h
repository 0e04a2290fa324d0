// A model as the engine sees it: a normalised config and units of tensors by
// role. The TypeScript side (electron/model/) resolves Hugging Face names and
// layouts; this side maps the files, checks every byte range again and keeps
// float32 masters.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace spw {

enum class Family : int { Opt = 0, Gpt2 = 1, Llama = 2 };
enum class NormKind : int { LayerNorm = 0, RmsNorm = 1 };
enum class Dtype : int { F32 = 0, F16 = 1, BF16 = 2 };
enum class UnitKind : int { Embed = 0, Block = 1, Head = 2 };

struct ModelConfig {
    Family family = Family::Llama;
    int vocab = 0;         // V
    int hidden = 0;        // C
    int layers = 0;        // L
    int heads = 0;         // NH
    int kv_heads = 0;
    int head_dim = 0;      // HD
    int intermediate = 0;
    int max_positions = 0;
    float norm_eps = 1e-5f;
    NormKind norm = NormKind::LayerNorm;
    int activation = 0;    // Act
    int position_offset = 0;
    float rope_theta = 0.f;
    int sliding_window = 0;
    bool tied = false;
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
};

struct Unit {
    UnitKind kind = UnitKind::Block;
    int index = -1;
    std::map<std::string, int> roles;  // role -> index into Model::tensors
    size_t numel = 0;                  // sum over the unit's tensors

    int find(const std::string& role) const {
        auto it = roles.find(role);
        return it == roles.end() ? -1 : it->second;
    }
};

struct Model {
    ModelConfig config;
    std::vector<Tensor> tensors;
    std::vector<Unit> units;
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
