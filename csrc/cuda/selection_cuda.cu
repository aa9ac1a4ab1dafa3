// Coordinate-wise order statistics and the mean of selected rows on the GPU. One thread per
// column: a warp reads 32 consecutive columns of a row, so the n x d input is read once,
// coalesced, and never transposed.
#include <cmath>

#include "kernels_cuda.h"

namespace robustagg {
namespace cuda {
namespace {

constexpr int kThreads = 256;
// The order statistics keep each column's n values in shared memory (a per-thread array
// indexed at run time would live in local memory: ~1,000 local loads and stores per column at
// n = 64): 128 threads x 64 floats = 32 KiB per block.
constexpr int kSortThreads = 128;

unsigned blocks_for(int64_t items, int threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

// Per column: the n values (NaN as +inf) insertion-sorted in this thread's column of shared
// memory (value i of thread t at v[i * kSortThreads + t]: consecutive threads, consecutive
// banks), then the float64 mean of ranks lo..hi rounded once to float32 (the float64
// reference, bit for bit).
__global__ void __launch_bounds__(kSortThreads)
    order_stat_kernel(const float* __restrict__ x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                      float* __restrict__ out) {
  extern __shared__ float values[];
  float* v = values + threadIdx.x;
  const int64_t c = blockIdx.x * static_cast<int64_t>(kSortThreads) + threadIdx.x;
  if (c >= d) return;
  for (int64_t i = 0; i < n; ++i) {
    float t = x[i * d + c];
    t = isnan(t) ? INFINITY : t;
    int64_t j = i;
    for (; j > 0 && v[(j - 1) * kSortThreads] > t; --j) v[j * kSortThreads] = v[(j - 1) * kSortThreads];
    v[j * kSortThreads] = t;
  }
  double s = 0.0;
  for (int64_t r = lo; r <= hi; ++r) s += static_cast<double>(v[r * kSortThreads]);
  out[c] = static_cast<float>(s / static_cast<double>(hi - lo + 1));
}

__global__ void __launch_bounds__(kThreads)
    rows_mean_kernel(const float* __restrict__ x, int64_t d, const int64_t* __restrict__ idx,
                     int64_t m, float* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (c >= d) return;
  double s = 0.0;
  for (int64_t r = 0; r < m; ++r) s += static_cast<double>(x[idx[r] * d + c]);
  out[c] = static_cast<float>(s / static_cast<double>(m));
}

}  // namespace

cudaError_t order_stat_mean(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                            float* out, cudaStream_t stream) {
  if (n < 1 || n > kMaxOrderStatN || lo < 0 || hi < lo || hi >= n) return cudaErrorInvalidValue;
  if (d == 0) return cudaSuccess;
  const size_t shared = sizeof(float) * static_cast<size_t>(n) * kSortThreads;
  order_stat_kernel<<<blocks_for(d, kSortThreads), kSortThreads, shared, stream>>>(x, n, d, lo,
                                                                                   hi, out);
  return cudaGetLastError();
}

cudaError_t rows_mean(const float* x, int64_t d, const int64_t* idx, int64_t m, float* out,
                      cudaStream_t stream) {
  if (m < 1) return cudaErrorInvalidValue;
  if (d == 0) return cudaSuccess;
  rows_mean_kernel<<<blocks_for(d, kThreads), kThreads, 0, stream>>>(x, d, idx, m, out);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace robustagg
