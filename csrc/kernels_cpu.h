// The CPU kernels of robustagg._C on raw row-major arrays (no torch types, so these files
// compile in seconds); csrc/robustagg.cpp adapts them to tensors. `threads` is the number of
// OpenMP threads to use (the caller passes torch's setting).
#pragma once

#include <cstdint>

namespace robustagg {

// out[n*n] (float64) = squared distances between the rows of x[n*d]; exact zero diagonal; a pair
// with a non-finite row is +inf.
void pairwise_sq_distances_cpu(const float* x, int64_t n, int64_t d, double* out, int threads);
void pairwise_sq_distances_cpu(const double* x, int64_t n, int64_t d, double* out, int threads);

// out[d] = per column, the mean of the order statistics lo..hi (0-based, inclusive) of the n
// values, NaN ordered as +inf: the median is lo = (n-1)/2, hi = n/2; the f-trimmed mean is
// lo = f, hi = n-f-1.
void order_stat_mean_cpu(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi, float* out,
                         int threads);
void order_stat_mean_cpu(const double* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                         double* out, int threads);

// out[d] = mean of the rows idx[0..m) of x[n*d], accumulated in float64.
void rows_mean_cpu(const float* x, int64_t d, const int64_t* idx, int64_t m, float* out,
                   int threads);
void rows_mean_cpu(const double* x, int64_t d, const int64_t* idx, int64_t m, double* out,
                   int threads);

}  // namespace robustagg
