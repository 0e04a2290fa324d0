// gemm_check: the CPU backend's products (linear, linear_streams) on each GEMM it has, its own
// kernels (gemm_avx512.cpp where the CPU has AVX-512F, gemm_avx2.cpp everywhere) and OpenBLAS,
// against a float64 reference, on shapes that cross every edge of the own kernels' tiles and
// blocks (12 and 6 rows, 32 and 16 columns, 768 of depth, 240 and 120 rows, 1,024 columns), with
// and without a bias, W stored [O, I] and [I, O]. The AVX-512 kernel reads A in place at depths
// up to 800 (tiles of 12 rows; a last tile of fewer packed) and packs it at 1,537 and 3,072.
//
//   error bound per element: (I + 2) u (sum_k |x_k w_k| + |b|), u = 2^-24 (a float32 sum of
//   I products, fused or not, in any order, is within I u of it to first order)
//
// Then the own kernels' promises OpenBLAS does not make: every element the bits of one chain
// (chain_mismatches below: per depth block of 768, fused multiply-adds in the order of k from
// zero, then added to what was there), so the AVX2 and AVX-512 kernels give the same bits; the
// same bits whatever the thread count (a band of output columns is the whole product's columns),
// and a pair of streams side by side the bits of each stream alone; and a +eps/-eps pair made from
// the masters as it is packed (linear_pair_noisy) the bits of the pair's copies, with and without
// the ReLU it can store.
//
// Last, where the CPU has AVX-512F, gemm_rate --kernel's sweep: each tile the chain's bits, so the
// rate it reports is the product's kernel at work; and the head's AVX-512 sums of exponentials
// sum_exp's bits.
//
// usage: gemm_check   prints one JSON line per case and a last {"ok":...,"avx512":...}; exit 1 on
//                     a failure. Without AVX-512F, only the AVX2 kernel is checked ("avx512":false).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../src/cpu/gemm_cpu.h"
#include "../src/cpu/simd_cpu.h"
#include "spillway/backend.h"

using namespace spw;

namespace {

struct Case {
    int n, i, o;
};

// The backend with the GEMM $SPILLWAY_CPU_GEMM names (read when a backend is made).
std::unique_ptr<Backend> backend(const char* gemm, int threads) {
    setenv("SPILLWAY_CPU_GEMM", gemm, 1);
    auto be = make_cpu_backend(threads);
    unsetenv("SPILLWAY_CPU_GEMM");
    return be;
}

struct Data {
    std::vector<float> x, w, b;
};

Data make(const Case& c, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    Data d;
    d.x.resize((size_t)c.n * c.i);
    d.w.resize((size_t)c.o * c.i);
    d.b.resize((size_t)c.o);
    for (auto& v : d.x) v = u(rng);
    for (auto& v : d.w) v = u(rng) * 0.05f;
    for (auto& v : d.b) v = u(rng);
    return d;
}

// Worst error over the bound (<= 1 passes); W stored [O, I], or [I, O] when transposed. Big
// products are checked on every 13th row (every tile's rows are among them over the 12-row
// period) to keep the float64 reference quick.
double worst_over_bound(const Case& c, const Data& d, bool bias, bool transposed, const std::vector<float>& y) {
    double worst = 0;
    const int stride = (double)c.n * c.i * c.o > 5e7 ? 13 : 1;
    for (int r = 0; r < c.n; r += stride)
        for (int j = 0; j < c.o; j++) {
            double sum = bias ? d.b[(size_t)j] : 0.0, mag = bias ? std::fabs(d.b[(size_t)j]) : 0.0;
            for (int k = 0; k < c.i; k++) {
                double w = transposed ? d.w[(size_t)k * c.o + j] : d.w[(size_t)j * c.i + k];
                double p = (double)d.x[(size_t)r * c.i + k] * w;
                sum += p;
                mag += std::fabs(p);
            }
            double bound = (c.i + 2) * std::ldexp(1.0, -24) * mag + 1e-30;
            double e = std::fabs((double)y[(size_t)r * c.o + j] - sum) / bound;
            if (!(e <= worst)) worst = e;  // NaN propagates as a failure
        }
    return worst;
}

// Elements whose bits are not the own kernels' chain: for each depth block of kOwnDepth, a sum
// started at zero and fused-multiply-added in the order of k, added to the bias (first block, when
// there is one) or to the blocks before it. Same rows as worst_over_bound.
constexpr int kOwnDepth = 768;
size_t chain_mismatches(const Case& c, const Data& d, bool bias, bool transposed, const std::vector<float>& y) {
    size_t bad = 0;
    const int stride = (double)c.n * c.i * c.o > 5e7 ? 13 : 1;
    for (int r = 0; r < c.n; r += stride)
        for (int j = 0; j < c.o; j++) {
            float acc = 0.0f;
            for (int k0 = 0; k0 < c.i; k0 += kOwnDepth) {
                float s = 0.0f;
                for (int k = k0; k < c.i && k < k0 + kOwnDepth; k++) {
                    float w = transposed ? d.w[(size_t)k * c.o + j] : d.w[(size_t)j * c.i + k];
                    s = std::fma(d.x[(size_t)r * c.i + k], w, s);
                }
                acc = k0 > 0 ? acc + s : bias ? d.b[(size_t)j] + s : s;
            }
            const float got = y[(size_t)r * c.o + j];
            bad += std::memcmp(&acc, &got, sizeof(float)) != 0;
        }
    return bad;
}

std::vector<float> run(Backend& be, const Case& c, const Data& d, bool bias, bool transposed) {
    std::vector<float> y((size_t)c.n * c.o, std::nanf(""));
    be.linear(y.data(), d.x.data(), d.w.data(), bias ? d.b.data() : nullptr, c.n, c.i, c.o, transposed);
    return y;
}

}  // namespace

int main() {
    const bool avx512 = __builtin_cpu_supports("avx512f");
    // Rows x depth x columns: tiny, under the own kernel's thresholds, one tile, tile edges,
    // two depth blocks with a tail, more than one row block and column block, a step's shapes,
    // and a tiny model's (32 deep; 7 deep, under one 8-deep transpose).
    const Case cases[] = {{1, 64, 40},     {7, 100, 9},     {12, 128, 32},    {13, 129, 33},   {16, 128, 16},
                          {31, 1537, 97},  {241, 800, 1025}, {250, 770, 70},   {64, 3072, 768}, {1024, 768, 768},
                          {1024, 768, 3072}, {40, 32, 70},  {20, 7, 50}};
    // "own" is the AVX-512 kernel where the CPU has it, else the AVX2 one: then "avx2" alone.
    std::vector<const char*> owns = {"avx2"};
    if (avx512) owns.push_back("own");
    std::vector<const char*> gemms = {"openblas"};
    gemms.insert(gemms.end(), owns.begin(), owns.end());
    int failed = 0, total = 0;
    uint32_t seed = 1;
    for (const Case& c : cases) {
        Data d = make(c, seed++);
        for (const char* g : gemms) {
            auto be = backend(g, 2);
            for (int bias = 0; bias < 2; bias++)
                for (int tr = 0; tr < 2; tr++) {
                    const std::vector<float> y = run(*be, c, d, bias, tr);
                    double worst = worst_over_bound(c, d, bias, tr, y);
                    // The own kernels take a linear's products of 16 rows or more, at any depth
                    // (backend_cpu.cpp): there, every element is the chain's.
                    const bool chained = std::strcmp(g, "openblas") != 0 && c.n >= 16;
                    const size_t off = chained ? chain_mismatches(c, d, bias, tr, y) : 0;
                    bool ok = worst <= 1.0 && off == 0;
                    failed += !ok;
                    total++;
                    std::printf("{\"case\":\"%dx%dx%d\",\"gemm\":\"%s\",\"bias\":%s,\"transposed\":%s,\"worstOverBound\":%.4g,"
                                "\"chainBits\":%s,\"ok\":%s}\n",
                                c.n, c.i, c.o, g, bias ? "true" : "false", tr ? "true" : "false", worst,
                                !chained ? "null" : off ? "\"differ\"" : "\"same\"", ok ? "true" : "false");
                }
        }
    }
    for (const char* g : owns) {
        // The same bits on 1, 2 and 3 threads, and for each stream of a pair alone.
        auto one = backend(g, 1), two = backend(g, 2), three = backend(g, 3);
        for (const Case& c : {Case{1024, 768, 3072}, Case{250, 770, 1025}, Case{300, 800, 4000}}) {
            Data d = make(c, seed++), e = make(c, seed++);
            for (int tr = 0; tr < 2; tr++) {
                auto a1 = run(*one, c, d, true, tr), a2 = run(*two, c, d, true, tr), a3 = run(*three, c, d, true, tr);
                auto b1 = run(*one, c, e, true, tr);
                std::vector<float> y0((size_t)c.n * c.o), y1((size_t)c.n * c.o);
                float* outs[2] = {y0.data(), y1.data()};
                const float* inps[2] = {d.x.data(), e.x.data()};
                const float* ws[2] = {d.w.data(), e.w.data()};
                const float* bs[2] = {d.b.data(), e.b.data()};
                two->linear_streams(2, outs, inps, ws, bs, c.n, c.i, c.o, tr);
                size_t bytes = sizeof(float) * a1.size();
                bool threads_same = !std::memcmp(a1.data(), a2.data(), bytes) && !std::memcmp(a1.data(), a3.data(), bytes);
                bool streams_same = !std::memcmp(a1.data(), y0.data(), bytes) && !std::memcmp(b1.data(), y1.data(), bytes);
                failed += !threads_same + !streams_same;
                total += 2;
                std::printf("{\"case\":\"%dx%dx%d\",\"gemm\":\"%s\",\"transposed\":%s,\"sameBitsOn1To3Threads\":%s,\"pairSameBitsAsAlone\":%s}\n",
                            c.n, c.i, c.o, g, tr ? "true" : "false", threads_same ? "true" : "false", streams_same ? "true" : "false");
            }
        }
    }
    for (const char* g : owns) {
        // A pair straight from the masters (linear_pair_noisy: the perturbed weights made as they
        // are packed) against the copies perturb_pair writes, then linear_streams: the same bits,
        // on 1 to 3 threads. The piece starts at row 5 of its tensor (a fused QKV's second piece),
        // so the noise indices start there too, and the bias's off a block of 4. Depths that are
        // not multiples of 4 are refused, and so are products the own kernel does not take; deeper
        // than one depth block (768) is taken. 132 deep leaves a tail after the 16-deep transposes.
        const Case pcs[] = {{1024, 768, 768}, {241, 800, 1025}, {64, 3072, 768}, {16, 128, 33}, {300, 1540, 100}, {20, 770, 40}, {250, 512, 1000}, {40, 132, 70}, {48, 32, 16}, {48, 64, 32}, {48, 32, 64}};
        const int row = 5;
        const float eps = 1e-3f;
        for (const Case& c : pcs) {
            Data d = make(Case{c.n, c.i, c.o + row}, seed++), e = make(c, seed++);
            for (int threads = 1; threads <= 3; threads++) {
                auto be = backend(g, threads);
                const size_t nw = (size_t)(c.o + row) * c.i;
                std::vector<float> wp(nw), wm(nw), bp((size_t)(c.o + row)), bm((size_t)(c.o + row));
                be->perturb_pair(wp.data(), wm.data(), d.w.data(), nw, 77, 3, 0, eps);
                be->perturb_pair(bp.data(), bm.data(), d.b.data(), bp.size(), 77, 4, 0, eps);
                std::vector<float> r0((size_t)c.n * c.o), r1((size_t)c.n * c.o), y0(r0.size(), NAN), y1(r0.size(), NAN);
                float* refs[2] = {r0.data(), r1.data()};
                float* outs[2] = {y0.data(), y1.data()};
                const float* inps[2] = {d.x.data(), e.x.data()};
                const float* ws[2] = {wp.data() + (size_t)row * c.i, wm.data() + (size_t)row * c.i};
                const float* bs[2] = {bp.data() + row, bm.data() + row};
                be->linear_streams(2, refs, inps, ws, bs, c.n, c.i, c.o, false);
                const NoiseSpec wn{77, 3, 0, eps}, bn{77, 4, 0, eps};
                bool taken = be->linear_pair_noisy(outs, inps, d.w.data() + (size_t)row * c.i, d.b.data() + row, wn,
                                                   (uint64_t)row * c.i, bn, row, c.n, c.i, c.o, false, false);
                const bool expect_taken = c.i % 4 == 0;
                bool same = taken && !std::memcmp(r0.data(), y0.data(), sizeof(float) * r0.size()) &&
                            !std::memcmp(r1.data(), y1.data(), sizeof(float) * r1.size());
                // With the ReLU stored by the GEMM: the bits of activation(Relu) on the copies' products.
                if (taken) {
                    be->activation(r0.data(), r0.size(), Act::Relu);
                    be->activation(r1.data(), r1.size(), Act::Relu);
                    same = same && be->linear_pair_noisy(outs, inps, d.w.data() + (size_t)row * c.i, d.b.data() + row, wn,
                                                         (uint64_t)row * c.i, bn, row, c.n, c.i, c.o, false, true) &&
                           !std::memcmp(r0.data(), y0.data(), sizeof(float) * r0.size()) &&
                           !std::memcmp(r1.data(), y1.data(), sizeof(float) * r1.size());
                }
                // Never for W stored [I, O], nor on OpenBLAS.
                bool refused = !be->linear_pair_noisy(outs, inps, d.w.data(), d.b.data(), wn, 0, bn, 0, c.n, c.i, c.o, true, false) &&
                               !backend("openblas", threads)->linear_pair_noisy(outs, inps, d.w.data(), d.b.data(), wn, 0, bn, 0,
                                                                               c.n, c.i, c.o, false, false);
                bool ok = (expect_taken ? same : !taken) && refused;
                failed += !ok;
                total++;
                std::printf("{\"case\":\"%dx%dx%d\",\"gemm\":\"%s\",\"threads\":%d,\"pairFromMasters\":%s,\"taken\":%s,\"ok\":%s}\n",
                            c.n, c.i, c.o, g, threads, same ? "\"sameBitsAsCopies\"" : taken ? "\"differs\"" : "\"refused\"",
                            taken ? "true" : "false", ok ? "true" : "false");
            }
        }
    }
    // gemm_avx512_kernel_sweep (gemm_rate --kernel): the last tile against the last panel keeps
    // the chain from zero in the order of k, fused, as the products' elements do.
    for (int kc : {1, 37, 768}) {
        if (!avx512) break;
        const int tiles = 2, panels = 3;
        std::mt19937 rng(100u + (uint32_t)kc);
        std::uniform_real_distribution<float> u(-1.f, 1.f);
        std::vector<float> a((size_t)tiles * kc * 12), b((size_t)panels * kc * 32), c(12 * 32, NAN);
        for (float& v : a) v = u(rng);
        for (float& v : b) v = u(rng);
        float* pb = static_cast<float*>(std::aligned_alloc(64, b.size() * sizeof(float) + 64));  // B panels are loaded aligned
        std::memcpy(pb, b.data(), b.size() * sizeof(float));
        spw::gemm_avx512_kernel_sweep(kc, a.data(), tiles, pb, panels, c.data());
        std::free(pb);
        const float* la = a.data() + (size_t)(tiles - 1) * kc * 12;
        const float* lb = b.data() + (size_t)(panels - 1) * kc * 32;
        bool ok = true;
        for (int i = 0; i < 12; i++)
            for (int j = 0; j < 32; j++) {
                float acc = 0.f;
                for (int k = 0; k < kc; k++) acc = std::fmaf(la[(size_t)k * 12 + i], lb[(size_t)k * 32 + j], acc);
                ok &= std::memcmp(&acc, &c[(size_t)i * 32 + j], sizeof acc) == 0;
            }
        total++;
        failed += !ok;
        std::printf("{\"kernelSweep\":%d,\"ok\":%s}\n", kc, ok ? "true" : "false");
    }
    // sum_exp_avx512 (the head's log-softmax sums where the AVX-512 kernel runs): sum_exp's bits,
    // on rows of every length to 300 and at three alignments, with NaN, infinities, values that
    // overflow and underflow exp and exact zeros among them, and on rows of a head's chunk (1,024
    // logits) shifted by their maximum as the head does.
    if (avx512) {
        std::mt19937 rng(7);
        std::normal_distribution<float> g(0.f, 4.f);
        std::vector<float> x(1 << 17);
        for (float& v : x) v = g(rng);
        const float odd[] = {NAN, INFINITY, -INFINITY, 90.f, -200.f, 0.f, -0.f, 88.7f, -87.3f, -87.4f, 1e-30f};
        for (size_t j = 0; j < sizeof odd / sizeof odd[0]; j++) x[37 * j + 3] = odd[j];
        int differ = 0, rows = 0;
        for (int n = 0; n <= 300; n++)
            for (int off = 0; off < 3; off++, rows++) {
                const float* r = x.data() + 1 + off * 97;
                const float a = sum_exp(r, n, 1.5f), b = sum_exp_avx512(r, n, 1.5f);
                differ += std::memcmp(&a, &b, sizeof a) != 0;
            }
        for (size_t r0 = 512; r0 + 1024 <= x.size(); r0 += 1024, rows++) {
            const float* r = x.data() + r0;
            const float mx = max_of(r, 1024);
            const float a = sum_exp(r, 1024, mx), b = sum_exp_avx512(r, 1024, mx);
            differ += std::memcmp(&a, &b, sizeof a) != 0;
        }
        total++;
        failed += differ != 0;
        std::printf("{\"sumExpAvx512\":%d,\"differ\":%d,\"ok\":%s}\n", rows, differ, differ ? "false" : "true");
    }
    std::printf("{\"ok\":%s,\"avx512\":%s,\"checks\":%d,\"failed\":%d}\n", failed ? "false" : "true", avx512 ? "true" : "false", total,
                failed);
    return failed ? 1 : 0;
}
