#include "runtime/model/weight_slice_reader.hpp"

#include <algorithm>
#include <cstring>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>

#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_names.hpp"

namespace troupe {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t product(std::span<const int64_t> dims) {
  return std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<>());
}

// Throws std::out_of_range naming the tensor unless `slice` is a range of dim 0 or 1 inside `shape` and its
// local shape equals the tensor's on every other dimension and holds at least `length` along `dim`.
void check_fits(const weight_slice& slice) {
  const auto& shape = slice.shape;
  const auto& local = slice.local_shape;
  const auto refuse = [&](const std::string& why) {
    throw std::out_of_range("slice of tensor '" + slice.name + "' (shape " + shape_text(shape) + ", dim " +
                            std::to_string(slice.dim) + ", [" + std::to_string(slice.begin) + ", " +
                            std::to_string(slice.begin) + " + " + std::to_string(slice.length) + "), local shape " +
                            shape_text(local) + "): " + why);
  };
  if (slice.dim != 0 && slice.dim != 1) refuse("only dims 0 and 1 can be sliced");
  const auto d = static_cast<size_t>(slice.dim);
  if (d >= shape.size()) refuse("the tensor has no such dim");
  if (slice.begin < 0 || slice.length < 0 || slice.begin > shape[d] - slice.length)
    refuse("the range is outside the tensor");
  if (local.size() != shape.size()) refuse("the local shape has another rank than the tensor");
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i == d ? local[i] < slice.length : local[i] != shape[i])
      refuse("the local shape cannot hold the slice");
  }
}

// Calls read(first, count, local) for each contiguous span of `slice` in its tensor: `count` elements from flat
// element `first` of the tensor go to flat element `local` of the slice's local values. One span for dim 0, one
// per row for dim 1.
template <class Read>
void for_each_span(const weight_slice& slice, Read read) {
  check_fits(slice);
  const auto& local = slice.local_shape;
  // The tensor as [outer, extent of dim, inner]; the slice reads, for each outer index, the contiguous
  // elements [begin * inner, (begin + length) * inner) of that outer row.
  const auto d = static_cast<size_t>(slice.dim);
  const int64_t outer = product(std::span(slice.shape).first(d));
  const int64_t inner = product(std::span(slice.shape).subspan(d + 1));
  const int64_t extent = slice.shape[d];
  const auto count = static_cast<size_t>(slice.length * inner);        // elements read per outer row
  const auto local_row = static_cast<size_t>(local[d] * inner);        // elements written per outer row
  for (int64_t o = 0; o < outer; ++o)
    read(static_cast<size_t>((o * extent + slice.begin) * inner), count, static_cast<size_t>(o) * local_row);
}

// The same, into f32 values `out`, zero-filled and sized first: dst is the span's place in them.
template <class Read>
void for_each_span(const weight_slice& slice, std::vector<float>& out, Read read) {
  check_fits(slice);
  out.assign(static_cast<size_t>(product(slice.local_shape)), 0.0f);
  for_each_span(slice, [&](size_t first, size_t count, size_t local) { read(first, count, std::span(out).subspan(local, count)); });
}

} // namespace

void read_slice_f32(const checkpoint& ckpt, const weight_slice& slice, std::vector<float>& out) {
  const tensor_info& t = ckpt.require(slice.name, slice.shape);
  const size_t esize = size_in_bytes(t.type);
  for_each_span(slice, out, [&](size_t first, size_t count, std::span<float> dst) {
    if (!convert_to_f32(t.type, t.bytes().subspan(first * esize, count * esize), dst))
      throw checkpoint_error("tensor '" + slice.name + "': cannot convert its slice to f32");
  });
}

void read_slice_bytes(const tensor_info& t, const weight_slice& slice, std::vector<std::byte>& out) {
  if (t.shape != slice.shape)
    throw std::invalid_argument("tensor '" + slice.name + "' has shape " + shape_text(t.shape) + ", not the slice's " +
                                shape_text(slice.shape));
  const size_t esize = size_in_bytes(t.type);
  check_fits(slice);
  out.assign(static_cast<size_t>(product(slice.local_shape)) * esize, std::byte{0});
  for_each_span(slice, [&](size_t first, size_t count, size_t local) {
    if (count > 0) std::memcpy(out.data() + local * esize, t.data + first * esize, count * esize);
  });
}

void slice_f32(const weight_slice& slice, std::span<const float> whole, std::vector<float>& out) {
  if (static_cast<int64_t>(whole.size()) != product(slice.shape))
    throw std::invalid_argument("tensor '" + slice.name + "': " + std::to_string(whole.size()) +
                                " values do not fill its shape " + shape_text(slice.shape));
  for_each_span(slice, out, [&](size_t first, size_t count, std::span<float> dst) {
    std::copy_n(whole.begin() + static_cast<std::ptrdiff_t>(first), count, dst.begin());
  });
}

void random_slice_f32(const weight_slice& slice, weight_spec::init kind, uint64_t seed, std::vector<float>& out) {
  const weight_spec spec{slice.name, slice.shape, kind};
  for_each_span(slice, out, [&](size_t first, size_t count, std::span<float> dst) {
    random_weight_range(spec, seed, static_cast<int64_t>(first), static_cast<int64_t>(count), dst.data());
  });
}

} // namespace troupe
