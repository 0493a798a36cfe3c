#pragma once
// Reading one rank's slice of a checkpoint tensor (a weight_slice of its sharding_plan) straight from the
// memory-mapped safetensors file, as f32 in the rank's local shape. Only the slice's bytes are touched: a
// row slice is one contiguous span, a column slice one span per row, so no process ever converts (or pages
// in) a whole tensor it holds only part of.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/model/weight_names.hpp"

namespace troupe {

class checkpoint;
struct tensor_info;
struct weight_slice;

// The values of `slice` of checkpoint tensor slice.name, as f32 in slice.local_shape (row-major) into
// `out` (resized to its element count). Along slice.dim, indices [begin, begin + length) are read and the
// local indices from `length` up to local_shape[dim] are zero (the vocabulary's padding rows).
// Throws checkpoint_error as checkpoint::require does (a missing tensor, a shape other than slice.shape, a
// dtype other than F32/F16/BF16), and std::out_of_range naming the tensor when the slice does not fit it
// (a dim other than 0 or 1, a range past the tensor's end, a local shape that cannot hold the slice).
void read_slice_f32(const checkpoint& ckpt, const weight_slice& slice, std::vector<float>& out);

// The elements of `slice` of checkpoint tensor `t` (any dtype) as stored, little-endian, row-major in
// slice.local_shape, into `out` (resized; zero bytes where the local shape exceeds the slice): an FP8 weight's
// codes. Throws std::invalid_argument when t's shape is not slice.shape, std::out_of_range as read_slice_f32 does.
void read_slice_bytes(const tensor_info& t, const weight_slice& slice, std::vector<std::byte>& out);

// The same slice of `whole`, the tensor's values [slice.shape] already in memory (a 4-bit weight dequantized
// whole), as read_slice_f32 cuts it from a checkpoint. Throws std::out_of_range as read_slice_f32 does, and
// std::invalid_argument when whole does not hold slice.shape's elements.
void slice_f32(const weight_slice& slice, std::span<const float> whole, std::vector<float>& out);

// The same slice of the random tensor random_weight_values makes for (slice.name, slice.shape, kind, seed),
// made without the rest of it (`--load-format dummy` on a tensor-parallel rank). Throws std::out_of_range
// as read_slice_f32 does for a slice that does not fit its tensor.
void random_slice_f32(const weight_slice& slice, weight_spec::init kind, uint64_t seed, std::vector<float>& out);

} // namespace troupe
