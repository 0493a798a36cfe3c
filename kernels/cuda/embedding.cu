// Row gathers: the token embedding and gather_rows (the rows that reach the LM head). Both copy whole
// rows as raw bytes, so one kernel serves every dtype.

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

// One block per output row; U is the widest unit that divides the row and both base pointers' alignment.
// Row r copies source row indices[r] - first; an index outside [first, first + num_src_rows) yields a zero
// row rather than a read out of bounds (for a vocabulary shard, the rows another shard holds).
template <class U>
__global__ void copy_rows_kernel(const int32_t* __restrict__ indices, const U* __restrict__ src, U* __restrict__ dst,
                                 int64_t units_per_row, int64_t num_src_rows, int64_t first) {
  const int64_t r = blockIdx.x;
  const int64_t i = static_cast<int64_t>(indices[r]) - first;
  U* out = dst + r * units_per_row;
  if (i < 0 || i >= num_src_rows) {
    for (int64_t c = threadIdx.x; c < units_per_row; c += blockDim.x) out[c] = U{};
    return;
  }
  const U* in = src + i * units_per_row;
  for (int64_t c = threadIdx.x; c < units_per_row; c += blockDim.x) out[c] = in[c];
}

void copy_rows(const tensor& src, const tensor& indices, const tensor& dst, cudaStream_t stream, const char* op,
               int64_t first = 0) {
  if (indices.type != dtype::i32) throw std::invalid_argument(std::string("cuda ") + op + ": indices must be i32");
  if (src.type != dst.type || src.row_elems() != dst.row_elems() || dst.dim(0) < indices.dim(0))
    throw std::invalid_argument(std::string("cuda ") + op + ": source " + shape_of(src) + " and output " + shape_of(dst) +
                                " disagree");
  const int64_t rows = indices.dim(0);
  if (rows == 0) return;
  const int64_t row_bytes = src.row_elems() * static_cast<int64_t>(size_in_bytes(src.type));
  const uintptr_t bits = reinterpret_cast<uintptr_t>(src.data) | reinterpret_cast<uintptr_t>(dst.data) |
                         static_cast<uintptr_t>(row_bytes);
  auto launch = [&](auto unit) {
    using U = decltype(unit);
    const int64_t units = row_bytes / static_cast<int64_t>(sizeof(U));
    const int threads = units >= 256 ? 256 : units >= 64 ? 128 : 32;
    copy_rows_kernel<U><<<static_cast<unsigned>(rows), threads, 0, stream>>>(
        indices.as<int32_t>(), static_cast<const U*>(src.data), static_cast<U*>(dst.data), units, src.dim(0), first);
  };
  if (bits % 16 == 0) launch(uint4{});
  else if (bits % 4 == 0) launch(uint32_t{});
  else if (bits % 2 == 0) launch(uint16_t{});
  else launch(uint8_t{});
  check_launch(op);
}

} // namespace

void launch_embedding(const tensor& ids, const tensor& table, const tensor& out, cudaStream_t stream) {
  copy_rows(table, ids, out, stream, "embedding");
}

void launch_embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out,
                            cudaStream_t stream) {
  copy_rows(table, ids, out, stream, "embedding_shard", first_id);
}

void launch_copy_columns(const tensor& x, const tensor& out, cudaStream_t stream) {
  const size_t elem = size_in_bytes(x.type);
  const int64_t rows = x.dim(0), from = x.row_elems(), to = out.row_elems();
  if (out.type != x.type || out.dim(0) != rows || to > from)
    throw std::invalid_argument("cuda copy_columns: " + shape_of(x) + " cannot be cut to " + shape_of(out));
  if (rows == 0 || to == 0) return;
  // One strided copy: no kernel, and it records into a graph like any other stream operation.
  check(cudaMemcpy2DAsync(out.data, to * elem, x.data, from * elem, to * elem, static_cast<size_t>(rows),
                          cudaMemcpyDeviceToDevice, stream),
        "copy_columns");
}

void launch_gather_rows(const tensor& x, const tensor& indices, const tensor& out, cudaStream_t stream) {
  copy_rows(x, indices, out, stream, "gather_rows");
}

} // namespace troupe::cuda
