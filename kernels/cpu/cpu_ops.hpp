#pragma once
// The CPU reference backend: fp32 arithmetic, simple and obviously right; the oracle every other
// backend is checked against. Tensors live in host memory.

#include "kernels/ops.hpp"

namespace troupe {

class cpu_ops : public ops {
public:
  std::string name() const override { return "cpu"; }

  device_buffer alloc(dtype type, std::initializer_list<int64_t> shape) override;
  void upload(const tensor& dst, std::span<const float> src) override;
  void upload_raw(const tensor& dst, const void* src) override;
  void download(std::span<float> dst, const tensor& src) override;
  void download_raw(void* dst, const tensor& src) override;
  void synchronize() override {}

  void embedding(const tensor& ids, const tensor& table, const tensor& out) override;
  void embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out) override;
  void rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out) override;
  void add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps) override;
  void add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                        const tensor& input_scale, const fp8_activations& out) override;
  void qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
               float eps) override;
  void linear(const tensor& x, const tensor& weight, const tensor& bias, const tensor& out,
              bool accumulate) override;
  void linear_int4(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) override;
  void linear_fp8(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) override;
  void linear_fp8_quantized(const fp8_activations& x, const fp8_device_weight& w, const tensor& bias,
                            const tensor& out) override;
  void rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin,
                     const tensor& slot_mapping, const tensor& k_cache, const tensor& v_cache,
                     const attention_shape& shape) override;
  void paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                       const attention_metadata& meta, const attention_shape& shape,
                       const tensor& out) override;
  void silu_and_mul(const tensor& x, const tensor& out) override;
  void silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out) override;
  void fill_random(const random_slice& s, const tensor& out) override;
  void gather_rows(const tensor& x, const tensor& indices, const tensor& out) override;
  void copy_columns(const tensor& x, const tensor& out) override;
  void argmax(const tensor& logits, const tensor& out) override;
  // Rebuilds each row's sample_request from the batch and runs the CPU sampler's steps on it.
  void sample(const tensor& logits, const sampling_batch& batch, const tensor& out) override;
};

} // namespace troupe
