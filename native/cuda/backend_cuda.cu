// The CUDA backend: the CPU backend's twin on one device, behind spw::Backend.
//
// - Two streams: the compute queue (every kernel, cuBLAS, and the plain copies)
//   and the copy queue (upload_on(Queue::Copy): the tiered store's uploads,
//   beside the kernels). Backend::Event is a cudaEvent_t (timing disabled).
// - The ZO kernels (noise_fill, perturb, zo_update, the noise of embed) run the
//   same __host__ __device__ code as the CPU (spillway/noise.h). This file is
//   compiled with -fmad=false so that nvcc contracts nothing the CPU build
//   (-ffp-contract=off) does not: the noise and the perturbed weights are
//   bit-identical to the CPU's.
// - GEMMs go through cuBLAS reached with dlopen (no link-time dependency);
//   without it a tiled kernel computes the same products. SPILLWAY_GEMM picks
//   their precision: fp32 (default: cublasSgemm, default math, no TF32), tf32
//   (cublasGemmEx, CUBLAS_COMPUTE_32F_FAST_TF32) or bf16 (inputs rounded to
//   bfloat16 into scratch, cublasGemmEx with fp32 accumulation); fp32 in and out.
// - Nothing queued per step waits on the host: small uploads go through a
//   pinned staging ring (the host source is free when upload() returns),
//   zo_update's terms too, and scratch buffers grow with stream-ordered
//   allocations. download() and synchronize() are the waits.
// - Nothing here throws across a kernel: errors become std::runtime_error
//   with the CUDA (or cuBLAS) message and the file and line of the call, and
//   allocation failures name the bytes asked and the bytes free.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "spillway/backend.h"
#include "spillway/noise.h"
#include "spillway/nvml.h"
#include "spillway/precision.h"

namespace spw {

namespace {

// CUDA errors carry the call and where it is (llm.c's cudaCheck): "CUDA error in cudaMalloc(...) at
// backend_cuda.cu:412: cudaErrorMemoryAllocation (out of memory)".
// Errors after which the context cannot be used again ("the process must be terminated":
// driver_types.h), and those of a device that is gone or failing.
bool device_failed(cudaError_t e) {
    switch (e) {
        case cudaErrorIllegalAddress:
        case cudaErrorLaunchTimeout:
        case cudaErrorHardwareStackError:
        case cudaErrorIllegalInstruction:
        case cudaErrorMisalignedAddress:
        case cudaErrorInvalidAddressSpace:
        case cudaErrorInvalidPc:
        case cudaErrorLaunchFailure:
        case cudaErrorMpsClientTerminated:
        case cudaErrorECCUncorrectable:
        case cudaErrorNvlinkUncorrectable:
        case cudaErrorDevicesUnavailable:
        case cudaErrorDeviceUninitialized:
        case cudaErrorContextIsDestroyed:
        case cudaErrorNoDevice:
        case cudaErrorSystemNotReady:
        case cudaErrorExternalDevice:
        case cudaErrorUnknown:
            return true;
        default:
            return false;
    }
}

void check(cudaError_t e, const std::string& what, const char* file, int line) {
    if (e != cudaSuccess) {
        cudaGetLastError();  // clear a non-sticky error so the next call starts clean
        const char* base = std::strrchr(file, '/');
        std::string msg = "CUDA error in " + what + " at " + (base ? base + 1 : file) + ":" + std::to_string(line) + ": " +
                          cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
        if (e == cudaErrorMemoryAllocation) throw DeviceOutOfMemory(msg);
        if (device_failed(e)) throw DeviceFailed(msg);
        throw std::runtime_error(msg);
    }
}

#define SPW_CHECK(x, what) check((x), (what), __FILE__, __LINE__)
#define SPW_CK(x) SPW_CHECK(x, #x)
#define SPW_LAUNCHED(name) SPW_CHECK(cudaGetLastError(), name)

// cuBLAS calls return a cublasStatus_t (0: success), reported the same way.
void cublas_check(int status, const char* what, const char* file, int line) {
    if (status == 0) return;
    const char* base = std::strrchr(file, '/');
    throw std::runtime_error(std::string(what) + " failed with cuBLAS status " + std::to_string(status) + " at " +
                             (base ? base + 1 : file) + ":" + std::to_string(line));
}
#define SPW_CUBLAS(x, what) cublas_check((x), (what), __FILE__, __LINE__)

std::string mib(double bytes) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

// ---------------------------------------------------------------- cuBLAS by dlopen
// Our own prototypes of the cuBLAS entry points we use (stable ABI since CUDA 4; cublasGemmEx's
// compute-type argument since CUDA 11). The enums are C enums (int); the values are cublas_api.h's.
using cublas_handle = void*;
using fn_cublas_create = int (*)(cublas_handle*);
using fn_cublas_destroy = int (*)(cublas_handle);
using fn_cublas_set_stream = int (*)(cublas_handle, cudaStream_t);
using fn_cublas_sgemm = int (*)(cublas_handle, int transa, int transb, int m, int n, int k, const float* alpha,
                                const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
                                int ldc);
using fn_cublas_gemm_ex = int (*)(cublas_handle, int transa, int transb, int m, int n, int k, const void* alpha,
                                  const void* A, int Atype, int lda, const void* B, int Btype, int ldb,
                                  const void* beta, void* C, int Ctype, int ldc, int compute_type, int algo);
constexpr int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
constexpr int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;  // cublasComputeType_t
constexpr int CUBLAS_GEMM_DEFAULT = -1;                                     // cublasGemmAlgo_t
static_assert(CUDA_R_32F == 0 && CUDA_R_16BF == 14, "cudaDataType values (library_types.h)");

struct Cublas {
    void* lib = nullptr;
    fn_cublas_create create = nullptr;
    fn_cublas_destroy destroy = nullptr;
    fn_cublas_set_stream set_stream = nullptr;
    fn_cublas_sgemm sgemm = nullptr;
    fn_cublas_gemm_ex gemm_ex = nullptr;  // optional: the tf32 and bf16 modes need it
    cublas_handle handle = nullptr;
    std::string why_not;  // why cuBLAS is not used, for the backend's name

    void load(cudaStream_t stream) {
        const char* env = std::getenv("SPILLWAY_CUBLAS");
        if (env && std::strcmp(env, "0") == 0) {
            why_not = "disabled by SPILLWAY_CUBLAS=0";
            return;
        }
        const char* names[] = {env && *env ? env : nullptr, "libcublas.so.13", "libcublas.so"};
        for (const char* n : names) {
            if (!n) continue;
            lib = dlopen(n, RTLD_NOW | RTLD_LOCAL);
            if (lib) break;
        }
        if (!lib) {
            why_not = "libcublas.so.13 not found";
            return;
        }
        create = (fn_cublas_create)dlsym(lib, "cublasCreate_v2");
        destroy = (fn_cublas_destroy)dlsym(lib, "cublasDestroy_v2");
        set_stream = (fn_cublas_set_stream)dlsym(lib, "cublasSetStream_v2");
        sgemm = (fn_cublas_sgemm)dlsym(lib, "cublasSgemm_v2");
        if (!create || !destroy || !set_stream || !sgemm) {
            why_not = "libcublas lacks the v2 entry points";
            unload();
            return;
        }
        gemm_ex = (fn_cublas_gemm_ex)dlsym(lib, "cublasGemmEx");
        int st = create(&handle);
        if (st != 0) {
            why_not = "cublasCreate failed with status " + std::to_string(st);
            handle = nullptr;
            unload();
            return;
        }
        st = set_stream(handle, stream);
        if (st != 0) {
            why_not = "cublasSetStream failed with status " + std::to_string(st);
            unload();
        }
    }
    void unload() {
        if (handle && destroy) destroy(handle);
        handle = nullptr;
        sgemm = nullptr;
        gemm_ex = nullptr;
        // The library stays mapped: unloading cuBLAS while its kernels are registered is not worth the risk.
    }
    bool ok() const { return handle != nullptr && sgemm != nullptr; }
};

// ---------------------------------------------------------------- kernels
constexpr int kThreads = 256;

unsigned grid_for(size_t work, int threads = kThreads) {
    size_t blocks = (work + (size_t)threads - 1) / (size_t)threads;
    return (unsigned)std::max<size_t>(1, std::min<size_t>(blocks, (size_t)1 << 20));  // grid-stride beyond
}

__device__ __forceinline__ size_t gtid() { return (size_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ size_t gstride() { return (size_t)gridDim.x * blockDim.x; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Block-wide reductions for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
__device__ float block_sum(float v, float* shared32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    float r = lane < nw ? shared32[lane] : 0.f;
    return warp_sum(r);
}
__device__ float block_max(float v, float* shared32) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    float r = lane < nw ? shared32[lane] : -INFINITY;
    return warp_max(r);
}

// z[i] = noise(k0 + i): one Philox block (4 elements) per thread.
__global__ void k_noise_fill(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) {
    size_t nb = (n + 3) / 4;
    for (size_t t = gtid(); t < nb; t += gstride()) {
        size_t i = t * 4;
        float v[4];
        noise_block4(seed, id, (k0 + i) >> 2, kind, v);
        if (i + 4 <= n) {
            z[i] = v[0];
            z[i + 1] = v[1];
            z[i + 2] = v[2];
            z[i + 3] = v[3];
        } else {
            for (size_t l = 0; i + l < n; l++) z[i + l] = v[l];
        }
    }
}

__global__ void k_perturb(float* w, const float* theta, const float* z, float scale, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) w[i] = fmaf(scale, z[i], theta[i]);
}

// A pair's working copies, theta +- scale * z, z drawn in registers: one Philox block per thread.
__global__ void k_perturb_pair(float* w_plus, float* w_minus, const float* theta, size_t n, uint64_t seed, uint32_t id,
                               int kind, float scale) {
    size_t nb = (n + 3) / 4;
    for (size_t t = gtid(); t < nb; t += gstride()) {
        float v[4];
        noise_block4(seed, id, t, kind, v);
        for (size_t l = 0, i = t * 4; l < 4 && i < n; l++, i++) {
            w_plus[i] = fmaf(scale, v[l], theta[i]);
            w_minus[i] = fmaf(-scale, v[l], theta[i]);
        }
    }
}

constexpr int kInlineTerms = 32;
struct InlineTerms {
    UpdateTerm t[kInlineTerms];
};

// The ZO update of elements 4t .. 4t+3 from their values before the step: theta -= sum_j
// coef_j z_j, then theta -= decay * theta_before; in that order, per element. Elements with
// |theta_before| >= mask_below keep their value (sparse training).
__device__ __forceinline__ void zo_block4(float th[4], const float before[4], size_t t, uint32_t id, int kind,
                                          const InlineTerms& inl, const UpdateTerm* terms, int nterms, float decay,
                                          float mask_below) {
    for (int l = 0; l < 4; l++) th[l] = before[l];
    for (int j = 0; j < nterms; j++) {
        UpdateTerm term = terms ? terms[j] : inl.t[j];
        float z[4];
        noise_block4(term.seed, id, t, kind, z);
        float neg = -term.coef;
        for (int l = 0; l < 4; l++) th[l] = fmaf(neg, z[l], th[l]);
    }
    if (decay != 0.0f)
        for (int l = 0; l < 4; l++) th[l] = fmaf(-decay, before[l], th[l]);
    if (mask_below != INFINITY)
        for (int l = 0; l < 4; l++)
            if (!(fabsf(before[l]) < mask_below)) th[l] = before[l];
}

__global__ void k_zo_update(float* theta, size_t n, uint32_t id, int kind, InlineTerms inl, const UpdateTerm* terms,
                            int nterms, float decay, float mask_below) {
    size_t nb = (n + 3) / 4;
    for (size_t t = gtid(); t < nb; t += gstride()) {
        size_t i0 = t * 4;
        int m = (int)min((size_t)4, n - i0);
        float th[4], before[4];
        for (int l = 0; l < 4; l++) before[l] = l < m ? theta[i0 + l] : 0.f;
        zo_block4(th, before, t, id, kind, inl, terms, nterms, decay, mask_below);
        for (int l = 0; l < m; l++) theta[i0 + l] = th[l];
    }
}

// The same update for bf16/fp16 masters, then stochastic rounding with sr_bits4(terms[0].seed, id, k)
// (spillway/precision.h, shared with the CPU backend). packed: theta is uint16_t in the format.
__global__ void k_zo_update_rounded(void* theta, int packed, int dtype, size_t n, uint32_t id, int kind, InlineTerms inl,
                                    const UpdateTerm* terms, int nterms, float decay, float mask_below) {
    float* t32 = static_cast<float*>(theta);
    uint16_t* t16 = static_cast<uint16_t*>(theta);
    uint64_t sr_seed = terms ? terms[0].seed : inl.t[0].seed;
    size_t nb = (n + 3) / 4;
    for (size_t t = gtid(); t < nb; t += gstride()) {
        size_t i0 = t * 4;
        int m = (int)min((size_t)4, n - i0);
        float th[4], before[4];
        for (int l = 0; l < 4; l++) before[l] = l < m ? (packed ? widen_one(t16[i0 + l], dtype) : t32[i0 + l]) : 0.f;
        zo_block4(th, before, t, id, kind, inl, terms, nterms, decay, mask_below);
        uint32_t bits[4];
        sr_bits4(sr_seed, id, t, bits);
        for (int l = 0; l < m; l++) {
            float r = round_sr(th[l], dtype, bits[l]);
            if (packed)
                t16[i0 + l] = narrow_one(r, dtype);
            else
                t32[i0 + l] = r;
        }
    }
}

__global__ void k_mask_small(float* z, const float* theta, float below, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride())
        if (!(fabsf(theta[i]) < below)) z[i] = 0.0f;
}

__global__ void k_scale_rows(float* x, const float* d, size_t n, int cols) {
    for (size_t i = gtid(); i < n; i += gstride()) x[i] *= d[i / (size_t)cols];
}

__global__ void k_widen(float* out, const uint16_t* in, size_t n, int dtype) {
    for (size_t i = gtid(); i < n; i += gstride()) out[i] = widen_one(in[i], dtype);
}

__global__ void k_perturb_packed(float* w, const uint16_t* theta, const float* z, float scale, size_t n, int dtype) {
    for (size_t i = gtid(); i < n; i += gstride()) w[i] = fmaf(scale, z[i], widen_one(theta[i], dtype));
}

__global__ void k_narrow(uint16_t* out, const float* in, size_t n, int dtype) {
    for (size_t i = gtid(); i < n; i += gstride()) out[i] = narrow_one(in[i], dtype);
}

// out[n, :] (=|+=) src[idx[n], :] + scale * z(idx[n] * C + c): one block per row, one Philox block per thread.
__global__ void k_embed_rows(float* out, const float* src, const int32_t* idx, int C, NoiseSpec ns, int accumulate) {
    int n = blockIdx.x;
    uint64_t row = (uint64_t)idx[n];
    const float* s = src + row * (uint64_t)C;
    float* o = out + (size_t)n * C;
    if (ns.scale == 0.0f) {
        for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = accumulate ? o[c] + s[c] : s[c];
        return;
    }
    uint64_t k0 = row * (uint64_t)C, k1 = k0 + (uint64_t)C;
    uint64_t b0 = k0 >> 2, b1 = (k1 - 1) >> 2;
    for (uint64_t b = b0 + threadIdx.x; b <= b1; b += blockDim.x) {
        float v[4];
        noise_block4(ns.seed, ns.id, b, ns.kind, v);
        for (int lane = 0; lane < 4; lane++) {
            uint64_t k = b * 4 + (uint64_t)lane;
            if (k < k0 || k >= k1) continue;
            int c = (int)(k - k0);
            float w = fmaf(ns.scale, v[lane], s[c]);
            o[c] = accumulate ? o[c] + w : w;
        }
    }
}

__global__ void k_layernorm(float* out, const float* inp, const float* w, const float* b, int C, float eps) {
    __shared__ float red[32];
    const float* x = inp + (size_t)blockIdx.x * C;
    float* y = out + (size_t)blockIdx.x * C;
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[c];
    float mean = block_sum(s, red) / (float)C;
    float v = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float d = x[c] - mean;
        v += d * d;
    }
    float var = block_sum(v, red) / (float)C;
    float rstd = 1.0f / sqrtf(var + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = (x[c] - mean) * rstd * w[c] + (b ? b[c] : 0.f);
}

// y = (offset + w) * (x * rstd): rmsnorm with offset 0, Gemma's (1 + w) norms with offset 1.
__global__ void k_rmsnorm(float* out, const float* inp, const float* w, float offset, int C, float eps) {
    __shared__ float red[32];
    const float* x = inp + (size_t)blockIdx.x * C;
    float* y = out + (size_t)blockIdx.x * C;
    float s = 0.f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) s += x[c] * x[c];
    float ss = block_sum(s, red);
    float rstd = 1.0f / sqrtf(ss / (float)C + eps);
    for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = (offset + w[c]) * (x[c] * rstd);
}

// Fallback GEMM: out[N, O] = A[N, I] W^T with W [O, I] (or [I, O] when transposed).
// 64x64 output tile per block of 256 threads, 4x4 outputs per thread, K in steps of 16.
constexpr int TM = 64, TN = 64, TK = 16;
__global__ void k_gemm_tiled(float* out, const float* A, const float* W, int N, int I, int O, int transposed) {
    __shared__ float As[TK][TM + 4];
    __shared__ float Ws[TK][TN + 4];
    int tid = threadIdx.x;
    int tr = tid / 16, tc = tid % 16;  // thread's 4x4 block: rows tr*4.., cols tc*4..
    int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < I; k0 += TK) {
        // A tile: 64 rows x 16 k = 1024 values, 4 per thread.
        for (int e = tid; e < TM * TK; e += 256) {
            int r = e / TK, k = e % TK;
            int gr = row0 + r, gk = k0 + k;
            As[k][r] = (gr < N && gk < I) ? A[(size_t)gr * I + gk] : 0.f;
        }
        // W tile: 64 output columns x 16 k.
        if (transposed) {
            for (int e = tid; e < TN * TK; e += 256) {
                int k = e / TN, c = e % TN;  // consecutive threads: consecutive columns (coalesced)
                int gc = col0 + c, gk = k0 + k;
                Ws[k][c] = (gc < O && gk < I) ? W[(size_t)gk * O + gc] : 0.f;
            }
        } else {
            for (int e = tid; e < TN * TK; e += 256) {
                int c = e / TK, k = e % TK;
                int gc = col0 + c, gk = k0 + k;
                Ws[k][c] = (gc < O && gk < I) ? W[(size_t)gc * I + gk] : 0.f;
            }
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TK; k++) {
            float a[4], w[4];
            for (int i = 0; i < 4; i++) a[i] = As[k][tr * 4 + i];
            for (int j = 0; j < 4; j++) w[j] = Ws[k][tc * 4 + j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * w[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        int gr = row0 + tr * 4 + i;
        if (gr >= N) continue;
        for (int j = 0; j < 4; j++) {
            int gc = col0 + tc * 4 + j;
            if (gc < O) out[(size_t)gr * O + gc] = acc[i][j];
        }
    }
}

__global__ void k_add_bias(float* out, const float* b, size_t N, int O) {
    size_t total = N * (size_t)O;
    for (size_t i = gtid(); i < total; i += gstride()) out[i] += b[i % (size_t)O];
}

__global__ void k_rope(float* x, int ld, int nheads, int head_dim, int rotary_dim, const int32_t* positions, int N,
                       const float* inv_freq, float scale) {
    int half = rotary_dim / 2;
    size_t total = (size_t)N * nheads * half;
    for (size_t t = gtid(); t < total; t += gstride()) {
        int i = (int)(t % half);
        size_t nh = t / half;
        int h = (int)(nh % nheads);
        size_t n = nh / nheads;
        float a = (float)positions[n] * inv_freq[i];
        float cs = cosf(a) * scale, sn = sinf(a) * scale;
        float* r = x + n * (size_t)ld + (size_t)h * head_dim;
        float x1 = r[i], x2 = r[i + half];
        r[i] = x1 * cs - x2 * sn;
        r[i + half] = x2 * cs + x1 * sn;
    }
}

constexpr int kDimsPerLane = 8;
constexpr int kAttnWarps = 4;

// One warp's query row in registers: lane owns dims lane, lane + 32, ...; the rest are zero.
__device__ __forceinline__ void warp_load_query(float qr[kDimsPerLane], const float* q, int HD, int lane) {
#pragma unroll
    for (int r = 0; r < kDimsPerLane; r++) {
        int d = lane + 32 * r;
        qr[r] = d < HD ? q[d] : 0.f;
    }
}

// One warp's online softmax (float32) of its query over keys j = first, first + step, ... <= last,
// rows kbase + j * ldk and vbase + j * ldv. Leaves the running max m, the sum l and the unnormalised
// accumulator acc (started at m = -inf, l = 0, acc = 0), so a caller may merge several warps' states.
__device__ __forceinline__ void warp_softmax_keys(const float qr[kDimsPerLane], const float* kbase, const float* vbase,
                                                  const AttentionShape& s, int first, int last, int step, int lane,
                                                  float acc[kDimsPerLane], float& m, float& l) {
    const int HD = s.head_dim;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; r++) acc[r] = 0.f;
    m = -INFINITY;
    l = 0.f;
    for (int j = first; j <= last; j += step) {
        const float* k = kbase + (size_t)j * s.ldk;
        float d = 0.f;
#pragma unroll
        for (int r = 0; r < kDimsPerLane; r++) {
            int dd = lane + 32 * r;
            if (dd < HD) d += qr[r] * k[dd];
        }
        d = warp_sum(d) * s.scale;
        if (s.softcap > 0.f) d = s.softcap * tanhf(d / s.softcap);
        float mn = fmaxf(m, d);
        float corr = expf(m - mn);
        float p = expf(d - mn);
        l = l * corr + p;
        const float* v = vbase + (size_t)j * s.ldv;
#pragma unroll
        for (int r = 0; r < kDimsPerLane; r++) {
            int dd = lane + 32 * r;
            if (dd < HD) acc[r] = acc[r] * corr + p * v[dd];
        }
        m = mn;
    }
}

// One warp's output row: acc / l over the dims its lanes own.
__device__ __forceinline__ void warp_store_row(float* o, const float acc[kDimsPerLane], float l, int HD, int lane) {
    float inv = 1.0f / l;
#pragma unroll
    for (int r = 0; r < kDimsPerLane; r++) {
        int dd = lane + 32 * r;
        if (dd < HD) o[dd] = acc[r] * inv;
    }
}

// Causal (optionally sliding-window) attention with grouped-query heads.
// Grid (sequence, head, query tile); one warp per query, lanes own head dims
// (head_dim <= 32 * kDimsPerLane); online softmax in float32 over the keys.
__global__ void k_attention(float* out, const float* qb, const float* kb, const float* vb, AttentionShape s,
                            const int32_t* seq_start) {
    int sq = blockIdx.x, h = blockIdx.y;
    int group = s.heads / s.kv_heads, kvh = h / group;
    int start = seq_start[sq], T = seq_start[sq + 1] - start;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int HD = s.head_dim;
    size_t out_ld = (size_t)s.heads * HD;
    // Keys and values by their row in the pass: this sequence's are rows start + j0 .. start + i.
    const float* kbase = kb + (size_t)kvh * HD;
    const float* vbase = vb + (size_t)kvh * HD;
    for (int i = blockIdx.z * kAttnWarps + warp; i < T; i += gridDim.z * kAttnWarps) {
        float qr[kDimsPerLane], acc[kDimsPerLane], m, l;
        warp_load_query(qr, qb + (size_t)(start + i) * s.ldq + (size_t)h * HD, HD, lane);
        int j0 = s.window > 0 ? max(0, i - s.window + 1) : 0;
        warp_softmax_keys(qr, kbase, vbase, s, start + j0, start + i, 1, lane, acc, m, l);
        warp_store_row(out + (size_t)(start + i) * out_ld + (size_t)h * HD, acc, l, HD, lane);
    }
}

// Tiled causal attention (flash-style): one block of 128 threads per (sequence, head, 32
// queries); keys and values come through shared memory 16 at a time. Thread t owns query row
// t / 4 of the tile: 4 of the 16 scores of each key tile and every 4th output dimension
// (starting at t % 4); the 4 threads of a row are adjacent lanes and combine row maxima, sums
// and probabilities by shuffles. Online softmax in float32, as k_attention. head_dim <= 128
// and a multiple of 4.
constexpr int kTq = 32, kTk = 16, kTileHD = 128;
__global__ void __launch_bounds__(128) k_attention_tiled(float* out, const float* qb, const float* kb, const float* vb,
                                                         AttentionShape s, const int32_t* seq_start) {
    __shared__ float Qs[kTq][kTileHD + 1];
    __shared__ float Ks[kTk][kTileHD + 1];
    __shared__ float Vs[kTk][kTileHD];
    const int sq = blockIdx.x, h = blockIdx.y;
    const int group = s.heads / s.kv_heads, kvh = h / group;
    const int start = seq_start[sq], T = seq_start[sq + 1] - start;
    const int HD = s.head_dim, HDq = HD / 4;
    const int t = threadIdx.x, r = t >> 2, qq = t & 3, lane = t & 31;
    const size_t out_ld = (size_t)s.heads * HD;
    for (int q0 = blockIdx.z * kTq; q0 < T; q0 += gridDim.z * kTq) {
        __syncthreads();  // the previous tile's readers are done with Qs
        for (int idx = t; idx < kTq * HD; idx += blockDim.x) {
            int rr = idx / HD, d = idx - rr * HD;
            Qs[rr][d] = q0 + rr < T ? qb[(size_t)(start + q0 + rr) * s.ldq + (size_t)h * HD + d] : 0.f;
        }
        const int i = q0 + r;
        const bool valid = i < T;
        float m = -INFINITY, l = 0.f, acc[kTileHD / 4];
#pragma unroll
        for (int k = 0; k < kTileHD / 4; k++) acc[k] = 0.f;
        const int last = min(T - 1, q0 + kTq - 1);
        const int first = s.window > 0 ? max(0, q0 - s.window + 1) : 0;
        for (int k0 = first / kTk * kTk; k0 <= last; k0 += kTk) {
            __syncthreads();  // Ks / Vs free (and Qs written, on the first tile)
            for (int idx = t; idx < kTk * HD; idx += blockDim.x) {
                int c = idx / HD, d = idx - c * HD;
                bool in = k0 + c < T;
                size_t row = (size_t)(start + k0 + c);
                Ks[c][d] = in ? kb[row * s.ldk + (size_t)kvh * HD + d] : 0.f;
                Vs[c][d] = in ? vb[row * s.ldv + (size_t)kvh * HD + d] : 0.f;
            }
            __syncthreads();
            float sc[kTk / 4];
            float tmax = -INFINITY;
#pragma unroll
            for (int cc = 0; cc < kTk / 4; cc++) {
                int c = qq * (kTk / 4) + cc, j = k0 + c;
                float dot = 0.f;
                for (int d = 0; d < HD; d++) dot += Qs[r][d] * Ks[c][d];
                bool masked = !valid || j > i || j >= T || (s.window > 0 && j < i - s.window + 1);
                float scaled = dot * s.scale;
                if (s.softcap > 0.f) scaled = s.softcap * tanhf(scaled / s.softcap);
                sc[cc] = masked ? -INFINITY : scaled;
                tmax = fmaxf(tmax, sc[cc]);
            }
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
            const float mn = fmaxf(m, tmax);
            const bool none = mn == -INFINITY;  // every key so far masked for this row
            const float corr = none ? 1.f : expf(m - mn);
            float p[kTk / 4], psum = 0.f;
#pragma unroll
            for (int cc = 0; cc < kTk / 4; cc++) {
                p[cc] = none || sc[cc] == -INFINITY ? 0.f : expf(sc[cc] - mn);
                psum += p[cc];
            }
            psum += __shfl_xor_sync(0xffffffffu, psum, 1);
            psum += __shfl_xor_sync(0xffffffffu, psum, 2);
            l = l * corr + psum;
#pragma unroll
            for (int k = 0; k < kTileHD / 4; k++) acc[k] *= corr;
#pragma unroll
            for (int c = 0; c < kTk; c++) {
                float pc = __shfl_sync(0xffffffffu, p[c % (kTk / 4)], (lane & ~3) | (c / (kTk / 4)));
#pragma unroll
                for (int k = 0; k < kTileHD / 4; k++)
                    if (k < HDq) acc[k] += pc * Vs[c][qq + 4 * k];
            }
            m = none ? m : mn;
        }
        if (valid) {
            float inv = 1.0f / l;
            float* o = out + (size_t)(start + i) * out_ld + (size_t)h * HD;
#pragma unroll
            for (int k = 0; k < kTileHD / 4; k++)
                if (k < HDq) o[qq + 4 * k] = acc[k] * inv;
        }
    }
}

// Decoding: a pass's keys or values into their cache rows; one block per token.
__global__ void k_kv_store(float* cache, const float* x, int ld, const int32_t* rows, int width) {
    int n = blockIdx.x;
    const float* s = x + (size_t)n * ld;
    float* o = cache + (size_t)rows[n] * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) o[c] = s[c];
}

// Attention of a pass's tokens over cached keys and values. One block per (token, head); its
// kAttnWarps warps take every kAttnWarps-th key (warp_softmax_keys, as in k_attention), then
// merge their (max, sum, accumulator) states through shared memory, so a long cache is read by four warps at once (a decoding pass has few tokens).
__global__ void k_attention_cached(float* out, const float* qb, const float* kc, const float* vc, AttentionShape s,
                                   const int32_t* positions, const int32_t* seq_start, const int32_t* kv_start,
                                   int nseq) {
    __shared__ float sm[kAttnWarps], sl[kAttnWarps], sacc[kAttnWarps][32 * kDimsPerLane];
    int n = blockIdx.x, h = blockIdx.y;
    int sq = 0;
    while (sq + 1 < nseq && seq_start[sq + 1] <= n) sq++;
    int group = s.heads / s.kv_heads, kvh = h / group;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int HD = s.head_dim, pos = positions[n];
    const float* q = qb + (size_t)n * s.ldq + (size_t)h * HD;
    const float* kbase = kc + (size_t)kv_start[sq] * s.ldk + (size_t)kvh * HD;
    const float* vbase = vc + (size_t)kv_start[sq] * s.ldv + (size_t)kvh * HD;
    float qr[kDimsPerLane], acc[kDimsPerLane], m, l;
    warp_load_query(qr, q, HD, lane);
    int j0 = s.window > 0 ? max(0, pos - s.window + 1) : 0;
    warp_softmax_keys(qr, kbase, vbase, s, j0 + warp, pos, kAttnWarps, lane, acc, m, l);
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < kDimsPerLane; r++) sacc[warp][lane + 32 * r] = acc[r];
    __syncthreads();
    if (warp != 0) return;
    float mt = -INFINITY;
    for (int w = 0; w < kAttnWarps; w++) mt = fmaxf(mt, sm[w]);
    float lt = 0.f;
    float o[kDimsPerLane];
#pragma unroll
    for (int r = 0; r < kDimsPerLane; r++) o[r] = 0.f;
    for (int w = 0; w < kAttnWarps; w++) {
        if (sm[w] == -INFINITY) continue;  // a warp that saw no key
        float c = expf(sm[w] - mt);
        lt += sl[w] * c;
#pragma unroll
        for (int r = 0; r < kDimsPerLane; r++) o[r] += sacc[w][lane + 32 * r] * c;
    }
    warp_store_row(out + (size_t)n * s.heads * HD + (size_t)h * HD, o, lt, HD, lane);
}

__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2 / pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float act_one(float v, int act) {
    switch (act) {
        case (int)Act::Relu: return v > 0.f ? v : 0.f;
        case (int)Act::Gelu: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        case (int)Act::GeluNew: return gelu_tanh(v);
        default: return v / (1.0f + expf(-v));
    }
}

__global__ void k_activation(float* x, size_t n, int act) {
    for (size_t i = gtid(); i < n; i += gstride()) x[i] = act_one(x[i], act);
}

__global__ void k_gated_act(float* gate, const float* up, size_t n, int act) {
    for (size_t i = gtid(); i < n; i += gstride()) gate[i] = act_one(gate[i], act) * up[i];
}

__global__ void k_scale(float* x, float s, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) x[i] *= s;
}

__global__ void k_softcap(float* x, float cap, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) x[i] = cap * tanhf(x[i] / cap);
}

__global__ void k_gated_silu(float* gate, const float* up, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) {
        float g = gate[i];
        gate[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

__global__ void k_add(float* x, const float* y, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) x[i] += y[i];
}

__global__ void k_copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) {
    size_t total = (size_t)rows * cols;
    for (size_t t = gtid(); t < total; t += gstride()) {
        size_t r = t / (size_t)cols, c = t % (size_t)cols;
        out[r * (size_t)ld_out + c] = in[r * (size_t)ld_in + c];
    }
}

__global__ void k_gather_rows(float* out, const float* inp, const int32_t* rows, int C) {
    int m = blockIdx.x;
    const float* s = inp + (size_t)rows[m] * C;
    float* o = out + (size_t)m * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = s[c];
}

// logprob[r] = l[r, target[r]] - max - log(sum exp(l - max)); one block per row.
__global__ void k_log_softmax_gather(float* logprob, const float* logits, const int32_t* target, int V) {
    __shared__ float red[32];
    const float* l = logits + (size_t)blockIdx.x * V;
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, l[v]);
    mx = block_max(mx, red);
    float s = 0.f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(l[v] - mx);
    s = block_sum(s, red);
    if (threadIdx.x == 0) logprob[blockIdx.x] = l[target[blockIdx.x]] - mx - logf(s);
}

// dst[i] = bf16(src[i]), round to nearest even (the bf16 GEMM mode's operands).
__global__ void k_to_bf16(__nv_bfloat16* dst, const float* src, size_t n) {
    for (size_t i = gtid(); i < n; i += gstride()) dst[i] = __float2bfloat16_rn(src[i]);
}

// ---------------------------------------------------------------- GEMM precision
enum class GemmMode { Fp32, Tf32, Bf16 };

const char* gemm_mode_name(GemmMode m) {
    return m == GemmMode::Tf32 ? "tf32" : m == GemmMode::Bf16 ? "bf16" : "fp32";
}

// The mode asked for (the run's --gemm; empty = fp32), $SPILLWAY_GEMM over it when set. Anything
// but fp32, tf32 or bf16 is an error (a typo must not silently measure the wrong precision).
GemmMode gemm_mode(const std::string& asked) {
    const char* env = std::getenv("SPILLWAY_GEMM");
    const bool from_env = env && *env;
    std::string v = from_env ? std::string(env) : asked;
    for (char& c : v) c = (char)std::tolower((unsigned char)c);
    if (v.empty() || v == "fp32") return GemmMode::Fp32;
    if (v == "tf32") return GemmMode::Tf32;
    if (v == "bf16") return GemmMode::Bf16;
    throw std::runtime_error(std::string(from_env ? "SPILLWAY_GEMM" : "gemm") + " must be fp32, tf32 or bf16 (got '" +
                             (from_env ? std::string(env) : asked) + "')");
}

// Bytes of device memory the backend keeps for itself (logits, terms, bf16 operands). Grown with
// stream-ordered allocations where the device has memory pools: no host wait, and the old buffer is
// freed after the kernels queued before it.
struct Scratch {
    void* p = nullptr;
    size_t bytes = 0;
};

// ---------------------------------------------------------------- the backend
class CudaBackend final : public Backend {
public:
    CudaBackend(int device, GemmMode want) : dev_(device) {
        int count = 0;
        SPW_CK(cudaGetDeviceCount(&count));
        if (device < 0 || device >= count)
            throw std::runtime_error("CUDA device " + std::to_string(device) + " does not exist (" +
                                     std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")");
        SPW_CK(cudaSetDevice(dev_));
        cudaDeviceProp p;
        SPW_CK(cudaGetDeviceProperties(&p, dev_));
        device_name_ = p.name;
        SPW_CK(cudaFree(nullptr));  // create the primary context now, not in the first kernel
        SPW_CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        SPW_CK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
        SPW_CK(cudaStreamCreateWithFlags(&out_stream_, cudaStreamNonBlocking));
        int pools = 0;
        if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, dev_) != cudaSuccess) pools = 0;
        cudaGetLastError();
        pools_ = pools != 0;
        cublas_.load(stream_);
        if (want != GemmMode::Fp32) {
            std::string why;
            if (!cublas_.ok()) why = "needs cuBLAS";
            else if (!cublas_.gemm_ex) why = "libcublas lacks cublasGemmEx";
            else if (p.major < 8)
                why = "needs tensor cores of compute capability 8.0 or newer (device is " + std::to_string(p.major) +
                      "." + std::to_string(p.minor) + ")";
            if (why.empty()) gemm_ = want;
            else gemm_note_ = std::string("gemm ") + gemm_mode_name(want) + " not available: " + why;
        }
    }

    ~CudaBackend() override {
        cudaSetDevice(dev_);
        cudaStreamSynchronize(copy_stream_);
        cudaStreamSynchronize(out_stream_);
        cudaStreamSynchronize(stream_);
        for (Scratch* s : {&logits_, &terms_, &bf16_a_, &bf16_w_}) {
            if (!s->p) continue;
            if (pools_) cudaFreeAsync(s->p, stream_);
            else cudaFree(s->p);
        }
        cudaStreamSynchronize(stream_);
        for (auto& u : stage_inflight_) cudaEventDestroy(u.done);
        for (cudaEvent_t e : stage_spare_) cudaEventDestroy(e);
        if (stage_host_) cudaFreeHost(stage_host_);
        for (auto& kv : pinned_) cudaHostUnregister(kv.second);
        cudaGetLastError();
        cublas_.unload();
        cudaStreamDestroy(copy_stream_);
        cudaStreamDestroy(out_stream_);
        cudaStreamDestroy(stream_);
    }

    // "cuda:0 (NVIDIA H100 80GB HBM3, gemm tf32)"; a mode that could not be had says why.
    std::string name() const override {
        std::string s = "cuda:" + std::to_string(dev_) + " (" + device_name_ + ", gemm " + gemm_mode_name(gemm_);
        if (!cublas_.ok()) s += ", tiled gemm: " + cublas_.why_not;
        if (!gemm_note_.empty()) s += "; " + gemm_note_;
        return s + ")";
    }
    int threads() const override { return 1; }
    bool host_addressable() const override { return false; }

    // ---- memory and copies ----
    void* alloc(size_t bytes) override {
        cur();
        void* p = nullptr;
        size_t n = std::max<size_t>(bytes, 1);
        ledger_.reserve(n, budget_, name());
        cudaError_t e = cudaMalloc(&p, n);
        if (e != cudaSuccess && pools_) {
            // Scratch freed with cudaFreeAsync stays in the memory pool until a synchronization:
            // hand it back to the device and try once more (out of memory only, so the wait is cheap).
            cudaGetLastError();
            cudaStreamSynchronize(stream_);
            cudaMemPool_t pool = nullptr;
            if (cudaDeviceGetDefaultMemPool(&pool, dev_) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
            cudaGetLastError();
            e = cudaMalloc(&p, n);
        }
        if (e != cudaSuccess) out_of_memory(n, e, "");
        ledger_.commit(p, n);
        return p;
    }
    void release(void* p) override {
        if (!p) return;
        cur();
        ledger_.forget(p);
        cudaFree(p);  // never throws from a release path
    }
    void* alloc_host(size_t bytes) override {
        cur();
        void* p = nullptr;
        size_t n = std::max<size_t>(bytes, 1);
        cudaError_t e = cudaMallocHost(&p, n);
        if (e != cudaSuccess) {
            cudaGetLastError();
            throw std::runtime_error("cannot allocate " + std::to_string(n) + " bytes (" + mib((double)n) +
                                     ") of pinned host memory: " + cudaGetErrorString(e));
        }
        return p;
    }
    void release_host(void* p) override {
        if (!p) return;
        cur();
        cudaFreeHost(p);
    }
    // Up to kStageMax bytes: through the pinned staging ring, no host wait (the source is copied
    // into the ring before this returns). Bigger: a copy and a wait, as the interface promises.
    void upload(void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        if (bytes <= kStageMax && staged_upload(dst, src, bytes)) return;
        SPW_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
        SPW_CK(cudaStreamSynchronize(stream_));
    }
    void download(void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
        SPW_CK(cudaStreamSynchronize(stream_));
    }
    void upload_async(void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    }
    void download_async(void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    }
    void copy(void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    }
    // Both queues: "every queued kernel and copy" includes the copy queue's uploads (their host
    // sources may be freed after this returns).
    void synchronize() override {
        cur();
        SPW_CK(cudaStreamSynchronize(copy_stream_));
        SPW_CK(cudaStreamSynchronize(out_stream_));
        SPW_CK(cudaStreamSynchronize(stream_));
    }

    // ---- the copy queue and events ----
    // A Backend::Event* is the cudaEvent_t itself (never dereferenced as an Event).
    Event* event_create() override {
        cur();
        cudaEvent_t e = nullptr;
        SPW_CK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        return reinterpret_cast<Event*>(e);
    }
    void event_destroy(Event* e) override {
        if (!e) return;
        cur();
        cudaEventDestroy(reinterpret_cast<cudaEvent_t>(e));  // never throws (a release path)
        cudaGetLastError();
    }
    void record(Event* e, Queue q) override {
        cur();
        SPW_CHECK(cudaEventRecord(event(e, "record"), queue(q)), std::string("cudaEventRecord(") + queue_name(q) + ")");
    }
    void wait(Queue q, Event* e) override {
        cur();
        SPW_CHECK(cudaStreamWaitEvent(queue(q), event(e, "wait"), 0), std::string("cudaStreamWaitEvent(") + queue_name(q) + ")");
    }
    void host_wait(Event* e) override {
        cur();
        SPW_CHECK(cudaEventSynchronize(event(e, "host_wait")), "cudaEventSynchronize");
    }
    // Asynchronous on either queue. From pageable memory CUDA stages the copy itself and the call
    // returns only once the source has been read (no overlap with the host); pin_host() avoids that.
    void upload_on(Queue q, void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, queue(q)),
              std::string("cudaMemcpyAsync(") + queue_name(q) + ", host to device)");
    }
    // Asynchronous on either queue; the destination holds the data once an event recorded after it has passed.
    void download_on(Queue q, void* dst, const void* src, size_t bytes) override {
        if (!bytes) return;
        cur();
        SPW_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, queue(q)),
              std::string("cudaMemcpyAsync(") + queue_name(q) + ", device to host)");
    }
    // cudaHostRegister. "Already registered" is not an error: memory from alloc_host(), a range pinned
    // twice, or a range sharing a page with a neighbour pinned before it (masters come from
    // aligned_alloc(64, ...): small ones share pages). In the last case the pages wholly inside the
    // range are pinned on their own, so that the bulk of it is. Other failures throw.
    void* native_queue(Queue q) override { return (void*)queue(q); }
    void bind_thread() override { cur(); }

    void pin_host(void* p, size_t bytes) override {
        if (!p || !bytes) return;
        cur();
        std::lock_guard<std::mutex> lock(pin_mu_);
        if (pinned_.count(p)) return;
        cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
        if (e == cudaSuccess) {
            pinned_[p] = p;
            return;
        }
        cudaGetLastError();
        if (e != cudaErrorHostMemoryAlreadyRegistered) pin_error(p, bytes, e);
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t lo = ((uintptr_t)p + page - 1) / page * page, hi = ((uintptr_t)p + bytes) / page * page;
        if (hi <= lo) return;
        e = cudaHostRegister((void*)lo, hi - lo, cudaHostRegisterDefault);
        if (e == cudaSuccess) {
            pinned_[p] = (void*)lo;
            return;
        }
        cudaGetLastError();
        if (e != cudaErrorHostMemoryAlreadyRegistered) pin_error((void*)lo, hi - lo, e);
    }
    // Undoes this backend's own pin_host() of p (and nothing else: a range found already registered
    // belongs to whoever registered it). Never throws.
    void unpin_host(void* p) override {
        if (!p) return;
        cur();
        std::lock_guard<std::mutex> lock(pin_mu_);
        auto it = pinned_.find(p);
        if (it == pinned_.end()) return;
        cudaHostUnregister(it->second);
        cudaGetLastError();
        pinned_.erase(it);
    }

    // ---- ZO kernels ----
    void noise_fill(float* z, size_t n, uint64_t seed, uint32_t id, int kind, uint64_t k0) override {
        if (!n) return;
        if (k0 % 4) throw std::runtime_error("noise_fill: k0 must be a multiple of 4");
        cur();
        k_noise_fill<<<grid_for((n + 3) / 4), kThreads, 0, stream_>>>(z, n, seed, id, kind, k0);
        SPW_LAUNCHED("noise_fill");
    }
    void perturb(float* w, const float* theta, const float* z, float scale, size_t n) override {
        if (!n) return;
        cur();
        k_perturb<<<grid_for(n), kThreads, 0, stream_>>>(w, theta, z, scale, n);
        SPW_LAUNCHED("perturb");
    }
    void perturb_pair(float* w_plus, float* w_minus, const float* theta, size_t n, uint64_t seed, uint32_t id, int kind,
                      float scale) override {
        if (!n) return;
        cur();
        k_perturb_pair<<<grid_for((n + 3) / 4), kThreads, 0, stream_>>>(w_plus, w_minus, theta, n, seed, id, kind, scale);
        SPW_LAUNCHED("perturb_pair");
    }
    // Up to kInlineTerms terms travel by value in the kernel's parameters (returns null); more go
    // to a device buffer through the staging ring (returned). Neither waits on the host.
    const UpdateTerm* stage_terms(const UpdateTerm* terms, int nterms, InlineTerms& inl) {
        if (nterms <= kInlineTerms) {
            for (int j = 0; j < nterms; j++) inl.t[j] = terms[j];
            return nullptr;
        }
        size_t bytes = sizeof(UpdateTerm) * (size_t)nterms;
        auto* dev = static_cast<UpdateTerm*>(grow(terms_, bytes, bytes * 2, "zo_update terms"));
        upload(dev, terms, bytes);
        return dev;
    }
    void zo_update(float* theta, size_t n, uint32_t id, int kind, const UpdateTerm* terms, int nterms,
                   float decay, float mask_below) override {
        if (!n) return;
        cur();
        InlineTerms inl{};
        const UpdateTerm* dev_terms = stage_terms(terms, nterms, inl);
        k_zo_update<<<grid_for((n + 3) / 4), kThreads, 0, stream_>>>(theta, n, id, kind, inl, dev_terms, nterms,
                                                                    decay, mask_below);
        SPW_LAUNCHED("zo_update");
    }
    void mask_small(float* z, const float* theta, float below, size_t n) override {
        if (!n) return;
        cur();
        k_mask_small<<<grid_for(n), kThreads, 0, stream_>>>(z, theta, below, n);
        SPW_LAUNCHED("mask_small");
    }

    void zo_update_rounded(void* theta, bool packed, int dtype, size_t n, uint32_t id, int kind, const UpdateTerm* terms,
                           int nterms, float decay, float mask_below) override {
        if (dtype != MASTER_BF16 && dtype != MASTER_F16) throw std::runtime_error("zo_update_rounded needs bf16 or fp16");
        if (!n || nterms < 1) return;
        cur();
        InlineTerms inl{};
        const UpdateTerm* dev_terms = stage_terms(terms, nterms, inl);
        k_zo_update_rounded<<<grid_for((n + 3) / 4), kThreads, 0, stream_>>>(theta, packed ? 1 : 0, dtype, n, id, kind, inl,
                                                                            dev_terms, nterms, decay, mask_below);
        SPW_LAUNCHED("zo_update_rounded");
    }
    void widen(float* out, const uint16_t* in, size_t n, int dtype) override {
        if (!n) return;
        cur();
        k_widen<<<grid_for(n), kThreads, 0, stream_>>>(out, in, n, dtype);
        SPW_LAUNCHED("widen");
    }
    void perturb_packed(float* w, const uint16_t* theta, const float* z, float scale, size_t n, int dtype) override {
        if (!n) return;
        cur();
        k_perturb_packed<<<grid_for(n), kThreads, 0, stream_>>>(w, theta, z, scale, n, dtype);
        SPW_LAUNCHED("perturb_packed");
    }
    void narrow(uint16_t* out, const float* in, size_t n, int dtype) override {
        if (!n) return;
        cur();
        k_narrow<<<grid_for(n), kThreads, 0, stream_>>>(out, in, n, dtype);
        SPW_LAUNCHED("narrow");
    }

    // ---- forward kernels ----
    void embed(float* out, const float* tok, const int32_t* ids, int N, int C, const NoiseSpec& tok_noise,
               const float* pos, const int32_t* posidx, const NoiseSpec& pos_noise) override {
        if (N <= 0) return;
        cur();
        k_embed_rows<<<N, 128, 0, stream_>>>(out, tok, ids, C, tok_noise, 0);
        SPW_LAUNCHED("embed");
        if (pos) {
            k_embed_rows<<<N, 128, 0, stream_>>>(out, pos, posidx, C, pos_noise, 1);
            SPW_LAUNCHED("embed(pos)");
        }
    }
    void layernorm(float* out, const float* inp, const float* w, const float* b, int N, int C,
                   float eps) override {
        if (N <= 0) return;
        cur();
        k_layernorm<<<N, kThreads, 0, stream_>>>(out, inp, w, b, C, eps);
        SPW_LAUNCHED("layernorm");
    }
    void rmsnorm(float* out, const float* inp, const float* w, int N, int C, float eps) override {
        if (N <= 0) return;
        cur();
        k_rmsnorm<<<N, kThreads, 0, stream_>>>(out, inp, w, 0.f, C, eps);
        SPW_LAUNCHED("rmsnorm");
    }
    void rmsnorm_offset(float* out, const float* inp, const float* w, float offset, int N, int C,
                        float eps) override {
        if (N <= 0) return;
        cur();
        k_rmsnorm<<<N, kThreads, 0, stream_>>>(out, inp, w, offset, C, eps);
        SPW_LAUNCHED("rmsnorm_offset");
    }
    void linear(float* out, const float* inp, const float* W, const float* b, int N, int I, int O,
                bool transposed) override {
        if (N <= 0 || O <= 0) return;
        cur();
        gemm(out, inp, W, N, I, O, transposed, nullptr);
        if (b) {
            k_add_bias<<<grid_for((size_t)N * O), kThreads, 0, stream_>>>(out, b, (size_t)N, O);
            SPW_LAUNCHED("linear(bias)");
        }
    }
    void rope(float* x, int ld, int nheads, int head_dim, int rotary_dim, const int32_t* positions, int N,
              const float* inv_freq, float scale) override {
        if (N <= 0) return;
        cur();
        size_t total = (size_t)N * nheads * (rotary_dim / 2);
        k_rope<<<grid_for(total), kThreads, 0, stream_>>>(x, ld, nheads, head_dim, rotary_dim, positions, N, inv_freq,
                                                          scale);
        SPW_LAUNCHED("rope");
    }
    // What both attention kernels can take: a lane's kDimsPerLane dims of a head, a grid's 65535 heads.
    static void attention_limits(const AttentionShape& s) {
        if (s.head_dim > 32 * kDimsPerLane)
            throw std::runtime_error("CUDA attention supports head_dim up to " + std::to_string(32 * kDimsPerLane) +
                                     " (got " + std::to_string(s.head_dim) + ")");
        if (s.heads > 65535) throw std::runtime_error("CUDA attention: too many heads");
    }
    void attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s,
                   const int32_t* seq_start, int nseq) override {
        if (nseq <= 0) return;
        attention_limits(s);
        cur();
        // Sequence lengths live on the device; enough query tiles to fill the GPU, idle warps leave early.
        int base = nseq * s.heads;
        int tiles = std::max(1, std::min(64, (2048 + base - 1) / base));
        dim3 grid((unsigned)nseq, (unsigned)s.heads, (unsigned)tiles);
        if (tiled_attention_ && s.head_dim <= kTileHD && s.head_dim % 4 == 0) {
            k_attention_tiled<<<grid, 128, 0, stream_>>>(out, q, k, v, s, seq_start);
            SPW_LAUNCHED("attention (tiled)");
            return;
        }
        k_attention<<<grid, 32 * kAttnWarps, 0, stream_>>>(out, q, k, v, s, seq_start);
        SPW_LAUNCHED("attention");
    }
    void kv_store(float* cache, const float* x, int ld, const int32_t* rows, int N, int width) override {
        if (N <= 0) return;
        cur();
        k_kv_store<<<N, 128, 0, stream_>>>(cache, x, ld, rows, width);
        SPW_LAUNCHED("kv_store");
    }
    void attention_cached(float* out, const float* q, const float* kc, const float* vc, const AttentionShape& s,
                          const int32_t* positions, int N, const int32_t* seq_start, const int32_t* kv_start,
                          int nseq) override {
        if (nseq <= 0 || N <= 0) return;
        attention_limits(s);
        cur();
        dim3 grid((unsigned)N, (unsigned)s.heads);
        k_attention_cached<<<grid, 32 * kAttnWarps, 0, stream_>>>(out, q, kc, vc, s, positions, seq_start, kv_start, nseq);
        SPW_LAUNCHED("attention_cached");
    }
    void activation(float* x, size_t n, Act act) override {
        if (!n) return;
        cur();
        k_activation<<<grid_for(n), kThreads, 0, stream_>>>(x, n, (int)act);
        SPW_LAUNCHED("activation");
    }
    void gated_silu(float* gate, const float* up, size_t n) override {
        if (!n) return;
        cur();
        k_gated_silu<<<grid_for(n), kThreads, 0, stream_>>>(gate, up, n);
        SPW_LAUNCHED("gated_silu");
    }
    void gated_act(float* gate, const float* up, size_t n, Act act) override {
        if (!n) return;
        cur();
        k_gated_act<<<grid_for(n), kThreads, 0, stream_>>>(gate, up, n, (int)act);
        SPW_LAUNCHED("gated_act");
    }
    void scale(float* x, float s, size_t n) override {
        if (!n) return;
        cur();
        k_scale<<<grid_for(n), kThreads, 0, stream_>>>(x, s, n);
        SPW_LAUNCHED("scale");
    }
    void add(float* x, const float* y, size_t n) override {
        if (!n) return;
        cur();
        k_add<<<grid_for(n), kThreads, 0, stream_>>>(x, y, n);
        SPW_LAUNCHED("add");
    }
    void scale_rows(float* x, const float* d, int rows, int cols) override {
        size_t n = (size_t)rows * cols;
        if (!n) return;
        cur();
        k_scale_rows<<<grid_for(n), kThreads, 0, stream_>>>(x, d, n, cols);
        SPW_LAUNCHED("scale_rows");
    }
    void copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) override {
        if (rows <= 0 || cols <= 0) return;
        cur();
        k_copy_rows<<<grid_for((size_t)rows * cols), kThreads, 0, stream_>>>(out, ld_out, in, ld_in, rows, cols);
        SPW_LAUNCHED("copy_rows");
    }
    void gather_rows(float* out, const float* inp, const int32_t* rows, int M, int C) override {
        if (M <= 0) return;
        cur();
        k_gather_rows<<<M, 128, 0, stream_>>>(out, inp, rows, C);
        SPW_LAUNCHED("gather_rows");
    }
    void token_logprobs(float* logprob, const float* x, const float* W, const int32_t* target, int M, int C,
                        int V, float softcap) override {
        if (M <= 0) return;
        cur();
        // Logits in chunks of rows (at most ~256 MiB of them) so that long batches stay bounded. The
        // buffer grows (by half again, up to one full chunk) and is kept: no per-call allocation.
        const int max_rows = std::max(1, (int)(((size_t)256 << 20) / (sizeof(float) * (size_t)V)));
        const int rows = std::min(M, max_rows);
        float* logits = static_cast<float*>(grow(logits_, sizeof(float) * (size_t)rows * V,
                                                 sizeof(float) * (size_t)max_rows * V, "token_logprobs logits"));
        // bf16: the head is rounded once per call, not once per chunk of rows.
        const void* Wb = gemm_ == GemmMode::Bf16 && cublas_.ok() ? to_bf16(W, (size_t)V * C, bf16_w_) : nullptr;
        for (int m0 = 0; m0 < M; m0 += rows) {
            int m = std::min(rows, M - m0);
            gemm(logits, x + (size_t)m0 * C, W, m, C, V, false, Wb);
            if (softcap > 0.f) {
                k_softcap<<<grid_for((size_t)m * V), kThreads, 0, stream_>>>(logits, softcap, (size_t)m * V);
                SPW_LAUNCHED("token_logprobs(softcap)");
            }
            k_log_softmax_gather<<<m, kThreads, 0, stream_>>>(logprob + m0, logits, target + m0, V);
            SPW_LAUNCHED("token_logprobs");
        }
    }

private:
    static constexpr size_t kStageBytes = (size_t)8 << 20;  // the pinned staging ring
    static constexpr size_t kStageMax = (size_t)1 << 20;    // uploads up to this size go through it

    void cur() const { SPW_CK(cudaSetDevice(dev_)); }
    cudaStream_t queue(Queue q) const { return q == Queue::Copy ? copy_stream_ : q == Queue::CopyOut ? out_stream_ : stream_; }
    static const char* queue_name(Queue q) { return q == Queue::Copy ? "copy queue" : q == Queue::CopyOut ? "write-back queue" : "compute queue"; }
    static cudaEvent_t event(Event* e, const char* what) {
        if (!e) throw std::runtime_error(std::string(what) + ": null event (not from this backend's event_create)");
        return reinterpret_cast<cudaEvent_t>(e);
    }

    [[noreturn]] void out_of_memory(size_t n, cudaError_t e, const std::string& what) const {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaGetLastError();
        throw DeviceOutOfMemory("CUDA device " + std::to_string(dev_) + " (" + device_name_ + ") cannot allocate " +
                                 std::to_string(n) + " bytes (" + mib((double)n) + ")" + what + ": " +
                                 std::to_string(free_b) + " bytes (" + mib((double)free_b) + ") free of " +
                                 std::to_string(total_b) + " [" + cudaGetErrorString(e) + "]");
    }
    [[noreturn]] static void pin_error(void* p, size_t bytes, cudaError_t e) {
        char where[32];
        snprintf(where, sizeof where, "%p", p);
        throw std::runtime_error("CUDA error in cudaHostRegister(" + std::string(where) + ", " +
                                 std::to_string(bytes) + " bytes, cudaHostRegisterDefault): " + cudaGetErrorName(e) +
                                 " (" + cudaGetErrorString(e) + ")");
    }

    // At least `need` bytes of s: grown to max(need, 1.5 x its size) but at most max(need, limit).
    // Stream-ordered (the old buffer is freed after the work queued before, without a host wait)
    // where the device has memory pools; otherwise a wait, then cudaFree / cudaMalloc. Growth only:
    // a buffer of the right size costs nothing per call.
    void* grow(Scratch& s, size_t need, size_t limit, const char* what) {
        if (need <= s.bytes) return s.p;
        size_t want = std::max(need, std::min(limit, s.bytes + s.bytes / 2));
        want = (want + 255) / 256 * 256;
        if (s.p) {
            if (pools_) SPW_CK(cudaFreeAsync(s.p, stream_));
            else {
                SPW_CK(cudaStreamSynchronize(stream_));
                cudaFree(s.p);
            }
            s.p = nullptr;
            s.bytes = 0;
        }
        void* p = nullptr;
        cudaError_t e = pools_ ? cudaMallocAsync(&p, want, stream_) : cudaMalloc(&p, want);
        if (e != cudaSuccess && want > need) {  // the margin was too much: exactly what is needed
            cudaGetLastError();
            want = (need + 255) / 256 * 256;
            e = pools_ ? cudaMallocAsync(&p, want, stream_) : cudaMalloc(&p, want);
        }
        if (e != cudaSuccess) out_of_memory(want, e, std::string(" for ") + what);
        s.p = p;
        s.bytes = want;
        return p;
    }

    // The staging ring: host data is copied into pinned memory and from there, asynchronously, to the
    // device on the compute queue; an event per copy tells when its bytes may be reused. A region is
    // waited for only when the ring has come round to it while its copy is still queued.
    struct StageUse {
        size_t begin, end;
        cudaEvent_t done;
    };
    bool staged_upload(void* dst, const void* src, size_t bytes) {
        std::lock_guard<std::mutex> lock(stage_mu_);
        if (!stage_host_) {
            if (stage_failed_) return false;
            if (cudaMallocHost(&stage_host_, kStageBytes) != cudaSuccess) {
                cudaGetLastError();
                stage_host_ = nullptr;
                stage_failed_ = true;  // no pinned memory to spare: plain copies and waits, as before
                return false;
            }
        }
        // Retire the copies that are done (cheap queries, oldest first).
        while (!stage_inflight_.empty()) {
            cudaError_t q = cudaEventQuery(stage_inflight_.front().done);
            if (q == cudaErrorNotReady) {
                cudaGetLastError();
                break;
            }
            SPW_CHECK(q, "cudaEventQuery(staging ring)");
            stage_spare_.push_back(stage_inflight_.front().done);
            stage_inflight_.pop_front();
        }
        size_t len = (bytes + 255) / 256 * 256;
        size_t start = 0;
        for (;;) {
            start = stage_head_ + len <= kStageBytes ? stage_head_ : 0;
            bool clash = false;
            for (const StageUse& u : stage_inflight_)
                if (u.begin < start + len && start < u.end) {
                    clash = true;
                    break;
                }
            if (!clash) break;
            SPW_CHECK(cudaEventSynchronize(stage_inflight_.front().done), "cudaEventSynchronize(staging ring)");
            stage_spare_.push_back(stage_inflight_.front().done);
            stage_inflight_.pop_front();
        }
        stage_head_ = start + len;
        char* slot = static_cast<char*>(stage_host_) + start;
        std::memcpy(slot, src, bytes);
        cudaEvent_t done = nullptr;
        if (!stage_spare_.empty()) {
            done = stage_spare_.back();
            stage_spare_.pop_back();
        } else {
            SPW_CK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
        }
        cudaError_t e = cudaMemcpyAsync(dst, slot, bytes, cudaMemcpyHostToDevice, stream_);
        if (e == cudaSuccess) e = cudaEventRecord(done, stream_);
        if (e != cudaSuccess) {
            stage_spare_.push_back(done);
            SPW_CHECK(e, "cudaMemcpyAsync(staging ring, host to device)");
        }
        stage_inflight_.push_back({start, start + len, done});
        return true;
    }

    // src rounded to bf16 in s (grown as needed); queued on the compute stream.
    const __nv_bfloat16* to_bf16(const float* src, size_t n, Scratch& s) {
        auto* dst = static_cast<__nv_bfloat16*>(grow(s, n * sizeof(__nv_bfloat16), n * sizeof(__nv_bfloat16),
                                                     "bf16 GEMM operands"));
        k_to_bf16<<<grid_for(n), kThreads, 0, stream_>>>(dst, src, n);
        SPW_LAUNCHED("gemm(bf16 rounding)");
        return dst;
    }

    // out[N, O] = A[N, I] W^T, W [O, I] row-major, or [I, O] when transposed. Wb: W already in bf16
    // (bf16 mode only; nullptr: round it here).
    void gemm(float* out, const float* A, const float* W, int N, int I, int O, bool transposed, const void* Wb) {
        if (cublas_.ok()) {
            // Column-major view: out^T [O, N] = op(W) [O, I] x A^T [I, N].
            const float one = 1.0f, zero = 0.0f;
            const int opw = transposed ? CUBLAS_OP_N : CUBLAS_OP_T, ldw = transposed ? O : I;
            if (gemm_ == GemmMode::Fp32) {
                SPW_CUBLAS(cublas_.sgemm(cublas_.handle, opw, CUBLAS_OP_N, O, N, I, &one, W, ldw, A, I, &zero, out, O), "cublasSgemm");
            } else if (gemm_ == GemmMode::Tf32) {
                SPW_CUBLAS(cublas_.gemm_ex(cublas_.handle, opw, CUBLAS_OP_N, O, N, I, &one, W, CUDA_R_32F, ldw, A, CUDA_R_32F, I,
                                           &zero, out, CUDA_R_32F, O, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
                           "cublasGemmEx (tf32)");
            } else {
                const void* wb = Wb ? Wb : to_bf16(W, (size_t)O * I, bf16_w_);
                const void* ab = to_bf16(A, (size_t)N * I, bf16_a_);
                SPW_CUBLAS(cublas_.gemm_ex(cublas_.handle, opw, CUBLAS_OP_N, O, N, I, &one, wb, CUDA_R_16BF, ldw, ab, CUDA_R_16BF, I,
                                           &zero, out, CUDA_R_32F, O, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "cublasGemmEx (bf16)");
            }
            return;
        }
        dim3 grid((unsigned)((O + TN - 1) / TN), (unsigned)((N + TM - 1) / TM));
        if (grid.y > 65535) throw std::runtime_error("tiled gemm: too many rows");
        k_gemm_tiled<<<grid, 256, 0, stream_>>>(out, A, W, N, I, O, transposed ? 1 : 0);
        SPW_LAUNCHED("gemm_tiled");
    }

    int dev_;
    std::string device_name_;
    cudaStream_t stream_ = nullptr;       // the compute queue
    // SPILLWAY_ATTENTION=warp: the one-warp-per-query kernel everywhere (the tiled one is the default
    // for head_dim <= 128, a multiple of 4).
    bool tiled_attention_ = [] {
        const char* a = std::getenv("SPILLWAY_ATTENTION");
        return !(a && std::string(a) == "warp");
    }();
    cudaStream_t copy_stream_ = nullptr;  // the copy queue (uploads)
    cudaStream_t out_stream_ = nullptr;   // the write-back queue (downloads)
    bool pools_ = false;                  // cudaMallocAsync / cudaFreeAsync available
    Cublas cublas_;
    GemmMode gemm_ = GemmMode::Fp32;
    std::string gemm_note_;  // why SPILLWAY_GEMM's mode is not in effect
    Scratch logits_, terms_, bf16_a_, bf16_w_;
    std::mutex stage_mu_;
    void* stage_host_ = nullptr;
    bool stage_failed_ = false;
    size_t stage_head_ = 0;
    std::deque<StageUse> stage_inflight_;
    std::vector<cudaEvent_t> stage_spare_;
    std::mutex pin_mu_;
    std::unordered_map<void*, void*> pinned_;  // pin_host's pointer -> the base this backend registered
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, const std::string& gemm) {
    return std::make_unique<CudaBackend>(device, gemm_mode(gemm));
}


CudaReport cuda_report() {
    CudaReport r;
    r.compiled = true;
    cudaRuntimeGetVersion(&r.runtime_version);
    if (cudaDriverGetVersion(&r.driver_version) != cudaSuccess) r.driver_version = 0;
    cudaGetLastError();
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaGetLastError();
    if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        r.state = "no device";
        r.detail = "the CUDA driver reports no device";
        return r;
    }
    if (e == cudaErrorInsufficientDriver) {
        r.state = "no device";
        r.detail = r.driver_version == 0
                       ? "no CUDA driver (libcuda.so.1) on this machine"
                       : "the CUDA driver (" + std::to_string(r.driver_version) + ") is older than this build's runtime (" +
                             std::to_string(r.runtime_version) + ")";
        return r;
    }
    if (e != cudaSuccess) {
        r.state = "no device";
        r.detail = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
        return r;
    }
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        CudaDeviceInfo d;
        d.index = i;
        d.name = p.name;
        d.total_bytes = p.totalGlobalMem;
        d.cc_major = p.major;
        d.cc_minor = p.minor;
        d.multiprocessors = p.multiProcessorCount;
        char bus[64] = {0};
        if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, i) == cudaSuccess) {
            d.pci_bus_id = bus;
            d.free_bytes = nvml_free_bytes(bus);
        }
        cudaGetLastError();
        r.devices.push_back(d);
    }
    r.state = r.devices.empty() ? "no device" : "ok";
    if (r.devices.empty()) r.detail = "no device could be queried";
    return r;
}

}  // namespace spw
