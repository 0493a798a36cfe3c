#pragma once
// The op interface the model forward is written over. Each backend (cpu/, cuda/) implements every op
// with the same contract; tests compare backends op by op.
//
// Shapes: T = tokens in the step, S = sequences in the step, H = hidden size, V = vocabulary,
// nH / nKV = query / key-value heads, D = head_dim. The packed qkv row is [q (nH*D) | k (nKV*D) | v (nKV*D)].

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string>

#include "kernels/sampling_batch.hpp"
#include "kernels/tensor.hpp"

namespace troupe {

// Where each sequence's tokens sit in the step and in the paged KV cache.
struct attention_metadata {
  tensor query_start;       // [S + 1] i32: sequence s owns token rows [query_start[s], query_start[s+1])
  tensor seq_lens;          // [S] i32: tokens of context after this step (cached + new)
  tensor block_tables;      // [S, max_blocks_per_seq] i32: physical block of each logical block
  int32_t num_seqs = 0;
  int32_t max_query_len = 0;
  int32_t max_seq_len = 0;
  int32_t sliding_window = 0;  // 0: none; else a query sees only the last `sliding_window` positions
  // Sequences outside [multi_begin, multi_end) have at most one query token (they decode): a backend may launch its
  // work for many-token sequences over this range only (a mixed step's prompt chunks beside hundreds of decodes).
  // The whole batch unless set; set_multi_token_range sets it from the host's query starts.
  int32_t multi_begin = 0;
  int32_t multi_end = INT32_MAX;
};

// meta.multi_begin / multi_end from the step's query starts (host copy, S + 1 entries): the first sequence with two
// query tokens or more, and one past the last (an empty range at 0 when there is none).
inline void set_multi_token_range(attention_metadata& meta, std::span<const int32_t> query_start) {
  meta.multi_begin = meta.multi_end = 0;
  bool any = false;
  for (size_t s = 0; s + 1 < query_start.size(); ++s)
    if (query_start[s + 1] - query_start[s] > 1) {
      if (!any) meta.multi_begin = static_cast<int32_t>(s);
      meta.multi_end = static_cast<int32_t>(s + 1);
      any = true;
    }
}

struct attention_shape {
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;
  float scale = 1.0f;
  // An FP8 KV cache (k_cache / v_cache of type f8_e4m3 or f8_e5m2) holds round(k / k_scale) and
  // round(v / v_scale) (f32_to_f8_e4m3 / _e5m2: nearest even, saturating); attention reads code * scale.
  // Unused for a cache in the activation dtype.
  float k_scale = 1.0f;
  float v_scale = 1.0f;
  // The op after paged_attention (a 4-bit o_proj on CUDA; an FP8 one's quantizer with TROUPE_FP8_ATTN_TRIGGER=1) is
  // launched as a programmatic dependent, which may start while attention runs: the CUDA backend then lets it start
  // early on decode steps of few sequences (attention_settings().trigger). Nothing else reads it.
  bool next_waits = false;
};

// A linear layer's weight in 4 bits (--quantization awq|gptq|rtn), in troupe's own device layout, which
// the loader repacks every checkpoint format into: W[n][k] = (q[n][k] - zeros[n][k / G]) * scales[n][k / G]
// with q in 0..15. qweight [N, K / 8] i32: word j of row n holds q[n][8j .. 8j + 7], q[n][8j + i] in bits
// 4i .. 4i + 3 (lowest nibble first). scales, zeros [N, K / G] in the activation dtype (zeros are whole
// numbers, kept as floats so a symmetric format's 8 and an asymmetric one's zero point look alike).
// G (group_size) divides K and is a multiple of 8. A backend may keep each word's nibbles in another order
// (ops::int4_nibble): the model packs them so.
struct int4_device_weight {
  tensor qweight;  // [N, K / 8] i32
  tensor scales;   // [N, K / G]
  tensor zeros;    // [N, K / G]
  int32_t group_size = 128;
  // [N] f32 or empty: each output channel's scale in linear_int4's FP8 form (int4_fp8_rows), fp8_dynamic_scale of its
  // dequantized row, made at load so that the form need not find it each step; where empty, the form finds it.
  tensor fp8_scale{};
};
// The CUDA backend's nibble order (ops::int4_nibble): weights 8j + 2m and 8j + 2m + 1 in nibbles m and m + 4, so that
// the pairs its kernels dequantize from a word — nibbles (m, m + 4) — are neighbours in k, as x's pairs are.
constexpr int int4_pair_nibble(int i) { return i / 2 + 4 * (i % 2); }

// A linear layer's weight in FP8 (--quantization fp8, FP8 checkpoints: runtime/model/fp8_formats.hpp):
// W[n][k] = e4m3(weight[n][k]) · scale[n]. With input_scale, activations are divided by that one static scale;
// without, each token (row of x) by its own dynamic scale, max(max|x_t| / 448, 1 / (448 · 512)).
struct fp8_device_weight {
  tensor weight;       // [N, K] f8_e4m3
  tensor scale;        // [N] f32
  tensor input_scale;  // [1] f32, or empty: dynamic per-token activation scales
};

// A linear layer's input already quantized to FP8, as linear_fp8 quantizes x: codes [T, K] f8_e4m3 and one f32 scale
// per token (row); made by add_rms_norm_fp8 and silu_and_mul_fp8, so that the kernel before the linear writes them.
struct fp8_activations {
  tensor codes;   // [T, K] f8_e4m3
  tensor scales;  // [T] f32
};

// A tensor-parallel rank's slice of a dummy weight (--load-format dummy), made where the weight lives
// (ops::fill_random) instead of on the host and copied: the values random_weight_run
// (runtime/model/weight_names.hpp) gives the full tensor, read at the slice.
struct random_slice {
  uint64_t state = 0;     // random_weight_state(name, seed): the full tensor's first state
  int32_t kind = 0;       // weight_spec::init as an integer: 0 matrix, 1 norm, 2 bias
  int32_t dim = 0;        // the dimension the slice cuts (0 for a whole tensor)
  int64_t begin = 0;      // its first row (dim 0) or column (dim 1) of the full tensor
  int64_t length = 0;     // dim 0: the rows read; the output's further rows are vocabulary padding (zeros)
  int64_t full_cols = 1;  // columns of the full tensor (1 for a vector)
};

class ops {
public:
  virtual ~ops() = default;
  virtual std::string name() const = 0;

  // Memory. alloc returns zero-filled storage (std::bad_alloc when the device has too little left); upload converts
  // host fp32 to the tensor's dtype.
  virtual device_buffer alloc(dtype type, std::initializer_list<int64_t> shape) = 0;
  virtual void upload(const tensor& dst, std::span<const float> src) = 0;
  virtual void upload_raw(const tensor& dst, const void* src) = 0;  // bytes as they are
  virtual void download(std::span<float> dst, const tensor& src) = 0;
  virtual void download_raw(void* dst, const tensor& src) = 0;  // bytes as they are; waits for them
  virtual void synchronize() = 0;

  // Step boundaries, for backends that time their ops (the CUDA backend with TROUPE_CUDA_PROFILE=1);
  // steps with the same label are summed together. end_step follows the step's last download.
  virtual void begin_step(const std::string& label) { (void)label; }
  virtual void end_step() {}

  // Host memory that upload_raw reads fastest (page-locked on CUDA, where the copy is then
  // asynchronous: the caller must not rewrite it before its next download_raw or synchronize).
  virtual std::shared_ptr<void> alloc_host(size_t bytes) {
    return std::shared_ptr<void>(::operator new(bytes), [](void* p) { ::operator delete(p); });
  }

  // Graphs: the ops issued between begin_capture and end_capture are recorded, not run; replay runs
  // them again with the pointers and shapes they were recorded with (so step inputs must sit at fixed
  // addresses). begin_capture returns false where graphs are unavailable (the CPU backend, profiling).
  virtual bool begin_capture() { return false; }
  // Whether begin_capture would record (the model pads decode steps to a graph's size only then).
  virtual bool graphs_available() const { return false; }
  // Returns the graph's handle for replay. After an exception inside the capture, call it to stop
  // recording (it then throws).
  virtual int32_t end_capture() { return -1; }
  virtual void replay(int32_t graph) { (void)graph; }
  // Frees a recorded graph; its handle is not valid afterwards.
  virtual void release_graph(int32_t graph) { (void)graph; }

  // out[t] = table[ids[t]].  ids [T] i32, table [V, H], out [T, H]
  virtual void embedding(const tensor& ids, const tensor& table, const tensor& out) = 0;

  // One vocabulary shard's embedding (tensor parallelism): out[t] = table[ids[t] - first_id] for ids in
  // [first_id, first_id + V_local), a zero row for any other id (another shard holds it; the all-reduce
  // that follows sums the one real row).  ids [T] i32, table [V_local, H], out [T, H]
  virtual void embedding_shard(const tensor& ids, const tensor& table, int64_t first_id, const tensor& out) = 0;

  // out = x / rms(x) * weight.  x, out [T, H], weight [H]
  virtual void rms_norm(const tensor& x, const tensor& weight, float eps, const tensor& out) = 0;

  // residual += x; x = rms_norm(residual) * weight.  x, residual [T, H] (both updated in place)
  virtual void add_rms_norm(const tensor& x, const tensor& residual, const tensor& weight, float eps) = 0;
  // The same, then x's new rows quantized into out as linear_fp8 quantizes its input (by each row's dynamic scale,
  // or by input_scale, [1] f32, when not empty): the codes and scales the next linear_fp8 would have made of x.
  // out.codes [T, H] f8_e4m3, out.scales [T] f32
  virtual void add_rms_norm_fp8(const tensor& x, const tensor& residual, const tensor& weight, float eps,
                                const tensor& input_scale, const fp8_activations& out) = 0;

  // Qwen3's per-head RMS norm, in place: each of a token's nH q heads becomes rms_norm(head) * q_weight and
  // each of its nKV k heads rms_norm(head) * k_weight; v is untouched. Runs after the q/k/v projection,
  // before rope_write_kv. qkv [T, (nH + 2 nKV) D], q_weight and k_weight [D]; shape gives nH, nKV and D.
  virtual void qk_norm(const tensor& qkv, const tensor& q_weight, const tensor& k_weight, const attention_shape& shape,
                       float eps) = 0;

  // out = x · weightᵀ (+ bias); with accumulate, out += x · weightᵀ.
  // x [T, K], weight [N, K], bias [N] or empty, out [T, N]
  virtual void linear(const tensor& x, const tensor& weight, const tensor& bias, const tensor& out,
                      bool accumulate = false) = 0;

  // out = x · Wᵀ (+ bias), W dequantized from `w` as int4_device_weight says (the product in f32, rounded once).
  // x [T, K], bias [N] or empty, out [T, N]
  virtual void linear_int4(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) = 0;
  // The nibble of word j that holds weight 8j + i in this backend's int4_device_weight: i in troupe's layout (the
  // CPU's); int4_pair_nibble(i) on CUDA.
  virtual int int4_nibble(int i) const { return i; }
  // silu_and_mul(linear_int4(x, w, bias)) in one pass where the backend has a kernel for it, bit for bit the two ops;
  // false, having done nothing, where it has none (the caller then runs the two). w holds gate and up stacked
  // (N = 2·I rows, as silu_and_mul splits its input); x [T, K], bias [N] or empty, out [T, I].
  virtual bool linear_int4_silu(const tensor& x, const int4_device_weight& w, const tensor& bias, const tensor& out) {
    (void)x, (void)w, (void)bias, (void)out;
    return false;
  }

  // silu_and_mul(linear_fp8(x, w, bias)) in one pass where the backend has a kernel for the step, bit for bit the two
  // ops; false, having done nothing, where it has none (the caller then runs the two). w holds gate and up stacked
  // (N = 2·I rows); x [T, K], bias [N] or empty, out [T, I].
  virtual bool linear_fp8_silu(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) {
    (void)x, (void)w, (void)bias, (void)out;
    return false;
  }

  // W8A8 FP8 (vLLM's Fp8LinearOp): each token quantized to e4m3 as fp8_device_weight says, xq[t][k] =
  // f32_to_f8_e4m3(x[t][k] / s_t) (the f32 quotient, nearest even, saturating at ±448), then
  // out[t][n] = (Σ_k e4m3(xq[t][k]) · e4m3(weight[n][k])) · (s_t · scale[n]) (+ bias[n]), the sum in f32 (on CUDA's
  // tensor cores nearly: cuBLASLt's FP8 GEMMs keep about 13 bits, as vLLM's do), rounded once to out's dtype.
  // x [T, K], bias [N] or empty, out [T, N]; x, bias and out share a dtype.
  virtual void linear_fp8(const tensor& x, const fp8_device_weight& w, const tensor& bias, const tensor& out) = 0;
  // The same product with x already quantized (x.codes, x.scales hold what linear_fp8 would have made of its input;
  // w.input_scale is not read). bias and out share a dtype.
  virtual void linear_fp8_quantized(const fp8_activations& x, const fp8_device_weight& w, const tensor& bias,
                                    const tensor& out) = 0;

  // Rotates the q and k parts of qkv in place (rotate-half convention) and writes k, v into the cache
  // at slot_mapping (slot = block * block_size + offset; -1 skips the token).
  // qkv [T, (nH + 2 nKV) D], positions [T] i32, cos_sin [max_pos, D] (D/2 cos then D/2 sin),
  // slot_mapping [T] i64, k_cache / v_cache [num_blocks, block_size, nKV, D] in qkv's dtype, or FP8 (quantized
  // with shape.k_scale / v_scale)
  virtual void rope_write_kv(const tensor& qkv, const tensor& positions, const tensor& cos_sin,
                             const tensor& slot_mapping, const tensor& k_cache, const tensor& v_cache,
                             const attention_shape& shape) = 0;

  // Causal attention of each new token over its sequence's cached context, read through block tables.
  // The i-th of a sequence's q new tokens sits at position seq_len - q + i.
  // qkv [T, (nH + 2 nKV) D] (reads the q part), caches as above, out [T, nH D]
  virtual void paged_attention(const tensor& qkv, const tensor& k_cache, const tensor& v_cache,
                               const attention_metadata& meta, const attention_shape& shape,
                               const tensor& out) = 0;

  // out = silu(x[:, :I]) * x[:, I:].  x [T, 2I], out [T, I]
  virtual void silu_and_mul(const tensor& x, const tensor& out) = 0;
  // silu_and_mul's rows (rounded to x's dtype) quantized into out as linear_fp8 quantizes its input, by each row's
  // dynamic scale or by input_scale ([1] f32) when not empty; no other output. x [T, 2I], out.codes [T, I]
  virtual void silu_and_mul_fp8(const tensor& x, const tensor& input_scale, const fp8_activations& out) = 0;

  // out[i] = x[indices[i]].  x [T, H], indices [R] i32, out [R, H]
  virtual void gather_rows(const tensor& x, const tensor& indices, const tensor& out) = 0;

  // out[r] = the first C' columns of x[r]: the logits of a padded, vocabulary-split LM head cut back to
  // the real vocabulary.  x [R, C], out [R, C'] with C' <= C, same dtype
  virtual void copy_columns(const tensor& x, const tensor& out) = 0;

  // Greedy sampling: out[r] = the index of row r's largest logit, the lowest among equals (0 for an
  // all-NaN row), as argmax_lowest_id does.  logits [R, V] f32, out [R] i32
  virtual void argmax(const tensor& logits, const tensor& out) = 0;

  // Sampling: out[r] = the token sample_cpu (kernels/cpu/sampler.hpp) picks for row r from the
  // request that batch row r was built from: min_tokens masks, logit_bias, penalties, then argmax for
  // greedy rows, else temperature, min_p, top_k, top_p and the seeded inverse-CDF draw. Backends other
  // than the CPU may differ only where the CPU's cumulative sum lands within rounding of its cut.
  // logits [R, V] f32, which the op may overwrite; batch with R rows (kernels/sampling_batch.hpp);
  // out [R] i32
  virtual void sample(const tensor& logits, const sampling_batch& batch, const tensor& out) = 0;

  // Dummy weights in place: out[r][c] = the full tensor's value at (s.begin + r, c) for dim 0 (0 for r >=
  // s.length), or at (r, s.begin + c) for dim 1, rounded to out's dtype.  out [R, C] or a vector [R]
  virtual void fill_random(const random_slice& s, const tensor& out) = 0;
};

} // namespace troupe
