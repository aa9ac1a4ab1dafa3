// Squared pairwise distances on the CPU by direct differences, sum_k (x_ik - x_jk)^2.
//
// Why direct differences and not the Gram identity |a|^2 + |b|^2 - 2<a,b>: the identity cancels
// catastrophically for near-duplicate rows (exactly the honest gradients Krum must tell apart),
// while a - b of two close floats is exact (Sterbenz). Where a subtract and a multiply-add
// issue on different pipes (AMD Zen 4) the direct form does one pair-coordinate per FMA slot,
// the same rate as a GEMM; where both take the FMA ports (Intel cores) it does half that.
//
// Work layout: the columns are cut into blocks of B (all n rows of a block fit in L2); inside
// a block, tiles of up to TI x TJ row pairs (upper triangle only, cut at its edges) accumulate
// W-wide float32 lanes in registers, and every run of kRun columns adds its partial sum per pair
// in float64, so a lane sums at most kRun/W terms in float32 whatever d is (d = 1e8 loses
// nothing). A run whose float32 partial is not finite (a NaN/Inf row, or a finite difference
// whose square overflows float32) or so small that squares may have underflowed float32 is
// recomputed in float64 lanes, so only genuinely non-finite rows end up +inf and tiny inputs
// (entries of 1e-25) keep their relative accuracy.
//
// The same bits on every AVX level, thread count and column slice: W is fixed (64 bytes: 16
// float32 or 8 float64 lanes; AVX2 uses two registers per vector), so each pair's run partials
// are the same arithmetic wherever its tile falls, and the order in which partials are added is
// fixed too: the columns form groups of a fixed width (a power of two that depends on d only,
// distance_group_width), each (group, tile row) item sums its runs in column order into the
// group's own n x n partial, and the groups' partials are added in group order. Threads take
// whole items, so how they split the work changes no bit. A slice of the columns that starts
// at a multiple of the group width has the same groups, so the whole matrix's distances are the
// same sequence of additions over the slices' group partials (pairwise_sq_distance_partials_cpu):
// a sharded server sums its shards' partials to the same bits. The portable level keeps its
// 16-byte vectors and plain multiply-adds: it meets the accuracy contract without matching the
// AVX levels bit for bit.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
  const T* x;   // row i at x + i * d
  int64_t n, d, block, width, group0, tiles;  // tiles: number of tile rows (ceil(n / TI))
  double* acc;  // n x n partial sums of each group from group0 on
  bool prefetch = true;  // read the next block ahead (not in a packed copy of one block)
  double* out = nullptr;  // set when groups run one at a time: each adds its sum here at its end
};

// Where one column block's run partials go: `acc`, its group's n x n partials. The first run of
// a group (opens) sets a cell, the later ones add to it; with job.out, the group's last run
// (closes) adds the finished sum to out instead of storing it: the additions of the separate
// pass over acc (out += acc in group order), without that pass or zeroing acc first.
struct Sink {
  double* acc;
  bool opens, closes;
};

// The first count (<= lanes) values at p, zero in the other lanes.
template <typename V, typename T>
ROBUSTAGG_INLINE V load_partial(const T* p, int64_t count) {
  if (count * static_cast<int64_t>(sizeof(T)) == sizeof(V)) return simd::load<V>(p);
  V v = {};
  std::memcpy(&v, p, sizeof(T) * count);
  return v;
}

// sum_k (a_k - b_k)^2 over len columns in float64 lanes (W of them, the same W as the float32
// lanes so the result does not depend on the level).
template <typename T, int W>
ROBUSTAGG_INLINE double wide_pair(const T* a, const T* b, int64_t len) {
  typedef typename Vec<T, W>::type V;
  typedef typename Vec<double, W>::type VD;
  VD s = {};
  for (int64_t k = 0; k < len; k += W) {
    const int64_t w = std::min<int64_t>(W, len - k);
    const VD t = __builtin_convertvector(load_partial<V>(a + k, w), VD) -
                 __builtin_convertvector(load_partial<V>(b + k, w), VD);
    s += t * t;
  }
  return simd::hsum<double, W>(s);
}

// Columns summed in float32 before a float64 partial: with 16-lane vectors a lane adds at most
// 256 terms, so any d keeps float32 accuracy.
constexpr int64_t kRun = 4096;

// Below this a float32 partial may have lost terms to underflow (a square under FLT_MIN,
// |a - b| < 1.1e-19): at most kRun * FLT_MIN = 2^-114 in all, which is 2^-54 relative to a partial
// of 2^-60 or more. Smaller partials are recomputed in float64 (duplicate rows, partial 0,
// compare equal first and cost nothing more).
constexpr double kTiny = 0x1p-60;

template <typename T, int W>
ROBUSTAGG_INLINE double checked_partial(double p, const T* a, const T* b, int64_t len) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return p;  // float64 lanes: a non-finite partial is the true sum overflowing, or a NaN/Inf row
  } else {
    if (std::isfinite(p) && p >= kTiny) return p;
    if (p == 0.0 && std::memcmp(a, b, sizeof(T) * len) == 0) return 0.0;
    return wide_pair<T, W>(a, b, len);
  }
}

// Pairs (i0 + r, j0 + c), r < R, c < C, of one column block [k0, k0 + len): a register tile of
// R x C accumulators. Diag: the tile on the diagonal (j0 == i0, C == R), only r < c. Tiles are
// cut to the rows that exist, so no lane computes a pair twice or a padding row (with 4 x 4
// tiles padded to the triangle, n = 10 would compute 96 pair-lanes for 45 pairs).
//
// Each pair has W logical lanes (lane l sums the columns = l mod W), held as W / NW registers of
// NW lanes. With NW < W (AVX2) the run is swept once per register-sized part of the lanes, so
// only R x C registers of accumulators are live: the tile stays in the register file and every
// lane does exactly the arithmetic it does when NW == W.
//
// Prefetch: the tiles of one tile row share its R rows, and each row of x is in exactly one
// tile row, so they read the same columns of the next block of those rows into L2, the tile
// numbered `slot` of `slots` taking every slots-th vector: the next block's reads from memory
// are spread over this block's arithmetic (n = 32, d = 1e7: 82 -> 75 ms; all in the diagonal
// tile, as a burst: 5-10% less gain).
template <typename T, int W, int NW, int R, int C, bool Diag>
ROBUSTAGG_INLINE void tile(const Job<T>& job, int64_t k0, int64_t len, int64_t i0, int64_t j0,
                           const Sink& sink, int slot, int slots) {
  typedef typename Vec<T, NW>::type V;
  typedef typename Vec<T, W>::type VW;
  constexpr int kParts = W / NW;
  static_assert(kParts * NW == W, "the logical width is a multiple of the register width");
  const int64_t n = job.n, d = job.d;
  const bool prefetch = job.prefetch && k0 + len < d;
  int phase = slot;
  for (int64_t r0 = 0; r0 < len; r0 += kRun) {
    const int64_t rlen = std::min(kRun, len - r0), vlen = rlen / W * W;
    const T* a[R];
    const T* b[C];
    for (int r = 0; r < R; ++r) a[r] = job.x + (i0 + r) * d + k0 + r0;
    for (int c = 0; c < C; ++c) b[c] = job.x + (j0 + c) * d + k0 + r0;
    VW sum[R][C];
    for (int h = 0; h < kParts; ++h) {
      V s[R][C] = {};
      const int64_t off = h * NW;
      for (int64_t k = off; k < vlen; k += W) {
        V va[R], vb[C];
        for (int r = 0; r < R; ++r) va[r] = simd::load<V>(a[r] + k);
        if (h == 0 && prefetch) {  // W lanes of T are one 64-byte line per row
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
      // The last columns as one zero-padded vector: the same arithmetic as the others (a scalar
      // loop may be fused differently on each level).
      const int64_t tail = std::clamp<int64_t>(rlen - vlen - off, 0, NW);
      if (tail > 0) {
        V va[R], vb[C];
        for (int r = 0; r < R; ++r) va[r] = load_partial<V>(a[r] + vlen + off, tail);
        for (int c = 0; c < C; ++c)
          vb[c] = Diag ? va[c] : load_partial<V>(b[c] + vlen + off, tail);
        for (int r = 0; r < R; ++r)
          for (int c = Diag ? r + 1 : 0; c < C; ++c) {
            const V t = va[r] - vb[c];
            s[r][c] += t * t;
          }
      }
      for (int r = 0; r < R; ++r)
        for (int c = Diag ? r + 1 : 0; c < C; ++c)
          std::memcpy(reinterpret_cast<char*>(&sum[r][c]) + off * sizeof(T), &s[r][c], sizeof(V));
    }
    const bool open = sink.opens && r0 == 0, close = sink.closes && r0 + rlen == len;
    for (int r = 0; r < R; ++r)
      for (int c = Diag ? r + 1 : 0; c < C; ++c) {
        const int64_t at = (i0 + r) * n + j0 + c;
        const double p = checked_partial<T, W>(simd::hsum<T, W>(sum[r][c]), a[r], b[c], rlen);
        const double v = open ? p : sink.acc[at] + p;
        if (close && job.out != nullptr)
          job.out[at] += v;
        else
          sink.acc[at] = v;
      }
  }
}

// Tile row `ti` of one column block: the pairs (i, j), i in rows [ti * TI, ti * TI + TI), j > i.
// Q... = 0 .. TI - 1 picks the instantiation for the rows left at the edge of the triangle.
template <typename T, int W, int NW, int TI, int TJ, int... Q>
ROBUSTAGG_INLINE void block_tile_row(const Job<T>& job, int64_t k0, int64_t len, int64_t ti,
                                     const Sink& sink, std::integer_sequence<int, Q...>) {
  static_assert(TI == TJ && sizeof...(Q) == TI, "square tiles, one instantiation per edge size");
  const int64_t n = job.n, i0 = ti * TI, rows = std::min<int64_t>(TI, n - i0);
  // one prefetch slot for the diagonal tile, one per rectangle (tile() says why)
  const int slots = 1 + static_cast<int>(std::max<int64_t>(n - i0 - TI + TJ - 1, 0) / TJ);
  ((rows == Q + 1 && Q > 0 ? tile<T, W, NW, Q + 1, Q + 1, true>(job, k0, len, i0, i0, sink, 0, slots)
                           : void()),
   ...);
  int slot = 1;
  for (int64_t j0 = i0 + TI; j0 < n; j0 += TJ, ++slot) {  // rows == TI: only the last tile row
    const int64_t cols = std::min<int64_t>(TJ, n - j0);   // is cut
    ((cols == Q + 1 ? tile<T, W, NW, TI, Q + 1, false>(job, k0, len, i0, j0, sink, slot, slots)
                    : void()),
     ...);
  }
}

// Rows of the input whose stride is a multiple of 4 KiB (d a multiple of 1024 float32, as every
// shard's slice of a sharded server is) all map to the same cache sets, and from a few hundred
// rows on a block no longer stays in L2 (n = 1000, d = 2^19: 20.9 s per 10^6 columns, against
// 12.2 s with the stride 64 bytes longer). There, from kPackRows rows on, each block is first
// copied into a per-thread buffer whose rows are 64 bytes longer than the block: 10.2 s. The
// copy holds the same values, so the same bits. Elsewhere it does not pay: at n = 128-256 the
// copy, which cannot overlap the arithmetic as the prefetches do, cost 10-30%.
constexpr int64_t kPackRows = 512;

template <typename T>
bool packs(int64_t n, int64_t d) {
  return n >= kPackRows && d * static_cast<int64_t>(sizeof(T)) % 4096 == 0;
}

// Items [lo, hi) of the (group, tile row) grid, groups counted from job.group0 (an empty group,
// d = 0, zeroes its cells; otherwise the group's first run sets them, see Sink). Tile rows are
// visited from both ends in turn (0, last, 1, last - 1, ...) because row i has n - i partners:
// contiguous runs stay balanced. Within a group the blocks go outermost, so the tile rows of one
// block share it in L2. Pack: whether blocks are copied first (packs(n, d)), a template
// parameter so that each instantiation has one copy of the tile loops (with both in one function
// they ran ~10% slower at n = 500-1000, also where nothing was packed).
template <typename T, int W, int NW, int TI, int TJ, bool Pack>
ROBUSTAGG_INLINE void run_items(const Job<T>& job, int64_t lo, int64_t hi) {
  const int64_t n = job.n, nn = n * n;
  const int64_t stride = job.block + 64 / static_cast<int64_t>(sizeof(T));
  static thread_local std::vector<T> packed;
  if (Pack) packed.resize(static_cast<size_t>(n * stride));
  Job<T> local = job;  // the packed block: row i at packed + i * stride, columns from 0
  local.x = packed.data();
  local.d = stride;
  local.prefetch = false;
  auto tile_row = [&](int64_t it) {
    const int64_t q = it % job.tiles;
    return (q % 2 == 0) ? q / 2 : job.tiles - 1 - q / 2;
  };
  for (int64_t first = lo; first < hi;) {
    const int64_t g = first / job.tiles, last = std::min(hi, (g + 1) * job.tiles);
    double* acc = job.acc + g * nn;
    const int64_t c0 = (job.group0 + g) * job.width, c1 = std::min(c0 + job.width, job.d);
    if (c0 >= c1)
      for (int64_t it = first; it < last; ++it)
        for (int64_t i = tile_row(it) * TI; i < std::min(n, tile_row(it) * TI + TI); ++i)
          std::fill_n(acc + i * n + i + 1, n - 1 - i, 0.0);
    for (int64_t k0 = c0; k0 < c1; k0 += job.block) {
      const int64_t len = std::min(job.block, c1 - k0);
      const Sink sink{acc, k0 == c0, k0 + len == c1};
      if constexpr (Pack)
        for (int64_t i = 0; i < n; ++i)
          std::memcpy(packed.data() + i * stride, job.x + i * job.d + k0, sizeof(T) * len);
      for (int64_t it = first; it < last; ++it)
        block_tile_row<T, W, NW, TI, TJ>(Pack ? local : job, Pack ? 0 : k0, len, tile_row(it),
                                         sink, std::make_integer_sequence<int, TI>{});
    }
    first = last;
  }
}

template <typename T>
using Runner = void (*)(const Job<T>&, int64_t, int64_t);

// The kernel compiled for each instruction-set level. The register tiles fill the vector
// register file (TI*TJ accumulators plus TI + TJ operands): 32 registers with AVX-512, 16 below.
// AVX-512 and AVX2 both compute 64-byte logical vectors (W lanes), so their results are the same
// bits; the portable level computes 16-byte vectors.
template <typename T, int W, bool Pack>
ROBUSTAGG_AVX512 void run_avx512(const Job<T>& j, int64_t lo, int64_t hi) {
  run_items<T, W, W, 4, 4, Pack>(j, lo, hi);
}
template <typename T, int W, bool Pack>
ROBUSTAGG_AVX2 void run_avx2(const Job<T>& j, int64_t lo, int64_t hi) {
  run_items<T, W, W / 2, 3, 3, Pack>(j, lo, hi);
}
template <typename T, int W, bool Pack>
void run_base(const Job<T>& j, int64_t lo, int64_t hi) {
  run_items<T, W, W, 3, 3, Pack>(j, lo, hi);
}

// (kernel, tile rows TI) for the level in use, packing blocks or not.
template <typename T, bool Pack>
std::pair<Runner<T>, int> runner() {
  constexpr int w = 16 / sizeof(T);
  switch (simd::level()) {
    case simd::kAvx512: return {run_avx512<T, 4 * w, Pack>, 4};
    case simd::kAvx2: return {run_avx2<T, 4 * w, Pack>, 3};
    default: return {run_base<T, w, Pack>, 3};
  }
}

// Partial n x n accumulators kept at most (8 MiB): the groups are computed in waves of as many
// as that allows (at least one), each wave's partials added to the total before the next.
constexpr int64_t kAccBudget = int64_t{1} << 20;

int64_t floor_pow2(int64_t v) {
  int64_t p = 1;
  while (p <= v / 2) p *= 2;
  return p;
}

// The grid of one call: groups of `width` columns cut into blocks, items (group, tile row).
template <typename T>
struct Grid {
  Runner<T> run;
  Job<T> job;
  int64_t groups;
  int threads;
};

template <typename T>
Grid<T> grid(const T* x, int64_t n, int64_t d, int64_t width, int threads) {
  const std::pair<Runner<T>, int> impl = packs<T>(n, d) ? runner<T, true>() : runner<T, false>();
  const int ti = impl.second;
  // n rows of a block take at most ~512 KiB (half of a Zen 4 / Ice Lake L2, the other half
  // holds the next block being prefetched); a power of two from 256 to 16384 columns, so every
  // vector width and kRun divide it or it divides them, and it divides the group width (longer
  // runs per row at small n measured ~8% faster than 4096 at n = 10). Up to 512 rows at least
  // 512 columns: with 256, each pair's run ends every 16 vectors and ending it (a horizontal
  // sum, the checks, the partial's update) took a quarter of the time (one thread, AVX-512:
  // n = 300, d = 1e5 170 -> 139 ms; n = 500, d = 2e4 100 -> 81 ms; at n = 1000 512 columns
  // fill this machine's 2 MiB L2 and were slower). It depends on n only: run boundaries, and
  // so every bit of the result, must not depend on the level, the thread count or the machine.
  const int64_t block = std::min(
      std::clamp<int64_t>(floor_pow2(131072 / n), n <= 512 ? 512 : 256, 16384), width);
  const int64_t groups = distance_groups(d, width);
  // A thread is worth waking for at least ~4M pair-coordinates (about a millisecond).
  const int64_t work = n * (n - 1) / 2 * std::max<int64_t>(d, 1);
  threads = static_cast<int>(std::clamp<int64_t>(std::min<int64_t>(threads, work >> 22), 1,
                                                 groups * ((n + ti - 1) / ti)));
  return {impl.first, Job<T>{x, n, d, block, width, 0, (n + ti - 1) / ti, nullptr}, groups,
          threads};
}

// Rows [lo, hi) of thread t's share of the upper triangle of n x n (row i has n - 1 - i cells):
// equal areas, row n * (1 - sqrt(1 - t / nt)) first.
inline std::pair<int64_t, int64_t> share(int64_t n, int64_t t, int64_t nt) {
  auto row = [&](int64_t s) {
    return static_cast<int64_t>(std::lround(n * (1.0 - std::sqrt(1.0 - double(s) / nt))));
  };
  return {row(t), t + 1 == nt ? n : row(t + 1)};
}

template <typename T>
void pairwise(const T* x, int64_t n, int64_t d, double* out, int threads) {
  if (n < 2) {
    if (n == 1) out[0] = 0.0;
    return;
  }
  Grid<T> g = grid<T>(x, n, d, distance_group_width(d), threads);
  const int64_t nn = n * n;
  const int64_t wave = std::clamp<int64_t>(kAccBudget / nn, 1, g.groups);
  // Up to the budget, reused by the calling thread's next call (a fresh 8 MiB costs page
  // faults on every call); the single n x n of a larger n is not kept after the call.
  const size_t cells = static_cast<size_t>(wave * nn);
  static thread_local std::vector<double> kept;
  std::vector<double> once;
  std::vector<double>& acc = cells <= static_cast<size_t>(kAccBudget) ? kept : once;
  acc.resize(cells);
  std::fill(out, out + nn, 0.0);
#pragma omp parallel num_threads(g.threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const auto [r0, r1] = share(n, t, nt);
    Job<T> job = g.job;
    job.acc = acc.data();
    // one group at a time: each adds its sums to out as they are finished (the barrier keeps
    // the group order); several: their partials are added to out after the wave
    job.out = wave == 1 ? out : nullptr;
    for (job.group0 = 0; job.group0 < g.groups; job.group0 += wave) {
      const int64_t ws = std::min(wave, g.groups - job.group0), items = ws * job.tiles;
      g.run(job, items * t / nt, items * (t + 1) / nt);
#pragma omp barrier
      if (job.out != nullptr) continue;
      // the wave's partials added to the total in group order (each thread its rows)
      for (int64_t k = 0; k < ws; ++k)
        for (int64_t i = r0; i < r1; ++i)
          for (int64_t j = i + 1; j < n; ++j) out[i * n + j] += acc[k * nn + i * n + j];
      if (job.group0 + wave < g.groups) {
#pragma omp barrier
      }
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    out[i * n + i] = 0.0;
    for (int64_t j = i + 1; j < n; ++j) {
      const double s = std::isfinite(out[i * n + j]) ? out[i * n + j] : inf;  // NaN too
      out[i * n + j] = out[j * n + i] = s;
    }
  }
}

template <typename T>
void partials(const T* x, int64_t n, int64_t d, int64_t width, double* out, int threads) {
  Grid<T> g = grid<T>(x, n, d, width, threads);
  const int64_t nn = n * n;
  if (n >= 2) {
    g.job.acc = out;
    const int64_t items = g.groups * g.job.tiles;
#pragma omp parallel num_threads(g.threads)
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      g.run(g.job, items * t / nt, items * (t + 1) / nt);
    }
  }
  for (int64_t k = 0; k < g.groups; ++k)
    for (int64_t i = 0; i < n; ++i) {
      out[k * nn + i * n + i] = 0.0;
      for (int64_t j = i + 1; j < n; ++j) out[k * nn + j * n + i] = out[k * nn + i * n + j];
    }
}

}  // namespace

void pairwise_sq_distances_cpu(const float* x, int64_t n, int64_t d, double* out, int threads) {
  pairwise<float>(x, n, d, out, threads);
}

void pairwise_sq_distances_cpu(const double* x, int64_t n, int64_t d, double* out, int threads) {
  pairwise<double>(x, n, d, out, threads);
}

int64_t distance_group_width(int64_t d) {
  // 16 to 32 groups below d = 2^20, since each group's partials cost n x n writes and adds
  // (a shard's partials at n = 1000, d = 1e4, one thread: 229 ms as 1 group, 256 as 5, 365 as
  // 20, 472 as 40); from there on 65536 columns a group, so what the groups cost (and what a
  // shard sends) stays 2n / 65536 of the rows' bytes.
  return std::clamp<int64_t>(floor_pow2(std::max<int64_t>(d / 16, 1)), 256, 65536);
}

int64_t distance_groups(int64_t d, int64_t width) {
  return std::max<int64_t>((d + width - 1) / width, 1);
}

void pairwise_sq_distance_partials_cpu(const float* x, int64_t n, int64_t d, int64_t width,
                                       double* out, int threads) {
  partials<float>(x, n, d, width, out, threads);
}

void pairwise_sq_distance_partials_cpu(const double* x, int64_t n, int64_t d, int64_t width,
                                       double* out, int threads) {
  partials<double>(x, n, d, width, out, threads);
}

}  // namespace robustagg
