// Fresh output vectors for the kernels, from a small pool of reused buffers (csrc/output_pool.cpp).
#pragma once

#include <torch/extension.h>

namespace robustagg {

// An uninitialised Tensor[d] on the CPU. A large one reuses the memory of an earlier output of
// the same size once that output has been freed; its storage cannot be resized (resize_ to a
// larger size raises), which no kernel output needs.
torch::Tensor pooled_vector(int64_t d, const torch::TensorOptions& options);

}  // namespace robustagg
