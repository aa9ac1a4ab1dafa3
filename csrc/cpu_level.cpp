// The instruction-set level the CPU kernels dispatch to (see simd.h). One process-wide value,
// read by every kernel call: changing it between calls is safe, during a call it is not
// (robustagg.kernels sets it when the extension loads, and tests switch it between calls).
#include <atomic>

#include "simd.h"

namespace robustagg {
namespace simd {

namespace {
std::atomic<int> g_level{-1};  // -1: not chosen yet, use supported()
}

Level level() {
  const int l = g_level.load(std::memory_order_relaxed);
  return l < 0 ? supported() : static_cast<Level>(l);
}

bool set_level(Level l) {
  if (l > supported()) return false;
  g_level.store(static_cast<int>(l), std::memory_order_relaxed);
  return true;
}

}  // namespace simd
}  // namespace robustagg
