// Means of central order statistics per column: the coordinate-wise median and trimmed mean.
//
// No sort of the n x d transpose: W adjacent columns are loaded as n vectors of W lanes and
// sorted lane-wise by a comparator network (min/max of two vectors per comparator), so every
// column of the group is ordered at once in registers/L1 and x is read once, row-contiguously.
// The network is Batcher's odd-even merge sort for the next power of two (comparators that
// touch padding wires are dropped: padding would hold +inf and never move), pruned backwards
// to the comparators that decide which values reach the requested ranks: a comparator whose
// outputs both only feed the final sum is dropped too (min + max = a + b). NaN is mapped to
// +inf on load, which is the contract's order. Where the network runs from L1 (float64, the
// portable level, float32 above 32 wires) its first phases run as register-resident sorts of
// blocks of 16 wires. The selected values are summed in float64 in
// one fixed order and divided once, so float32 results equal the float64 reference rounded to
// float32, and every level and network gives the same bits.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kernels_cpu.h"
#include "simd.h"

namespace robustagg {
namespace {

using simd::Vec;

// Columns read ahead into L2 by software prefetch (1 KiB per row). The kernels read n rows at
// once, more streams than the hardware prefetchers follow: prefetching into L2 lets the loads
// overlap the sorting network (n = 32, d = 1e7: trimmed mean 87 -> 63 ms, median 81 -> 54 ms;
// prefetching into L1 instead was slower than none, 32 rows of lines evict each other).
template <typename T>
constexpr int64_t kAhead = 1024 / sizeof(T);

// Per lane, a float64 sum of W values of T, kept in vectors of the instruction set's width: a
// W-lane float64 vector of float32 input is twice that width, and GCC lowers such vectors
// through general-purpose registers on AVX2 (trimmed mean at n = 10: 2.3x slower, measured).
// Each lane's additions happen in the order of the calls, so the split changes no bit.
template <typename T, int W>
struct WideSum {
  static constexpr int H = sizeof(T) == 4 ? W / 2 : W;  // lanes per float64 vector
  typedef typename Vec<T, W>::type V;
  typedef typename Vec<T, H>::type VH;
  typedef typename Vec<double, H>::type VD;
  VD s[W / H] = {};

  ROBUSTAGG_INLINE void add(const V& v) {
    for (int h = 0; h < W / H; ++h) {
      VH part;
      std::memcpy(&part, reinterpret_cast<const char*>(&v) + h * sizeof(VH), sizeof(VH));
      s[h] += __builtin_convertvector(part, VD);
    }
  }
  ROBUSTAGG_INLINE void add(const WideSum& o) {
    for (int h = 0; h < W / H; ++h) s[h] += o.s[h];
  }
  ROBUSTAGG_INLINE V mean(double count) const {
    V m;
    for (int h = 0; h < W / H; ++h) {
      const VH part = __builtin_convertvector(s[h] / count, VH);
      std::memcpy(reinterpret_cast<char*>(&m) + h * sizeof(VH), &part, sizeof(VH));
    }
    return m;
  }
};

template <int N>
struct SortNet {
  static constexpr int p2() {
    int p = 1;
    while (p < N) p <<= 1;
    return p;
  }
  template <typename Emit>
  static constexpr void each(Emit&& emit) {  // the comparators of make_network, in order
    constexpr int P = p2();
    for (int p = 1; p < P; p <<= 1)
      for (int k = p; k >= 1; k >>= 1)
        for (int j = k % p; j + k < P; j += 2 * k)
          for (int i = 0; i < (k < P - j - k ? k : P - j - k); ++i)
            if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < N) emit(i + j, i + j + k);
  }
  static constexpr int size() {
    int c = 0;
    each([&c](int, int) { ++c; });
    return c;
  }
  struct Pairs {
    int a[size() > 0 ? size() : 1], b[size() > 0 ? size() : 1];
  };
  static constexpr Pairs pairs() {
    Pairs p{};
    int c = 0;
    each([&](int x, int y) {
      p.a[c] = x;
      p.b[c] = y;
      ++c;
    });
    return p;
  }
};

template <typename V, int N, size_t... Q>
ROBUSTAGG_INLINE void sort_fixed(V* v, std::index_sequence<Q...>) {
  [[maybe_unused]] constexpr auto p = SortNet<N>::pairs();
  (simd::minmax(v[p.a[Q]], v[p.b[Q]]), ...);
}

struct Network {
  std::vector<std::pair<uint16_t, uint16_t>> comparators;  // (a, b), a < b: min to a, max to b
  int64_t lo, hi;                                          // ranks whose values are averaged
  int64_t presorted;  // wires [0, presorted) are sorted in blocks of kBlock first
};

// Blocks of kBlock wires are sorted in registers before the network's later phases run in L1.
// One size on every level, so every level runs the same network and sums the same wires in the
// same order (the pruned network leaves the summed wires in a network-dependent order, which
// float64 input's sum sees). Measured against no blocks, CPU time of one thread at n = 64 and
// 128: 0.70-0.87x on AVX2; on AVX-512 blocks of 32 would be 1-10% faster still, on AVX2 blocks
// of 8 or 32 were 2-16% slower than 16.
constexpr int kBlock = 16;

// The network for ranks lo..hi of n wires, after blocks of kBlock wires are sorted: Batcher's
// first log2(kBlock) phases sort exactly those blocks, so their comparators are left out for
// every full block; the rest is pruned as described above (pruning looks only downstream, so it
// stays valid whatever sorted the blocks). `ordered` keeps the summed wires in rank order too,
// as the unrolled networks leave them.
Network make_network(int64_t n, int64_t lo, int64_t hi, bool ordered) {
  const int64_t presorted = n / kBlock * kBlock;
  int64_t p2 = 1;
  while (p2 < n) p2 <<= 1;
  std::vector<std::pair<uint16_t, uint16_t>> all;
  for (int64_t p = 1; p < p2; p <<= 1)
    for (int64_t k = p; k >= 1; k >>= 1)
      for (int64_t j = k % p; j + k < p2; j += 2 * k)
        for (int64_t i = 0; i < std::min(k, p2 - j - k); ++i)
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n &&
              !(p < kBlock && i + j + k < presorted))
            all.emplace_back(static_cast<uint16_t>(i + j), static_cast<uint16_t>(i + j + k));
  // Backward pruning. A wire is 0 (unused), 1 (only summed) or 2 (its exact value matters).
  std::vector<char> need(n, 0);
  for (int64_t r = lo; r <= hi; ++r) need[r] = ordered ? 2 : 1;
  Network net{{}, lo, hi, presorted};
  for (auto c = all.rbegin(); c != all.rend(); ++c) {
    const char a = need[c->first], b = need[c->second];
    if ((a == 0 && b == 0) || (a == 1 && b == 1)) continue;
    need[c->first] = need[c->second] = 2;
    net.comparators.push_back(*c);
  }
  std::reverse(net.comparators.begin(), net.comparators.end());
  return net;
}

// Columns [c0, c1) of x[n, d] into out, G groups of W columns at a time: the G groups give
// each comparator G independent min/max pairs, which hides the store-to-load latency of the
// wires kept in L1 (one group at a time runs ~4x slower, measured).
template <typename T, int W>
ROBUSTAGG_INLINE void run_columns(const T* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                                  int64_t c1, T* out) {
  typedef typename Vec<T, W>::type V;
  constexpr int G = 4;
  const T inf = std::numeric_limits<T>::infinity();
  const double count = static_cast<double>(net.hi - net.lo + 1);
  V v[256][G];
  const auto* cmp = net.comparators.data();
  const size_t ncmp = net.comparators.size();
  for (int64_t c = c0; c < c1; c += G * W) {
    const int64_t w = std::min<int64_t>(G * W, c1 - c);
    for (int64_t i = 0; i < n; ++i) {
      if (w == G * W) {
        for (int g = 0; g < G; ++g) v[i][g] = simd::load<V>(x + i * d + c + g * W);
        if (c + G * W + kAhead<T> < c1)
          for (int64_t b = 0; b < G * W * int64_t{sizeof(T)}; b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(x + i * d + c + kAhead<T>) + b, 0, 2);
      } else {
        std::memset(&v[i][0], 0, sizeof(v[i]));
        std::memcpy(&v[i][0], x + i * d + c, sizeof(T) * w);
      }
      for (int g = 0; g < G; ++g)  // NaN (the only value unequal to itself) -> +inf
        v[i][g] = (v[i][g] == v[i][g]) ? v[i][g] : V{} + inf;
    }
    for (int64_t b = 0; b < net.presorted; b += kBlock)  // each block sorted in registers
      for (int g = 0; g < G; ++g) {
        V r[kBlock];
        for (int i = 0; i < kBlock; ++i) r[i] = v[b + i][g];
        sort_fixed<V, kBlock>(r, std::make_index_sequence<SortNet<kBlock>::size()>{});
        for (int i = 0; i < kBlock; ++i) v[b + i][g] = r[i];
      }
    for (size_t q = 0; q < ncmp; ++q) {
      V* a = v[cmp[q].first];
      V* b = v[cmp[q].second];
      for (int g = 0; g < G; ++g) simd::minmax(a[g], b[g]);
    }
    V m[G];
    for (int g = 0; g < G; ++g) {  // the order of columns_fixed's sum, so every path agrees
      WideSum<T, W> s[4];
      if (net.hi - net.lo < 4) {
        for (int64_t r = net.lo; r <= net.hi; ++r) s[0].add(v[r][g]);
      } else {
        for (int64_t r = net.lo; r <= net.hi; ++r) s[r % 4].add(v[r][g]);
        s[0].add(s[1]);
        s[2].add(s[3]);
        s[0].add(s[2]);
      }
      m[g] = s[0].mean(count);
    }
    if (w == G * W) std::memcpy(out + c, m, sizeof(m));
    else std::memcpy(out + c, m, sizeof(T) * w);
  }
}

// For n <= kFixedMax (float32) the whole sorting network is unrolled at compile time, so the
// n wires live in vector registers instead of L1 (about 4x fewer cycles per comparator at
// n = 32, measured); it sorts fully, so one instantiation per n serves every rank range.
constexpr int kFixedMax = 32;

template <int W, int N, size_t... R>
ROBUSTAGG_INLINE void columns_fixed(const float* x, int64_t d, int64_t lo, int64_t hi, int64_t c0,
                                    int64_t c1, float* out, std::index_sequence<R...>) {
  typedef typename Vec<float, W>::type V;
  const float inf = std::numeric_limits<float>::infinity();
  const double count = static_cast<double>(hi - lo + 1);
  for (int64_t c = c0; c < c1; c += W) {
    const int64_t w = std::min<int64_t>(W, c1 - c);
    V v[N];
    if (w == W) {
      ((v[R] = simd::load<V>(x + R * d + c)), ...);
      if (c + kAhead<float> < c1)
        ((__builtin_prefetch(x + R * d + c + kAhead<float>, 0, 2)), ...);
    } else {
      ((v[R] = V{}, std::memcpy(&v[R], x + R * d + c, sizeof(float) * w)), ...);
    }
    ((v[R] = (v[R] == v[R]) ? v[R] : V{} + inf), ...);  // NaN -> +inf
    sort_fixed<V, N>(v, std::make_index_sequence<SortNet<N>::size()>{});
    // Only the wires in [lo, hi] are widened and added: a branch per wire, taken the same way
    // at every column group, so always predicted (a select would widen all n wires: 20% slower
    // for the median at n = 32, 35% at n = 10). Long ranges (trimmed means) add into four
    // chains, not one (16% faster at n = 32, f = 6); with float32 values the float64 sum is
    // exact unless their magnitudes span more than 2^29, where no order is the reference's.
    WideSum<float, W> s[4];
    if (hi - lo < 4) {
      ([&] {
        if (static_cast<int64_t>(R) >= lo && static_cast<int64_t>(R) <= hi) s[0].add(v[R]);
      }(), ...);
    } else {
      ([&] {
        if (static_cast<int64_t>(R) >= lo && static_cast<int64_t>(R) <= hi) s[R % 4].add(v[R]);
      }(), ...);
      s[0].add(s[1]);
      s[2].add(s[3]);
      s[0].add(s[2]);
    }
    const V m = s[0].mean(count);
    if (w == W) simd::store(out + c, m);
    else std::memcpy(out + c, &m, sizeof(float) * w);
  }
}

using FixedRunner = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);

template <int N>
ROBUSTAGG_AVX512 void fixed_avx512(const float* x, int64_t d, int64_t lo, int64_t hi, int64_t c0,
                                   int64_t c1, float* out) {
  columns_fixed<16, N>(x, d, lo, hi, c0, c1, out, std::make_index_sequence<N>{});
}
template <int N>
ROBUSTAGG_AVX2 void fixed_avx2(const float* x, int64_t d, int64_t lo, int64_t hi, int64_t c0,
                               int64_t c1, float* out) {
  columns_fixed<8, N>(x, d, lo, hi, c0, c1, out, std::make_index_sequence<N>{});
}

template <size_t... N>
FixedRunner fixed_runner(int64_t n, simd::Level level, std::index_sequence<N...>) {
  static const FixedRunner avx512[] = {fixed_avx512<N + 1>...};
  static const FixedRunner avx2[] = {fixed_avx2<N + 1>...};
  if (n < 1 || n > kFixedMax) return nullptr;
  if (level == simd::kAvx512) return avx512[n - 1];
  if (level == simd::kAvx2) return avx2[n - 1];
  return nullptr;
}

template <typename T>
using Runner = void (*)(const T*, int64_t, int64_t, const Network&, int64_t, int64_t, T*);

// The runtime-network kernel compiled for each instruction-set level.
template <typename T, int W>
ROBUSTAGG_AVX512 void run_avx512(const T* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                                 int64_t c1, T* out) {
  run_columns<T, W>(x, n, d, net, c0, c1, out);
}
template <typename T, int W>
ROBUSTAGG_AVX2 void run_avx2(const T* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                             int64_t c1, T* out) {
  run_columns<T, W>(x, n, d, net, c0, c1, out);
}
template <typename T, int W>
void run_base(const T* x, int64_t n, int64_t d, const Network& net, int64_t c0, int64_t c1,
              T* out) {
  run_columns<T, W>(x, n, d, net, c0, c1, out);
}

// The widest level this CPU runs: 64-byte vectors with AVX-512, 32 with AVX2, 16 below.
template <typename T>
Runner<T> runner() {
  constexpr int w = 16 / sizeof(T);
  switch (simd::level()) {
    case simd::kAvx512: return run_avx512<T, 4 * w>;
    case simd::kAvx2: return run_avx2<T, 2 * w>;
    default: return run_base<T, w>;
  }
}

// body(c0, c1) over contiguous column ranges, one per thread, cut at multiples of kChunk.
template <typename Body>
void parallel_columns(int64_t d, int threads, const Body& body) {
  constexpr int64_t kChunk = 1024;  // columns per work item: a multiple of every G * W
  const int64_t chunks = (d + kChunk - 1) / kChunk;
  // A thread is worth waking for at least 32 chunks (~1M values at n = 32).
  threads = static_cast<int>(std::clamp<int64_t>(chunks / 32, 1, std::max(threads, 1)));
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = std::min(d, chunks * t / nt * kChunk);
    const int64_t c1 = std::min(d, chunks * (t + 1) / nt * kChunk);
    if (c0 < c1) body(c0, c1);
  }
}

template <typename T>
void order_stat_mean(const T* x, int64_t n, int64_t d, int64_t lo, int64_t hi, T* out,
                     int threads, bool ordered) {
  const Network net = make_network(n, lo, hi, ordered);
  const Runner<T> run = runner<T>();
  parallel_columns(d, threads, [&](int64_t c0, int64_t c1) { run(x, n, d, net, c0, c1, out); });
}

}  // namespace

// n <= 256 (the caller falls back to torch beyond).
void order_stat_mean_cpu(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi, float* out,
                         int threads) {
  const auto l = simd::level();
  if (const FixedRunner fixed = fixed_runner(n, l, std::make_index_sequence<kFixedMax>{})) {
    parallel_columns(d, threads, [&](int64_t c0, int64_t c1) { fixed(x, d, lo, hi, c0, c1, out); });
    return;
  }
  // The portable level runs the network in L1 where the AVX levels unroll it: summing the
  // selected wires in rank order, as the unrolled networks do, keeps their bits.
  order_stat_mean<float>(x, n, d, lo, hi, out, threads, n <= kFixedMax);
}

void order_stat_mean_cpu(const double* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                         double* out, int threads) {
  order_stat_mean<double>(x, n, d, lo, hi, out, threads, false);
}

}  // namespace robustagg
