#pragma once
// FP8 (float8_e4m3fn) linear weights: the dynamic quantization vLLM's FP8 applies row by row (to each weight at
// load with --quantization fp8, and to each token's activations at every linear layer), the tensors FP8
// checkpoints hold for a layer, and reading them back, whole or one tensor-parallel rank's slice, with every
// tensor checked and one error line naming the tensor. This is the CPU reference the FP8 kernels follow.
//
// A quantized layer "X" of an FP8 checkpoint (vLLM's Fp8LinearMethod and CompressedTensorsW8A8Fp8,
// create_weights):
//   X.weight        F8_E4M3 [out, in]
//   X.weight_scale  F32, BF16 or F16: one per tensor ([] or [1]) or one per output channel ([out] or [out, 1])
//   X.input_scale   F32, BF16 or F16, [] or [1]: with static activations only
// and W[o][i] = e4m3(weight[o][i]) · weight_scale[o].
//
// Weights quantized at load get one scale per output channel where vLLM's dynamic FP8 takes one per tensor
// (Fp8LinearMethod.process_weights_after_loading: ops.scaled_fp8_quant(weight, scale=None)): per channel costs
// nothing more here (the GEMM's epilogue scales every output column anyway) and keeps a row of small weights
// from being rounded against the largest row's range.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/model/quantization.hpp"
#include "runtime/model/safetensors.hpp"

namespace troupe {

struct weight_slice;

// The largest finite float8_e4m3fn value.
inline constexpr float fp8_e4m3_max = 448.0f;
// The smallest scale dynamic quantization gives (vLLM's min_scaling_factor, 1 / (448 · 512)), so that a row of
// zeros still divides by a positive number.
inline constexpr float fp8_min_scale = 1.0f / (fp8_e4m3_max * 512.0f);

// A linear weight [out_features, in_features] in FP8 with a scale per output channel.
struct fp8_weight {
  int64_t out_features = 0;
  int64_t in_features = 0;
  std::vector<uint8_t> codes;  // [out, in] float8_e4m3fn bits
  std::vector<float> scales;   // [out]: each output channel's (a per-tensor scale repeated)
  float input_scale = 0;       // a static activation scale (the checkpoint's input_scale); 0: dynamic, per token
};

// The scale dynamic quantization gives `row`: max(max|row| / 448, fp8_min_scale), the division in f32 (vLLM's
// dynamic_per_token_scaled_fp8_quant). What ops::linear_fp8 gives each token of its input.
float fp8_dynamic_scale(std::span<const float> row);

// Steps of at most this many rows take ops::linear_fp8 as W8A16 on every backend: the weights' codes times x itself, x
// not quantized (nearer bf16 than W8A8, but a request's tokens then depend on how many rows its steps have). 0 (the
// default): never. Starts as TROUPE_FP8_W16_ROWS; the CUDA kernel takes at most 4 rows.
int& fp8_w16_rows();

// Steps of at least this many rows take ops::linear_int4 in its FP8 form on every backend: the 4-bit weight
// dequantized, requantized per output channel by quantize_fp8 (the CUDA backend does it on the device each step), then
// ops::linear_fp8 on it (W4A8: x quantized per token too). Faster on FP8 tensor cores than the bf16 product, but not
// the W4A16 one: the weight rounds twice. 0 (the default): never. Starts as TROUPE_INT4_FP8_ROWS.
int64_t& int4_fp8_rows();
// Whether a step of `rows` rows takes the FP8 form (int4_fp8_rows set and reached).
bool int4_fp8_step(int64_t rows);

// codes[i] = f32_to_f8_e4m3(row[i] / scale): the f32 quotient rounded to the nearest even code, saturating at
// ±448 (vLLM's scaled_fp8_conversion). Needs codes.size() == row.size().
void fp8_quantize_row(std::span<const float> row, float scale, std::span<uint8_t> codes);

// w [out, in] quantized per output channel (each row with its fp8_dynamic_scale: what --quantization fp8 loads)
// or, with per_channel false, with one scale for the whole tensor (max|w| / 448 and the same floor: AutoFP8's
// per-tensor weights). Throws std::invalid_argument when w does not hold out × in values.
fp8_weight quantize_fp8(std::span<const float> w, int64_t out_features, int64_t in_features, bool per_channel);

// e4m3(code) · scale of every element, as f32 [out, in] into `out` (resized).
void dequantize(const fp8_weight& w, std::vector<float>& out);

// A layer's tensors as a checkpoint of config q stores them: weight, weight_scale (per tensor: [] as AutoFP8
// writes it for fp8, [1] as llm-compressor writes it; per channel: [out, 1]), and input_scale ([] or [1]) when q
// has static activations (w.input_scale).
struct packed_fp8 {
  std::vector<int64_t> weight_shape, scale_shape, input_scale_shape;
  std::vector<uint8_t> weight;
  std::vector<float> scale, input_scale;
};

// The tensors of w under q (fp8 or compressed-tensors): per channel when q.fp8_channel_scales, else per tensor,
// which needs every row's scale equal. Throws std::invalid_argument for a per-tensor q and unequal scales, or
// static activations without an input scale.
packed_fp8 pack_fp8(const fp8_weight& w, const quantization_config& q);

// p's tensors named `module` + ".weight", ".weight_scale" (and ".input_scale"), pointing into p's storage.
std::vector<tensor_to_write> packed_tensors(const std::string& module, const packed_fp8& p);

// One FP8 layer's tensors as found in a checkpoint (null: absent).
struct fp8_linear {
  const tensor_info* weight = nullptr;
  const tensor_info* weight_scale = nullptr;
  const tensor_info* input_scale = nullptr;
};

// The part `slice` cuts from module `module`'s FP8 weight [slice.shape] (one tensor-parallel rank's: dim 0 output
// rows, dim 1 input columns; the whole layer: dim 0 over every row), in the slice's local shape: the codes read
// from the checkpoint's slice alone, each local row's weight scale, and the input scale with static activations.
// Throws checkpoint_error, one line naming the tensor (and its file; `where` for a missing one) and what is wrong:
// a missing weight or weight_scale (input_scale with static activations); an input_scale with dynamic ones; a
// weight of another dtype than F8_E4M3 or another shape than [out, in]; a weight_scale neither per tensor nor per
// output channel (for compressed-tensors, not what its strategy says); a scale of another dtype than F32, BF16
// or F16; a weight scale that is negative or not finite; an input scale that is not positive and finite.
fp8_weight read_fp8_linear(const std::string& module, const fp8_linear& t, const quantization_config& q,
                           const weight_slice& slice, const std::string& where);

// The rows (dim 0) or columns (dim 1) `slice` cuts from `whole`, with their scales: dequantize(result) ==
// slice_f32(slice, dequantize(whole)). Throws std::invalid_argument for a slice that is not a cut of whole.
fp8_weight slice_fp8(const fp8_weight& whole, const weight_slice& slice);

} // namespace troupe
