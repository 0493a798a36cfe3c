#pragma once
// Device helpers shared by the CUDA kernels: error checks, dtype dispatch, conversions to and from
// float, 16-byte vector loads, warp and block reductions. Included only by kernels/cuda/*.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/check.hpp"
#include "kernels/tensor.hpp"

namespace troupe::cuda {

// Calls f(std::type_identity<T>{}) with T the CUDA type of the floating dtype `t`; throws otherwise.
template <class F> void dispatch_float(dtype t, const char* op, F&& f) {
  switch (t) {
    case dtype::f32: f(std::type_identity<float>{}); break;
    case dtype::f16: f(std::type_identity<__half>{}); break;
    case dtype::bf16: f(std::type_identity<__nv_bfloat16>{}); break;
    default: throw std::invalid_argument(std::string("cuda ") + op + ": expects f32, f16 or bf16 tensors");
  }
}

// Programmatic dependent launch (Hopper): lets the next kernel, if launched with the attribute, start its blocks now;
// that kernel waits (pdl_wait) before it reads what this one writes, so calling it first thing is safe. A
// no-op when nothing waits.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
// Waits until the kernels this one depends on have finished and their writes are visible (a no-op unless
// launched with programmatic stream serialization).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

template <class T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float(float x) { return x; }
template <> __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float(float x) { return x; }
template <> __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }

// The gated MLP's activation of one feature, silu(a) · u in f32 (silu_and_mul.cu; the fused 4-bit gate/up kernel,
// linear_int4.cu, makes it the same way for the same bits).
__device__ __forceinline__ float silu_times(float a, float u) { return a / (1.0f + __expf(-a)) * u; }

// N elements moved as one access: with N * sizeof(T) == 16, one 16-byte load or store.
template <class T, int N> struct alignas(sizeof(T) * N) vec {
  T v[N];
};
template <class T, int N> __device__ __forceinline__ vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const vec<T, N>*>(p);
}
template <class T, int N> __device__ __forceinline__ void store_vec(T* p, const vec<T, N>& x) {
  *reinterpret_cast<vec<T, N>*>(p) = x;
}

// 16 bytes read once (weights streamed by the decode GEMMs): not kept in L1.
__device__ __forceinline__ uint4 load_streaming(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// Launches `kernel` as a programmatic dependent (pdl_wait above): its blocks may start while the kernel before it
// finishes, doing what does not depend on that kernel until their pdl_wait. TROUPE_NO_PDL=1 launches plainly.
// launch_dependent_shared gives the kernel `shared_bytes` of dynamic shared memory.
template <class... Params, class... Args>
void launch_dependent_shared(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                             const char* what, Args... args) {
  static const bool pdl = std::getenv("TROUPE_NO_PDL") == nullptr;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = pdl ? 1 : 0;
  check(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...), what);
}
template <class... Params, class... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, const char* what,
                      Args... args) {
  launch_dependent_shared(kernel, grid, block, 0, stream, what, args...);
}

// Raises Kernel's dynamic shared memory limit to `bytes` on the current device, once for each device: the limit
// belongs to a device, and the shards of one process may drive several (a one-time flag for the whole process left
// every device but the first at 48 KiB).
// `bytes` must be the most the kernel is ever launched with: a later launch asking more is refused ("invalid argument").
template <auto Kernel> void allow_shared_memory(size_t bytes, const char* what) {
  static std::atomic<uint64_t> done{0};  // bit d: set on device d (devices past 63: every launch)
  int device = 0;
  check(cudaGetDevice(&device), what);
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit != 0 && (done.load(std::memory_order_relaxed) & bit) != 0) return;
  check(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), what);
  done.fetch_or(bit, std::memory_order_relaxed);
}

// Elements per 16-byte access.
template <class T> constexpr int vec16 = 16 / static_cast<int>(sizeof(T));

// True when every pointer is 16-byte aligned and `elems` elements of T fill whole 16-byte units,
// so rows of `elems` elements can be read with 16-byte vectors.
template <class T> inline bool can_vectorize(int64_t elems, std::initializer_list<const void*> ptrs) {
  if ((elems * static_cast<int64_t>(sizeof(T))) % 16 != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// A reduction over the block by warp_reduce (warp_sum, warp_max); every thread gets the result. Needs blockDim.x a
// multiple of 32, at most 1024. Lanes past the block's warps count 0 (a max is taken of values >= 0 here).
template <class WarpReduce> __device__ __forceinline__ float block_reduce(float x, WarpReduce warp_reduce) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  x = warp_reduce(x);
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  x = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
  return warp_reduce(x);
}
__device__ __forceinline__ float block_sum(float x) { return block_reduce(x, [](float v) { return warp_sum(v); }); }
// The max of values >= 0 (magnitudes).
__device__ __forceinline__ float block_max(float x) { return block_reduce(x, [](float v) { return warp_max(v); }); }

} // namespace troupe::cuda
