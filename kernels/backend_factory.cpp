#include "kernels/backend_factory.hpp"

#include "kernels/cpu/cpu_ops.hpp"
#include "runtime/error.hpp"

#if TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_ops.hpp"
#else
#include "kernels/cuda/custom_all_reduce.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#endif

namespace troupe {

#if !TROUPE_HAVE_CUDA
// Without CUDA the GPU communicators' entry points still link (their headers include no CUDA), so
// backend-neutral code may name them; they refuse at run time.
namespace {
[[noreturn]] void no_cuda(const std::string& what) {
  throw user_error(what + ": this troupe was built without CUDA (no nvcc at build time)");
}
} // namespace

bool nccl_available() { return false; }
nccl_unique_id make_nccl_unique_id() { no_cuda("the NCCL communicator"); }
std::unique_ptr<communicator> make_nccl_communicator(const nccl_unique_id&, int, int, ops&) {
  no_cuda("the NCCL communicator");
}
std::string nccl_async_error(communicator&) {
  throw std::invalid_argument("nccl_async_error: the communicator is not NCCL's (this build has no CUDA)");
}
std::vector<std::unique_ptr<communicator>> make_shared_gpu_communicators(const std::vector<ops*>&) {
  no_cuda("the shared-GPU communicator");
}
std::unique_ptr<communicator> make_custom_all_reduce(std::unique_ptr<communicator> wrapped, ops&, const exchange_strings&,
                                                     const custom_all_reduce_options& options, std::string* why_not,
                                                     std::shared_ptr<std::barrier<>>) {
  std::string why = custom_all_reduce_unused(options, wrapped->size());
  if (why_not) *why_not = why.empty() ? "this troupe was built without CUDA" : why;
  return wrapped;
}
int64_t custom_all_reduce_calls(const communicator&) { return -1; }
#endif

std::vector<std::string> available_backends() {
#if TROUPE_HAVE_CUDA
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

std::unique_ptr<ops> make_backend(const std::string& name, int device) {
  if (name == "cpu") return std::make_unique<cpu_ops>();
#if TROUPE_HAVE_CUDA
  if (name == "cuda") {
    try {
      return std::make_unique<cuda_ops>(device);
    } catch (const std::runtime_error& e) {
      throw user_error(std::string("--backend cuda: ") + e.what());
    }
  }
#else
  if (name == "cuda") no_cuda("--backend cuda");
#endif
  std::string names;
  for (const auto& b : available_backends()) names += b + ", ";
  throw user_error("--backend must be one of " + names + "or null, got '" + name + "'");
}

int device_count(const std::string& name) {
#if TROUPE_HAVE_CUDA
  int n = 0;
  if (name == "cuda" && cudaGetDeviceCount(&n) == cudaSuccess) return n;
#endif
  (void)name;
  return 0;
}

dtype activation_dtype(const std::string& backend, const std::string& requested) {
  dtype t;
  if (requested == "auto") t = backend == "cuda" ? dtype::bf16 : dtype::f32;
  else if (requested == "bfloat16" || requested == "bf16") t = dtype::bf16;
  else if (requested == "float16" || requested == "fp16" || requested == "half") t = dtype::f16;
  else if (requested == "float32" || requested == "fp32" || requested == "float") t = dtype::f32;
  else throw user_error("--dtype must be auto, bfloat16, float16 or float32, got '" + requested + "'");
  if (backend == "cpu" && t != dtype::f32)
    throw user_error("--dtype " + requested + ": the CPU backend computes in float32 only");
  return t;
}

std::optional<std::pair<int64_t, int64_t>> device_memory(const ops& backend) {
#if TROUPE_HAVE_CUDA
  if (const auto* gpu = dynamic_cast<const cuda_ops*>(&backend)) return gpu->memory_info();
#endif
  (void)backend;
  return std::nullopt;
}

} // namespace troupe
