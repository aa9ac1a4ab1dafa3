// Bindings of robustagg._C. The kernels live in one file each; this file only declares them.
#include <torch/extension.h>

torch::Tensor pairwise_sq_distances_cpu(const torch::Tensor& x);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "robustagg native kernels";
  m.def("pairwise_sq_distances_cpu", &pairwise_sq_distances_cpu,
        "Squared Euclidean distances between the rows of x[n, d] (float64 [n, n]; "
        "non-finite rows give +inf; exact zero diagonal)");
}
