#pragma once
// Host-side error checks for CUDA calls, shared by kernels/cuda/*.cu and *.cpp (no device code here,
// so plain C++ files can include it).

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/tensor.hpp"

namespace troupe::cuda {

// Throws std::runtime_error naming `what` when `e` is an error.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
// Checks the launch just made (bad configuration, missing kernel image).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// "[2, 3]".
inline std::string shape_of(const tensor& t) { return t.shape_string(); }

} // namespace troupe::cuda
