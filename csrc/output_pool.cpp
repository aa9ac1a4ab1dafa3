// Why the kernels' outputs come from a pool: a fresh d-vector is first touched by the kernel's
// stores, one page fault per 4 KiB page, and for a large output that costs more than the whole
// computation (a fresh 40 MB vector: 12 ms to write here, against 1.3 ms to read one; huge pages
// help only where the host backs the VM's memory eagerly). A training loop aggregates a vector
// of the same d every round and drops the last one, so keeping a few freed output buffers and
// handing them out again removes the page faults entirely.
#include "output_pool.h"

#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

namespace robustagg {
namespace {

constexpr size_t kMinBytes = size_t{1} << 20;       // smaller outputs: torch's allocator
constexpr size_t kMaxBytes = size_t{512} << 20;     // larger ones are never kept
constexpr size_t kMaxFree = 4;                      // freed buffers kept at most,
constexpr size_t kMaxFreeBytes = size_t{1} << 30;   // and at most this much memory idle

struct Pool {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> free;  // (bytes, buffer), most recently freed last
  size_t free_bytes = 0;
};

// Never destroyed: a tensor's deleter may run at interpreter exit, after static destructors.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

void release(void* ptr, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(pool().mu);
    Pool& p = pool();
    if (p.free.size() < kMaxFree && p.free_bytes + bytes <= kMaxFreeBytes) {
      p.free.emplace_back(bytes, ptr);
      p.free_bytes += bytes;
      return;
    }
  }
  std::free(ptr);
}

void* acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(pool().mu);
    Pool& p = pool();
    for (auto it = p.free.rbegin(); it != p.free.rend(); ++it)
      if (it->first == bytes) {
        void* ptr = it->second;
        p.free.erase(std::next(it).base());
        p.free_bytes -= bytes;
        return ptr;
      }
  }
  void* ptr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  TORCH_CHECK(ptr != nullptr, "robustagg: out of memory allocating ", bytes, " bytes");
  return ptr;
}

}  // namespace

torch::Tensor pooled_vector(int64_t d, const torch::TensorOptions& options) {
  const size_t bytes = static_cast<size_t>(d) * options.dtype().itemsize();
  if (bytes < kMinBytes || bytes > kMaxBytes) return torch::empty({d}, options);
  return torch::from_blob(acquire(bytes), {d}, [bytes](void* ptr) { release(ptr, bytes); },
                          options);
}

}  // namespace robustagg
