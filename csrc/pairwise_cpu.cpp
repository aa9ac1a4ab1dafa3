// Squared pairwise distances on the CPU by direct differences, sum_k (x_ik - x_jk)^2.
//
// Why direct differences and not the Gram identity |a|^2 + |b|^2 - 2<a,b>: the identity cancels
// catastrophically for near-duplicate rows (exactly the honest gradients Krum must tell apart),
// while a - b of two close floats is exact (Sterbenz). On this CPU a subtract and a
// multiply-add issue on different pipes, so the direct form does one pair-coordinate per FMA
// slot, the same rate as a GEMM.
//
// Work layout: the columns are cut into blocks of B (all n rows of a block fit in L2); inside
// a block, TI x TJ tiles of row pairs (upper triangle only) accumulate W-wide float32 lanes in
// registers, and each block's partial sum per pair is added in float64, so a lane sums at most
// B/W terms in float32 whatever d is (d = 1e8 loses nothing). Threads take contiguous runs of
// (block, tile row) items, each into its own n x n float64 accumulator. A block whose float32
// partial is not finite (a NaN/Inf row, or a finite difference whose square overflows float32)
// is recomputed in float64, so only genuinely non-finite rows end up +inf.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "kernels_cpu.h"
#include "simd.h"

namespace robustagg {
namespace {

using simd::Vec;

template <typename T>
struct Job {
  const T* x;
  int64_t n, d, block, tiles;  // tiles: number of tile rows (ceil(n / TI))
};

template <typename T>
ROBUSTAGG_INLINE double exact_pair(const T* a, const T* b, int64_t len) {
  double s = 0.0;
  for (int64_t k = 0; k < len; ++k) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += t * t;
  }
  return s;
}

// Tile row `ti` of one column block [k0, k0 + len): pairs (i, j), i in the tile row, j >= i.
template <typename T, int W, int TI, int TJ>
ROBUSTAGG_INLINE void block_tile_row(const Job<T>& job, int64_t k0, int64_t len, int64_t ti,
                                     double* acc) {
  typedef typename Vec<T, W>::type V;
  const int64_t n = job.n, d = job.d, i0 = ti * TI;
  const T* a[TI];
  for (int r = 0; r < TI; ++r) a[r] = job.x + std::min(i0 + r, n - 1) * d + k0;
  const int64_t vlen = len / W * W;
  for (int64_t j0 = i0; j0 < n; j0 += TJ) {
    const T* b[TJ];
    for (int c = 0; c < TJ; ++c) b[c] = job.x + std::min(j0 + c, n - 1) * d + k0;
    V s[TI][TJ] = {};
    for (int64_t k = 0; k < vlen; k += W) {
      V va[TI], vb[TJ];
      for (int r = 0; r < TI; ++r) va[r] = simd::load<V>(a[r] + k);
      for (int c = 0; c < TJ; ++c) vb[c] = simd::load<V>(b[c] + k);
      for (int r = 0; r < TI; ++r)
        for (int c = 0; c < TJ; ++c) {
          const V t = va[r] - vb[c];
          s[r][c] += t * t;
        }
    }
    for (int r = 0; r < TI; ++r)
      for (int c = 0; c < TJ; ++c) {
        const int64_t i = i0 + r, j = j0 + c;
        if (i >= j || j >= n) continue;  // lower triangle, diagonal or clamped padding rows
        double p = simd::hsum<T, W>(s[r][c]) + exact_pair(a[r] + vlen, b[c] + vlen, len - vlen);
        if (!std::isfinite(p)) p = exact_pair(a[r], b[c], len);
        acc[i * n + j] += p;
      }
  }
}

// Items [lo, hi) of the (block, tile row) grid. Tile rows are visited from both ends in turn
// (0, last, 1, last - 1, ...) because row i has n - i partners: contiguous runs stay balanced.
template <typename T, int W, int TI, int TJ>
ROBUSTAGG_INLINE void run_items(const Job<T>& job, int64_t lo, int64_t hi, double* acc) {
  for (int64_t it = lo; it < hi; ++it) {
    const int64_t blk = it / job.tiles, q = it % job.tiles;
    const int64_t ti = (q % 2 == 0) ? q / 2 : job.tiles - 1 - q / 2;
    const int64_t k0 = blk * job.block;
    block_tile_row<T, W, TI, TJ>(job, k0, std::min(job.block, job.d - k0), ti, acc);
  }
}

template <typename T>
using Runner = void (*)(const Job<T>&, int64_t, int64_t, double*);

// The kernel compiled for each instruction-set level. The register tiles fill the vector
// register file (TI*TJ accumulators plus TI + TJ operands): 32 registers with AVX-512, 16 below.
template <typename T, int W>
ROBUSTAGG_AVX512 void run_avx512(const Job<T>& j, int64_t lo, int64_t hi, double* acc) {
  run_items<T, W, 4, 4>(j, lo, hi, acc);
}
template <typename T, int W>
ROBUSTAGG_AVX2 void run_avx2(const Job<T>& j, int64_t lo, int64_t hi, double* acc) {
  run_items<T, W, 3, 3>(j, lo, hi, acc);
}
template <typename T, int W>
void run_base(const Job<T>& j, int64_t lo, int64_t hi, double* acc) {
  run_items<T, W, 3, 3>(j, lo, hi, acc);
}

// (kernel, tile rows TI) for the widest level this CPU runs: 64-byte vectors with AVX-512, 32
// with AVX2, 16 below.
template <typename T>
std::pair<Runner<T>, int> runner() {
  constexpr int w = 16 / sizeof(T);
  switch (simd::level()) {
    case simd::kAvx512: return {run_avx512<T, 4 * w>, 4};
    case simd::kAvx2: return {run_avx2<T, 2 * w>, 3};
    default: return {run_base<T, w>, 3};
  }
}

template <typename T>
void pairwise(const T* x, int64_t n, int64_t d, double* out, int threads) {
  const std::pair<Runner<T>, int> impl = runner<T>();
  const Runner<T> run = impl.first;
  const int ti = impl.second;
  // n rows of a block take at most ~512 KiB (half of a Zen 4 / Ice Lake L2); 256..4096 columns,
  // a multiple of 16 so every vector width divides it; 4096 keeps a float32 lane's run <= 256.
  const int64_t block = std::clamp<int64_t>((131072 / std::max<int64_t>(n, 1)) / 16 * 16, 256, 4096);
  const int64_t blocks = std::max<int64_t>((d + block - 1) / block, 1);
  if (n < 2) {
    if (n == 1) out[0] = 0.0;
    return;
  }
  const Job<T> job{x, n, d, block, (n + ti - 1) / ti};
  const int64_t items = blocks * job.tiles, nn = n * n;
  // A thread is worth waking for at least ~4M pair-coordinates (about a millisecond).
  const int64_t work = n * (n - 1) / 2 * std::max<int64_t>(d, 1);
  threads = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(threads, work >> 22), 1, items));
  std::vector<double> acc(static_cast<size_t>(threads) * nn, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    run(job, items * t / nt, items * (t + 1) / nt, acc.data() + t * nn);
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    out[i * n + i] = 0.0;
    for (int64_t j = i + 1; j < n; ++j) {
      double s = 0.0;
      for (int t = 0; t < threads; ++t) s += acc[t * nn + i * n + j];
      s = std::isfinite(s) ? s : inf;  // NaN as well as overflow
      out[i * n + j] = out[j * n + i] = s;
    }
  }
}

}  // namespace

void pairwise_sq_distances_cpu(const float* x, int64_t n, int64_t d, double* out, int threads) {
  pairwise<float>(x, n, d, out, threads);
}

void pairwise_sq_distances_cpu(const double* x, int64_t n, int64_t d, double* out, int threads) {
  pairwise<double>(x, n, d, out, threads);
}

}  // namespace robustagg
