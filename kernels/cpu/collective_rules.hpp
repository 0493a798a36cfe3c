#pragma once
// What every communicator decides the same way, so that a tensor-parallel forward gives the same bits and
// the same errors whichever transport carries it: when the ranks' calls disagree, and how a sum over ranks
// is rounded. Threads, MPI and ranks sharing one GPU use all of it; NCCL checks each rank's own call.
//
// NOTE: its own small library (troupe_collective_rules), since the CUDA library uses it too and must not
// link troupe_kernels, which links the CUDA library.

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.hpp"

namespace troupe {

enum class collective { all_reduce_sum, all_gather_last_dim, broadcast };

// "all_reduce_sum", "all_gather_last_dim", "broadcast".
const char* collective_name(collective c);

// What one rank brings to a collective: its shapes, dtype and root (tensor data pointers are not looked at,
// so a call can be copied to another process as plain bytes).
struct collective_call {
  collective op{};
  tensor in;   // the tensor reduced, broadcast, or gathered from
  tensor out;  // all_gather_last_dim's output
  int root = 0;
  bool out_overlaps_in = false;  // all_gather_last_dim: `out` shares bytes with `in` on this rank
};

// The call a rank makes, with out_overlaps_in worked out from its pointers.
collective_call make_collective_call(collective op, const tensor& in, const tensor& out, int root);

// The reason rank `rank`'s own call is wrong in a group of `size`, whatever the other ranks pass, or "": a sum
// of a dtype it cannot add, a root outside the group, a gather's output of the wrong shape or overlapping its
// input. What a rank can check alone (NCCL's communicator, which exchanges no calls).
std::string collective_call_error(const collective_call& call, int rank, int size);

// The reason every rank must throw std::invalid_argument, or "" when the ranks agree and the shapes fit.
// `calls` holds every rank's call, element r being rank r; every rank that reads the same calls reaches the
// same verdict.
std::string collective_mismatch(const std::vector<collective_call>& calls);

// Writes elements [begin, end) of the element-wise sum of `inputs` (one pointer per rank, in rank order)
// into `dst`, adding in rank order (rank 0 + rank 1 + ...) in f32 and rounding 16-bit types once at the end.
// Needs f32, bf16 or f16; `dst` may be one of the inputs.
void sum_in_rank_order(const std::vector<const void*>& inputs, dtype type, int64_t begin, int64_t end, void* dst);

} // namespace troupe
