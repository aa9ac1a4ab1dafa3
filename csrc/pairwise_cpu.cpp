// Squared pairwise distances on the CPU by direct differences, sum_k (x_ik - x_jk)^2.
//
// Why direct differences and not the Gram identity |a|^2 + |b|^2 - 2<a,b>: the identity cancels
// catastrophically for near-duplicate rows (exactly the honest gradients Krum must tell apart),
// while a - b of two close floats is exact (Sterbenz). On this CPU a subtract and a
// multiply-add issue on different pipes, so the direct form does one pair-coordinate per FMA
// slot, the same rate as a GEMM.
//
// Work layout: the columns are cut into blocks of B (all n rows of a block fit in L2); inside
// a block, tiles of up to TI x TJ row pairs (upper triangle only, cut at its edges) accumulate
// W-wide float32 lanes in registers, and every run of kRun columns adds its partial sum per pair
// in float64, so a lane sums at most kRun/W terms in float32 whatever d is (d = 1e8 loses
// nothing). Threads take contiguous runs of (block, tile row) items, each into its own n x n
// float64 accumulator. A run whose float32 partial is not finite (a NaN/Inf row, or a finite
// difference whose square overflows float32) is recomputed in float64, so only genuinely
// non-finite rows end up +inf.
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

// Columns summed in float32 before a float64 partial: with 16-lane vectors a lane adds at most
// 256 terms, so any d keeps float32 accuracy.
constexpr int64_t kRun = 4096;

// Pairs (i0 + r, j0 + c), r < R, c < C, of one column block [k0, k0 + len): a register tile of
// R x C accumulators of W lanes. Diag: the tile on the diagonal (j0 == i0, C == R), only r < c.
// Tiles are cut to the rows that exist, so no lane computes a pair twice or a padding row
// (with 4 x 4 tiles padded to the triangle, n = 10 would compute 96 pair-lanes for 45 pairs).
//
// Prefetch: the tiles of one tile row share its R rows, and each row of x is in exactly one
// tile row, so they read the same columns of the next block of those rows into L2, the tile
// numbered `slot` of `slots` taking every slots-th vector: the next block's reads from memory
// are spread over this block's arithmetic (n = 32, d = 1e7: 82 -> 75 ms; all in the diagonal
// tile, as a burst: 5-10% less gain).
template <typename T, int W, int R, int C, bool Diag>
ROBUSTAGG_INLINE void tile(const Job<T>& job, int64_t k0, int64_t len, int64_t i0, int64_t j0,
                           double* acc, int slot, int slots) {
  typedef typename Vec<T, W>::type V;
  const int64_t n = job.n, d = job.d;
  const bool prefetch = k0 + len < d;
  int phase = slot;
  for (int64_t r0 = 0; r0 < len; r0 += kRun) {
    const int64_t rlen = std::min(kRun, len - r0), vlen = rlen / W * W;
    const T* a[R];
    const T* b[C];
    for (int r = 0; r < R; ++r) a[r] = job.x + (i0 + r) * d + k0 + r0;
    for (int c = 0; c < C; ++c) b[c] = job.x + (j0 + c) * d + k0 + r0;
    V s[R][C] = {};
    for (int64_t k = 0; k < vlen; k += W) {
      V va[R], vb[C];
      for (int r = 0; r < R; ++r) va[r] = simd::load<V>(a[r] + k);
      if (prefetch) {
        if (phase == 0) {
          for (int r = 0; r < R; ++r) __builtin_prefetch(a[r] + len + k, 0, 2);
          phase = slots;
        }
        --phase;
      }
      for (int c = 0; c < C; ++c) vb[c] = Diag ? va[c] : simd::load<V>(b[c] + k);
      for (int r = 0; r < R; ++r)
        for (int c = Diag ? r + 1 : 0; c < C; ++c) {
          const V t = va[r] - vb[c];
          s[r][c] += t * t;
        }
    }
    for (int r = 0; r < R; ++r)
      for (int c = Diag ? r + 1 : 0; c < C; ++c) {
        double p = simd::hsum<T, W>(s[r][c]) + exact_pair(a[r] + vlen, b[c] + vlen, rlen - vlen);
        if (!std::isfinite(p)) p = exact_pair(a[r], b[c], rlen);
        acc[(i0 + r) * n + j0 + c] += p;
      }
  }
}

// Tile row `ti` of one column block: the pairs (i, j), i in rows [ti * TI, ti * TI + TI), j > i.
// Q... = 0 .. TI - 1 picks the instantiation for the rows left at the edge of the triangle.
template <typename T, int W, int TI, int TJ, int... Q>
ROBUSTAGG_INLINE void block_tile_row(const Job<T>& job, int64_t k0, int64_t len, int64_t ti,
                                     double* acc, std::integer_sequence<int, Q...>) {
  static_assert(TI == TJ && sizeof...(Q) == TI, "square tiles, one instantiation per edge size");
  const int64_t n = job.n, i0 = ti * TI, rows = std::min<int64_t>(TI, n - i0);
  // one prefetch slot for the diagonal tile, one per rectangle (tile() says why)
  const int slots = 1 + static_cast<int>(std::max<int64_t>(n - i0 - TI + TJ - 1, 0) / TJ);
  ((rows == Q + 1 && Q > 0 ? tile<T, W, Q + 1, Q + 1, true>(job, k0, len, i0, i0, acc, 0, slots)
                           : void()),
   ...);
  int slot = 1;
  for (int64_t j0 = i0 + TI; j0 < n; j0 += TJ, ++slot) {  // rows == TI: only the last tile row
    const int64_t cols = std::min<int64_t>(TJ, n - j0);   // is cut
    ((cols == Q + 1 ? tile<T, W, TI, Q + 1, false>(job, k0, len, i0, j0, acc, slot, slots)
                    : void()),
     ...);
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
    block_tile_row<T, W, TI, TJ>(job, k0, std::min(job.block, job.d - k0), ti, acc,
                                 std::make_integer_sequence<int, TI>{});
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
  // n rows of a block take at most ~512 KiB (half of a Zen 4 / Ice Lake L2, the other half
  // holds the next block being prefetched); 256..16384 columns, a multiple of 16 so every vector
  // width divides it (longer runs per row at small n measured ~8% faster than 4096 at n = 10).
  const int64_t block =
      std::clamp<int64_t>((131072 / std::max<int64_t>(n, 1)) / 16 * 16, 256, 16384);
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
