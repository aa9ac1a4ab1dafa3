// Means of central order statistics per column: the coordinate-wise median and trimmed mean.
//
// No sort of the n x d transpose: W adjacent columns are loaded as n vectors of W lanes and
// sorted lane-wise by a comparator network (min/max of two vectors per comparator), so every
// column of the group is ordered at once in registers/L1 and x is read once, row-contiguously.
// The network is Batcher's odd-even merge sort for the next power of two (comparators that
// touch padding wires are dropped: padding would hold +inf and never move), pruned backwards
// to the comparators that decide which values reach the requested ranks: a comparator whose
// outputs both only feed the final sum is dropped too (min + max = a + b). NaN is mapped to
// +inf on load, which is the contract's order. The selected values are summed in float64 and
// divided once, so float32 results equal the float64 reference rounded to float32.
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

struct Network {
  std::vector<std::pair<uint16_t, uint16_t>> comparators;  // (a, b), a < b: min to a, max to b
  int64_t lo, hi;                                          // ranks whose values are averaged
};

Network make_network(int64_t n, int64_t lo, int64_t hi) {
  int64_t p2 = 1;
  while (p2 < n) p2 <<= 1;
  std::vector<std::pair<uint16_t, uint16_t>> all;
  for (int64_t p = 1; p < p2; p <<= 1)
    for (int64_t k = p; k >= 1; k >>= 1)
      for (int64_t j = k % p; j + k < p2; j += 2 * k)
        for (int64_t i = 0; i < std::min(k, p2 - j - k); ++i)
          if ((i + j) / (2 * p) == (i + j + k) / (2 * p) && i + j + k < n)
            all.emplace_back(static_cast<uint16_t>(i + j), static_cast<uint16_t>(i + j + k));
  // Backward pruning. A wire is 0 (unused), 1 (only summed) or 2 (its exact value matters).
  std::vector<char> need(n, 0);
  for (int64_t r = lo; r <= hi; ++r) need[r] = 1;
  Network net{{}, lo, hi};
  for (auto c = all.rbegin(); c != all.rend(); ++c) {
    const char a = need[c->first], b = need[c->second];
    if ((a == 0 && b == 0) || (a == 1 && b == 1)) continue;
    need[c->first] = need[c->second] = 2;
    net.comparators.push_back(*c);
  }
  std::reverse(net.comparators.begin(), net.comparators.end());
  return net;
}

// Columns [c0, c1) of x[n, d] into out, W at a time; `v` is scratch for n vectors.
template <typename T, int W>
ROBUSTAGG_INLINE void run_columns(const T* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                                  int64_t c1, T* out) {
  typedef typename Vec<T, W>::type V;
  typedef typename Vec<double, W>::type VD;
  const T inf = std::numeric_limits<T>::infinity();
  const double inv = static_cast<double>(net.hi - net.lo + 1);
  V v[256];
  const auto* cmp = net.comparators.data();
  const size_t ncmp = net.comparators.size();
  for (int64_t c = c0; c < c1; c += W) {
    const int64_t w = std::min<int64_t>(W, c1 - c);
    for (int64_t i = 0; i < n; ++i) {
      V t = V{};
      if (w == W) t = simd::load<V>(x + i * d + c);
      else std::memcpy(&t, x + i * d + c, sizeof(T) * w);
      v[i] = (t == t) ? t : V{} + inf;  // NaN (the only value unequal to itself) -> +inf
    }
    for (size_t q = 0; q < ncmp; ++q) {
      const V a = v[cmp[q].first], b = v[cmp[q].second];
      v[cmp[q].first] = a < b ? a : b;
      v[cmp[q].second] = a < b ? b : a;
    }
    VD s = VD{};
    for (int64_t r = net.lo; r <= net.hi; ++r) s += __builtin_convertvector(v[r], VD);
    const V m = __builtin_convertvector(s / inv, V);
    if (w == W) simd::store(out + c, m);
    else std::memcpy(out + c, &m, sizeof(T) * w);
  }
}

template <typename T>
using Runner = void (*)(const T*, int64_t, int64_t, const Network&, int64_t, int64_t, T*);

ROBUSTAGG_AVX512 void run_f32_avx512(const float* x, int64_t n, int64_t d, const Network& net,
                                     int64_t c0, int64_t c1, float* out) {
  run_columns<float, 16>(x, n, d, net, c0, c1, out);
}
ROBUSTAGG_AVX512 void run_f64_avx512(const double* x, int64_t n, int64_t d, const Network& net,
                                     int64_t c0, int64_t c1, double* out) {
  run_columns<double, 8>(x, n, d, net, c0, c1, out);
}
ROBUSTAGG_AVX2 void run_f32_avx2(const float* x, int64_t n, int64_t d, const Network& net,
                                 int64_t c0, int64_t c1, float* out) {
  run_columns<float, 8>(x, n, d, net, c0, c1, out);
}
ROBUSTAGG_AVX2 void run_f64_avx2(const double* x, int64_t n, int64_t d, const Network& net,
                                 int64_t c0, int64_t c1, double* out) {
  run_columns<double, 4>(x, n, d, net, c0, c1, out);
}
void run_f32_base(const float* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                  int64_t c1, float* out) {
  run_columns<float, 4>(x, n, d, net, c0, c1, out);
}
void run_f64_base(const double* x, int64_t n, int64_t d, const Network& net, int64_t c0,
                  int64_t c1, double* out) {
  run_columns<double, 2>(x, n, d, net, c0, c1, out);
}

template <typename T>
void order_stat_mean(const T* x, int64_t n, int64_t d, int64_t lo, int64_t hi, T* out,
                     int threads, Runner<T> run) {
  const Network net = make_network(n, lo, hi);
  constexpr int64_t kChunk = 1024;  // columns per work item: a multiple of every width
  const int64_t chunks = (d + kChunk - 1) / kChunk;
  threads = static_cast<int>(std::clamp<int64_t>(chunks, 1, std::max(threads, 1)));
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t c0 = std::min(d, chunks * t / nt * kChunk);
    const int64_t c1 = std::min(d, chunks * (t + 1) / nt * kChunk);
    if (c0 < c1) run(x, n, d, net, c0, c1, out);
  }
}

}  // namespace

// n <= 256 (the caller falls back to torch beyond).
void order_stat_mean_cpu(const float* x, int64_t n, int64_t d, int64_t lo, int64_t hi, float* out,
                         int threads) {
  const auto l = simd::level();
  order_stat_mean<float>(x, n, d, lo, hi, out, threads,
                         l == simd::kAvx512 ? run_f32_avx512
                         : l == simd::kAvx2 ? run_f32_avx2
                                            : run_f32_base);
}

void order_stat_mean_cpu(const double* x, int64_t n, int64_t d, int64_t lo, int64_t hi,
                         double* out, int threads) {
  const auto l = simd::level();
  order_stat_mean<double>(x, n, d, lo, hi, out, threads,
                          l == simd::kAvx512 ? run_f64_avx512
                          : l == simd::kAvx2 ? run_f64_avx2
                                             : run_f64_base);
}

}  // namespace robustagg
