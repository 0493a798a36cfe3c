// cuda_ops: memory, transfers, and the ops as calls of their launchers on the backend's one stream.

#include "kernels/cuda/cuda_ops.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/launchers.hpp"
#include "runtime/model/fp8_formats.hpp"

namespace troupe {

using cuda::check;

void grow_scratch(cuda_context& ctx, void*& buffer, size_t& bytes, size_t need, const char* op) {
  if (need <= bytes) return;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(ctx.stream, &capturing), op);
  if (capturing != cudaStreamCaptureStatusNone)
    throw std::logic_error(std::string("cuda ") + op + ": its scratch must grow inside a graph capture; run the "
                           "largest step once before capturing (model::warm_up does)");
  check(cudaStreamSynchronize(ctx.stream), op);
  // A live graph may hold the old buffer's address (linear_int4's split-K partials, captured with fewer splits where the
  // scratch could not grow inside the capture): then it is kept, not freed, so that the graph never writes freed memory.
  const bool held = std::any_of(ctx.graphs.begin(), ctx.graphs.end(), [](cudaGraphExec_t g) { return g != nullptr; });
  if (buffer && held) ctx.retired_scratch.push_back(buffer);
  else if (buffer) check(cudaFree(buffer), op);
  buffer = nullptr;
  check(cudaMalloc(&buffer, need), op);
  bytes = need;
}

cuda_context::~cuda_context() {
  // Teardown errors are not reported: a destructor must not throw, and the process is usually ending.
  if (const std::string r = profiler.report(); !r.empty()) std::fputs(r.c_str(), stderr);
  cudaSetDevice(device);
  if (stream) cudaStreamSynchronize(stream);
  for (auto& [key, plan] : plans) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    cublasLtMatmulDescDestroy(plan.desc);
  }
  for (cudaGraphExec_t g : graphs)
    if (g) cudaGraphExecDestroy(g);
  for (void* p : retired_scratch) cudaFree(p);
  if (int4_scratch) cudaFree(int4_scratch);
  if (fp8_scratch) cudaFree(fp8_scratch);
  if (fp8_products) cudaFree(fp8_products);
  if (lt) cublasLtDestroy(lt);
  cudaFree(workspace);
  cudaFree(attention_workspace);
  cudaFree(staging);
  if (stream) cudaStreamDestroy(stream);
}

cuda_ops::cuda_ops(int device) : ctx_(std::make_unique<cuda_context>()) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "no usable CUDA device");
  if (device < 0 || device >= count)
    throw std::runtime_error("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
                             " found)");
  ctx_->device = device;
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaDeviceGetAttribute(&ctx_->sm_count, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  check(cudaStreamCreateWithFlags(&ctx_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (cublasLtCreate(&ctx_->lt) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("CUDA: cublasLtCreate failed");
  ctx_->workspace_bytes = size_t{32} << 20;  // what cuBLAS recommends for Hopper
  check(cudaMalloc(&ctx_->workspace, ctx_->workspace_bytes), "cuBLASLt workspace");
  ctx_->staging_floats = size_t{16} << 20;
  check(cudaMalloc(&ctx_->staging, ctx_->staging_floats * sizeof(float)), "upload staging buffer");
  // 64 MiB: a decode step of 256 sequences × 28 heads × 128 dims splits its context into up to 17 partitions.
  ctx_->attention_workspace_floats = int64_t{16} << 20;
  check(cudaMalloc(&ctx_->attention_workspace, size_t(ctx_->attention_workspace_floats) * sizeof(float)),
        "attention workspace");
}

cuda_ops::~cuda_ops() = default;

device_buffer cuda_ops::alloc(dtype type, std::initializer_list<int64_t> shape) {
  tensor t(nullptr, type, shape);
  const size_t bytes = std::max<size_t>(t.num_bytes(), 1);
  check(cudaSetDevice(ctx_->device), "cudaSetDevice");
  const cudaError_t e = cudaMalloc(&t.data, bytes);
  if (e == cudaErrorMemoryAllocation) {  // not sticky: the device goes on; the caller says what did not fit
    cudaGetLastError();
    throw std::bad_alloc();
  }
  check(e, ("allocating " + std::to_string(bytes) + " bytes").c_str());
  check(cudaMemsetAsync(t.data, 0, bytes, ctx_->stream), "cudaMemsetAsync");
  const int device = ctx_->device;
  return device_buffer(t, [device](void* p) {
    cudaSetDevice(device);
    cudaFree(p);  // cudaFree waits for the device, so no queued op still uses p
  });
}

void cuda_ops::upload(const tensor& dst, std::span<const float> src) {
  if (static_cast<int64_t>(src.size()) != dst.numel()) throw std::invalid_argument("cuda upload: size mismatch");
  check(cudaSetDevice(ctx_->device), "cudaSetDevice");
  switch (dst.type) {
    case dtype::f32:
      check(cudaMemcpyAsync(dst.data, src.data(), src.size_bytes(), cudaMemcpyHostToDevice, ctx_->stream), "upload");
      break;
    case dtype::f16:
    case dtype::bf16:
      // Through the fp32 staging buffer, converted on the device, a chunk at a time.
      for (size_t begin = 0; begin < src.size(); begin += ctx_->staging_floats) {
        const size_t count = std::min(ctx_->staging_floats, src.size() - begin);
        check(cudaMemcpyAsync(ctx_->staging, src.data() + begin, count * sizeof(float), cudaMemcpyHostToDevice,
                              ctx_->stream),
              "upload");
        cuda::launch_convert_from_f32(ctx_->staging, dst, static_cast<int64_t>(begin), static_cast<int64_t>(count),
                                      ctx_->stream);
      }
      break;
    case dtype::i32: {
      std::vector<int32_t> v(src.begin(), src.end());
      upload_raw(dst, v.data());
      break;
    }
    case dtype::i64: {
      std::vector<int64_t> v(src.begin(), src.end());
      upload_raw(dst, v.data());
      break;
    }
    default: throw std::invalid_argument("cuda upload: unsupported dtype " + std::string(troupe::name(dst.type)));
  }
  // The staging buffer and the host vectors are reused or freed on return.
  check(cudaStreamSynchronize(ctx_->stream), "upload");
}

void cuda_ops::upload_raw(const tensor& dst, const void* src) {
  op_scope p(ctx_->profiler, op_profiler::copy, ctx_->stream, "upload_raw");
  // From pageable memory the copy returns once src has been read, so src may be reused at once.
  check(cudaMemcpyAsync(dst.data, src, dst.num_bytes(), cudaMemcpyHostToDevice, ctx_->stream), "upload_raw");
}

void cuda_ops::download(std::span<float> dst, const tensor& src) {
  if (static_cast<int64_t>(dst.size()) != src.numel()) throw std::invalid_argument("cuda download: size mismatch");
  if (src.type == dtype::f32) {
    {
      op_scope p(ctx_->profiler, op_profiler::copy, ctx_->stream, "download");
      check(cudaMemcpyAsync(dst.data(), src.data, dst.size_bytes(), cudaMemcpyDeviceToHost, ctx_->stream), "download");
    }
    check(cudaStreamSynchronize(ctx_->stream), "download");
    return;
  }
  std::vector<std::byte> raw(src.num_bytes());
  check(cudaMemcpyAsync(raw.data(), src.data, raw.size(), cudaMemcpyDeviceToHost, ctx_->stream), "download");
  check(cudaStreamSynchronize(ctx_->stream), "download");
  switch (src.type) {
    case dtype::f16:
    case dtype::bf16:
      convert_to_f32(src.type, raw, dst);
      break;
    case dtype::i32:
      for (size_t i = 0; i < dst.size(); ++i) {
        int32_t v;
        std::memcpy(&v, raw.data() + i * 4, 4);
        dst[i] = static_cast<float>(v);
      }
      break;
    case dtype::i64:
      for (size_t i = 0; i < dst.size(); ++i) {
        int64_t v;
        std::memcpy(&v, raw.data() + i * 8, 8);
        dst[i] = static_cast<float>(v);
      }
      break;
    default: throw std::invalid_argument("cuda download: unsupported dtype " + std::string(troupe::name(src.type)));
  }
}

void cuda_ops::download_raw(void* dst, const tensor& src) {
  {
    op_scope p(ctx_->profiler, op_profiler::copy, ctx_->stream, "download_raw");
    check(cudaMemcpyAsync(dst, src.data, src.num_bytes(), cudaMemcpyDeviceToHost, ctx_->stream), "download_raw");
  }
  check(cudaStreamSynchronize(ctx_->stream), "download_raw");
}

void cuda_ops::synchronize() { check(cudaStreamSynchronize(ctx_->stream), "synchronize"); }

// Every step starts here, on whatever thread runs it (a shard actor's, a test's): kernels launched on a thread
// whose current device is another GPU's fail, so a rank on GPU 1 makes its device current first.
void cuda_ops::begin_step(const std::string& label) {
  make_current(*ctx_);
  ctx_->profiler.begin_step(label);
}

std::shared_ptr<void> cuda_ops::alloc_host(size_t bytes) {
  void* p = nullptr;
  check(cudaSetDevice(ctx_->device), "cudaSetDevice");
  check(cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault), "page-locked host memory");
  return std::shared_ptr<void>(p, [](void* q) { cudaFreeHost(q); });
}

// Events inside a graph would time the recording, not the replay: profiled steps run eagerly.
bool cuda_ops::graphs_available() const { return !ctx_->profiler.enabled(); }

bool cuda_ops::begin_capture() {
  if (!graphs_available()) return false;
  // Thread-local: other threads' CUDA calls (another shard's allocations) do not break this capture.
  check(cudaStreamBeginCapture(ctx_->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  return true;
}

int32_t cuda_ops::end_capture() {
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(ctx_->stream, &graph), "cudaStreamEndCapture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(e, "cudaGraphInstantiate");
  // Uploaded now, not at its first launch: that upload may wait on the device, and ranks sharing one GPU whose
  // custom all-reduce kernels spin for each other's launches would then wait for good (the 4-rank graph check
  // on the H200, 2026-12-05: a rank never arrived within 60 s). Also takes the upload out of the first step.
  check(cudaGraphUpload(exec, ctx_->stream), "cudaGraphUpload");
  check(cudaStreamSynchronize(ctx_->stream), "cudaGraphUpload");
  ctx_->graphs.push_back(exec);
  return static_cast<int32_t>(ctx_->graphs.size() - 1);
}

void cuda_ops::replay(int32_t graph) {
  if (graph < 0 || graph >= static_cast<int32_t>(ctx_->graphs.size()) || !ctx_->graphs[static_cast<size_t>(graph)])
    throw std::invalid_argument("cuda replay: no graph " + std::to_string(graph));
  check(cudaGraphLaunch(ctx_->graphs[static_cast<size_t>(graph)], ctx_->stream), "cudaGraphLaunch");
}

void cuda_ops::release_graph(int32_t graph) {
  if (graph < 0 || graph >= static_cast<int32_t>(ctx_->graphs.size())) return;
  cudaGraphExec_t& g = ctx_->graphs[static_cast<size_t>(graph)];
  if (g) check(cudaGraphExecDestroy(g), "cudaGraphExecDestroy");
  g = nullptr;
}

void cuda_ops::end_step() {
  if (!ctx_->profiler.enabled()) return;
  synchronize();
  ctx_->profiler.end_step();
}

void cuda_ops::embedding(const tensor& ids, const tensor& table, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "embedding");
  cuda::launch_embedding(ids, table, out, ctx_->stream);
}

void cuda_ops::embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "embedding_shard");
  cuda::launch_embedding_shard(ids, table, first_id, out, ctx_->stream);
}

void cuda_ops::rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "rms_norm");
  cuda::launch_rms_norm(x, weight, eps, out, ctx_->stream);
}

void cuda_ops::add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "add_rms_norm");
  cuda::launch_add_rms_norm(x, residual, weight, eps, ctx_->stream);
}

void cuda_ops::add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                                const tensor& input_scale, const fp8_activations& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "add_rms_norm_fp8");
  cuda::launch_add_rms_norm_fp8(x, residual, weight, eps, input_scale, out, ctx_->stream);
}

void cuda_ops::qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
                       float eps) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "qk_norm");
  cuda::launch_qk_norm(qkv, q_weight, k_weight, shape, eps, ctx_->stream);
}

namespace {
// "K x N" of a weight [N, K], for the profile's op names.
std::string linear_shape(const tensor& weight) {
  return std::to_string(weight.dim(1)) + "x" + std::to_string(weight.dim(0));
}
// 2 · rows · K · N of x [rows, K] times a weight of n outputs.
double linear_flop(const tensor& x, int64_t n) { return 2.0 * static_cast<double>(x.dim(0)) * x.dim(1) * n; }
} // namespace

void cuda_ops::linear(const tensor& x, const tensor& weight, const tensor& bias, const tensor& out, bool accumulate) {
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear");
  cublaslt_linear(*ctx_, x, weight, bias, out, accumulate);
  if (p.on()) p.rename("linear " + linear_shape(weight), linear_flop(x, weight.dim(0)));
}

void cuda_ops::linear_int4(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear_int4");
  cuda::launch_linear_int4(*ctx_, x, w, bias, out, int4_fp8_rows());
  if (p.on())
    p.rename("linear_int4 " + std::to_string(x.dim(1)) + "x" + std::to_string(w.qweight.dim(0)),
             linear_flop(x, w.qweight.dim(0)));
}

bool cuda_ops::linear_int4_silu(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) {
  // A step in the FP8 form (int4_fp8_rows) is two ops, as on the CPU: the fused kernel is the W4A16 product's.
  if (int4_fp8_step(x.dim(0))) return false;
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear_int4_silu");
  const bool fused = cuda::launch_linear_int4_silu(*ctx_, x, w, bias, out);
  if (p.on())
    p.rename("linear_int4_silu " + std::to_string(x.dim(1)) + "x" + std::to_string(w.qweight.dim(0)),
             fused ? linear_flop(x, w.qweight.dim(0)) : 0.0);
  return fused;
}

void cuda_ops::linear_fp8(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear_fp8");
  const char* path = cuda::launch_linear_fp8(*ctx_, x, w, bias, out, x.dim(0) <= fp8_w16_rows());
  if (p.on()) p.rename("linear_fp8 " + linear_shape(w.weight) + " " + path, linear_flop(x, w.weight.dim(0)));
}

bool cuda_ops::linear_fp8_silu(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear_fp8_silu");
  const bool fused = cuda::launch_linear_fp8_silu(*ctx_, x, w, bias, out, x.dim(0) <= fp8_w16_rows());
  if (p.on())
    p.rename("linear_fp8_silu " + linear_shape(w.weight) + (fused ? " qgemv_silu" : " (not taken)"),
             fused ? linear_flop(x, w.weight.dim(0)) : 0.0);
  return fused;
}

void cuda_ops::linear_fp8_quantized(const fp8_activations& x, const fp8_device_weight& w, const tensor& bias,
                                    const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::gemm, ctx_->stream, "linear_fp8_quantized");
  const char* path = cuda::launch_linear_fp8_quantized(*ctx_, x, w, bias, out);
  if (p.on())
    p.rename("linear_fp8 " + linear_shape(w.weight) + " " + path + " (quantized before)", linear_flop(x.codes, w.weight.dim(0)));
}

void cuda_ops::rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin,
                             const tensor& slot_mapping, const tensor& k_cache, const tensor& v_cache,
                             const attention_shape& shape) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "rope_write_kv");
  cuda::launch_rope_write_kv(qkv, positions, cos_sin, slot_mapping, k_cache, v_cache, shape, ctx_->stream);
}

void cuda_ops::paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                               const attention_metadata& meta, const attention_shape& shape, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::attention, ctx_->stream,
             meta.max_query_len == 1 ? "paged_attention decode" : "paged_attention prefill or mixed");
  cuda::launch_paged_attention(qkv, k_cache, v_cache, meta, shape, out, ctx_->attention_workspace,
                               ctx_->attention_workspace_floats, ctx_->stream);
}

void cuda_ops::silu_and_mul(const tensor& x, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "silu_and_mul");
  cuda::launch_silu_and_mul(x, out, ctx_->stream);
}

void cuda_ops::silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "silu_and_mul_fp8");
  cuda::launch_silu_and_mul_fp8(x, input_scale, out, ctx_->stream);
}

void cuda_ops::fill_random(const random_slice& s, const tensor& out) {
  make_current(*ctx_);
  cuda::launch_fill_random(s, out, ctx_->stream);
}

void cuda_ops::gather_rows(const tensor& x, const tensor& indices, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "gather_rows");
  cuda::launch_gather_rows(x, indices, out, ctx_->stream);
}

void cuda_ops::copy_columns(const tensor& x, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "copy_columns");
  cuda::launch_copy_columns(x, out, ctx_->stream);
}

void cuda_ops::argmax(const tensor& logits, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "argmax");
  cuda::launch_argmax(logits, out, ctx_->stream);
}

void cuda_ops::sample(const tensor& logits, const sampling_batch& batch, const tensor& out) {
  op_scope p(ctx_->profiler, op_profiler::other, ctx_->stream, "sample");
  cuda::launch_sample(logits, batch, out, ctx_->stream);
}

std::pair<int64_t, int64_t> cuda_ops::memory_info() const {
  check(cudaSetDevice(ctx_->device), "cudaSetDevice");
  size_t free = 0, total = 0;
  check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return {static_cast<int64_t>(free), static_cast<int64_t>(total)};
}

std::string cuda_ops::device_description() const {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ctx_->device), "cudaGetDeviceProperties");
  return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs";
}

} // namespace troupe
