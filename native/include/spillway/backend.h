// The compute backend interface: memory, copies and every kernel the forward
// pass and the ZO step need. The CPU backend is the reference; the CUDA
// backend is its twin. Pointers passed to kernels are backend ("device")
// pointers; on the CPU backend they are ordinary host memory.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace spw {

enum class Act : int { Relu = 0, Gelu = 1, GeluNew = 2, Silu = 3 };

// Noise applied on the fly to a gathered tensor: value = master + scale * z(seed, id, k).
// scale == 0 means no noise (the master itself).
struct NoiseSpec {
    uint64_t seed = 0;
    uint32_t id = 0;
    int kind = 0;
    float scale = 0.0f;
};

// One term of a ZO update: theta -= coef * z(seed, id, k).
struct UpdateTerm {
    uint64_t seed;
    float coef;
};

struct AttentionShape {
    int heads;            // NH
    int kv_heads;         // grouped-query heads
    int head_dim;         // HD
    int ldq, ldk, ldv;    // row strides of q, k and v
    float scale;          // usually 1/sqrt(HD)
    int window;           // sliding window span, 0 = full causal
    // Gemma 2's attention-logit soft-cap: each scaled score s becomes cap * tanh(s / cap) before
    // the mask and the softmax; 0: none.
    float softcap = 0.f;
};

// Failures a caller tells apart from the rest (the binding gives each its code): an allocation
// the device, or the engine's budget of it, cannot serve; and a device that failed, after which
// the process cannot use it again (CUDA's sticky errors: lost or reset, an uncorrectable ECC
// error, a kernel fault).
struct DeviceOutOfMemory : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct DeviceFailed : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// What alloc() implementations call around the real allocation: reserve() throws when the
// budget would be exceeded, commit() records a successful allocation, forget() a release.
class MemoryLedger {
public:
    void reserve(size_t bytes, size_t budget, const std::string& device) const;
    void commit(void* p, size_t bytes);
    void forget(void* p);
    size_t in_use() const;
    size_t peak() const;

private:
    mutable std::mutex mu_;
    std::unordered_map<void*, size_t> sizes_;
    size_t in_use_ = 0, peak_ = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;
    virtual int threads() const = 0;
    // True when backend pointers are ordinary host memory (the CPU backend):
    // the engine then hands host masters straight to kernels. Otherwise every
    // tensor a kernel reads must first be uploaded (Tensor::device).
    virtual bool host_addressable() const { return true; }
    // True when the backend runs a +eps/-eps pair's products side by side (linear_streams on
    // its threads): the engine then perturbs a block's weight groups a pair at a time
    // (perturb_pair, one more working copy) instead of a stream at a time.
    virtual bool runs_pairs() const { return false; }
    // Floats of the scratch token_logprobs_noisy needs for a head of V rows of width C; 0: the
    // backend has no such kernel, and the engine perturbs the head whole into its working copy first.
    virtual size_t head_chunk_floats(int C, int V) const { (void)C; (void)V; return 0; }

    // ---- the device memory budget ----
    // Bytes alloc() may hand out in all (0: no budget). Beyond it alloc() throws, naming the
    // budget, what is in use and what was asked: a clear error, never the device's own OOM.
    void set_memory_budget(size_t bytes) { budget_ = bytes; }
    size_t memory_budget() const { return budget_; }
    size_t memory_in_use() const { return ledger_.in_use(); }
    size_t memory_peak() const { return ledger_.peak(); }

    // ---- memory and copies ----
    // Device memory; failure throws std::runtime_error naming the bytes asked
    // and the bytes free.
    virtual void* alloc(size_t bytes) = 0;
    virtual void release(void* p) = 0;
    // Host memory suited to fast and asynchronous copies (pinned on CUDA).
    virtual void* alloc_host(size_t bytes);
    virtual void release_host(void* p);
    // Copies in the order of the kernels: when upload() returns the host source
    // may be reused; when download() returns the host destination holds the data.
    virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;
    virtual void download(void* host_dst, const void* src, size_t bytes) = 0;
    // Asynchronous variants for host buffers from alloc_host(): queued in kernel
    // order; the host buffer must stay untouched until synchronize() returns.
    virtual void upload_async(void* dst, const void* host_src, size_t bytes) { upload(dst, host_src, bytes); }
    virtual void download_async(void* host_dst, const void* src, size_t bytes) { download(host_dst, src, bytes); }
    virtual void copy(void* dst, const void* src, size_t bytes) = 0;
    // Waits for every queued kernel and copy, on every queue.
    virtual void synchronize() = 0;

    // ---- a second queue for the tiered store's uploads ----
    // Uploads queued on the copy queue run beside the kernels of the compute
    // queue. Events order the two queues without stopping the host: wait(q, e)
    // makes work queued on q afterwards wait, on the device, for everything
    // queued on the other queue before record(e, ...). On a backend without
    // queues (the CPU) every copy is done when it returns and events are no-ops.
    // An upload's host source must stay untouched until host_wait() on an event
    // recorded after it has returned; pin_host() makes such uploads truly
    // asynchronous for memory not from alloc_host() (cudaHostRegister).
    // Copy: host-to-device uploads; CopyOut: device-to-host write-backs (a GPU has a copy
    // engine per direction, so the two overlap each other and the kernels).
    enum class Queue : int { Compute = 0, Copy = 1, CopyOut = 2 };
    struct Event;
    virtual Event* event_create() { return nullptr; }
    virtual void event_destroy(Event* e) { (void)e; }
    virtual void record(Event* e, Queue q) { (void)e; (void)q; }
    virtual void wait(Queue q, Event* e) { (void)q; (void)e; }
    virtual void host_wait(Event* e) { (void)e; }
    virtual void upload_on(Queue q, void* dst, const void* host_src, size_t bytes) {
        (void)q;
        upload(dst, host_src, bytes);
    }
    // A download queued on q: the host destination holds the data once host_wait() on
    // an event recorded on q after it has returned.
    virtual void download_on(Queue q, void* host_dst, const void* src, size_t bytes) {
        (void)q;
        download(host_dst, src, bytes);
    }
    virtual void pin_host(void* p, size_t bytes) { (void)p; (void)bytes; }
    virtual void unpin_host(void* p) { (void)p; }
    // For libraries that enqueue work themselves (NCCL, src/dist): the queue's native handle
    // (a cudaStream_t on CUDA; nullptr where queues are not the device's), and making this
    // backend's device the calling thread's.
    virtual void* native_queue(Queue q) { (void)q; return nullptr; }
    virtual void bind_thread() {}

    // ---- ZO kernels ----
    // z[i] = noise(seed, id, k0 + i) for i < n; k0 must be a multiple of 4.
    virtual void noise_fill(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) = 0;
    // w[i] = fma(scale, z[i], theta[i])
    virtual void perturb(float* w, const float* theta, const float* z, float scale, size_t n) = 0;
    // w_plus[i] = fma(scale, z_i, theta[i]) and w_minus[i] = fma(-scale, z_i, theta[i]) with
    // z_i = noise(seed, id, i): a pair's two working copies in one pass, z never stored (the same
    // bits as noise_fill, then perturb with scale and with -scale).
    virtual void perturb_pair(float* w_plus, float* w_minus, const float* theta, size_t n, uint64_t seed, uint32_t id,
                              int kind, float scale) = 0;
    // theta[i] -= sum_j terms[j].coef * z_j(i)  then  theta[i] -= decay * theta_before[i], for the
    // elements with |theta_before[i]| < mask_below (sparse training); the others keep their bits.
    virtual void zo_update(float* theta, size_t n, uint32_t id, int kind, const UpdateTerm* terms,
                           int nterms, float decay, float mask_below = INFINITY) = 0;
    // z[i] = 0 where |theta[i]| >= below (a sparse tensor's noise: only small weights move)
    virtual void mask_small(float* z, const float* theta, float below, size_t n) = 0;

    // ---- reduced-precision masters (spillway/precision.h) ----
    // The ZO update of a master held in `dtype` (MASTER_BF16 or MASTER_F16): computed in
    // float32 exactly as zo_update, then rounded stochastically with
    // sr_bits4(terms[0].seed, id, k). packed: theta is uint16_t[n] in that format; else
    // float[n] holding values of that format. The defaults throw: not every backend has them.
    virtual void zo_update_rounded(void* theta, bool packed, int dtype, size_t n, uint32_t id, int kind,
                                   const UpdateTerm* terms, int nterms, float decay, float mask_below = INFINITY);
    // out[i] = in[i] as float32 (exact)
    virtual void widen(float* out, const uint16_t* in, size_t n, int dtype);
    // w[i] = fma(scale, z[i], float(theta[i])): perturb() from a master in `dtype`
    virtual void perturb_packed(float* w, const uint16_t* theta, const float* z, float scale, size_t n, int dtype);
    // out[i] = in[i] rounded to nearest even in `dtype` (exact for representable values)
    virtual void narrow(uint16_t* out, const float* in, size_t n, int dtype);

    // ---- forward kernels (row-major, N rows) ----
    // out[n, :] = tok[ids[n], :] (+ noise); optionally += pos[posidx[n], :] (+ noise)
    virtual void embed(float* out, const float* tok, const int32_t* ids, int N, int C,
                       const NoiseSpec& tok_noise, const float* pos, const int32_t* posidx,
                       const NoiseSpec& pos_noise) = 0;
    virtual void layernorm(float* out, const float* inp, const float* w, const float* b, int N, int C,
                           float eps) = 0;
    // out may be inp (in place: each row is read whole before it is written)
    virtual void rmsnorm(float* out, const float* inp, const float* w, int N, int C, float eps) = 0;
    // out = rmsnorm(inp) * (offset + w): Gemma's norms scale by (1 + w). out may be inp.
    virtual void rmsnorm_offset(float* out, const float* inp, const float* w, float offset, int N, int C,
                                float eps) = 0;
    // out[N, O] = inp[N, I] W^T + b, W stored [O, I] (or [I, O] when transposed)
    virtual void linear(float* out, const float* inp, const float* W, const float* b, int N, int I, int O,
                        bool transposed) = 0;
    // linear() for `streams` streams of one shape: out[s] = inp[s] W[s]^T + b[s] (b[s] may be null).
    // The default runs them one after the other; the CPU backend runs them side by side.
    virtual void linear_streams(int streams, float* const* out, const float* const* inp, const float* const* W,
                                const float* const* b, int N, int I, int O, bool transposed);
    // A +eps/-eps pair's two products straight from the masters: out[0] = inp[0] (W + scale z)^T
    // + (b + scale z_b) and out[1] the same with -scale (w_ns.scale; z of tensor w_ns.id, element
    // (o, i) of W at index w_first + o * I + i, and b_ns's z for b at index b_first + o), the bits
    // of perturb_pair then linear_streams, with no working copy written. False, having done
    // nothing, where the backend does not (by the shape alone, the same for every pair of a pass):
    // the engine then makes the pair's copies. relu: the outputs' ReLU stored instead, the bits of
    // activation(Act::Relu) after the products.
    virtual bool linear_pair_noisy(float* const* out, const float* const* inp, const float* W, const float* b,
                                   const NoiseSpec& w_ns, uint64_t w_first, const NoiseSpec& b_ns, uint64_t b_first, int N,
                                   int I, int O, bool transposed, bool relu) {
        (void)out, (void)inp, (void)W, (void)b, (void)w_ns, (void)w_first, (void)b_ns, (void)b_first, (void)N, (void)I,
            (void)O, (void)transposed, (void)relu;
        return false;
    }
    // rotate_half RoPE, in place, on `nheads` heads of each row of x (row stride ld): the first
    // `rotary_dim` dims of each head rotate in pairs (i, i + rotary_dim / 2) by positions[n] *
    // inv_freq[i], with cos and sin multiplied by `scale`; the rest of the head passes through.
    virtual void rope(float* x, int ld, int nheads, int head_dim, int rotary_dim, const int32_t* positions, int N,
                      const float* inv_freq, float scale) = 0;
    // Causal attention over packed sequences (seq_start has nseq + 1 entries); out [N, NH * HD].
    virtual void attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s,
                           const int32_t* seq_start, int nseq) = 0;
    virtual void activation(float* x, size_t n, Act act) = 0;
    // gate[i] = silu(gate[i]) * up[i]
    virtual void gated_silu(float* gate, const float* up, size_t n) = 0;
    // gate[i] = act(gate[i]) * up[i] (Gemma's GeGLU: the tanh GELU, Act::GeluNew)
    virtual void gated_act(float* gate, const float* up, size_t n, Act act) = 0;
    // x[i] *= s (Gemma's embeddings times sqrt(hidden))
    virtual void scale(float* x, float s, size_t n) = 0;
    // x[i] += y[i]
    virtual void add(float* x, const float* y, size_t n) = 0;
    // x[r, c] *= d[r] for a [rows, cols] x (rows = 1: every element times d[0])
    virtual void scale_rows(float* x, const float* d, int rows, int cols) = 0;
    // out[r, :cols] = in[r, :cols] for `rows` rows of strides ld_out and ld_in: a strided slice
    // (GPT-NeoX's per-head q|k|v split into separate q, k and v).
    virtual void copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) = 0;
    // out[m, :] = inp[rows[m], :]
    virtual void gather_rows(float* out, const float* inp, const int32_t* rows, int M, int C) = 0;
    // logprob[m] = log_softmax(x[m, :] W^T)[target[m]], W [V, C]; with softcap > 0 each logit l
    // becomes softcap * tanh(l / softcap) first (Gemma 2's final soft-cap).
    virtual void token_logprobs(float* logprob, const float* x, const float* W, const int32_t* target, int M,
                                int C, int V, float softcap = 0.f) = 0;
    // token_logprobs for `streams` streams, stream s reading rows x[s] against theta + noise[s].scale
    // * z(noise[s]) (scale 0: theta itself), z zeroed where !(|theta| < mask_below) (+inf: nowhere).
    // The perturbed weight is made a vocabulary chunk at a time in `scratch` (head_chunk_floats),
    // never whole, and z drawn once for a +eps/-eps pair of one seed (streams s, s + 1); the bits
    // are those of perturb (or perturb_pair), then token_logprobs. With patch_values[s] (host
    // memory), stream s reads row patch_rows[j] of theta as patch_values[s][j * C ..] instead
    // (trainable tokens' merged rows; its noise scale must be 0). Only where head_chunk_floats > 0.
    virtual void token_logprobs_noisy(int streams, float* const* logprob, const float* const* x, const float* theta,
                                      const NoiseSpec* noise, float mask_below, const int32_t* patch_rows, int npatch,
                                      const float* const* patch_values, float* scratch, const int32_t* target, int M,
                                      int C, int V, float softcap);

    // ---- decoding with a KV cache (src/generate/) ----
    // cache[rows[n] * width + c] = x[n * ld + c] for n < N, c < width: the keys or values of a
    // pass's tokens into their sequences' cache rows.
    virtual void kv_store(float* cache, const float* x, int ld, const int32_t* rows, int N, int width) = 0;
    // Causal attention of a pass's N tokens over cached keys and values (rows of s.ldk / s.ldv floats):
    // token n of sequence s (seq_start over the pass's tokens), at position positions[n], attends
    // to cache rows kv_start[s] + j for j <= positions[n] (and j > positions[n] - s.window with a
    // window); out [N, NH * HD]. The same sums as attention() over the same keys.
    virtual void attention_cached(float* out, const float* q, const float* kcache, const float* vcache,
                                  const AttentionShape& s, const int32_t* positions, int N,
                                  const int32_t* seq_start, const int32_t* kv_start, int nseq) = 0;

protected:
    MemoryLedger ledger_;
    size_t budget_ = 0;
};

// sets_blas_threads: a compute backend makes OpenBLAS (process-wide) single-threaded: its
// own pool splits the products into single-threaded calls. Helper backends (noise, replays,
// updates at home) run no products and leave OpenBLAS alone.
std::unique_ptr<Backend> make_cpu_backend(int threads, bool sets_blas_threads = true);

// ---- CUDA ----
struct CudaDeviceInfo {
    int index = 0;
    std::string name;
    std::string pci_bus_id;      // "0000:3B:00.0" (cudaDeviceGetPCIBusId); NVML's devices are matched by it
    size_t total_bytes = 0;
    long long free_bytes = -1;   // -1 when NVML is not available to ask without a context
    int cc_major = 0, cc_minor = 0;
    int multiprocessors = 0;
};

struct CudaReport {
    bool compiled = false;
    // "ok", "CUDA not compiled in" or "no device" (states, not errors); detail says why.
    std::string state;
    std::string detail;
    int driver_version = 0;       // e.g. 13000 (cudaDriverGetVersion), 0 when unknown
    int runtime_version = 0;      // the cudart this addon was built with
    std::vector<CudaDeviceInfo> devices;
};

// Never throws: every failure is a state of the report.
CudaReport cuda_report();

#ifdef SPW_WITH_CUDA
// Throws std::runtime_error when the device does not exist or cannot be used.
// cuBLAS is reached through dlopen (libcublas.so.13, or $SPILLWAY_CUBLAS);
// without it, or with SPILLWAY_CUBLAS=0, GEMMs use the built-in tiled kernel.
// gemm: "fp32", "tf32" or "bf16" (empty: fp32); $SPILLWAY_GEMM, when set, overrides it.
std::unique_ptr<Backend> make_cuda_backend(int device, const std::string& gemm = std::string());
#endif

}  // namespace spw
