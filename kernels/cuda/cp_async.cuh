#pragma once
// cp.async (sm_80+): 16-byte copies global → shared that run while the thread goes on, in commit groups a
// thread waits for (paged_attention_mma.cu's K/V tiles, the decode GEMMs' weight stages).

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

// Orders this thread's earlier generic-proxy shared-memory accesses before the async proxy's next ones (wgmma reading a
// stage that cp.async or plain stores filled; a buffer's reuse).
__device__ __forceinline__ void fence_proxy_async_shared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory mbarriers and the tensor memory accelerator (TMA, sm_90; PTX ISA: mbarrier, cp.async.bulk.tensor), as
// linear_fp8_wgmma.cu's warp-specialized GEMM uses them: a producer thread's 2D tile copies complete on a stage's "full"
// barrier, counted in bytes; consumers arrive on its "empty" barrier when done with the stage.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(arrivals) : "memory");
}
// Makes barriers just initialized visible to the async proxy (before the first copy that completes on them).
__device__ __forceinline__ void mbarrier_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
// This thread's arrival, and `bytes` more that the phase waits for.
__device__ __forceinline__ void mbarrier_arrive_expect_bytes(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// This thread's arrival.
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
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
// The box of a 2D tensor map (a CUtensorMap in kernel parameter space, by its generic address) at coordinates
// (c0 innermost, c1) into shared address dst, completing on bar; rows past the tensor arrive as zeros.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const void* map, int c0, int c1, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
}

} // namespace troupe::cuda
