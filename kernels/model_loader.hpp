#pragma once
// Where model weights come from: a Hugging Face checkpoint folder, or random values at the
// config's shapes (`--load-format dummy`).

#include <cstdint>

#include "kernels/model.hpp"

namespace troupe {

class checkpoint;
struct sharding_plan;

// Reads each tensor from the checkpoint, checking its name and shape against the config. Throws
// checkpoint_error first if the checkpoint holds a tensor the config does not use (a sign that the config
// and the weights disagree, such as a bias the config does not declare).
// With config.quantization (runtime/model/quantization.hpp), each quantized linear weight "X.weight" comes
// dequantized to f32 from the AWQ / GPTQ tensors X.qweight, X.qzeros, X.scales (X.g_idx), or for rtn is read
// and rounded to 4 bits; a broken packed layer throws checkpoint_error naming the tensor (dequantize_linear).
// FP8: dequantized from X.weight and X.weight_scale (read_fp8_linear, which names a broken tensor), or for
// --quantization fp8 read and rounded to FP8 per output channel.
weight_source checkpoint_weight_source(const checkpoint& ckpt, const model_config& config);

// Each layer's per-tensor FP8 KV cache scales (--kv-cache-dtype fp8), as vLLM reads them from a checkpoint:
// model.layers.N.self_attn.{k_scale, v_scale}, or ModelOpt's self_attn.{k_proj.k_scale, v_proj.v_scale}, or
// the deprecated self_attn.kv_scale for both; 1.0 where there is none. Throws checkpoint_error naming a scale
// tensor that is not one positive finite value.
struct kv_cache_scales {
  std::vector<float> k, v;  // [num_layers]
};
kv_cache_scales checkpoint_kv_cache_scales(const checkpoint& ckpt, const model_config& config);

// One tensor-parallel rank's weights: each tensor's slice in `plan` (a plan of `config`), read from the
// memory-mapped checkpoint without the rest of the tensor (read_slice_f32), so values come in the slice's
// local shape, not spec.shape. Checks the checkpoint's tensors as checkpoint_weight_source does. A 4-bit
// weight is its sharded_int4_source slice dequantized: the same values as dequantizing (or rounding) the whole
// and cutting it, without reading the whole; an FP8 weight its sharded_fp8_source slice dequantized. `ckpt` and
// `plan` must outlive the source.
weight_source sharded_weight_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan);

// Reproducible random weights (see random_weight_values); with `q`, the quantized linear weights rounded to
// 4 bits as rtn rounds them, with q's group size and symmetry, or for FP8 per output channel.
weight_source dummy_weight_source(uint64_t seed, const std::optional<quantization_config>& q = std::nullopt);

// One tensor-parallel rank's slices of dummy_weight_source(seed, q)'s tensors, in the slices' local shapes,
// made without the rest (random_slice_f32); 4-bit and FP8 weights as sharded_dummy_int4_source's and
// sharded_dummy_fp8_source's slices dequantized.
// `plan` must outlive the source.
weight_source sharded_dummy_weight_source(uint64_t seed, const sharding_plan& plan,
                                          const std::optional<quantization_config>& q = std::nullopt);

// The same values made by the backend in place (ops::fill_random): dummy_weight_source's with no plan,
// sharded_dummy_weight_source(seed, *plan)'s with one, bit for bit in f32, without host time or a copy. With a
// quantized config it makes only the weights q leaves alone (embeddings, norms, biases, the LM head): it returns
// false for those q quantizes, whose values the host rounds. `plan` must outlive it.
weight_fill dummy_weight_fill(uint64_t seed, const sharding_plan* plan, const std::optional<quantization_config>& q);

// The 4-bit form (codes, zero points, scales) of each linear weight of a quantized config, for
// load_model_weights to keep packed: unpacked from the checkpoint's AWQ / GPTQ tensors, or for rtn read and
// rounded as checkpoint_weight_source rounds it, so dequantizing it gives exactly that source's values.
// Returns false for every other tensor. Null (empty) for an unquantized config.
int4_source checkpoint_int4_source(const checkpoint& ckpt, const model_config& config);

// The same for dummy_weight_source(seed, q)'s quantized weights.
int4_source dummy_int4_source(uint64_t seed, const std::optional<quantization_config>& q);

// One tensor-parallel rank's part of checkpoint_int4_source: each quantized weight's slice in `plan` (a plan of
// `config`), in the slice's local shape, exactly slice_int4 of the whole's code. AWQ / GPTQ read only the
// slice's packed words (unpack_linear_slice); rtn reads the slice's rows and, along the inputs, the groups
// covering its columns, and rounds them. Throws as checkpoint_int4_source does, and user_error for a split the
// format cannot take (sharding_plan::make refuses those first). `ckpt` and `plan` must outlive the source.
int4_source sharded_int4_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan);

// The same for dummy_int4_source(seed, q): each slice made from the random values of its covering groups alone.
int4_source sharded_dummy_int4_source(uint64_t seed, const sharding_plan& plan, const std::optional<quantization_config>& q);

// The FP8 form (codes, a scale per output channel, a static input scale) of each linear weight of an FP8 config,
// for load_model_weights to keep in FP8: read from the checkpoint's F8_E4M3 weight and its scales
// (read_fp8_linear), or for --quantization fp8 read and quantized per output channel (quantize_fp8), so
// dequantizing it gives exactly checkpoint_weight_source's values. Returns false for every other tensor. Null
// (empty) for a config without FP8.
fp8_source checkpoint_fp8_source(const checkpoint& ckpt, const model_config& config);

// The same for dummy_weight_source(seed, q)'s FP8 weights (per channel, dynamic activations).
fp8_source dummy_fp8_source(uint64_t seed, const std::optional<quantization_config>& q);

// One tensor-parallel rank's part of checkpoint_fp8_source: each quantized weight's slice in `plan`, in the slice's
// local shape. A checkpoint's FP8 slice is exactly slice_fp8 of the whole (the codes of the slice alone, each
// row's scale); --quantization fp8 quantizes the rank's slice on its own, as vLLM quantizes each rank's shard
// after loading it, so a row-parallel rank's scales come from its own columns. `ckpt` and `plan` must outlive it.
fp8_source sharded_fp8_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan);

// The same for dummy_fp8_source(seed, q): each slice quantized from its own random values.
fp8_source sharded_dummy_fp8_source(uint64_t seed, const sharding_plan& plan, const std::optional<quantization_config>& q);

} // namespace troupe
