// What a ZO step trains: the trainable set of a run (docs/ENGINE-SPEC.md, "Trainable sets").
//
//   full    every tensor of the model (MeZO);
//   sparse  the block matrices' small weights (Sparse MeZO): a weight moves while |theta| is
//           below its tensor's threshold, set at load so that a given share of each matrix is
//           below it; the mask is read from the master whenever z is drawn, so nothing is stored
//           but one float per tensor; every other tensor is frozen;
//   lora    adapters on the target matrices: w = W + alpha/r B A, A (r, in), B (out, r), B = 0
//           at the start and A drawn as the peft library draws it (kaiming-uniform);
//   loldu   w = W + P L_r diag(s z - D_r) U_r on the target matrices, from the first r steps of LU
//           with partial pivoting of W (W = P L D U, L and U unit triangular); z starts at D_r and
//           s at 1, so the delta is exactly 0 at the start; only z (r numbers) and s train.
//   tokens  chosen rows of the token embedding (a task's label words): a delta per row, 0 at the
//           start, added to those rows of the embedding wherever it is read (the input lookup and,
//           tied, the head); an untied head's rows get their own delta. What the peft library
//           calls trainable tokens.
//
// With lora, loldu and tokens every tensor of the model is frozen: the base is read-only wherever it
// lives and in whatever precision it is kept; the adapters live on the compute device, float32.
// An adapted weight's working copy is its base plus the delta as each stream perturbs the
// adapter (the AdapterHook WorkingCopies calls, native/src/arch/block.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../arch/block.h"
#include "spillway/backend.h"
#include "spillway/model.h"

namespace spw {

enum class TrainKind : int { Full = 0, Sparse = 1, Lora = 2, Loldu = 3, Tokens = 4 };

struct TrainSpec {
    TrainKind kind = TrainKind::Full;
    int rank = 8;                                // lora, loldu: r
    float alpha = 16.f;                          // lora: the delta is scaled by alpha / r
    std::vector<std::string> targets{"q", "v"};  // lora, loldu: block roles (arch/params.h stems)
    double fraction = 0.25;                      // sparse: the share of each block matrix that trains
    uint64_t seed = 0;                           // lora: A's draw (the run seed)
    std::vector<int32_t> tokens;                 // tokens: the embedding rows that train (distinct)
};

// One adapted weight. Indices are into Trainable::tensors().
struct Adapter {
    int weight = -1;      // the base tensor (Model::tensors)
    int out = 0, in = 0;  // its shape
    // lora: a = lora_A (r, in), b = lora_B (out, r).
    // loldu: a = U_r (r, in), b = P L_r (out, r), neg_d = -D_r (r), all frozen; z (r) and s (1) train.
    // tokens: a = the rows' delta (rows, in), in the order of TrainSpec::tokens.
    int a = -1, b = -1, neg_d = -1, z = -1, s = -1;
};

// The first r steps of LU with partial pivoting of W (rows out, columns in), in float64: P L_r
// (out, r) in W's row order (P applied by the pivot indices, never a matrix), D_r (r) and U_r
// (r, in) with a unit diagonal. The pivot of step k is the row of largest |value| in column k of
// what is left, the first on ties (LAPACK's choice). Throws when a pivot is 0 (W's rank is below r).
struct LduFactors {
    std::vector<float> pl, d, u;
};
LduFactors ldu_first(const float* w, int out, int in, int r);

// Element k of a LoRA A for a matrix with `in` inputs: peft's kaiming_uniform_(a = sqrt(5)) bound
// 1/sqrt(in) times a uniform number in (-1, 1) from Philox (docs/ENGINE-SPEC.md, "LoRA").
float lora_init(uint64_t seed, uint32_t id, uint64_t k, int in);

class Trainable final : public AdapterHook {
public:
    // Marks every tensor of `model` frozen or masked for `spec` and builds the adapters on `be`
    // (reading a base that is not in memory, an SSD-homed one, from its checkpoint file). Throws
    // naming the option or the tensor that does not fit.
    Trainable(Backend& be, Model& model, const TrainSpec& spec);
    ~Trainable() override;
    Trainable(const Trainable&) = delete;
    Trainable& operator=(const Trainable&) = delete;

    const TrainSpec& spec() const { return spec_; }
    // lora, loldu, tokens: no tensor of the model moves.
    bool base_frozen() const {
        return spec_.kind == TrainKind::Lora || spec_.kind == TrainKind::Loldu || spec_.kind == TrainKind::Tokens;
    }
    // The adapters' tensors, frozen parts included (names: docs/ENGINE-SPEC.md); device holds each.
    const std::vector<Tensor>& tensors() const { return tensors_; }
    const std::vector<Adapter>& adapters() const { return adapters_; }
    // Elements a step may move: the adapters' trainable tensors, or the model's unfrozen tensors
    // (sparse: only those below their thresholds at load).
    uint64_t trainable_elements() const { return trainable_elements_; }
    // Device bytes of the adapters and of their noise and working copies.
    uint64_t device_bytes() const;
    // Seconds the adapters' set-up took at load (loldu: the decompositions).
    double setup_seconds() const { return setup_s_; }

    // A step's update of the adapters' trainable tensors, on the device, in float32.
    void update(const std::vector<UpdateTerm>& terms, float decay, int noise);
    // The current values of an adapter tensor (numel floats), and setting them (resuming a run).
    void read(size_t i, float* out);
    void write(size_t i, const float* in);
    // The index of the adapter tensor named `name`, or -1.
    int find(const std::string& name) const;

    // AdapterHook
    int adapter_of(int ti) const override;
    void draw(int adapter, uint64_t seed, int noise) override;
    void merge(int adapter, float scale, const Tensor& base, int dtype, float* w, float* scratch) override;
    const std::vector<int32_t>* adapted_rows(int adapter) const override;
    void merge_rows(int adapter, float scale, const Tensor& base, int dtype, float* rows) override;

private:
    void mark_sparse();
    void build_adapters();
    void build_tokens();
    // An adapter tensor as a stream perturbed by `scale` computes with it: t itself (scale 0), or
    // t + scale * noise written into work.
    const float* perturbed_by(const Tensor& t, float scale, const float* noise, float* work);
    int add_tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> values, bool frozen,
                   bool decay);

    Backend& be_;
    Model& model_;
    TrainSpec spec_;
    std::vector<Tensor> tensors_;
    std::vector<Adapter> adapters_;
    std::vector<int> adapter_of_;  // per model tensor
    uint64_t trainable_elements_ = 0;
    double setup_s_ = 0;
    // One adapter's noise (drawn per seed) and working copies (per stream); see merge().
    float* noise_ = nullptr;
    float* work_ = nullptr;
    size_t scratch_floats_ = 0;
};

}  // namespace spw
