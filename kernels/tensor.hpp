#pragma once
// A non-owning view of a dense, row-major array on some device. Ops take and return these;
// storage is owned by device_buffer (allocated by an ops backend).

#include <array>
#include <cassert>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>

#include "runtime/model/dtype.hpp"

namespace troupe {


struct tensor {
  void* data = nullptr;
  dtype type = dtype::f32;
  std::array<int64_t, 4> dims{};
  int rank = 0;

  tensor() = default;
  tensor(void* data_, dtype type_, std::initializer_list<int64_t> shape) : data(data_), type(type_) {
    assert(shape.size() <= dims.size());
    for (int64_t d : shape) dims[rank++] = d;
  }

  int64_t dim(int i) const { return dims[i < 0 ? rank + i : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  size_t num_bytes() const { return static_cast<size_t>(numel()) * size_in_bytes(type); }
  // Elements per row (the product of every dimension but the first): well defined at 0 rows too.
  int64_t row_elems() const {
    int64_t n = 1;
    for (int i = 1; i < rank; ++i) n *= dims[i];
    return n;
  }
  bool empty() const { return data == nullptr; }

  template <class T> T* as() const { return static_cast<T*>(data); }

  // Rows [begin, begin + count) along the first dimension.
  tensor rows(int64_t begin, int64_t count) const {
    tensor t = *this;
    t.data = static_cast<std::byte*>(data) + begin * row_elems() * static_cast<int64_t>(size_in_bytes(type));
    t.dims[0] = count;
    return t;
  }
  // The same storage seen with another shape of the same element count.
  tensor view(std::initializer_list<int64_t> shape) const {
    tensor t(data, type, shape);
    assert(t.numel() == numel());
    return t;
  }
  // "[2, 3]". Inline, so the CUDA library (which must not link troupe_kernels) may call it too.
  std::string shape_string() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  }
};

// Owns device (or host) memory; frees it through the backend that made it.
class device_buffer {
public:
  device_buffer() = default;
  device_buffer(tensor t, std::function<void(void*)> release)
      : tensor_(t), storage_(t.data, std::move(release)) {}
  const tensor& get() const { return tensor_; }
  operator const tensor&() const { return tensor_; }
  bool empty() const { return tensor_.data == nullptr; }

private:
  tensor tensor_;
  std::unique_ptr<void, std::function<void(void*)>> storage_;
};

} // namespace troupe
