// Bindings of robustagg._C: tensors in, raw pointers to the kernels (csrc/*_cpu.cpp, and
// csrc/cuda/ when built with CUDA), tensors out. Arguments were validated by
// robustagg.kernels / robustagg.functional; the checks here only guard memory safety.
#include <ATen/Parallel.h>
#include <atomic>
#include <torch/extension.h>

#include "kernels_cpu.h"
#include "output_pool.h"
#include "simd.h"

#ifdef ROBUSTAGG_WITH_CUDA
void register_cuda_kernels(pybind11::module& m);  // csrc/cuda/bindings_cuda.cpp
#endif

namespace {

// Threads of the CPU kernels: torch's setting unless set_kernel_threads chose another. Their
// results do not depend on it, so a caller may keep torch on one thread (whose reductions do
// depend on it) and still give the kernels every core.
std::atomic<int> g_threads{0};

int kernel_threads() {
  const int t = g_threads.load(std::memory_order_relaxed);
  return t > 0 ? t : at::get_num_threads();
}

void set_kernel_threads(int t) {
  TORCH_CHECK(t >= 0, "set_kernel_threads: needs t >= 0 (0: follow torch), got ", t);
  g_threads.store(t, std::memory_order_relaxed);
}

torch::Tensor cpu_matrix(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 2, name, ": x must be [n, d], got ", x.dim(), " dims");
  TORCH_CHECK(x.device().is_cpu(), name, ": x must be on the CPU, got ", x.device());
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64, name,
              ": x must be float32 or float64, got ", x.scalar_type());
  return x.contiguous();
}

torch::Tensor pairwise_sq_distances(const torch::Tensor& x_in) {
  const auto x = cpu_matrix(x_in, "pairwise_sq_distances_cpu");
  const int64_t n = x.size(0), d = x.size(1);
  auto out = torch::empty({n, n}, x.options().dtype(torch::kFloat64));
  const int t = kernel_threads();
  if (x.scalar_type() == torch::kFloat32)
    robustagg::pairwise_sq_distances_cpu(x.data_ptr<float>(), n, d, out.data_ptr<double>(), t);
  else
    robustagg::pairwise_sq_distances_cpu(x.data_ptr<double>(), n, d, out.data_ptr<double>(), t);
  return out;
}

torch::Tensor pairwise_sq_distance_partials(const torch::Tensor& x_in, int64_t width) {
  const auto x = cpu_matrix(x_in, "pairwise_sq_distance_partials_cpu");
  TORCH_CHECK(width >= 1, "pairwise_sq_distance_partials_cpu: needs width >= 1, got ", width);
  const int64_t n = x.size(0), d = x.size(1);
  auto out = torch::empty({robustagg::distance_groups(d, width), n, n},
                          x.options().dtype(torch::kFloat64));
  const int t = kernel_threads();
  if (x.scalar_type() == torch::kFloat32)
    robustagg::pairwise_sq_distance_partials_cpu(x.data_ptr<float>(), n, d, width,
                                                 out.data_ptr<double>(), t);
  else
    robustagg::pairwise_sq_distance_partials_cpu(x.data_ptr<double>(), n, d, width,
                                                 out.data_ptr<double>(), t);
  return out;
}

torch::Tensor order_stat_mean(const torch::Tensor& x_in, int64_t lo, int64_t hi) {
  const auto x = cpu_matrix(x_in, "order_stat_mean_cpu");
  const int64_t n = x.size(0), d = x.size(1);
  TORCH_CHECK(n >= 1 && n <= 256, "order_stat_mean_cpu: needs 1 <= n <= 256, got n=", n);
  TORCH_CHECK(0 <= lo && lo <= hi && hi < n, "order_stat_mean_cpu: needs 0 <= lo <= hi < n, got lo=",
              lo, ", hi=", hi, ", n=", n);
  auto out = robustagg::pooled_vector(d, x.options());
  const int t = kernel_threads();
  if (x.scalar_type() == torch::kFloat32)
    robustagg::order_stat_mean_cpu(x.data_ptr<float>(), n, d, lo, hi, out.data_ptr<float>(), t);
  else
    robustagg::order_stat_mean_cpu(x.data_ptr<double>(), n, d, lo, hi, out.data_ptr<double>(), t);
  return out;
}

torch::Tensor rows_mean(const torch::Tensor& x_in, const torch::Tensor& idx_in) {
  const auto x = cpu_matrix(x_in, "rows_mean_cpu");
  const auto idx = idx_in.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t n = x.size(0), d = x.size(1), m = idx.numel();
  TORCH_CHECK(m >= 1, "rows_mean_cpu: idx is empty");
  const int64_t* p = idx.data_ptr<int64_t>();
  for (int64_t r = 0; r < m; ++r)
    TORCH_CHECK(0 <= p[r] && p[r] < n, "rows_mean_cpu: idx[", r, "]=", p[r], " out of [0, ", n, ")");
  auto out = robustagg::pooled_vector(d, x.options());
  const int t = kernel_threads();
  if (x.scalar_type() == torch::kFloat32)
    robustagg::rows_mean_cpu(x.data_ptr<float>(), d, p, m, out.data_ptr<float>(), t);
  else
    robustagg::rows_mean_cpu(x.data_ptr<double>(), d, p, m, out.data_ptr<double>(), t);
  return out;
}

// Names of the instruction-set levels, as ROBUSTAGG_CPU_LEVEL spells them, indexed by simd::Level.
const char* const kLevelNames[] = {"base", "avx2", "avx512"};

std::vector<std::string> cpu_levels() {  // widest first
  std::vector<std::string> out;
  for (int l = robustagg::simd::supported(); l >= 0; --l) out.emplace_back(kLevelNames[l]);
  return out;
}

std::string cpu_level() { return kLevelNames[robustagg::simd::level()]; }

void set_cpu_level(const std::string& name) {
  for (int l = 0; l < 3; ++l)
    if (name == kLevelNames[l]) {
      TORCH_CHECK(robustagg::simd::set_level(static_cast<robustagg::simd::Level>(l)),
                  "CPU level '", name, "' cannot run on this CPU");
      return;
    }
  TORCH_CHECK(false, "unknown CPU level '", name, "'");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "robustagg native kernels (contract: robustagg/kernels.py)";
  const auto nogil = pybind11::call_guard<pybind11::gil_scoped_release>();
  m.def("pairwise_sq_distances_cpu", &pairwise_sq_distances, nogil,
        "Squared Euclidean distances between the rows of x[n, d] (float64 [n, n]; non-finite "
        "rows give +inf; exact zero diagonal)");
  m.def("pairwise_sq_distance_partials_cpu", &pairwise_sq_distance_partials, nogil,
        "Per group of `width` columns of x[n, d], the squared distances over its columns "
        "(float64 [groups, n, n]); added in order they are pairwise_sq_distances_cpu's sums");
  m.def("distance_group_width", &robustagg::distance_group_width,
        "The width of the column groups pairwise_sq_distances_cpu sums in order, for d columns");
  m.def("order_stat_mean_cpu", &order_stat_mean, nogil,
        "Per column of x[n, d], the mean of the order statistics lo..hi (NaN ordered as +inf), "
        "n <= 256");
  m.def("kernel_threads", &kernel_threads, "Threads the CPU kernels use now");
  m.def("kernel_threads_setting", [] { return g_threads.load(); },
        "The set_kernel_threads value (0: torch's setting)");
  m.def("set_kernel_threads", &set_kernel_threads,
        "Threads for the CPU kernels from the next call on (0: torch's setting)");
  m.def("cpu_levels", &cpu_levels,
        "Instruction-set levels this CPU can run, widest first ('avx512', 'avx2', 'base')");
  m.def("cpu_level", &cpu_level, "The level the CPU kernels use now");
  m.def("set_cpu_level", &set_cpu_level,
        "Use this level from the next call on (robustagg.kernels validates and documents it)");
  m.def("rows_mean_cpu", &rows_mean, nogil, "Mean of the rows idx of x[n, d], float64 sums");
#ifdef ROBUSTAGG_WITH_CUDA
  register_cuda_kernels(m);
#endif
}
