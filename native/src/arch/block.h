// The one block forward: what a family's recipe (family.h) calls, kernel by
// kernel, to run a block over every activation stream in lockstep. The engine
// (training, scoring and decoding) and calibration run blocks through it.
// Decoding keeps a KV cache per block (PassInputs::kv): the engine tells the
// pass which block it runs, BlockPass::attention stores the pass's keys and
// values in that block's cache and, when the pass continues cached sequences
// (one new token per sequence, positions = cached length), attends over the
// cache; the recipes stay as they are.
//
// Lockstep: each kernel runs for every stream before the next kernel starts,
// and the weight group a kernel reads (a weight and its bias) is perturbed into
// the working copy right before it, z drawn once per seed and shared by that
// seed's +eps and -eps streams. So a streamed block is visited once per pass
// whatever the number of streams, and the working copies are the size of the
// largest group, not of a block.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "spillway/backend.h"
#include "spillway/model.h"

namespace spw {

// One activation stream: the perturbation it computes with and its hidden states.
struct Stream {
    uint64_t seed = 0;
    float scale = 0.f;  // +eps or -eps; 0: the clean masters
    float* h = nullptr; // [N, C], updated in place block after block
};

// Whether streams[si] opens a run of streams of one seed (they share one draw of z) and any of them
// is perturbed: where that seed's noise is drawn.
inline bool draws_noise_at(const std::vector<Stream>& streams, size_t si) {
    if (si > 0 && streams[si].seed == streams[si - 1].seed) return false;
    for (size_t sj = si; sj < streams.size() && streams[sj].seed == streams[si].seed; sj++)
        if (streams[sj].scale != 0.f) return true;
    return false;
}

// One stream's scratch inside a block, carved from the activation arena (N rows):
// a, tmp [N, C]; q, att [N, max(NH*HD, C)]; k, v [N, max(KV*HD, C)]; m1, m2 [N, max(I, NH*HD)].
// q, att and k are contiguous, so a fused [N, 3C] q|k|v projection spans them. h is not scratch:
// the stream's hidden states [N, C], for the kernels that read them directly (OLMo 2's
// projections have no norm before them).
struct Acts {
    float *a, *tmp, *q, *att, *k, *v, *m1, *m2;
    float* h;
};

// out = the config's norm of `rows` rows of `width` (LayerNorm with b, RMSNorm, or Gemma's (1 + w)
// RMSNorm); out may be in. The blocks' norms and the head's final norm.
void norm_rows(Backend& be, const ModelConfig& c, float* out, const float* in, const float* w, const float* b,
               int rows, int width);

// Floats of one stream's Acts at `rows` rows.
size_t acts_floats(const ModelConfig& c, size_t rows);

// Weights with an adapter (LoRA, LoLDU; native/src/zo/trainable.h): a stream computes with the
// frozen base plus the adapter's low-rank delta as that stream perturbs the adapter.
class AdapterHook {
public:
    virtual ~AdapterHook() = default;
    // The adapter of tensor `ti` (an index into Model::tensors), or -1.
    virtual int adapter_of(int ti) const = 0;
    // Draws the adapter's noise for `seed`: once per seed, before that seed's streams merge.
    virtual void draw(int adapter, uint64_t seed, int noise) = 0;
    // w = base + delta, the adapter perturbed by `scale` (0: as it is); scratch holds base.numel
    // floats. The base is float32 at base.device or bf16/fp16 (`dtype`) at base.device16.
    virtual void merge(int adapter, float scale, const Tensor& base, int dtype, float* w, float* scratch) = 0;
    // Row adapters (trainable tokens): the base's rows the adapter changes, in order, or null when
    // it changes the whole weight; merge_rows writes just those rows of what merge writes whole
    // ([rows, base width]), the same bits.
    virtual const std::vector<int32_t>* adapted_rows(int adapter) const { (void)adapter; return nullptr; }
    virtual void merge_rows(int adapter, float scale, const Tensor& base, int dtype, float* rows) {
        (void)adapter, (void)scale, (void)base, (void)dtype, (void)rows;
    }
};

// Where the working copies of a pass come from: for each stream, the weights a kernel reads
// are the masters themselves (an unperturbed stream, or a frozen tensor), theta + scale * z in
// the working copy (widened from bf16/fp16 for a unit held so; z masked to the small weights of
// a sparse tensor), or an adapted weight's base + delta (AdapterHook). On a backend that runs
// pairs (runs_pairs), a block's groups of plain float32 trained tensors can instead be made a
// +eps/-eps pair at a time: both copies from one pass (perturb_pair) into the working copy and a
// second one the size of the largest block group.
class WorkingCopies {
public:
    WorkingCopies(Backend& be, int master_dtype) : be_(be), dtype_(master_dtype) {}
    ~WorkingCopies();
    WorkingCopies(const WorkingCopies&) = delete;
    WorkingCopies& operator=(const WorkingCopies&) = delete;

    // The largest group any unit of `m` perturbs at once, in floats (each tensor padded to 16).
    // head_chunked: lm_head left out (the backend perturbs it a vocabulary chunk at a time into
    // the head's own scratch, reserve_head_chunks).
    static size_t largest_group(const Model& m, bool head_chunked = false);
    // The largest group of a block of `m` (what a pair's second copy holds).
    static size_t largest_block_group(const Model& m);
    // The largest block group holding an adapted weight, in floats: over a frozen base (lora,
    // loldu) z holds no more (the delta, as merge's scratch), and the working copy no more unless
    // the base is held in bf16/fp16 (every block group widened into it). Frozen float32 groups
    // are read in place. Adapted token rows (trainable tokens) count the embedding's and the head's
    // groups whole.
    // rows_merged: row adapters (adapted_rows) leave no group in the working copies: their rows are
    // merged on their own (Engine::rows_merged).
    static size_t largest_adapted_group(const Model& m, const AdapterHook& adapters, bool rows_merged = false);
    // Grows the working copy to hold `floats`, and z `z_floats` (default: as many).
    void reserve(size_t floats, size_t z_floats = SIZE_MAX);
    // Grows the pair's second copy to hold `floats` (no more than reserve's).
    void reserve_pairs(size_t floats);
    // Grows the scratch of the head's perturbed chunks to `floats` (Backend::head_chunk_floats).
    void reserve_head_chunks(size_t floats);
    float* head_chunks() const { return chunks_; }
    size_t capacity() const { return capacity_; }
    // Device memory of z and the copies.
    size_t bytes() const { return (capacity_ + z_capacity_ + pair_capacity_ + chunks_capacity_) * sizeof(float); }

    // fn(si, w) for every stream, w[i] the tensor ids[i] as stream si computes with it (nullptr
    // for -1). Time spent drawing z is added to noise_ms.
    void with(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams,
              int noise, double& noise_ms, const std::function<void(size_t, const float* const*)>& fn);

    // The adapters of the weights (null: none). Not owned.
    void set_adapters(AdapterHook* hook) { adapters_ = hook; }

    // fn(si, plus, minus) for every pair of streams (si, si + 1), plus[i] and minus[i] the tensor
    // ids[i] as each computes with it, when pairs can be made here: the streams are +eps/-eps pairs
    // of one seed, the tensors float32 and the group within the pair capacity. Otherwise does
    // nothing and returns false (with() then serves). The pass (z drawn and both copies written)
    // is added to noise_ms.
    bool with_pairs(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams,
                    int noise, double& noise_ms,
                    const std::function<void(size_t, const float* const*, const float* const*)>& fn);

    // Whether the group ids[0..n) can be made a +eps/-eps pair at a time from its masters: the
    // streams are such pairs, every tensor float32 on the device and trained whole (not frozen,
    // masked or adapted). with_pairs makes such pairs' copies; Backend::linear_pair_noisy needs none.
    bool pairable(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams) const;

private:
    Backend& be_;
    int dtype_;
    AdapterHook* adapters_ = nullptr;
    float* z_ = nullptr;        // noise of one group
    float* w_ = nullptr;        // its perturbed working copy (a pair's +eps copy)
    float* w_minus_ = nullptr;  // a pair's -eps copy
    float* chunks_ = nullptr;   // the head's perturbed vocabulary chunks
    size_t capacity_ = 0, z_capacity_ = 0, pair_capacity_ = 0, chunks_capacity_ = 0;
};

// A decoding pass's KV cache (one stream, the clean masters): every block's keys and values of
// every sequence, a fixed number of rows per sequence.
struct KvCache {
    std::vector<float*> k, v;           // per block: [rows, kv_heads * head_dim] on the device
    const int32_t* rows = nullptr;      // [N] the cache row each token of the pass fills
    const int32_t* kv_start = nullptr;  // [nseq] each sequence's first cache row
    bool past = false;                  // the pass continues cached sequences: attend over the cache
};

// One rotary table of a pass on the device (rope.h): a block turns q and k with the table its
// LayerAttention names.
struct PassRope {
    const float* inv_freq = nullptr;  // [rotary_dim / 2]
    float scale = 1.f;                // cos and sin scale
};

// What every block of one pass shares: the batch's layout on the device and the RoPE tables.
struct PassInputs {
    int N = 0;                           // tokens of the pass: the rows of every activation
    int nseq = 0;
    const int32_t* positions = nullptr;  // [N] each token's position in its sequence
    const int32_t* seq_start = nullptr;  // [nseq + 1]
    std::vector<PassRope> ropes;         // by index of ModelConfig::ropes (empty without RoPE)
    const KvCache* kv = nullptr;         // decoding: the cache the pass fills and reads
};

enum class KernelKind : int { Linear = 0, Attention = 1, Other = 2 };

// Calibration's view of a pass: every kernel waited for and timed by kind. The engine runs without.
class KernelTimer {
public:
    virtual ~KernelTimer() = default;
    virtual void start() = 0;
    virtual void stop(KernelKind kind) = 0;
};

class BlockPass;

// A family's block forward (family.h): its kernels over the block's parameters, in order.
using BlockRecipe = void (*)(BlockPass& pass, const BlockParams& w);

// One pass of blocks over `streams`: a recipe's kernels, each for every stream in turn. run() tells
// the pass which block it is in; what differs by block (its window, its rotary table) follows.
class BlockPass {
public:
    BlockPass(Backend& be, const ModelConfig& c, const std::vector<Tensor>& tensors, WorkingCopies& copies,
              const PassInputs& in, std::vector<Stream>& streams, float* arena, size_t stream_floats, int noise,
              double& noise_ms, KernelTimer* timer = nullptr)
        : be_(be), c_(c), tensors_(tensors), copies_(copies), in_(in), streams_(streams), arena_(arena),
          stream_floats_(stream_floats), noise_(noise), noise_ms_(noise_ms), timer_(timer) {}

    const ModelConfig& config() const { return c_; }
    // N: the rows of every activation of the pass
    int tokens() const { return in_.N; }

    // Runs block `index` of the model (parameters w) through `recipe`.
    void run(BlockRecipe recipe, int index, const BlockParams& w);
    // The block being run and how it attends (its window goes into the recipe's AttentionShape).
    int block() const { return block_; }
    const LayerAttention& layer() const { return c_.layer_attention[(size_t)block_]; }

    // ---- kernels that read weights: every stream, its group perturbed right before ----
    // out = norm(h) (the config's norm kind; LayerNorm with w.b, RMSNorm without)
    void norm(float* Acts::*out, const WeightBias& w);
    // out = norm(in) over rows of `width`, `per_token` rows per token (the config's norm kind); in
    // may be out: a norm of activations (OLMo 2's q/k norms over the projection, its post-norms).
    void norm(float* Acts::*out, float* Acts::*in, const WeightBias& w, int width, int per_token = 1);
    // out [N, out_dim] = in [N, in_dim] W^T + b (W stored [in, out] when its tensor says so)
    void linear(float* Acts::*out, float* Acts::*in, const WeightBias& w, int in_dim, int out_dim);
    // RMSNorm in place of x [N, pieces * width] as N * pieces rows of `width` (the config's eps):
    // Qwen3's q and k norms, one per head (width HD).
    void norm_pieces(float* Acts::*x, const WeightBias& w, int pieces, int width);
    // A fused projection computed piece by piece: out_i [N, width_i] = in [N, in_dim] W_i^T + b_i,
    // W_i the next width_i rows of W (stored [out, in]), its group perturbed once for all pieces
    // (and a +eps/-eps pair's products side by side, as linear() runs them).
    // Phi-3's qkv_proj into q, k, v and gate_up_proj into gate, up: each lands where the unfused
    // recipe expects it, so no split kernel and no strided view is needed downstream.
    struct Piece {
        float* Acts::*out;
        int width;
    };
    void linear_pieces(float* Acts::*in, const WeightBias& w, int in_dim, std::initializer_list<Piece> pieces);
    // linear_pieces' products for every pair of streams straight from the masters
    // (Backend::linear_pair_noisy), where the group is pairable and the backend takes the shape;
    // false, having done nothing, otherwise.
    bool pieces_from_masters(float* Acts::*in, const WeightBias& w, int in_dim, std::initializer_list<Piece> pieces,
                             bool transposed, bool relu = false);
    // linear() with the ReLU of its output stored by the products themselves, where they are a pair
    // from the masters (pieces_from_masters); false, having done nothing, otherwise (then linear()
    // and activation(): the same bits).
    bool linear_relu(float* Acts::*out, float* Acts::*in, const WeightBias& w, int in_dim, int out_dim);

    // ---- kernels without weights ----
    // f(x, h) for every stream: its activations and its hidden states.
    void each(const std::function<void(Acts& x, float* h)>& f);
    // RoPE on `nheads` heads of one stream's rows of x (row stride ld), with the block's table;
    // nothing in a block without rotary positions (LayerAttention::rope -1).
    void rope(float* x, int ld, int nheads);
    // Causal attention of one stream over the pass's sequences. A decoding pass stores k and v in
    // the block's cache first, and a pass that continues cached sequences attends over the cache.
    void attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s);
    // The config's activation on one stream's [N, width] rows
    void activation(float* x, int width);
    // gate = silu(gate) * up on one stream's [N, width] rows
    void gated_silu(float* gate, const float* up, int width);
    // gate = act(gate) * up with the config's activation (Gemma's tanh GELU)
    void gated_act(float* gate, const float* up, int width);
    // h += x for every stream
    void residual(float* Acts::*x);
    // x += y ([N, C]) for every stream
    void add(float* Acts::*x, float* Acts::*y);
    // out[r, :cols] = in[r, :cols] over `rows` rows of one stream, strides ld_out and ld_in
    void copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols);

private:
    Acts acts(size_t si) const;
    template <typename F>
    void timed(KernelKind kind, F&& f);

    Backend& be_;
    const ModelConfig& c_;
    const std::vector<Tensor>& tensors_;
    WorkingCopies& copies_;
    const PassInputs& in_;
    std::vector<Stream>& streams_;
    float* arena_;
    size_t stream_floats_;
    int noise_;
    double& noise_ms_;
    KernelTimer* timer_;
    int block_ = -1;
};

}  // namespace spw
