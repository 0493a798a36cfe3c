#pragma once
// The CUDA backend: one device, one stream. Floating tensors may be bf16, f16 or f32; each op runs in
// the dtype of its tensors (arithmetic and accumulation in fp32, results rounded once). GEMMs go
// through cuBLASLt (fp32 accumulation; fp32 GEMMs without TF32, so they match the CPU to 1e-4).
//
// NOTE: no CUDA header here: the stream and library handles live in cuda_context (cuda_context.hpp).

#include <cstdint>
#include <memory>
#include <utility>

#include "kernels/ops.hpp"

namespace troupe {

struct cuda_context;

class cuda_ops final : public ops {
public:
  // Binds to `device` and makes a stream and a cuBLASLt handle. Throws std::runtime_error when no usable
  // GPU is there.
  explicit cuda_ops(int device = 0);
  ~cuda_ops() override;
  std::string name() const override { return "cuda"; }

  device_buffer alloc(dtype type, std::initializer_list<int64_t> shape) override;
  void upload(const tensor& dst, std::span<const float> src) override;
  void upload_raw(const tensor& dst, const void* src) override;
  // Converts f32, f16, bf16, i32 and i64 tensors to float values.
  void download(std::span<float> dst, const tensor& src) override;
  void download_raw(void* dst, const tensor& src) override;
  void synchronize() override;
  void begin_step(const std::string& label) override;
  void end_step() override;
  std::shared_ptr<void> alloc_host(size_t bytes) override;
  bool begin_capture() override;
  bool graphs_available() const override;
  int32_t end_capture() override;
  void replay(int32_t graph) override;
  void release_graph(int32_t graph) override;

  void embedding(const tensor& ids, const tensor& table, const tensor& out) override;
  void embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out) override;
  void rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out) override;
  void add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps) override;
  void add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                        const tensor& input_scale, const fp8_activations& out) override;
  void qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
               float eps) override;
  void linear(const tensor& x, const tensor& weight, const tensor& bias, const tensor& out, bool accumulate) override;
  void linear_int4(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) override;
  // Weights 2m and 2m + 1 of a word in nibbles m and m + 4 (linear_int4.cu: the kernels' pairs are x's).
  int int4_nibble(int i) const override { return int4_pair_nibble(i); }
  bool linear_int4_silu(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) override;
  bool linear_fp8_silu(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) override;
  void linear_fp8(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) override;
  void linear_fp8_quantized(const fp8_activations& x, const fp8_device_weight& w, const tensor& bias,
                            const tensor& out) override;
  void rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin, const tensor& slot_mapping,
                     const tensor& k_cache, const tensor& v_cache, const attention_shape& shape) override;
  void paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache, const attention_metadata& meta,
                       const attention_shape& shape, const tensor& out) override;
  void silu_and_mul(const tensor& x, const tensor& out) override;
  void silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out) override;
  void fill_random(const random_slice& s, const tensor& out) override;
  void gather_rows(const tensor& x, const tensor& indices, const tensor& out) override;
  void copy_columns(const tensor& x, const tensor& out) override;

  void argmax(const tensor& logits, const tensor& out) override;
  void sample(const tensor& logits, const sampling_batch& batch, const tensor& out) override;

  // Free and total bytes of the device's memory.
  std::pair<int64_t, int64_t> memory_info() const;
  // "NVIDIA H100 80GB HBM3, sm_90, 132 SMs"
  std::string device_description() const;
  // Its device, stream and handles, for the rest of the CUDA backend (the communicators enqueue on its stream).
  cuda_context& context() { return *ctx_; }

private:
  std::unique_ptr<cuda_context> ctx_;
};

} // namespace troupe
