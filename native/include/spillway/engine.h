// The engine: runs units (embeddings, blocks, head) through a backend in
// order, evaluating one or more activation streams per residency of a unit.
// A ZO step is two streams (+eps z, -eps z) sharing each unit's residency;
// scoring is one stream on the clean masters.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spillway/backend.h"
#include "spillway/model.h"
#include "spillway/noise.h"
#include "spillway/precision.h"

namespace spw {

struct CancelledError : std::runtime_error {
    CancelledError() : std::runtime_error("cancelled") {}
};

enum ExampleKind : int { EXAMPLE_LM = 0, EXAMPLE_CLASSIFY = 1 };

// Packed token sequences grouped into examples (see docs/ENGINE-SPEC.md, losses).
struct Batch {
    std::vector<int32_t> tokens;         // all sequences, concatenated
    std::vector<int32_t> seq_start;      // nseq + 1 offsets into tokens
    std::vector<int32_t> score_start;    // per scored span, relative to its sequence's start (>= 1)
    std::vector<int32_t> score_end;      // per scored span, exclusive
    // nseq + 1 offsets into score_start/score_end: sequence s scores spans
    // [span_start[s], span_start[s + 1]) (chat: one per assistant reply). Empty: one span per sequence.
    std::vector<int32_t> span_start;
    std::vector<int32_t> example_start;  // nexamples + 1 offsets into sequences
    std::vector<int32_t> example_kind;   // ExampleKind per example
    std::vector<int32_t> label;          // correct candidate for classify, -1 otherwise

    int num_sequences() const { return (int)seq_start.size() - 1; }
    int num_examples() const { return (int)example_start.size() - 1; }
    int num_tokens() const { return (int)tokens.size(); }
    int first_span(int s) const { return span_start.empty() ? s : span_start[(size_t)s]; }
    int end_span(int s) const { return span_start.empty() ? s + 1 : span_start[(size_t)s + 1]; }
};

struct StepParams {
    uint64_t run_seed = 0;
    uint64_t step = 0;
    int q = 1;
    float lr = 0.f;         // this step's scheduled learning rate
    float eps = 1e-3f;
    float weight_decay = 0.f;
    NoiseKind noise = NOISE_GAUSSIAN;
};

// Where a unit's master lives between its visits to the compute device.
enum class Home : int { Device = 0, Cpu = 1, Ssd = 2 };

struct TierOptions {
    std::vector<int> homes;     // Home per unit; empty: every unit stays on the device
    std::string spill_dir;      // one spill folder (required when any unit lives on the SSD) ...
    std::vector<std::string> spill_dirs;  // ... or several (drives): SSD units striped over them in unit order
    // Per unit, where a streamed unit's update is applied: 0 (or empty) at its home by
    // host threads after the step; 1 on the compute device when the unit is next staged,
    // then written back home by a device-to-host copy (ZO2's way). Same values either way.
    std::vector<int> device_update;
    int write_back_every = 1;   // K: an SSD unit is rewritten every K updates, replayed in between
    int prefetch = 2;           // SSD units read (and replayed) ahead of the one computing; 0: none
    // Device staging slots streamed units pass through; with 2 the upload of the next
    // unit overlaps the compute of this one. 0: 2 on a device with queues, 1 on the CPU.
    int stage_slots = 0;
    // Precision of every master: MASTER_F32, or MASTER_BF16 / MASTER_F16 with stochastic
    // rounding of updates. Streamed units are stored, moved and written in that format (half
    // the bytes); device-resident units hold its values in float32.
    MasterDtype master_dtype = MASTER_F32;
};

struct TierStats {
    uint64_t device_weight_bytes = 0;  // masters resident on the compute device
    uint64_t device_stage_bytes = 0;   // the staging slot streamed units pass through
    uint64_t cpu_bytes = 0;            // masters of CPU-homed units + the I/O buffer
    uint64_t ssd_bytes = 0;            // the spill file
    uint64_t h2d_bytes = 0;            // streamed to the device so far
    uint64_t ssd_read_bytes = 0;
    uint64_t ssd_write_bytes = 0;
    uint64_t d2h_bytes = 0;            // written back from the device to CPU or SSD homes
    uint64_t scratch_bytes = 0;        // z and the perturbed working copy (largest group of tensors one kernel reads)
    std::string spill_file;            // the first spill file
    std::vector<std::string> spill_files;
    std::string io_path;               // "io_uring" or "pread"
    int stage_slots = 0;
    std::string master_dtype;          // "fp32", "bf16" or "fp16"
};

struct PhaseTimes {
    double noise_ms = 0, forward_ms = 0, head_ms = 0, update_ms = 0, total_ms = 0;
    double io_ms = 0;  // waiting for streamed units (SSD read, replay, upload) on the compute path
    double exchange_ms = 0;  // a shared step: exchanging losses with the other processes (StepShare)
};

struct StepResult {
    std::vector<uint64_t> seeds;
    std::vector<double> loss_plus, loss_minus, projected_grad;
    bool skipped = false;
    double loss = 0;        // mean over perturbations of (L+ + L-) / 2
    PhaseTimes times;
};

// A step shared by several processes (data and perturbation parallelism, src/dist): which
// of the q perturbations this process computes, and the exchange that turns its per-example
// losses (rows: its perturbations; columns: the examples of its batch, its shard of the
// global batch) into those of all q perturbations on every example of the global batch, in
// the global order. The step then goes on exactly as one process with the global batch
// would: the same means, projected gradients and update on every process. Without a share a
// step computes all q perturbations, and its batch is the whole batch.
struct StepShare {
    int first = 0;  // perturbations [first, first + count) of q
    int count = 0;
    // `so_far`: this process's phase times up to the exchange (total_ms: its compute).
    std::function<void(std::vector<std::vector<double>>& plus, std::vector<std::vector<double>>& minus, const PhaseTimes& so_far)>
        exchange;
};

struct ScoreResult {
    std::vector<double> example_loss;
    std::vector<int32_t> correct;           // 1/0 for classify, -1 otherwise
    std::vector<double> candidate_scores;   // mean log-prob per sequence
    std::vector<int32_t> scored_tokens;     // per example
    std::vector<float> token_logprobs;      // every scored token, sequence by sequence
    double loss = 0;
    PhaseTimes times;
};

class SpillFile;
class AlignedBuffer;

class Engine {
public:
    Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const TierOptions& tiers = {});
    ~Engine();

    const Model& model() const { return *model_; }
    Model& model() { return *model_; }
    Backend& backend() { return *backend_; }

    StepResult step(const Batch& batch, const StepParams& params, const std::atomic<bool>* cancel,
                    const StepShare* share = nullptr);
    TierStats tier_stats() const;
    ScoreResult score(const Batch& batch, const std::atomic<bool>* cancel);

    // The current float32 values of a tensor (t.numel floats into out), wherever it lives.
    void read_tensor(const Tensor& t, float* out);

private:
    struct Stream {
        uint64_t seed;
        float scale;
        float* h;  // [N, C] hidden states
        std::vector<float> logprob;
    };
    // A staged unit: where its data came from and what must finish before that host memory is reused.
    struct Staged {
        size_t unit = 0;
        int slot = 0;
        AlignedBuffer* buf = nullptr;  // SSD: the host copy it was uploaded from
        int prefetch_buf = -1;         // which prefetch buffer that is, -1: io_
        bool ssd_write = false;        // written back from the device: write buf to the SSD once wb_done_ passes
    };
    struct Prepared;

    void validate(const Batch& batch) const;
    void prepare(const Batch& batch, Prepared& p);
    void run_forward(const Batch& batch, const Prepared& prep, std::vector<Stream>& streams, int noise,
                     const std::atomic<bool>* cancel, PhaseTimes& times);
    void block_forward(const Unit& unit, std::vector<Stream>& streams, int noise, const Prepared& prep, PhaseTimes& times);
    int role_tensor(const Unit& unit, const char* role) const;
    void with_weights(const Unit& unit, const std::vector<const char*>& roles, std::vector<Stream>& streams, int noise,
                      PhaseTimes& times, const std::function<void(size_t, const float* const*)>& fn);
    void ensure_buffers(int N, int M, int nstreams);
    struct Pending {
        std::vector<UpdateTerm> terms;
        float decay;
        int noise;
    };
    struct UnitTier {
        Home home = Home::Device;
        std::vector<std::pair<int, size_t>> layout;  // (tensor, float offset) inside the unit's slot
        size_t floats = 0;                           // slot size in floats
        uint64_t offset = 0;                         // SSD: byte offset in the spill file
        uint64_t checksum = 0;                       // SSD: of the slot as last written
        std::vector<Pending> pending;                // updates not yet applied to the stored copy
        int file = 0;                                // SSD: which spill file (striping)
        std::shared_ptr<AlignedBuffer> packed;       // CPU home with bf16/fp16 masters: the unit in that format
        bool device_update = false;                  // applied on the device when staged, then written back
    };
    void setup_tiers(const TierOptions& o);
    // Queues the upload of a streamed unit into the next staging slot; an SSD unit's
    // data comes from `loaded` (a prefetched, verified copy) or is read now into io_.
    // `source_done` is recorded on the copy queue once the upload has left the host copy.
    Staged stage_unit(size_t ui, AlignedBuffer* loaded, Backend::Event* source_done);
    // Makes the compute queue wait for a staged unit, applies its pending updates on the
    // device when it is updated there (writing it back home), and points its tensors at the slot.
    void use_staged(Staged& s);
    // Called once the unit's compute is queued: frees its slot for the next upload and
    // finishes an SSD write-back (the device-to-host copy ran beside the compute).
    void release_residency(Staged& s);
    void finish_write_back(Staged& s);
    void load_ssd_unit(size_t ui, void* host, Backend& replay, bool replay_pending = true);
    void write_ssd_unit(size_t ui, const void* host);
    void flush_cpu_pending(size_t ui);
    // One tensor's ZO update on `be`: theta is float32, or (bf16/fp16 masters) packed when `packed`.
    void update_at(Backend& be, const Tensor& t, void* theta, bool packed, const std::vector<UpdateTerm>& terms,
                   float decay, int noise);
    size_t unit_index(const Unit& u) const { return (size_t)(&u - model_->units.data()); }
    void release_resident();
    void release_tiers();
    void losses(const Batch& batch, const std::vector<float>& logprob, std::vector<double>& example_loss,
                std::vector<int32_t>& correct, std::vector<double>& cand, std::vector<int32_t>& scored) const;

    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;

    // Device-side scratch, grown on demand and reused across steps.
    float* zbuf_ = nullptr;      // noise of one unit
    float* wbuf_ = nullptr;      // the perturbed working copy of one unit
    size_t unit_capacity_ = 0;
    float* act_ = nullptr;       // activations arena
    size_t act_capacity_ = 0;
    std::vector<float*> hbuf_;   // hidden states, one per stream
    size_t h_capacity_ = 0;
    int32_t* ints_ = nullptr;    // the batch's index arrays
    size_t ints_capacity_ = 0;
    float* lp_ = nullptr;        // token log-probs of one stream
    size_t lp_capacity_ = 0;
    std::vector<float> inv_freq_;

    // Tiers: homes per unit, the spill file, one staging slot on the device.
    std::vector<UnitTier> tiers_;
    std::vector<int> tensor_unit_;
    std::vector<std::unique_ptr<SpillFile>> spills_;
    std::unique_ptr<AlignedBuffer> io_;
    Backend::Event* io_done_ = nullptr;       // the last upload from io_
    std::vector<float*> stage_;               // staging slots
    std::vector<uint16_t*> raw_;              // per slot: the unit as uploaded in bf16/fp16, before widening
    std::vector<Backend::Event*> slot_ready_, slot_free_, slot_wb_;  // per slot: uploaded, computed, written back
    int next_slot_ = 0;
    int stage_count_ = 0;                     // staging slots (stage_ in float32, or raw_ in bf16/fp16)
    size_t stage_floats_ = 0;
    int write_back_every_ = 1;
    int prefetch_ = 2;
    std::vector<std::unique_ptr<Backend>> replays_;  // per prefetch buffer: replays pending updates on its thread
    Backend::Event* wb_done_ = nullptr;       // the last write-back copy to the host
    Backend::Event* updated_ = nullptr;       // a device update done, before its copy home
    std::vector<std::unique_ptr<AlignedBuffer>> prefetch_bufs_;
    std::vector<Backend::Event*> prefetch_done_;  // per prefetch buffer: its last upload
    std::vector<void*> pinned_;                   // host memory registered with the backend
    Backend* host_ = nullptr;                 // updates at home run here
    std::unique_ptr<Backend> host_owned_;
    uint64_t h2d_bytes_ = 0;
    uint64_t d2h_bytes_ = 0;
    int dtype_ = 0;                    // MasterDtype
    size_t ebytes_ = 4;                // bytes per stored master element of a streamed unit
    float* inv_freq_dev_ = nullptr;    // RoPE frequencies on the backend
    std::vector<uint16_t*> resident16_;  // resident blocks' bf16/fp16 copies on the device
    bool resident_ = false;            // masters uploaded to device memory (Tensor::device != master)
};

}  // namespace spw
