// Coordinate-wise order statistics, Krum scores/selection and the mean of selected rows on the
// GPU. One thread per column (order statistics, rows mean): a warp reads 32 consecutive
// columns of a row, so the n x d input is read once, coalesced, and never transposed.
#include <cmath>

#include "kernels_cuda.h"

namespace robustagg {
namespace cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

// Per column: the n values (NaN as +inf) insertion-sorted in a per-thread array, then the
// float64 mean of ranks lo..hi rounded once to float32 (the float64 reference, bit for bit).
__global__ void __launch_bounds__(kThreads)
    order_stat_kernel(const float* __restrict__ x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                      float* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (c >= d) return;
  float v[kMaxOrderStatN];
  for (int64_t i = 0; i < n; ++i) {
    float t = x[i * d + c];
    t = isnan(t) ? INFINITY : t;
    int64_t j = i;
    for (; j > 0 && v[j - 1] > t; --j) v[j] = v[j - 1];
    v[j] = t;
  }
  double s = 0.0;
  for (int64_t r = lo; r <= hi; ++r) s += static_cast<double>(v[r]);
  out[c] = static_cast<float>(s / static_cast<double>(hi - lo + 1));
}

// One block. Thread i scores row i: the sum of its k smallest off-diagonal distances, found by
// rank counting (distance j is among the k smallest iff fewer than k others precede it, ties
// broken by index), O(n^2) per row with no per-row buffer. Then the m lowest finite scores are
// placed by the same rank counting, ties to the lowest index.
__global__ void krum_kernel(const double* __restrict__ dist, int64_t n, int64_t k, int64_t m,
                            double* __restrict__ scores, int64_t* __restrict__ selected,
                            int64_t* __restrict__ count) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double* row = dist + i * n;
    double s = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      int64_t before = 0;
      for (int64_t l = 0; l < n && before < k; ++l)
        if (l != i && (row[l] < row[j] || (row[l] == row[j] && l < j))) ++before;
      if (before < k) s += row[j];
    }
    scores[i] = s;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double si = scores[i];
    if (!isfinite(si)) continue;  // a non-finite score is never selected
    int64_t rank = 0;
    for (int64_t l = 0; l < n; ++l)
      if (isfinite(scores[l]) && (scores[l] < si || (scores[l] == si && l < i))) ++rank;
    if (rank < m) selected[rank] = i;
  }
  if (threadIdx.x == 0) {
    int64_t finite = 0;
    for (int64_t l = 0; l < n; ++l) finite += isfinite(scores[l]) ? 1 : 0;
    *count = finite < m ? finite : m;
  }
}

__global__ void __launch_bounds__(kThreads)
    rows_mean_kernel(const float* __restrict__ x, int64_t d, const int64_t* __restrict__ idx,
                     const int64_t* __restrict__ count, float* __restrict__ out) {
  const int64_t c = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (c >= d) return;
  const int64_t m = *count;
  double s = 0.0;
  for (int64_t r = 0; r < m; ++r) s += static_cast<double>(x[idx[r] * d + c]);
  out[c] = m > 0 ? static_cast<float>(s / static_cast<double>(m)) : NAN;
}

}  // namespace

cudaError_t order_stat_mean(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                            float* out, cudaStream_t stream) {
  if (n < 1 || n > kMaxOrderStatN || lo < 0 || hi < lo || hi >= n) return cudaErrorInvalidValue;
  if (d == 0) return cudaSuccess;
  order_stat_kernel<<<blocks_for(d), kThreads, 0, stream>>>(x, n, d, lo, hi, out);
  return cudaGetLastError();
}

cudaError_t krum_select(const double* dist, int64_t n, int64_t k, int64_t m, double* scores,
                        int64_t* selected, int64_t* count, cudaStream_t stream) {
  if (n < 1 || k < 0 || k > n - 1 || m < 1 || m > n) return cudaErrorInvalidValue;
  krum_kernel<<<1, 1024, 0, stream>>>(dist, n, k, m, scores, selected, count);
  return cudaGetLastError();
}

cudaError_t rows_mean(const float* x, int64_t d, const int64_t* idx, const int64_t* count,
                      float* out, cudaStream_t stream) {
  if (d == 0) return cudaSuccess;
  rows_mean_kernel<<<blocks_for(d), kThreads, 0, stream>>>(x, d, idx, count, out);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace robustagg
