// The custom one-shot all-reduce's kernel (kernels/cuda/custom_all_reduce.hpp says when it runs). Its CPU twin is
// the thread communicator's sum (kernels/cpu/thread_communicator.cpp): f32 accumulation in rank order, rounded
// once, so both give the same bits on every rank.
//
// One kernel per call, the same grid on every rank; block b of each rank handles the same 16-byte units:
//   1. copies its units of the input into this rank's buffer;
//   2. meets block b of every rank (start barrier): writes the next count into each peer's slot for it with
//      st.release.sys (ordering its copies before the flag, at system scope, so a peer GPU sees them) and
//      spins with ld.acquire.sys until every peer's count is in its own slots;
//   3. sums every rank's units in rank order in f32 into the input tensor (loads that bypass L1: .cg);
//   4. meets block b of every rank again (end barrier), so no rank starts its next call, overwriting its
//      buffer, while a peer still reads it: when this rank's kernel ends, every peer block has done reading.
// The counts live in each rank's own buffer and advance in the kernel, so a CUDA graph replays correctly.
// Units are assigned by index alone (never by the tensor's alignment, which may differ between ranks): a rank
// whose tensor is not 16-byte aligned, or the last partial unit, moves those elements one at a time.
// A peer that has not arrived after timeout_ns: the kernel prints which rank it waited for and traps, so the
// process fails with a CUDA error instead of spinning for good.

#include <cstdio>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launchers.hpp"

namespace troupe::cuda {
namespace {

constexpr int kThreads = 512;  // custom_all_reduce_blocks counts blocks of this many threads

// At the start of every rank's buffer. slot[b][p] is written by block b of rank p.
struct signals {
  uint32_t start[kCustomAllReduceMaxBlocks][kCustomAllReduceRanks];
  uint32_t end[kCustomAllReduceMaxBlocks][kCustomAllReduceRanks];
  uint32_t count[kCustomAllReduceMaxBlocks];  // the barriers this rank's block b has passed
};
static_assert(sizeof(signals) <= kCustomAllReduceSignalBytes, "the signals must fit before the data");

struct params {
  signals* sig[kCustomAllReduceRanks];
  const uint4* data_of[kCustomAllReduceRanks];  // every rank's data, as mapped here
  uint4* mine;                                  // this rank's
  void* data;                                   // the tensor summed in place
  int64_t n;                                    // its elements
  uint64_t timeout_ns;
  int rank;
};

__device__ __forceinline__ uint32_t load_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void store_release(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%1], %0;" ::"r"(v), "l"(p) : "memory");
}
__device__ __forceinline__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Spins until *slot holds `count`; traps after timeout_ns (0: never).
__device__ void wait_for(const uint32_t* slot, uint32_t count, const params& p, int peer, const char* barrier) {
  if (load_acquire(slot) == count) return;
  const uint64_t begin = global_ns();
  for (uint32_t polls = 1; load_acquire(slot) != count; ++polls) {
    if (p.timeout_ns == 0 || (polls & 1023) != 0) continue;
    const uint64_t waited = global_ns() - begin;
    if (waited > p.timeout_ns) {
      printf("troupe custom all-reduce: rank %d waited %.0f s for rank %d at the %s barrier (block %d): the peer died "
             "or stopped entering collectives; trapping\n",
             p.rank, waited * 1e-9, peer, barrier, int(blockIdx.x));
      __trap();
    }
  }
}

// Block b of this rank meets block b of every rank. The __syncthreads before orders every thread's accesses
// before the release; the one after holds every thread until all peers are there.
template <int N> __device__ __forceinline__ void meet(const params& p, bool at_end) {
  __syncthreads();
  signals* self = p.sig[p.rank];
  const uint32_t count = self->count[blockIdx.x] + 1;
  if (threadIdx.x < N) {
    signals* peer = p.sig[threadIdx.x];
    store_release(at_end ? &peer->end[blockIdx.x][p.rank] : &peer->start[blockIdx.x][p.rank], count);
    wait_for(at_end ? &self->end[blockIdx.x][threadIdx.x] : &self->start[blockIdx.x][threadIdx.x], count, p,
             threadIdx.x, at_end ? "end" : "start");
  }
  __syncthreads();
  if (threadIdx.x == 0) self->count[blockIdx.x] = count;
}

// Element j of a 16-byte unit of T, and T's bits.
template <class T> __device__ __forceinline__ float element(const uint4& u, int j) {
  const uint32_t w = reinterpret_cast<const uint32_t*>(&u)[j * int(sizeof(T)) / 4];
  if constexpr (sizeof(T) == 4) return __uint_as_float(w);
  else {
    const unsigned short h = static_cast<unsigned short>((j & 1) ? w >> 16 : w & 0xffffu);
    if constexpr (std::is_same_v<T, __half>) return __half2float(__ushort_as_half(h));
    else return __bfloat162float(__ushort_as_bfloat16(h));
  }
}
template <class T> __device__ __forceinline__ uint32_t bits(T x) {
  if constexpr (sizeof(T) == 4) return __float_as_uint(x);
  else if constexpr (std::is_same_v<T, __half>) return __half_as_ushort(x);
  else return __bfloat16_as_ushort(x);
}

template <class T, int N> __global__ void __launch_bounds__(kThreads) custom_all_reduce_kernel(params p) {
  constexpr int V = 16 / sizeof(T);
  const int64_t units = (p.n + V - 1) / V;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const bool aligned = (reinterpret_cast<uintptr_t>(p.data) & 15) == 0;
  T* data = static_cast<T*>(p.data);

  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units; u += stride) {
    const int64_t first = u * V;
    if (aligned && first + V <= p.n) p.mine[u] = reinterpret_cast<const uint4*>(data)[u];
    else
      for (int64_t i = first; i < p.n && i < first + V; ++i) reinterpret_cast<T*>(p.mine)[i] = data[i];
  }
  meet<N>(p, false);

  for (int64_t u = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; u < units; u += stride) {
    uint4 in[N];
#pragma unroll
    for (int r = 0; r < N; ++r) in[r] = __ldcg(p.data_of[r] + u);
    float acc[V];
#pragma unroll
    for (int j = 0; j < V; ++j) acc[j] = element<T>(in[0], j);
#pragma unroll
    for (int r = 1; r < N; ++r)
#pragma unroll
      for (int j = 0; j < V; ++j) acc[j] += element<T>(in[r], j);  // rank order, additions only: no FMA
    const int64_t first = u * V;
    if (aligned && first + V <= p.n) {
      uint4 out;
      uint32_t* w = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        if constexpr (sizeof(T) == 4) w[k] = __float_as_uint(acc[k]);
        else w[k] = bits(from_float<T>(acc[2 * k])) | (bits(from_float<T>(acc[2 * k + 1])) << 16);
      }
      reinterpret_cast<uint4*>(data)[u] = out;
    } else {
      for (int64_t i = first; i < p.n && i < first + V; ++i) data[i] = from_float<T>(acc[i - first]);
    }
  }
  meet<N>(p, true);
}

template <class T, int N> void launch_ranks(const params& p, int blocks, cudaStream_t stream) {
  custom_all_reduce_kernel<T, N><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
}

// f(std::integral_constant<int, size>) for a group of 2 to 8 ranks; nothing for other sizes.
template <class F> void with_ranks(int size, F&& f) {
  switch (size) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: break;
  }
}

template <class T> void load_type(int size) {
  with_ranks(size, [](auto n) {
    cudaFuncAttributes attributes{};
    check(cudaFuncGetAttributes(&attributes, custom_all_reduce_kernel<T, decltype(n)::value>), "custom_all_reduce kernel");
  });
}

template <class T> void launch_type(int size, const params& p, int blocks, cudaStream_t stream) {
  with_ranks(size, [&](auto n) { launch_ranks<T, decltype(n)::value>(p, blocks, stream); });
}

} // namespace

void load_custom_all_reduce_kernels(int size) {
  load_type<float>(size);
  load_type<__nv_bfloat16>(size);
  load_type<__half>(size);
}

void launch_custom_all_reduce(const custom_all_reduce_buffers& buffers, void* data, int64_t n, dtype type, int blocks,
                              uint64_t timeout_ns, cudaStream_t stream) {
  if (buffers.size < 2 || buffers.size > kCustomAllReduceRanks || buffers.rank < 0 || buffers.rank >= buffers.size)
    throw std::invalid_argument("cuda custom_all_reduce: needs 2 to " + std::to_string(kCustomAllReduceRanks) +
                                " ranks, got rank " + std::to_string(buffers.rank) + " of " + std::to_string(buffers.size));
  if (blocks < 1 || blocks > kCustomAllReduceMaxBlocks)
    throw std::invalid_argument("cuda custom_all_reduce: needs 1 to " + std::to_string(kCustomAllReduceMaxBlocks) +
                                " blocks, not " + std::to_string(blocks));
  if (n <= 0) return;
  params p{};
  for (int r = 0; r < buffers.size; ++r) {
    p.sig[r] = static_cast<signals*>(buffers.bases[r]);
    p.data_of[r] = reinterpret_cast<const uint4*>(static_cast<const char*>(buffers.bases[r]) + kCustomAllReduceSignalBytes);
  }
  p.mine = const_cast<uint4*>(p.data_of[buffers.rank]);
  p.data = data;
  p.n = n;
  p.timeout_ns = timeout_ns;
  p.rank = buffers.rank;
  dispatch_float(type, "custom_all_reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_type<T>(buffers.size, p, blocks, stream);
  });
  check_launch("custom_all_reduce");
}

} // namespace troupe::cuda
