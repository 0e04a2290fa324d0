// Bulk noise for the CPU backend: Philox blocks many at a time, one block per SIMD lane
// (noise_simd.h), AVX-512 where the CPU has it (chosen at run time: the build runs on AVX2
// machines), AVX2 otherwise. Every path gives the bits of
// noise_block4 (spillway/noise.h), the scalar and CUDA definition: tests/native/noise.test.ts
// compares the paths bit for bit, and backend_ops the backends.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spillway/noise.h"

namespace spw {

// The bulk generators; Best is the widest this CPU has.
enum class NoiseIsa : int { Best = 0, Scalar = 1, Avx2 = 2, Avx512 = 3 };

// Whether this CPU (and build) can run `isa`.
bool noise_isa_available(NoiseIsa isa);

// Best, or the generator $SPILLWAY_NOISE_ISA names (scalar, avx2, avx512): they give the same
// bits, and the variable is there to show it and to time them against each other. Throws where
// it names one that is unknown or that this CPU lacks.
NoiseIsa noise_isa_from_env();

// Noise of elements [k0, k0 + n) of tensor `id` into z (k0 % 4 == 0) on the given generator.
void noise_range_isa(NoiseIsa isa, float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0);

}  // namespace spw
