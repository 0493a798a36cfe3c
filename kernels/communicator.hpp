#pragma once
// The collectives a tensor-parallel forward needs, over a fixed group of ranks (one per shard): the
// all-reduce after o_proj and down_proj, the all-gather of vocabulary-split logits, the broadcast of
// inputs from rank 0. One object per rank, made with whatever its transport needs (threads: the shared
// group; NCCL: the unique id and the backend's stream; MPI: the MPI communicator), so the calls below take
// only tensors — as ncclAllReduce / MPI_Allreduce take buffers, and the stream lives in the object.
//
// NOTE: a collective is entered by every rank of the group, in the same order, with the same shapes and
// dtype (and root); it returns on each rank once that rank's result is in place.

#include "kernels/tensor.hpp"

namespace troupe {

class communicator {
public:
  virtual ~communicator() = default;

  // This rank's index in the group, 0 <= rank() < size().
  virtual int rank() const = 0;
  // The number of ranks in the group (the tensor-parallel size).
  virtual int size() const = 0;
  // Whether the collectives only enqueue work on the backend's stream (NCCL), so a CUDA graph can record
  // them; false where they wait on the host (threads, MPI).
  virtual bool capturable() const { return false; }

  // Sums `t` element-wise over every rank, in place; the same bits on every rank. Needs f32, bf16 or f16
  // (16-bit types accumulate in f32 and round once). Throws std::invalid_argument on every rank when the
  // ranks disagree on shape or dtype.
  virtual void all_reduce_sum(const tensor& t) = 0;  // [rows, cols]

  // Concatenates every rank's `in` along the last dimension, in rank order, into `out` — the logits of a
  // vocabulary-split LM head: [rows, V/N] on each rank -> [rows, V] on each rank. Needs `out` shaped as
  // `in` with the last dimension times size(), same dtype, not overlapping `in`. Throws
  // std::invalid_argument on every rank when any rank's shapes are wrong or disagree.
  virtual void all_gather_last_dim(const tensor& in,    // [rows, cols]
                                   const tensor& out)   // [rows, cols * size()]
      = 0;

  // Copies root's `t` into every other rank's `t`. Throws std::invalid_argument on every rank when the ranks
  // disagree on shape, dtype or root, or root is not a rank.
  virtual void broadcast(const tensor& t, int root) = 0;  // [rows, cols]
};

} // namespace troupe
