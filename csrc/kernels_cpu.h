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

// The width of the column groups whose partials pairwise_sq_distances_cpu adds in order: a power
// of two from 256 to 65536 that depends on d only. distance_groups: how many groups of `width`
// columns d has (at least one).
int64_t distance_group_width(int64_t d);
int64_t distance_groups(int64_t d, int64_t width);

// out[groups*n*n] (float64): for each group of `width` columns of x[n*d] in order, the squared
// distances over its columns (symmetric, zero diagonal, not finite where the data are not).
// Adding them in group order to zero gives pairwise_sq_distances_cpu's sums bit for bit when
// x holds the columns of a wider matrix from a multiple of `width` on, and `width` is that
// matrix's distance_group_width: then x's groups are the wider matrix's.
void pairwise_sq_distance_partials_cpu(const float* x, int64_t n, int64_t d, int64_t width,
                                       double* out, int threads);
void pairwise_sq_distance_partials_cpu(const double* x, int64_t n, int64_t d, int64_t width,
                                       double* out, int threads);

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
