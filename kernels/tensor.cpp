#include "kernels/tensor.hpp"

namespace troupe {

std::string tensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

} // namespace troupe
