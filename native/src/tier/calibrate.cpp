#include "calibrate.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "arch/block.h"
#include "arch/family.h"
#include "arch/params.h"
#include "arch/rope.h"
#include "spill.h"
#include "spillway/backend.h"
#include "spillway/noise.h"
#include "spillway/precision.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Best (shortest) time of `reps` runs of fn, after one warm-up run.
template <typename Fn>
double best_of(int reps, Fn&& fn) {
    fn();
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        auto t0 = Clock::now();
        fn();
        best = std::min(best, seconds_since(t0));
    }
    return std::max(best, 1e-9);
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string gb(uint64_t b) {
    char s[64];
    std::snprintf(s, sizeof s, "%.2f GB", (double)b / 1e9);
    return s;
}

void measure_copies(Backend& dev, CalibrateResult& r) {
    const size_t bytes = 64ull << 20;
    r.copy_bytes = bytes;
    void* host = dev.alloc_host(bytes);
    void* d = dev.alloc(bytes);
    try {
        std::memset(host, 1, bytes);
        double up = best_of(4, [&] {
            dev.upload_async(d, host, bytes);
            dev.synchronize();
        });
        double down = best_of(4, [&] {
            dev.download_async(host, d, bytes);
            dev.synchronize();
        });
        r.h2d_bytes_per_s = (double)bytes / up;
        r.d2h_bytes_per_s = (double)bytes / down;
    } catch (...) {
        dev.release(d);
        dev.release_host(host);
        throw;
    }
    dev.release(d);
    dev.release_host(host);
}

double gemm_rate(Backend& dev) {
    const int N = 512, I = 2048, O = 2048;
    std::vector<float> h((size_t)I * O, 0.01f);
    float* W = static_cast<float*>(dev.alloc((size_t)I * O * sizeof(float)));
    float* x = static_cast<float*>(dev.alloc((size_t)N * I * sizeof(float)));
    float* y = static_cast<float*>(dev.alloc((size_t)N * O * sizeof(float)));
    dev.upload(W, h.data(), (size_t)I * O * sizeof(float));
    dev.upload(x, h.data(), (size_t)N * I * sizeof(float));
    double t = best_of(3, [&] {
        dev.linear(y, x, W, nullptr, N, I, O, false);
        dev.synchronize();
    });
    dev.release(W);
    dev.release(x);
    dev.release(y);
    return 2.0 * N * I * O / t;
}

// zo_update over a buffer much larger than the caches, one term: the host's
// update throughput with the engine's thread count (a helper backend: it leaves
// OpenBLAS's thread count alone, like the engine's updates at home).
void measure_update(int threads, Backend& dev, CalibrateResult& r) {
    auto host = make_cpu_backend(threads, false);
    r.host_threads = host->threads();
    const size_t n = 16ull << 20;  // 64 MiB of float32 masters
    r.update_elems = n;
    std::vector<float> theta(n, 0.f);
    UpdateTerm term{12345, 1e-7f};
    double t = best_of(3, [&] { host->zo_update(theta.data(), n, 7, NOISE_GAUSSIAN, &term, 1, 0.f); });
    r.cpu_update_elems_per_s = (double)n / t;
    if (dev.host_addressable()) {
        // The CPU backend: the compute device is the host, with the same threads.
        r.device_update_elems_per_s = r.cpu_update_elems_per_s;
        return;
    }
    float* d = static_cast<float*>(dev.alloc(n * sizeof(float)));
    try {
        dev.noise_fill(d, n, 1, 1, NOISE_GAUSSIAN, 0);
        double td = best_of(3, [&] {
            dev.zo_update(d, n, 7, NOISE_GAUSSIAN, &term, 1, 0.f);
            dev.synchronize();
        });
        r.device_update_elems_per_s = (double)n / td;
    } catch (...) {
        dev.release(d);
        throw;
    }
    dev.release(d);
}

// Reads and writes through SpillFile (O_DIRECT, io_uring) into a buffer registered with the compute
// device as the engine's read-ahead buffers are (pinned beside a GPU): the SSD → pinned leg of a
// streamed block, as the engine runs it.
void measure_ssd(const CalibrateOptions& o, Backend& dev, CalibrateResult& r) {
    if (o.spill_dir.empty()) {
        r.ssd_reason = "no spill folder given";
        return;
    }
    struct statvfs vfs;
    if (statvfs(o.spill_dir.c_str(), &vfs) != 0) {
        r.ssd_reason = "spill folder " + o.spill_dir + " is not usable: " + std::strerror(errno);
        return;
    }
    const uint64_t mib = 1ull << 20;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    uint64_t bytes = std::min<uint64_t>(std::max<uint64_t>(o.bytes, 4 * mib), free_bytes / 2) / mib * mib;
    if (bytes < 4 * mib) {
        r.ssd_reason = "spill folder " + o.spill_dir + " has only " + gb(free_bytes) + " free";
        return;
    }
    try {
        SpillFile file(o.spill_dir, bytes);
        r.ssd_direct = file.direct();
        r.ssd_file_bytes = bytes;
        uint64_t largest = std::min<uint64_t>(64 * mib, bytes);
        AlignedBuffer buf(largest);
        std::memset(buf.data(), 0x5a, buf.capacity());
        struct Pin {
            Backend& dev;
            void* p = nullptr;
            Pin(Backend& d, void* q, size_t n) : dev(d) {
                if (dev.host_addressable()) return;
                dev.pin_host(q, n);
                p = q;
            }
            ~Pin() {
                if (p) dev.unpin_host(p);
            }
        } pinned(dev, buf.data(), buf.capacity());
        for (uint64_t req = mib; req <= largest; req *= 4) {
            SsdRequestRate rate;
            rate.request_bytes = req;
            uint64_t span = bytes / req * req;
            auto t0 = Clock::now();
            for (uint64_t off = 0; off < span; off += req) file.write(off, buf.data(), req);
            rate.write_bytes_per_s = (double)span / std::max(seconds_since(t0), 1e-9);
            t0 = Clock::now();
            for (uint64_t off = 0; off < span; off += req) file.read(off, buf.data(), req);
            rate.read_bytes_per_s = (double)span / std::max(seconds_since(t0), 1e-9);
            r.ssd_read_bytes_per_s = std::max(r.ssd_read_bytes_per_s, rate.read_bytes_per_s);
            r.ssd_write_bytes_per_s = std::max(r.ssd_write_bytes_per_s, rate.write_bytes_per_s);
            r.ssd_by_request.push_back(rate);
            if (req == largest) break;
            if (req * 4 > largest) req = largest / 4;  // the last size is the largest request
        }
        r.ssd_available = true;
    } catch (const std::exception& e) {
        r.ssd_available = false;
        r.ssd_reason = e.what();
        r.ssd_by_request.clear();
    }
}

// ---- one transformer block, run with the engine's own block forward ----

// The family whose recipe a shape runs (arch/family.h) and the config it runs it with.
const Family& family_of_shape(const BlockShape& s) { return s.gated ? llama_family() : opt_family(); }

ModelConfig config_of(const BlockShape& s) {
    ModelConfig c;
    c.family = family_of_shape(s).name;
    c.hidden = s.hidden;
    c.embed_dim = s.hidden;
    c.intermediate = s.intermediate;
    c.heads = s.heads;
    c.kv_heads = s.kv_heads > 0 ? s.kv_heads : s.heads;
    c.head_dim = s.head_dim > 0 ? s.head_dim : s.hidden / std::max(1, s.heads);
    c.max_positions = s.seq_len;
    c.norm = s.rmsnorm ? NormKind::RmsNorm : NormKind::LayerNorm;
    c.activation = s.activation;
    c.layers = 1;
    if (s.rope) {
        RopeConfig r;
        r.type = RopeType::Default;
        r.rotary_dim = c.head_dim;
        r.max_positions = s.seq_len;
        c.ropes.push_back(r);
    }
    c.layer_attention.push_back({0, s.rope ? 0 : -1});
    return c;
}

// One block's tensors as its family's rules give them at this shape: biases where the family
// always has them, and where it may when `bias`; no norm bias under RMSNorm. Offsets in `floats`
// are those of one buffer, each tensor padded to 16 floats (the engine's slot layout).
struct Layout {
    std::vector<Tensor> tensors;
    std::vector<size_t> offsets;
    BlockParams params;
    size_t floats = 0;      // padded
    uint64_t parameters = 0;
};

Layout layout_of(const BlockShape& s) {
    const ModelConfig c = config_of(s);
    Layout L;
    auto add = [&](int& slot, std::vector<int64_t> shape, bool in_out) {
        Tensor t;
        t.shape = std::move(shape);
        t.numel = 1;
        for (int64_t d : t.shape) t.numel *= (size_t)d;
        t.transposed = in_out;
        t.id = (uint32_t)L.tensors.size() + 1;
        slot = (int)L.tensors.size();
        L.tensors.push_back(t);
        L.offsets.push_back(L.floats);
        L.floats += (t.numel + 15) / 16 * 16;
        L.parameters += t.numel;
    };
    for (const ParamRule& r : family_of_shape(s).rules) {
        WeightBias& wb = L.params.*r.field;
        const int64_t out = dim_of(r.out, c), in = dim_of(r.in, c);
        const bool norm = r.in == Dim::None;
        if (r.w != Need::No) {
            if (norm) add(wb.w, {out}, false);
            else add(wb.w, r.in_out ? std::vector<int64_t>{in, out} : std::vector<int64_t>{out, in}, r.in_out);
        }
        bool bias = r.b == Need::Yes || (r.b == Need::Maybe && s.bias);
        if (bias && !(norm && s.rmsnorm)) add(wb.b, {out}, false);
    }
    return L;
}

// FLOPs of one forward of the block: the projections, and causal attention (QK^T and AV, half the square).
double linear_flops(const BlockShape& s) {
    const ModelConfig c = config_of(s);
    double N = (double)s.sequences * s.seq_len;
    double C = c.hidden, I = c.intermediate, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim;
    return 2.0 * N * (C * qd + 2.0 * C * kvd + qd * C + (s.gated ? 3.0 : 2.0) * C * I);
}

double attention_flops(const BlockShape& s) {
    const ModelConfig c = config_of(s);
    return 2.0 * s.sequences * (double)c.heads * s.seq_len * (double)s.seq_len * c.head_dim;
}

size_t activation_floats(const BlockShape& s) {
    size_t N = (size_t)s.sequences * (size_t)s.seq_len;
    return acts_floats(config_of(s), N) * 2 + 3 * N * (size_t)s.hidden;  // two streams + their hidden states and start
}

// Times every kernel of a forward by kind, each waited for.
class KindTimes : public KernelTimer {
public:
    explicit KindTimes(Backend& be) : be_(be) {}
    void start() override { t0_ = Clock::now(); }
    void stop(KernelKind kind) override {
        be_.synchronize();
        seconds[(int)kind] += seconds_since(t0_);
    }
    double seconds[3] = {0, 0, 0};  // by KernelKind

private:
    Backend& be_;
    Clock::time_point t0_;
};

// A block of the shape's family in the backend's memory (weights ~ 0.02 N(0, 1), hidden states
// ~ N(0, 1)) and everything a pass of it needs, run through the family's recipe as the engine
// runs it.
class BlockRig {
public:
    BlockRig(Backend& be, const BlockShape& s)
        : be_(be), s_(s), c_(config_of(s)), L_(layout_of(s)), copies_(be, MASTER_F32) {
        try {
            init();
        } catch (...) {
            for (void* p : owned_) be_.release(p);
            throw;
        }
    }
    ~BlockRig() {
        for (void* p : owned_) be_.release(p);
    }
    BlockRig(const BlockRig&) = delete;
    BlockRig& operator=(const BlockRig&) = delete;

    uint64_t parameters() const { return L_.parameters; }
    int tokens() const { return N_; }

    void reset() {
        size_t bytes = (size_t)N_ * (size_t)c_.hidden * sizeof(float);
        be_.copy(h_[0], h0_, bytes);
        be_.copy(h_[1], h0_, bytes);
    }

    // What a ZO step adds to the block's two forwards: z of each weight group and its +eps and
    // -eps working copies, group by group as the engine's pass makes them (a pair at a time where
    // the backend runs pairs).
    void perturb() {
        std::vector<Stream> streams = {{13, 1e-3f, h_[0]}, {13, -1e-3f, h_[1]}};
        double noise_ms = 0;
        for (const BlockField& f : block_fields()) {
            const WeightBias& wb = L_.params.*f.field;
            if (wb.w < 0) continue;
            const int ids[2] = {wb.w, wb.b};
            if (!copies_.with_pairs(L_.tensors, ids, 2, streams, s_.noise, noise_ms,
                                    [](size_t, const float* const*, const float* const*) {}))
                copies_.with(L_.tensors, ids, 2, streams, s_.noise, noise_ms, [](size_t, const float* const*) {});
        }
    }

    // One forward on the clean weights; with `timer`, every kernel is waited for and timed.
    void forward(KernelTimer* timer) {
        std::vector<Stream> streams = {{0, 0.f, h_[0]}};
        run(streams, timer);
    }

private:
    void init() {
        N_ = s_.sequences * s_.seq_len;
        const size_t P = L_.floats, NC = (size_t)N_ * (size_t)c_.hidden;
        float* master = falloc(P);
        float* z = falloc(P);
        be_.noise_fill(z, P, 11, 1, NOISE_GAUSSIAN, 0);
        be_.perturb(master, z, z, 0.02f - 1.0f, P);
        for (size_t i = 0; i < L_.tensors.size(); i++) L_.tensors[i].device = master + L_.offsets[i];
        size_t most = 0;
        for (const BlockField& f : block_fields()) {
            const WeightBias& wb = L_.params.*f.field;
            size_t n = 0;
            for (int ti : {wb.w, wb.b})
                if (ti >= 0) n += (L_.tensors[(size_t)ti].numel + 15) / 16 * 16;
            most = std::max(most, n);
        }
        copies_.reserve(most);
        if (be_.runs_pairs()) copies_.reserve_pairs(most);
        h0_ = falloc(NC);
        h_[0] = falloc(NC);
        h_[1] = falloc(NC);
        stream_floats_ = acts_floats(c_, (size_t)N_);
        act_ = falloc(2 * stream_floats_);
        be_.noise_fill(h0_, NC, 12, 2, NOISE_GAUSSIAN, 0);
        std::vector<int32_t> starts((size_t)s_.sequences + 1), pos((size_t)N_);
        for (int q = 0; q <= s_.sequences; q++) starts[(size_t)q] = q * s_.seq_len;
        for (int n = 0; n < N_; n++) pos[(size_t)n] = n % s_.seq_len;
        in_.N = N_;
        in_.nseq = s_.sequences;
        in_.seq_start = ialloc(starts);
        in_.positions = ialloc(pos);
        for (const RopeConfig& r : c_.ropes) {
            RopeTable t = rope_table(r, s_.seq_len);
            float* inv = falloc(t.inv_freq.size());
            be_.upload(inv, t.inv_freq.data(), t.inv_freq.size() * sizeof(float));
            in_.ropes.push_back({inv, t.attention_scale});
        }
        reset();
        be_.synchronize();
    }

    void run(std::vector<Stream>& streams, KernelTimer* timer) {
        double noise_ms = 0;
        BlockPass pass(be_, c_, L_.tensors, copies_, in_, streams, act_, stream_floats_, s_.noise, noise_ms, timer);
        pass.run(family_of_shape(s_).block, 0, L_.params);
    }

    float* falloc(size_t n) {
        void* p = be_.alloc(std::max<size_t>(n, 1) * sizeof(float));
        owned_.push_back(p);
        return static_cast<float*>(p);
    }
    int32_t* ialloc(const std::vector<int32_t>& v) {
        void* p = be_.alloc(std::max<size_t>(v.size(), 1) * sizeof(int32_t));
        owned_.push_back(p);
        be_.upload(p, v.data(), v.size() * sizeof(int32_t));
        return static_cast<int32_t*>(p);
    }

    Backend& be_;
    BlockShape s_;
    ModelConfig c_;
    Layout L_;
    WorkingCopies copies_;
    PassInputs in_;
    int N_ = 0;
    float *h0_ = nullptr, *act_ = nullptr;
    float* h_[2] = {nullptr, nullptr};
    size_t stream_floats_ = 0;
    std::vector<void*> owned_;
};

void check_shape(const BlockShape& s) {
    const ModelConfig c = config_of(s);
    if (s.hidden <= 0 || s.intermediate <= 0 || s.heads <= 0 || s.sequences <= 0 || s.seq_len <= 0)
        throw std::runtime_error("block shape: hidden, intermediate, heads, sequences and seq_len must be positive");
    if (c.kv_heads <= 0 || c.heads % c.kv_heads != 0) throw std::runtime_error("block shape: heads must be a multiple of kv_heads");
    if (c.head_dim <= 0 || (s.rope && c.head_dim % 2 != 0)) throw std::runtime_error("block shape: bad head_dim");
    if (s.rope != s.gated)
        throw std::runtime_error("block shape: gated blocks (the Llama family's) have rotary positions, plain ones learned positions");
    if ((double)s.sequences * s.seq_len > (double)INT_MAX / 4) throw std::runtime_error("block shape: too many tokens");
}

// The perturbation and a forward, `reps` of each (medians).
struct PassTimes {
    double forward = 0, perturb = 0;  // seconds
};

PassTimes time_passes(Backend& be, BlockRig& rig, int reps) {
    std::vector<double> pert, fwd;
    for (int i = 0; i < reps; i++) {
        rig.reset();
        be.synchronize();
        auto a = Clock::now();
        rig.perturb();
        be.synchronize();
        auto m = Clock::now();
        rig.forward(nullptr);
        be.synchronize();
        pert.push_back(std::chrono::duration<double>(m - a).count());
        fwd.push_back(seconds_since(m));
    }
    return {median(fwd), median(pert)};
}

// The block at its own shape: warm-up, then a few repetitions (median) of the
// perturbation and a forward.
void run_direct(Backend& be, const BlockShape& s, BlockTiming& b) {
    BlockRig rig(be, s);
    auto t0 = Clock::now();
    rig.perturb();
    rig.forward(nullptr);
    be.synchronize();
    double warm = seconds_since(t0);
    int reps = (int)std::clamp(1.0 / std::max(warm, 1e-6), 3.0, 7.0);
    PassTimes t = time_passes(be, rig, reps);
    b.source = "measured";
    b.parameters = rig.parameters();
    b.tokens = rig.tokens();
    b.reps = reps;
    b.perturb_ms = 1000 * t.perturb;
    b.forward_ms = 1000 * t.forward;
    b.zo_ms = b.perturb_ms + 2 * b.forward_ms;
    b.proxy = s;
    char msg[256];
    std::snprintf(msg, sizeof msg, "ran this block on %d tokens, median of %d repetitions", b.tokens, reps);
    b.detail = msg;
}

// A smaller block of the same kind: fewer heads (same head size, hidden and MLP
// scaled alike), at most `token_cap` tokens of sequences no longer than 1024.
BlockShape proxy_of(const BlockShape& s, uint64_t param_cap, int token_cap) {
    const ModelConfig c = config_of(s);
    BlockShape p = s;
    for (int div = 1;; div *= 2) {
        int nh = std::max(1, c.heads / div);
        int kv = std::max(1, (int)((int64_t)c.kv_heads * nh / c.heads));
        while (nh % kv) kv--;
        double f = (double)nh / c.heads;
        p.heads = nh;
        p.kv_heads = kv;
        p.head_dim = c.head_dim;
        p.hidden = std::max(16, (int)std::lround(c.hidden * f));
        p.intermediate = std::max(16, (int)std::lround(c.intermediate * f));
        if (block_parameters(p) <= param_cap || nh == 1) break;
    }
    p.seq_len = std::min(s.seq_len, 1024);
    p.sequences = std::max(1, std::min(s.sequences, token_cap / p.seq_len));
    return p;
}

// Too big to run in a calibration: a smaller block of the same kind runs with
// every kernel timed, and each kind of kernel is scaled to the real shape: the
// projections by FLOPs at the best measured GEMM rate, attention by heads ×
// sequences × length², norms and activations by elements, the perturbation by
// parameters.
void run_extrapolated(Backend& be, const BlockShape& s, double gemm_flops_per_s, uint64_t param_cap, int token_cap,
                      BlockTiming& b) {
    BlockShape p = proxy_of(s, param_cap, token_cap);
    BlockRig rig(be, p);
    rig.perturb();
    rig.forward(nullptr);
    be.synchronize();
    const int reps = 3;
    std::vector<double> lin, att, oth, pert;
    for (int i = 0; i < reps; i++) {
        rig.reset();
        be.synchronize();
        auto a = Clock::now();
        rig.perturb();
        be.synchronize();
        pert.push_back(seconds_since(a));
        KindTimes kt(be);
        rig.forward(&kt);
        lin.push_back(kt.seconds[(int)KernelKind::Linear]);
        att.push_back(kt.seconds[(int)KernelKind::Attention]);
        oth.push_back(kt.seconds[(int)KernelKind::Other]);
    }
    const ModelConfig d = config_of(s), dp = config_of(p);
    double proxy_rate = linear_flops(p) / std::max(median(lin), 1e-9);
    double rate = std::max(proxy_rate, gemm_flops_per_s);
    double N = (double)s.sequences * s.seq_len, Np = (double)p.sequences * p.seq_len;
    double t_lin = linear_flops(s) / rate;
    double t_att = median(att) * ((double)d.heads / dp.heads) * ((double)s.sequences / p.sequences) *
                   std::pow((double)s.seq_len / p.seq_len, 2.0);
    double t_oth = median(oth) * (N * (d.hidden + d.intermediate)) / (Np * (dp.hidden + dp.intermediate));
    uint64_t P = block_parameters(s), Pp = block_parameters(p);
    double t_pert = median(pert) * (double)P / (double)Pp;
    b.source = "extrapolated";
    b.parameters = P;
    b.tokens = (int)N;
    b.reps = reps;
    b.forward_ms = 1000 * (t_lin + t_att + t_oth);
    b.perturb_ms = 1000 * t_pert;
    b.zo_ms = b.perturb_ms + 2 * b.forward_ms;
    b.gemm_flops_per_s = rate;
    b.proxy = p;
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "ran a block of hidden %d, intermediate %d, %d heads on %d tokens (%d per sequence) and scaled it: "
                  "projections by FLOPs at %.1f GFLOP/s (the best of that block's and the 512x2048x2048 GEMM), "
                  "attention by heads x sequences x length^2, norms and activations by elements, the perturbation "
                  "by parameters",
                  p.hidden, p.intermediate, p.heads, (int)Np, p.seq_len, rate / 1e9);
    b.detail = msg;
}

void measure_block(Backend& dev, const BlockShape& s, CalibrateResult& r) {
    check_shape(s);
    const bool host = dev.host_addressable();
    // What may run as it is: weights and activations within bounds, and a repetition
    // estimated (at a cautious rate) short enough for the whole to stay within about a second.
    const uint64_t P = block_parameters(s);
    const uint64_t direct_params = host ? (32ull << 20) : (128ull << 20);
    const double act_bytes = (double)activation_floats(s) * sizeof(float);
    double rate = r.gemm_flops_per_s > 0 ? r.gemm_flops_per_s : (host ? 2e10 : 5e12);
    double noise_rate = r.device_update_elems_per_s > 0 ? r.device_update_elems_per_s : (host ? 1e8 : 2e10);
    double rep = 2.0 * (linear_flops(s) + attention_flops(s)) / rate + 3.0 * (double)P / noise_rate;
    bool direct = P <= direct_params && act_bytes <= (double)(512ull << 20) && 4.0 * rep <= 1.5;
    r.has_block = true;
    if (direct) {
        run_direct(dev, s, r.block);
        r.block.gemm_flops_per_s = 0;
        return;
    }
    double g = r.gemm_flops_per_s > 0 ? r.gemm_flops_per_s : gemm_rate(dev);
    run_extrapolated(dev, s, g, host ? (2ull << 20) : (16ull << 20), host ? 256 : 4096, r.block);
}

}  // namespace

uint64_t block_parameters(const BlockShape& s) { return layout_of(s).parameters; }

CalibrateResult calibrate(const CalibrateOptions& o) {
    auto t0 = Clock::now();
    CalibrateResult r;
    int threads = o.threads > 0 ? o.threads : std::max(1, (int)std::thread::hardware_concurrency());
    std::unique_ptr<Backend> dev;
#ifdef SPW_WITH_CUDA
    if (o.cuda_device >= 0) {
        dev = make_cuda_backend(o.cuda_device, o.gemm);
        r.pinned = true;
    }
#endif
    if (!dev) dev = make_cpu_backend(threads);
    r.backend = dev->name();
    r.host_threads = threads;
    if (o.machine) {
        measure_copies(*dev, r);
        r.gemm_flops_per_s = gemm_rate(*dev);
        measure_update(threads, *dev, r);
    }
    if (o.ssd) measure_ssd(o, *dev, r);
    if (o.has_block) {
        try {
            measure_block(*dev, o.block, r);
        } catch (const std::exception& e) {
            // The planner falls back on its FLOP estimate.
            r.has_block = true;
            r.block = BlockTiming{};
            r.block.source = "failed";
            r.block.detail = e.what();
        }
    }
    r.seconds = seconds_since(t0);
    return r;
}

}  // namespace spw
