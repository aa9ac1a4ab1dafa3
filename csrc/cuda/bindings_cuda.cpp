// Tensor adapters for the CUDA kernels (compiled only in CUDA builds, see setup.py): check
// what memory safety needs, hand raw device pointers and torch's current stream to
// csrc/cuda/*.cu, and register the functions on robustagg._C.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

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
  auto workspace = torch::empty({robustagg::cuda::pairwise_workspace(n, d)},
                                x.options().dtype(torch::kFloat64));
  check_cuda(robustagg::cuda::pairwise_sq_distances(x.data_ptr<float>(), n, d,
                                                    out.data_ptr<double>(),
                                                    workspace.data_ptr<double>(),
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

// Mean of the rows idx of x, with the CPU binding's checks (the indices are checked on the host:
// one small copy, and an index out of range must not read outside x).
torch::Tensor rows_mean_cuda(const torch::Tensor& x_in, const torch::Tensor& idx_in) {
  const auto x = cuda_matrix(x_in, "rows_mean_cuda");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto idx_cpu = idx_in.to(torch::kCPU, torch::kInt64).contiguous();
  TORCH_CHECK(idx_cpu.dim() == 1, "rows_mean_cuda: idx must be 1-D, got ", idx_cpu.dim(), " dims");
  const int64_t n = x.size(0), m = idx_cpu.numel();
  TORCH_CHECK(m >= 1, "rows_mean_cuda: idx is empty");
  const int64_t* p = idx_cpu.data_ptr<int64_t>();
  for (int64_t r = 0; r < m; ++r)
    TORCH_CHECK(0 <= p[r] && p[r] < n, "rows_mean_cuda: idx[", r, "]=", p[r], " out of [0, ", n, ")");
  const auto idx = idx_cpu.to(x.device());
  auto out = torch::empty({x.size(1)}, x.options());
  check_cuda(robustagg::cuda::rows_mean(x.data_ptr<float>(), x.size(1), idx.data_ptr<int64_t>(),
                                        m, out.data_ptr<float>(),
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
  m.def("rows_mean_cuda", &rows_mean_cuda, "Mean of the rows idx of float32 x[n, d] on the GPU");
}
