// Portable SIMD for the CPU kernels: GCC/Clang vector extensions (the compiler emits the widest
// instructions the function's target allows) plus runtime dispatch between instruction sets.
//
// A kernel body is written once as a template on a vector width and compiled several times:
// ROBUSTAGG_AVX512 / ROBUSTAGG_AVX2 mark functions compiled for those x86 levels, and
// robustagg::simd::level() says at run time which one the CPU can run. Elsewhere (other
// compilers or architectures) only the portable build exists, still vectorised for the
// baseline ISA.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ROBUSTAGG_X86_DISPATCH 1
#define ROBUSTAGG_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,bmi2")))
#define ROBUSTAGG_AVX2 __attribute__((target("avx2,fma,bmi2")))
#else
#define ROBUSTAGG_X86_DISPATCH 0
#define ROBUSTAGG_AVX512
#define ROBUSTAGG_AVX2
#endif
#define ROBUSTAGG_INLINE inline __attribute__((always_inline))

// Vectors wider than the baseline ISA only ever live inside the always-inlined bodies of
// functions compiled for a wider level, so the ABI note GCC gives about them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace robustagg {
namespace simd {

enum Level { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

// The widest level this CPU can run.
inline Level supported() {
#if ROBUSTAGG_X86_DISPATCH
  static const Level l = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                 __builtin_cpu_supports("avx512vl") &&
                                 __builtin_cpu_supports("avx512bw")
                             ? kAvx512
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? kAvx2
                                                                                            : kBase;
  return l;
#else
  return kBase;
#endif
}

// The level the kernels dispatch to: supported() unless lowered by set_level() (csrc/cpu_level.cpp,
// driven by ROBUSTAGG_CPU_LEVEL), so every path can be run and tested on one machine.
Level level();
// Use level l from now on; false (nothing changed) if the CPU cannot run it.
bool set_level(Level l);

// Vec<T, W>::type is W lanes of T; loads and stores go through memcpy, which compiles to
// unaligned vector moves.
template <typename T, int W>
struct Vec {
  typedef T type __attribute__((vector_size(sizeof(T) * W)));
};

template <typename V, typename T>
ROBUSTAGG_INLINE V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
ROBUSTAGG_INLINE void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}


// Sum of the lanes of v in double; halves are added in T first (log2(W) roundings of partial
// sums, which the callers bound by keeping each lane's run short).
template <typename T, int W>
ROBUSTAGG_INLINE double hsum(const typename Vec<T, W>::type& v) {
  if constexpr (W <= 4) {
    double s = 0.0;
    for (int l = 0; l < W; ++l) s += static_cast<double>(v[l]);
    return s;
  } else {
    typedef typename Vec<T, W / 2>::type H;
    H lo, hi;
    std::memcpy(&lo, &v, sizeof(H));
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(H), sizeof(H));
    return hsum<T, W / 2>(lo + hi);
  }
}


// A comparator: a, b = min(a, b), max(a, b); where a < b is false (equal values, or a NaN,
// which the callers map to +inf first) a keeps b's value and b keeps a's. This is exactly the
// x86 MIN/MAX instruction's semantics (the second operand unless the first is smaller), but
// GCC emits them only under -ffinite-math-only; spelled out they are two instructions where
// the compiler's compare-and-select takes a compare and two blends on AVX2 (order statistics:
// 15-40% less time, measured; on AVX-512 the blends are masked moves, one instruction each,
// and the same change measured no faster).
template <typename V>
ROBUSTAGG_INLINE void minmax(V& a, V& b) {
  V lo, hi;
#if ROBUSTAGG_X86_DISPATCH
  constexpr bool f32 = sizeof(a[0]) == 4;
  if constexpr (sizeof(V) == 32) {  // AVX2 (AVX-512's masked blends are one instruction each)
    if constexpr (f32) {
      __asm__("vminps %2, %1, %0" : "=v"(lo) : "v"(a), "v"(b));
      __asm__("vmaxps %1, %2, %0" : "=v"(hi) : "v"(a), "v"(b));
    } else {
      __asm__("vminpd %2, %1, %0" : "=v"(lo) : "v"(a), "v"(b));
      __asm__("vmaxpd %1, %2, %0" : "=v"(hi) : "v"(a), "v"(b));
    }
    a = lo;
    b = hi;
    return;
  }
#endif
  lo = a < b ? a : b;
  hi = a < b ? b : a;
  a = lo;
  b = hi;
}

}  // namespace simd
}  // namespace robustagg
