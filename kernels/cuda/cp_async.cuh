#pragma once
// cp.async (sm_80+): 16-byte copies global → shared that run while the thread goes on, in commit groups a
// thread waits for (paged_attention_mma.cu's K/V tiles, the decode GEMMs' weight stages); and the bulk copies of
// sm_90 (linear_fp8.cu's gemv_bulk).

#include <cstdint>

namespace troupe::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global → shared address dst (smem_addr), asynchronously; with valid false the destination is zero-filled.
__device__ __forceinline__ void cp_async16_to(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
// The same to a pointer into shared memory.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) { cp_async16_to(smem_addr(dst), src, valid); }
// Closes the group of the copies this thread issued since the last commit.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// A ring of Stages buffers that stages 0 .. stages - 1 pass through, issue(s) copying stage s into buffer
// s % Stages (the decode GEMMs of linear_fp8.cu and linear_int4.cu). First stages 0 .. Stages - 2, one commit group
// each, empty past the last stage, so that the group count stays the one cp_async_wait counts on.
template <int Stages, class Issue> __device__ __forceinline__ void cp_async_ring_start(int stages, Issue&& issue) {
#pragma unroll
  for (int s = 0; s < Stages - 1; ++s) {
    if (s < stages) issue(s);
    cp_async_commit();
  }
}
// Stage s's turn: waits until every thread's copies of it have landed (and every thread is done with stage s - 1's
// buffer), then issues stage s + Stages - 1 into that buffer.
template <int Stages, class Issue>
__device__ __forceinline__ void cp_async_ring_next(int s, int stages, Issue&& issue) {
  cp_async_wait<Stages - 2>();
  __syncthreads();
  if (s + Stages - 1 < stages) issue(s + Stages - 1);
  cp_async_commit();
}

// The bulk copy engine (sm_90): one thread copies a contiguous run of bytes global → shared without registers or
// per-thread load slots, its completion counted in bytes on a shared-memory mbarrier (PTX ISA: cp.async.bulk,
// mbarrier). Sizes and both addresses multiples of 16.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}
// Makes barriers just initialized visible to the copy engine (before the first copy that completes on them).
__device__ __forceinline__ void mbarrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// This thread's arrival, and `bytes` more that the phase waits for.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// Waits until the barrier's phase of parity `parity` (0 for its first phase, 1 for the next, ...) has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      "  .reg .pred done;\n"
      "WAIT_%=:\n"
      "  mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "  @!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
// `bytes` from global src to shared dst, completing on bar.
__device__ __forceinline__ void bulk_copy_to_shared(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                   smem_addr(dst)),
               "l"(src), "r"(bytes), "r"(smem_addr(bar))
               : "memory");
}
// Orders this thread's earlier shared-memory accesses before the copy engine's next writes there (a buffer's reuse).
__device__ __forceinline__ void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

} // namespace troupe::cuda
