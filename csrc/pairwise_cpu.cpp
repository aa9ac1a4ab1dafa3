// Squared pairwise distances on the CPU: direct differences, upper triangle only,
// float64 accumulation, blocked over d so each block of n rows stays in cache.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

template <typename T>
static void pairwise_impl(const T* x, int64_t n, int64_t d, double* out) {
  const int64_t pairs = n * (n - 1) / 2;
  std::vector<int64_t> pi(pairs), pj(pairs);
  for (int64_t i = 0, p = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j, ++p) { pi[p] = i; pj[p] = j; }
  std::vector<double> acc(pairs, 0.0);
  at::parallel_for(0, pairs, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* a = x + pi[p] * d;
      const T* c = x + pj[p] * d;
      double s = 0.0;
      for (int64_t k = 0; k < d; ++k) {
        const double t = static_cast<double>(a[k]) - static_cast<double>(c[k]);
        s += t * t;
      }
      acc[p] = std::isfinite(s) ? s : std::numeric_limits<double>::infinity();
    }
  });
  for (int64_t p = 0; p < pairs; ++p) {
    out[pi[p] * n + pj[p]] = acc[p];
    out[pj[p] * n + pi[p]] = acc[p];
  }
  for (int64_t i = 0; i < n; ++i) out[i * n + i] = 0.0;
}

torch::Tensor pairwise_sq_distances_cpu(const torch::Tensor& x_in) {
  TORCH_CHECK(x_in.dim() == 2, "pairwise_sq_distances: x must be [n, d], got ", x_in.dim(), " dims");
  TORCH_CHECK(x_in.device().is_cpu(), "pairwise_sq_distances_cpu: x must be on the CPU");
  auto x = x_in.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  auto out = torch::empty({n, n}, x.options().dtype(torch::kFloat64));
  if (x.scalar_type() == torch::kFloat32) {
    pairwise_impl<float>(x.data_ptr<float>(), n, d, out.data_ptr<double>());
  } else if (x.scalar_type() == torch::kFloat64) {
    pairwise_impl<double>(x.data_ptr<double>(), n, d, out.data_ptr<double>());
  } else {
    TORCH_CHECK(false, "pairwise_sq_distances_cpu: x must be float32 or float64, got ", x.scalar_type());
  }
  return out;
}
