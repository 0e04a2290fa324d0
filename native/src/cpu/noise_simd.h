// Bulk Philox4x32-10 + Box-Muller written once for any SIMD width: V supplies the lane-wise
// operations (noise_cpu.h: AVX2, 8 lanes; noise_avx512.cpp: AVX-512, 16 lanes) and lane l of
// group g holds block b0 + g * V::L + l. Every step is the IEEE operation noise_block4
// (spillway/noise.h) performs, in the same order (fmaf is a fused multiply-add, division and
// sqrt are correctly rounded, conversions are exact), so every width gives the scalar and CUDA
// bits. G independent groups are interleaved because each Philox round and each polynomial is
// a chain of dependent operations: one group leaves the vector units idle between its steps.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spw {
namespace simd_noise {

template <class V>
typename V::F logf(typename V::F x) {
    using F = typename V::F;
    using U = typename V::U;
    U b = V::as_u(x);
    U e = V::sub(V::and_(V::template srli<23>(b), V::set1(0xFF)), V::set1(127));
    F m = V::as_f(V::or_(V::and_(b, V::set1(0x7FFFFF)), V::set1(0x3F800000)));
    auto big = V::gt(m, V::set1f(1.41421356f));
    m = V::sel(big, V::mul(m, V::set1f(0.5f)), m);
    e = V::inc_where(e, big);
    F one = V::set1f(1.0f);
    F s = V::div(V::sub(m, one), V::add(m, one));
    F s2 = V::mul(s, s);
    F p = V::set1f(2.0f / 13.0f);
    p = V::fma(p, s2, V::set1f(2.0f / 11.0f));
    p = V::fma(p, s2, V::set1f(2.0f / 9.0f));
    p = V::fma(p, s2, V::set1f(2.0f / 7.0f));
    p = V::fma(p, s2, V::set1f(2.0f / 5.0f));
    p = V::fma(p, s2, V::set1f(2.0f / 3.0f));
    F lnm = V::fma(V::mul(p, s2), s, V::mul(V::set1f(2.0f), s));
    F ef = V::cvt(e);
    return V::fma(ef, V::set1f(0.693145751953125f), V::fma(ef, V::set1f(1.428606765330187e-06f), lnm));
}

template <class V>
void sincos_turns(typename V::F u, typename V::F* s_out, typename V::F* c_out) {
    using F = typename V::F;
    using U = typename V::U;
    F t4 = V::mul(u, V::set1f(4.0f));
    F q = V::floor(t4);
    F t = V::sub(t4, q);
    U quadrant = V::cvtt(q);
    auto upper = V::ge(t, V::set1f(0.5f));
    t = V::sel(upper, V::sub(t, V::set1f(1.0f)), t);
    quadrant = V::inc_where(quadrant, upper);
    F t2 = V::mul(t, t);
    F sp = V::set1f(-3.598843235212084e-06f);
    sp = V::fma(sp, t2, V::set1f(1.6044118478735975e-04f));
    sp = V::fma(sp, t2, V::set1f(-4.681754135318687e-03f));
    sp = V::fma(sp, t2, V::set1f(7.969262624616703e-02f));
    sp = V::fma(sp, t2, V::set1f(-6.459640975062462e-01f));
    sp = V::fma(sp, t2, V::set1f(1.5707963267948966e+00f));
    F sn = V::mul(sp, t);
    F cp = V::set1f(4.710874778818169e-07f);
    cp = V::fma(cp, t2, V::set1f(-2.5202042373060596e-05f));
    cp = V::fma(cp, t2, V::set1f(9.192602748394263e-04f));
    cp = V::fma(cp, t2, V::set1f(-2.0863480763352957e-02f));
    cp = V::fma(cp, t2, V::set1f(2.53669507901048e-01f));
    cp = V::fma(cp, t2, V::set1f(-1.2337005501361697e+00f));
    F cs = V::fma(cp, t2, V::set1f(1.0f));
    // The quadrant's rotation: bit 0 swaps sine and cosine, bit 1 negates the sine, bit 1 of
    // quadrant + 1 the cosine (noise.h's switch on quadrant & 3).
    auto odd = V::test(quadrant, V::set1(1));
    *s_out = V::neg_where(V::sel(odd, cs, sn), V::test(quadrant, V::set1(2)));
    *c_out = V::neg_where(V::sel(odd, sn, cs), V::test(V::add(quadrant, V::set1(1)), V::set1(2)));
}

// Noise of blocks b0 .. b0 + G * V::L - 1 (4 values each) into out, in element order.
template <class V, int G>
void blocks(uint64_t seed, uint32_t id, uint64_t b0, int kind, float* out) {
    using F = typename V::F;
    using U = typename V::U;
    U x0[G], x1[G], x2[G], x3[G];
    for (int g = 0; g < G; g++) {
        V::blocks_from(b0 + (uint64_t)(g * V::L), &x0[g], &x1[g]);
        x2[g] = V::set1(id);
        x3[g] = V::set1(0x5A4F5A4Fu);
    }
    const U m0 = V::set1(0xD2511F53u), m1 = V::set1(0xCD9E8D57u);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        const U kk0 = V::set1(k0), kk1 = V::set1(k1);
        for (int g = 0; g < G; g++) {
            U hi0, lo0, hi1, lo1;
            V::mul_hilo(x0[g], m0, &hi0, &lo0);
            V::mul_hilo(x2[g], m1, &hi1, &lo1);
            x0[g] = V::xor3(hi1, x1[g], kk0);
            x2[g] = V::xor3(hi0, x3[g], kk1);
            x1[g] = lo1;
            x3[g] = lo0;
        }
        k0 += 0x9E3779B9u;  // the bump after the last round is never used
        k1 += 0xBB67AE85u;
    }
    for (int g = 0; g < G; g++) {
        F o[4];
        if (kind == 1) {  // NOISE_RADEMACHER: bit 0 of each word
            const U one = V::set1(1);
            const F pos = V::set1f(1.0f), neg = V::set1f(-1.0f);
            o[0] = V::sel(V::test(x0[g], one), pos, neg);
            o[1] = V::sel(V::test(x1[g], one), pos, neg);
            o[2] = V::sel(V::test(x2[g], one), pos, neg);
            o[3] = V::sel(V::test(x3[g], one), pos, neg);
        } else {
            const F scale = V::set1f(5.9604644775390625e-08f);
            const U pa[2] = {x0[g], x2[g]}, pb[2] = {x1[g], x3[g]};
            for (int p = 0; p < 2; p++) {
                F u1 = V::mul(V::cvt(V::add(V::template srli<8>(pa[p]), V::set1(1))), scale);
                F u2 = V::mul(V::cvt(V::template srli<8>(pb[p])), scale);
                F rad = V::sqrt(V::mul(V::set1f(-2.0f), logf<V>(u1)));
                F sn, cs;
                sincos_turns<V>(u2, &sn, &cs);
                o[2 * p] = V::mul(rad, cs);
                o[2 * p + 1] = V::mul(rad, sn);
            }
        }
        V::store_blocks(out + (size_t)4 * V::L * g, o);
    }
}

// Elements [k0, k0 + n) (k0 % 4 == 0): G groups at a time, then one, then the last part of one
// (the values past n are made and dropped: each is a function of its own index alone).
template <class V, int G>
void fill(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) {
    constexpr size_t wide = (size_t)4 * G * V::L, one = (size_t)4 * V::L;
    size_t i = 0;
    for (; i + wide <= n; i += wide) blocks<V, G>(seed, id, (k0 + i) >> 2, kind, z + i);
    for (; i + one <= n; i += one) blocks<V, 1>(seed, id, (k0 + i) >> 2, kind, z + i);
    if (i < n) {
        float part[one];
        blocks<V, 1>(seed, id, (k0 + i) >> 2, kind, part);
        for (size_t j = 0; i + j < n; j++) z[i + j] = part[j];
    }
}

}  // namespace simd_noise
}  // namespace spw
