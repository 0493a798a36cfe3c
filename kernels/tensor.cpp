#include "kernels/tensor.hpp"

namespace troupe {

size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::f32: case dtype::i32: return 4;
    case dtype::f16: case dtype::bf16: return 2;
    case dtype::i64: return 8;
    default: return 1;
  }
}

std::string tensor::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

} // namespace troupe
