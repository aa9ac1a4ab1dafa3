// The CUDA kernels of robustagg._C on raw device pointers and a stream. No torch headers: these
// files compile with plain nvcc (CI compiles them without a GPU and against a CPU torch);
// csrc/cuda/bindings_cuda.cpp adapts them to tensors. Every function only enqueues work on
// `stream` and returns the launch status; none synchronises with the host.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace robustagg {
namespace cuda {

// out[n*n] (float64) = squared distances between the rows of x[n*d] (float32, row-major):
// direct differences in float32 over chunks of columns, chunk sums added in float64, exact zero
// diagonal, +inf for pairs with a non-finite row; a chunk whose float32 sum is not finite, or
// may have lost squares to underflow, is recomputed in float64, so finite rows stay finite and
// tiny ones accurate. The same bits on every run. workspace: pairwise_workspace(n, d) doubles.
int64_t pairwise_workspace(int64_t n, int64_t d);
cudaError_t pairwise_sq_distances(const float* x, int64_t n, int64_t d, double* out,
                                  double* workspace, cudaStream_t stream);

// out[d] = per column, the float64 mean of the order statistics lo..hi (0-based, inclusive) of
// the n values, NaN ordered as +inf, rounded to float32. n <= kMaxOrderStatN.
constexpr int64_t kMaxOrderStatN = 64;
cudaError_t order_stat_mean(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                            float* out, cudaStream_t stream);

// out[d] = mean of the rows idx[0..m) of x[n*d] (float64 sums), m >= 1; the indices must be
// in [0, n) (the binding checks them).
cudaError_t rows_mean(const float* x, int64_t d, const int64_t* idx, int64_t m, float* out,
                      cudaStream_t stream);

}  // namespace cuda
}  // namespace robustagg
