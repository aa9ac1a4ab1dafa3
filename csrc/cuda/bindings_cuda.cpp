// Tensor adapters for the CUDA kernels (compiled only in CUDA builds, see setup.py): check
// what memory safety needs, hand raw device pointers and torch's current stream to
// csrc/cuda/*.cu, and register the functions on robustagg._C.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <tuple>

#include "kernels_cuda.h"

namespace {

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": ", cudaGetErrorString(err));
}

torch::Tensor cuda_matrix(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 2, name, ": x must be [n, d], got ", x.dim(), " dims");
  TORCH_CHECK(x.is_cuda(), name, ": x must be on a CUDA device, got ", x.device());
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, name, ": x must be float32, got ",
              x.scalar_type());
  return x.contiguous();
}

torch::Tensor pairwise_sq_distances_cuda(const torch::Tensor& x_in) {
  const auto x = cuda_matrix(x_in, "pairwise_sq_distances_cuda");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0), d = x.size(1);
  auto out = torch::empty({n, n}, x.options().dtype(torch::kFloat64));
  check_cuda(robustagg::cuda::pairwise_sq_distances(x.data_ptr<float>(), n, d,
                                                    out.data_ptr<double>(),
                                                    c10::cuda::getCurrentCUDAStream()),
             "pairwise_sq_distances_cuda");
  return out;
}

torch::Tensor order_stat_mean_cuda(const torch::Tensor& x_in, int64_t lo, int64_t hi) {
  const auto x = cuda_matrix(x_in, "order_stat_mean_cuda");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t n = x.size(0), d = x.size(1);
  TORCH_CHECK(n >= 1 && n <= robustagg::cuda::kMaxOrderStatN, "order_stat_mean_cuda: needs 1 <= n <= ",
              robustagg::cuda::kMaxOrderStatN, ", got n=", n);
  TORCH_CHECK(0 <= lo && lo <= hi && hi < n, "order_stat_mean_cuda: needs 0 <= lo <= hi < n, got lo=",
              lo, ", hi=", hi, ", n=", n);
  auto out = torch::empty({d}, x.options());
  check_cuda(robustagg::cuda::order_stat_mean(x.data_ptr<float>(), n, d, lo, hi,
                                              out.data_ptr<float>(),
                                              c10::cuda::getCurrentCUDAStream()),
             "order_stat_mean_cuda");
  return out;
}

// (scores float64 [n], selected int64 [m] (the first `count` are valid), count int64 [1]).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> krum_select_cuda(
    const torch::Tensor& dist_in, int64_t k, int64_t m) {
  TORCH_CHECK(dist_in.dim() == 2 && dist_in.size(0) == dist_in.size(1) && dist_in.is_cuda() &&
                  dist_in.scalar_type() == torch::kFloat64,
              "krum_select_cuda: distances must be float64 [n, n] on a CUDA device");
  const auto dist = dist_in.contiguous();
  const c10::cuda::CUDAGuard guard(dist.device());
  const int64_t n = dist.size(0);
  TORCH_CHECK(0 <= k && k <= n - 1 && 1 <= m && m <= n, "krum_select_cuda: needs 0 <= k < n and "
              "1 <= m <= n, got k=", k, ", m=", m, ", n=", n);
  auto scores = torch::empty({n}, dist.options());
  auto selected = torch::empty({m}, dist.options().dtype(torch::kInt64));
  auto count = torch::empty({1}, dist.options().dtype(torch::kInt64));
  check_cuda(robustagg::cuda::krum_select(dist.data_ptr<double>(), n, k, m,
                                          scores.data_ptr<double>(), selected.data_ptr<int64_t>(),
                                          count.data_ptr<int64_t>(),
                                          c10::cuda::getCurrentCUDAStream()),
             "krum_select_cuda");
  return {scores, selected, count};
}

// Mean of the rows idx[0..count) of x; count is a 1-element int64 device tensor (from
// krum_select_cuda), or None for all of idx.
torch::Tensor rows_mean_cuda(const torch::Tensor& x_in, const torch::Tensor& idx_in,
                             const c10::optional<torch::Tensor>& count_in) {
  const auto x = cuda_matrix(x_in, "rows_mean_cuda");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto idx = idx_in.to(x.device(), torch::kInt64).contiguous();
  TORCH_CHECK(idx.dim() == 1, "rows_mean_cuda: idx must be 1-D");
  const auto count = count_in.has_value()
                         ? count_in->to(x.device(), torch::kInt64).contiguous()
                         : torch::full({1}, idx.numel(), idx.options());
  auto out = torch::empty({x.size(1)}, x.options());
  check_cuda(robustagg::cuda::rows_mean(x.data_ptr<float>(), x.size(1), idx.data_ptr<int64_t>(),
                                        count.data_ptr<int64_t>(), out.data_ptr<float>(),
                                        c10::cuda::getCurrentCUDAStream()),
             "rows_mean_cuda");
  return out;
}

}  // namespace

void register_cuda_kernels(pybind11::module& m) {
  m.def("pairwise_sq_distances_cuda", &pairwise_sq_distances_cuda,
        "Squared distances between the rows of float32 x[n, d] on the GPU (float64 [n, n])");
  m.def("order_stat_mean_cuda", &order_stat_mean_cuda,
        "Per column of float32 x[n, d] (n <= 64), the mean of the order statistics lo..hi");
  m.def("krum_select_cuda", &krum_select_cuda,
        "Krum scores (k nearest) and the m lowest finite ones, on the GPU: (scores, selected, "
        "count)");
  m.def("rows_mean_cuda", &rows_mean_cuda, pybind11::arg("x"), pybind11::arg("idx"),
        pybind11::arg("count") = pybind11::none(),
        "Mean of the rows idx[:count] of float32 x[n, d] on the GPU");
}
