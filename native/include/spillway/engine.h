// The engine: runs units (embeddings, blocks, head) through a backend in
// order, evaluating one or more activation streams per residency of a unit.
// A ZO step is two streams (+eps z, -eps z) sharing each unit's residency;
// scoring is one stream on the clean masters. Blocks run by their family's
// recipe (src/arch/); where units live and how they move is the residency's
// (src/tier/residency.h); the step, scoring and losses are the engine's.
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
#include "spillway/tiers.h"

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

// How a step estimates its descent direction (docs/ENGINE-SPEC.md, "Estimators").
//   MEZO: q two-point (SPSA) estimates, L(theta + eps z) and L(theta - eps z) per seed.
//   FZOO: q one-sided probes L(theta + eps z_j) around the unperturbed L0 (q + 1 forwards in one
//         pass over the blocks), the step divided by the standard deviation of the probe losses.
enum Estimator : int { ESTIMATOR_MEZO = 0, ESTIMATOR_FZOO = 1 };

struct StepParams {
    uint64_t run_seed = 0;
    uint64_t step = 0;
    Estimator estimator = ESTIMATOR_MEZO;
    int q = 1;              // MeZO: perturbations; FZOO: probes (at least 2)
    float lr = 0.f;         // this step's scheduled learning rate
    float eps = 1e-3f;
    float weight_decay = 0.f;
    NoiseKind noise = NOISE_GAUSSIAN;
};

struct PhaseTimes {
    double noise_ms = 0, forward_ms = 0, head_ms = 0, update_ms = 0, total_ms = 0;
    double io_ms = 0;  // waiting for streamed units (SSD read, replay, upload) on the compute path
    double exchange_ms = 0;  // a shared step: exchanging losses with the other processes (StepShare)
};

struct StepResult {
    std::vector<uint64_t> seeds;
    // Per seed. MeZO: L+, L- and (L+ - L-) / (2 eps). FZOO: the probe's loss, L0, and (L_j - L0) / eps.
    std::vector<double> loss_plus, loss_minus, projected_grad;
    std::vector<float> coef;  // the coefficient of z_j in the update (theta -= coef_j z_j): the seed log's
    bool skipped = false;
    double loss = 0;        // MeZO: mean over perturbations of (L+ + L-) / 2; FZOO: L0
    double sigma = 0;       // FZOO: the standard deviation of the probe losses
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

// ---- decoding (src/generate/; docs/ENGINE-SPEC.md, "Decoding") ----

// How the next token is chosen from a sequence's logits.
struct SamplingParams {
    float temperature = 0.f;         // 0: greedy (arg-max, the lowest id on ties)
    int top_k = 0;                   // keep the k most likely tokens (ties at the k-th kept); 0: all
    float top_p = 1.f;               // keep the most likely tokens until their mass reaches p; 1: all
    float repetition_penalty = 1.f;  // logits of tokens already in the sequence: / r when > 0, * r otherwise
    uint64_t seed = 0;               // the counter-based draws' key
};

struct DecodeRequest {
    std::vector<std::vector<int32_t>> prompts;  // one sequence each, decoded together
    int max_new_tokens = 1;
    SamplingParams sampling;
    std::vector<int32_t> eos;  // ids that end a sequence (the id is reported, then the sequence is finished)
    bool logits = false;       // return each step's raw logits (before the penalty and sampling)
};

enum FinishReason : int { FINISH_NONE = 0, FINISH_EOS = 1, FINISH_LENGTH = 2, FINISH_STOPPED = 3 };

// One step of a decode: the prefill and first token (decode_begin), or one more token (decode_next).
struct DecodeStep {
    std::vector<int32_t> tokens;  // per sequence: the token chosen this step, -1 for a finished sequence
    std::vector<int32_t> finish;  // per sequence: its FinishReason after this step (FINISH_NONE: goes on)
    std::vector<float> logits;    // DecodeRequest::logits: [nseq, V], the rows of finished sequences 0
    PhaseTimes times;
};

class Residency;
class WorkingCopies;
class Trainable;
struct Family;
struct Stream;
struct TrainSpec;
struct KvCache;
struct Decoding;
struct PassRope;

class Engine {
public:
    // `train`: what a step trains (native/src/zo/trainable.h); null: every tensor.
    Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const TierOptions& tiers = {},
           const TrainSpec* train = nullptr);
    ~Engine();

    const Model& model() const { return *model_; }
    Model& model() { return *model_; }
    Backend& backend() { return *backend_; }
    Trainable& trainable() { return *trainable_; }

    StepResult step(const Batch& batch, const StepParams& params, const std::atomic<bool>* cancel,
                    const StepShare* share = nullptr);
    TierStats tier_stats() const;
    ScoreResult score(const Batch& batch, const std::atomic<bool>* cancel);

    // The current float32 values of a tensor (t.numel floats into out), wherever it lives.
    void read_tensor(const Tensor& t, float* out);

    // Decoding with a KV cache on the clean masters: decode_begin runs the prompts as one pass
    // (filling every block's cache) and chooses each sequence's first token; decode_next feeds
    // the last tokens as one pass over the blocks (one token per unfinished sequence) and chooses
    // the next ones, after finishing the sequences in `stop` (indices into the prompts, the
    // caller's stop strings). The cache lives until decode_end or the next decode_begin; a
    // training step in between ends it.
    DecodeStep decode_begin(const DecodeRequest& request, const std::atomic<bool>* cancel);
    DecodeStep decode_next(const std::vector<int32_t>& stop, const std::atomic<bool>* cancel);
    void decode_end();

private:
    struct Prepared;

    void validate(const Batch& batch) const;
    void prepare(const Batch& batch, Prepared& p);
    // Embeddings, every block through the residency, then the head: the token log-probs of
    // each stream into logprob[stream].
    void run_forward(const Prepared& prep, std::vector<Stream>& streams, std::vector<std::vector<float>>& logprob,
                     int noise, const std::atomic<bool>* cancel, PhaseTimes& times);
    void ensure_buffers(int N, int M, int nstreams);
    // Whether the head's weight is perturbed a vocabulary chunk at a time by the backend
    // (token_logprobs_noisy): float32, not an adapter's (trainable tokens merge it whole).
    bool head_chunked() const;
    // Whether trainable tokens' rows are merged on their own (the embedding's lookup patched, the
    // head's chunks patched) instead of into whole working copies: host-addressable backends that
    // make the head in chunks.
    bool rows_merged() const;
    // Grows the decoding logits to `floats`.
    void ensure_logits(size_t floats);
    // Each stream's merged rows of row adapter `adapter` on `base`, at out + si * per; the adapter's
    // noise drawn once per seed (as WorkingCopies::with draws it), its time added to noise_ms.
    void merge_stream_rows(int adapter, const Tensor& base, const std::vector<Stream>& streams, int noise,
                           double& noise_ms, float* out, size_t per);
    // The index arrays of a pass into the int arena, each padded to 16; their device pointers in order.
    std::vector<const int32_t*> upload_ints(const std::vector<const std::vector<int32_t>*>& parts);
    // Decoding: one pass of the unfinished sequences, then each one's next token.
    DecodeStep decode_pass(bool past, const std::atomic<bool>* cancel);
    // The RoPE tables of a pass whose longest sequence has seq_len tokens, on the device
    // (rope_passes_). A table that depends on the length is recomputed for every pass from that
    // pass's longest sequence alone (transformers keeps a grown dynamic table until a pass is
    // shorter than max_position_embeddings; here no pass depends on the ones before it).
    void use_ropes(int seq_len);
    void losses(const Batch& batch, const std::vector<float>& logprob, std::vector<double>& example_loss,
                std::vector<int32_t>& correct, std::vector<double>& cand, std::vector<int32_t>& scored) const;

    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;
    const Family* family_ = nullptr;
    std::unique_ptr<Trainable> trainable_;
    std::unique_ptr<Residency> residency_;
    std::unique_ptr<WorkingCopies> copies_;  // z and the perturbed working copy of one weight group

    // Device-side scratch, grown on demand and reused across steps.
    float* act_ = nullptr;       // activations arena
    size_t act_capacity_ = 0;
    std::vector<float*> hbuf_;   // hidden states, one per stream
    size_t h_capacity_ = 0;
    int32_t* ints_ = nullptr;    // the batch's index arrays
    size_t ints_capacity_ = 0;
    float* lp_ = nullptr;        // token log-probs, every stream's
    size_t lp_capacity_ = 0;
    float* logits_ = nullptr;    // decoding: [sequences, V]
    size_t logits_capacity_ = 0;
    std::unique_ptr<Decoding> decoding_;  // the KV cache and sequences of the decode in progress
    // Trainable tokens without whole working copies (rows_merged): each stream's merged rows of the
    // embedding and of the head (host memory), and each token's row among them (-1: none).
    std::vector<float> embed_rows_, head_rows_;
    std::vector<int32_t> row_of_;

    // RoPE: the tables in use (host, by ModelConfig::ropes index) and where kernels read them.
    std::vector<std::vector<float>> rope_inv_freq_;
    std::vector<PassRope> rope_passes_;
    float* rope_dev_ = nullptr;  // every table's frequencies, on a backend that is not host-addressable
};

}  // namespace spw
