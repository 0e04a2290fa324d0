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

#include "spill.h"
#include "spillway/backend.h"
#include "spillway/noise.h"

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

void measure_ssd(const CalibrateOptions& o, CalibrateResult& r) {
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

// ---- one transformer block, run with the backend's own kernels ----

constexpr size_t kNone = SIZE_MAX;

struct Dims {
    int C, I, NH, KV, HD, qd, kvd;
};

Dims dims_of(const BlockShape& s) {
    Dims d;
    d.C = s.hidden;
    d.I = s.intermediate;
    d.NH = s.heads;
    d.KV = s.kv_heads > 0 ? s.kv_heads : s.heads;
    d.HD = s.head_dim > 0 ? s.head_dim : s.hidden / std::max(1, s.heads);
    d.qd = d.NH * d.HD;
    d.kvd = d.KV * d.HD;
    return d;
}

// Offsets of the block's tensors in one buffer, each padded to 16 floats (the engine's slot layout).
struct Layout {
    size_t attn_norm_w = kNone, attn_norm_b = kNone, q_w = kNone, q_b = kNone, k_w = kNone, k_b = kNone;
    size_t v_w = kNone, v_b = kNone, o_w = kNone, o_b = kNone, mlp_norm_w = kNone, mlp_norm_b = kNone;
    size_t m1_w = kNone, m1_b = kNone, m2_w = kNone, m2_b = kNone, m3_w = kNone, m3_b = kNone;
    size_t floats = 0;      // padded
    uint64_t params = 0;    // unpadded
};

Layout layout_of(const BlockShape& s) {
    Dims d = dims_of(s);
    Layout L;
    auto add = [&](size_t n) {
        size_t off = L.floats;
        L.floats += (n + 15) / 16 * 16;
        L.params += n;
        return off;
    };
    const bool nb = s.bias && !s.rmsnorm;  // LayerNorm carries a bias
    const size_t C = (size_t)d.C, I = (size_t)d.I, qd = (size_t)d.qd, kvd = (size_t)d.kvd;
    L.attn_norm_w = add(C);
    if (nb) L.attn_norm_b = add(C);
    L.q_w = add(qd * C);
    if (s.bias) L.q_b = add(qd);
    L.k_w = add(kvd * C);
    if (s.bias) L.k_b = add(kvd);
    L.v_w = add(kvd * C);
    if (s.bias) L.v_b = add(kvd);
    L.o_w = add(C * qd);
    if (s.bias) L.o_b = add(C);
    L.mlp_norm_w = add(C);
    if (nb) L.mlp_norm_b = add(C);
    if (s.gated) {
        L.m1_w = add(I * C);  // gate
        if (s.bias) L.m1_b = add(I);
        L.m2_w = add(I * C);  // up
        if (s.bias) L.m2_b = add(I);
        L.m3_w = add(C * I);  // down
        if (s.bias) L.m3_b = add(C);
    } else {
        L.m1_w = add(I * C);  // fc1
        if (s.bias) L.m1_b = add(I);
        L.m3_w = add(C * I);  // fc2
        if (s.bias) L.m3_b = add(C);
    }
    return L;
}

// FLOPs of one forward of the block: the projections, and causal attention (QK^T and AV, half the square).
double linear_flops(const BlockShape& s) {
    Dims d = dims_of(s);
    double N = (double)s.sequences * s.seq_len;
    double C = d.C, I = d.I, qd = d.qd, kvd = d.kvd;
    return 2.0 * N * (C * qd + 2.0 * C * kvd + qd * C + (s.gated ? 3.0 : 2.0) * C * I);
}

double attention_flops(const BlockShape& s) {
    Dims d = dims_of(s);
    return 2.0 * s.sequences * (double)d.NH * s.seq_len * (double)s.seq_len * d.HD;
}

size_t activation_floats(const BlockShape& s) {
    Dims d = dims_of(s);
    size_t N = (size_t)s.sequences * (size_t)s.seq_len;
    size_t C = (size_t)d.C;
    size_t Q = std::max<size_t>((size_t)d.qd, C), K = std::max<size_t>((size_t)d.kvd, C),
           M = std::max<size_t>((size_t)d.I, (size_t)d.qd);
    return N * (2 * C + 2 * Q + 2 * K + 2 * M) + 3 * N * C;  // + the two streams' hidden states and their start
}

struct KernelTimes {
    double linear = 0, attention = 0, other = 0;
};

// A block's master, noise and working copy, two activation streams and the
// scratch Engine::block_forward uses, all in the backend's memory.
class BlockRig {
public:
    BlockRig(Backend& be, const BlockShape& s) : be_(be), s_(s), d_(dims_of(s)), L_(layout_of(s)) {
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

    void init() {
        const BlockShape& s = s_;
        N_ = s.sequences * s.seq_len;
        const size_t P = L_.floats, NC = (size_t)N_ * (size_t)d_.C;
        master_ = falloc(P);
        z_ = falloc(P);
        w_ = falloc(P);
        h0_ = falloc(NC);
        h_[0] = falloc(NC);
        h_[1] = falloc(NC);
        act_ = falloc(activation_floats(s) - 3 * NC);
        // Weights ~ 0.02 N(0, 1) (w = z + (0.02 - 1) z), hidden states ~ N(0, 1).
        be_.noise_fill(z_, P, 11, 1, NOISE_GAUSSIAN, 0);
        be_.perturb(master_, z_, z_, 0.02f - 1.0f, P);
        be_.noise_fill(h0_, NC, 12, 2, NOISE_GAUSSIAN, 0);
        std::vector<int32_t> starts((size_t)s.sequences + 1), pos((size_t)N_);
        for (int q = 0; q <= s.sequences; q++) starts[(size_t)q] = q * s.seq_len;
        for (int n = 0; n < N_; n++) pos[(size_t)n] = n % s.seq_len;
        seq_start_ = ialloc(starts);
        positions_ = ialloc(pos);
        if (s.rope) {
            std::vector<float> inv((size_t)d_.HD / 2);
            for (size_t i = 0; i < inv.size(); i++) inv[i] = 1.0f / std::pow(10000.0f, (float)(2 * i) / (float)d_.HD);
            inv_freq_ = falloc(std::max<size_t>(1, inv.size()));
            be_.upload(inv_freq_, inv.data(), inv.size() * sizeof(float));
        }
        reset();
        be_.synchronize();
    }

    uint64_t parameters() const { return L_.params; }
    int tokens() const { return N_; }

    void reset() {
        size_t bytes = (size_t)N_ * (size_t)d_.C * sizeof(float);
        be_.copy(h_[0], h0_, bytes);
        be_.copy(h_[1], h0_, bytes);
    }

    // What a ZO step does per block before its forwards: z, then the + and - working
    // copies (the engine keeps one per stream; both cost the same pass here).
    void perturb() {
        be_.noise_fill(z_, L_.floats, 13, 3, s_.noise, 0);
        be_.perturb(w_, master_, z_, 1e-3f, L_.floats);
        be_.perturb(w_, master_, z_, -1e-3f, L_.floats);
    }

    // One forward of the block on stream si (Engine::block_forward's kernels, in its order).
    // With t, each kernel is synchronized and its time added to its kind.
    void forward(int si, KernelTimes* t) {
        Backend& be = be_;
        const int N = N_, C = d_.C, I = d_.I, HD = d_.HD, qd = d_.qd, kvd = d_.kvd;
        auto P = [&](size_t off) -> const float* { return off == kNone ? nullptr : w_ + off; };
        float* h = h_[si];
        size_t Cs = (size_t)N * C, Qs = (size_t)N * std::max(qd, C), Ks = (size_t)N * std::max(kvd, C);
        float* a = act_;
        float* tmp = a + Cs;
        float* q = tmp + Cs;
        float* att = q + Qs;
        float* k = att + Qs;
        float* v = k + Ks;
        float* m1 = v + Ks;
        float* m2 = m1 + (size_t)N * std::max(I, qd);
        KernelTimes scratch;
        KernelTimes& T = t ? *t : scratch;
        Clock::time_point t0;
        auto tick = [&] {
            if (t) t0 = Clock::now();
        };
        auto tock = [&](double& acc) {
            if (!t) return;
            be.synchronize();
            acc += seconds_since(t0);
        };
        auto norm = [&](float* out, const float* in, size_t wo, size_t bo) {
            if (s_.rmsnorm)
                be.rmsnorm(out, in, P(wo), N, C, 1e-5f);
            else
                be.layernorm(out, in, P(wo), P(bo), N, C, 1e-5f);
        };
        tick();
        norm(a, h, L_.attn_norm_w, L_.attn_norm_b);
        tock(T.other);
        tick();
        be.linear(q, a, P(L_.q_w), P(L_.q_b), N, C, qd, false);
        be.linear(k, a, P(L_.k_w), P(L_.k_b), N, C, kvd, false);
        be.linear(v, a, P(L_.v_w), P(L_.v_b), N, C, kvd, false);
        tock(T.linear);
        tick();
        if (s_.rope) {
            be.rope(q, qd, d_.NH, HD, positions_, N, inv_freq_);
            be.rope(k, kvd, d_.KV, HD, positions_, N, inv_freq_);
        }
        AttentionShape as{d_.NH, d_.KV, HD, qd, kvd, kvd, 1.0f / std::sqrt((float)HD), 0};
        be.attention(att, q, k, v, as, seq_start_, s_.sequences);
        tock(T.attention);
        tick();
        be.linear(tmp, att, P(L_.o_w), P(L_.o_b), N, qd, C, false);
        tock(T.linear);
        tick();
        be.add(h, tmp, Cs);
        norm(a, h, L_.mlp_norm_w, L_.mlp_norm_b);
        tock(T.other);
        if (s_.gated) {
            tick();
            be.linear(m1, a, P(L_.m1_w), P(L_.m1_b), N, C, I, false);
            be.linear(m2, a, P(L_.m2_w), P(L_.m2_b), N, C, I, false);
            tock(T.linear);
            tick();
            be.gated_silu(m1, m2, (size_t)N * I);
            tock(T.other);
        } else {
            tick();
            be.linear(m1, a, P(L_.m1_w), P(L_.m1_b), N, C, I, false);
            tock(T.linear);
            tick();
            be.activation(m1, (size_t)N * I, (Act)s_.activation);
            tock(T.other);
        }
        tick();
        be.linear(tmp, m1, P(L_.m3_w), P(L_.m3_b), N, I, C, false);
        tock(T.linear);
        tick();
        be.add(h, tmp, Cs);
        tock(T.other);
    }

private:
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
    Dims d_;
    Layout L_;
    int N_ = 0;
    float *master_ = nullptr, *z_ = nullptr, *w_ = nullptr, *h0_ = nullptr, *act_ = nullptr;
    float* h_[2] = {nullptr, nullptr};
    int32_t *seq_start_ = nullptr, *positions_ = nullptr;
    float* inv_freq_ = nullptr;
    std::vector<void*> owned_;
};

void check_shape(const BlockShape& s) {
    Dims d = dims_of(s);
    if (s.hidden <= 0 || s.intermediate <= 0 || s.heads <= 0 || s.sequences <= 0 || s.seq_len <= 0)
        throw std::runtime_error("block shape: hidden, intermediate, heads, sequences and seq_len must be positive");
    if (d.KV <= 0 || d.NH % d.KV != 0) throw std::runtime_error("block shape: heads must be a multiple of kv_heads");
    if (d.HD <= 0 || (s.rope && d.HD % 2 != 0)) throw std::runtime_error("block shape: bad head_dim");
    if ((double)s.sequences * s.seq_len > (double)INT_MAX / 4) throw std::runtime_error("block shape: too many tokens");
}

// The block at its own shape: warm-up, then a few repetitions (median) of
// z + two perturbed copies, and both forwards.
void run_direct(Backend& be, const BlockShape& s, BlockTiming& b) {
    BlockRig rig(be, s);
    auto t0 = Clock::now();
    rig.perturb();
    rig.forward(0, nullptr);
    rig.forward(1, nullptr);
    be.synchronize();
    double warm = seconds_since(t0);
    int reps = (int)std::clamp(1.0 / std::max(warm, 1e-6), 3.0, 7.0);
    std::vector<double> pert, fwd;
    for (int i = 0; i < reps; i++) {
        rig.reset();
        be.synchronize();
        auto a = Clock::now();
        rig.perturb();
        be.synchronize();
        auto m = Clock::now();
        rig.forward(0, nullptr);
        rig.forward(1, nullptr);
        be.synchronize();
        pert.push_back(std::chrono::duration<double>(m - a).count());
        fwd.push_back(seconds_since(m) / 2);
    }
    b.source = "measured";
    b.parameters = rig.parameters();
    b.tokens = rig.tokens();
    b.reps = reps;
    b.perturb_ms = 1000 * median(pert);
    b.forward_ms = 1000 * median(fwd);
    b.zo_ms = b.perturb_ms + 2 * b.forward_ms;
    b.proxy = s;
    char msg[256];
    std::snprintf(msg, sizeof msg, "ran this block on %d tokens, median of %d repetitions", b.tokens, reps);
    b.detail = msg;
}

// A smaller block of the same kind: fewer heads (same head size, hidden and MLP
// scaled alike), at most `token_cap` tokens of sequences no longer than 1024.
BlockShape proxy_of(const BlockShape& s, uint64_t param_cap, int token_cap) {
    Dims d = dims_of(s);
    BlockShape p = s;
    for (int div = 1;; div *= 2) {
        int nh = std::max(1, d.NH / div);
        int kv = std::max(1, (int)((int64_t)d.KV * nh / d.NH));
        while (nh % kv) kv--;
        double f = (double)nh / d.NH;
        p.heads = nh;
        p.kv_heads = kv;
        p.head_dim = d.HD;
        p.hidden = std::max(16, (int)std::lround(d.C * f));
        p.intermediate = std::max(16, (int)std::lround(d.I * f));
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
    rig.forward(0, nullptr);
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
        KernelTimes kt;
        rig.forward(0, &kt);
        lin.push_back(kt.linear);
        att.push_back(kt.attention);
        oth.push_back(kt.other);
    }
    Dims d = dims_of(s), dp = dims_of(p);
    double proxy_rate = linear_flops(p) / std::max(median(lin), 1e-9);
    double rate = std::max(proxy_rate, gemm_flops_per_s);
    double N = (double)s.sequences * s.seq_len, Np = (double)p.sequences * p.seq_len;
    double t_lin = linear_flops(s) / rate;
    double t_att = median(att) * ((double)d.NH / dp.NH) * ((double)s.sequences / p.sequences) *
                   std::pow((double)s.seq_len / p.seq_len, 2.0);
    double t_oth = median(oth) * (N * (d.C + d.I)) / (Np * (dp.C + dp.I));
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

uint64_t block_parameters(const BlockShape& s) { return layout_of(s).params; }

CalibrateResult calibrate(const CalibrateOptions& o) {
    auto t0 = Clock::now();
    CalibrateResult r;
    int threads = o.threads > 0 ? o.threads : std::max(1, (int)std::thread::hardware_concurrency());
    std::unique_ptr<Backend> dev;
#ifdef SPW_WITH_CUDA
    if (o.cuda_device >= 0) {
        dev = make_cuda_backend(o.cuda_device);
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
    if (o.ssd) measure_ssd(o, r);
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
