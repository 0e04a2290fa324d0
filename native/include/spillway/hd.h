// Marks functions that compile for both the host and CUDA devices.
#pragma once

#if defined(__CUDACC__)
#define SPW_HD __host__ __device__
#else
#define SPW_HD
#endif
