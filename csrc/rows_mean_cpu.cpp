// Mean of selected rows (the last step of Krum, multi-Krum and Bulyan's selection), without
// the m x d copy that index_select + mean makes: columns in cache-sized chunks, float64
// accumulators, threads over chunks. The loops are plain so the compiler vectorises them.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "kernels_cpu.h"

namespace robustagg {
namespace {

template <typename T>
void rows_mean(const T* x, int64_t d, const int64_t* idx, int64_t m, T* out, int threads) {
  constexpr int64_t kChunk = 2048;  // 16 KiB of float64 accumulators: stays in L1
  const int64_t chunks = (d + kChunk - 1) / kChunk;
  threads = static_cast<int>(std::clamp<int64_t>(chunks * m / 64, 1, std::max(threads, 1)));
  const double inv = static_cast<double>(m);
#pragma omp parallel num_threads(threads)
  {
    double acc[kChunk];
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    for (int64_t ch = chunks * t / nt; ch < chunks * (t + 1) / nt; ++ch) {
      const int64_t c0 = ch * kChunk, len = std::min(kChunk, d - c0);
      std::fill(acc, acc + len, 0.0);
      for (int64_t r = 0; r < m; ++r) {
        const T* row = x + idx[r] * d + c0;
        for (int64_t k = 0; k < len; ++k) acc[k] += static_cast<double>(row[k]);
      }
      for (int64_t k = 0; k < len; ++k) out[c0 + k] = static_cast<T>(acc[k] / inv);
    }
  }
}

}  // namespace

void rows_mean_cpu(const float* x, int64_t d, const int64_t* idx, int64_t m, float* out,
                   int threads) {
  rows_mean<float>(x, d, idx, m, out, threads);
}

void rows_mean_cpu(const double* x, int64_t d, const int64_t* idx, int64_t m, double* out,
                   int threads) {
  rows_mean<double>(x, d, idx, m, out, threads);
}

}  // namespace robustagg
