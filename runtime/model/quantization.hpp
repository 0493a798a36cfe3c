#pragma once
// Weight quantization settings: a checkpoint's `quantization_config` as vLLM reads it, or a --quantization
// made at load, and the rule, as vLLM's, for combining the checkpoint's method with the --quantization flag.
//   4 bits: AWQ or GPTQ (as AutoAWQ and AutoGPTQ / GPTQModel write them), or `--quantization rtn`
//           (round-to-nearest at load).
//   FP8:    `quant_method "fp8"` (vLLM's Fp8Config: AutoFP8's and transformers' FP8 checkpoints), llm-compressor's
//           `"compressed-tensors"` with format "float-quantized" (FP8 W8A8), or `--quantization fp8` on an
//           unquantized checkpoint (weights quantized at load). runtime/model/fp8_formats.hpp has the tensors.
//
// Which tensors are quantized: the linear weights of every decoder layer (q/k/v/o_proj, gate/up/down_proj).
// Embeddings, norms, biases and lm_head stay as the checkpoint holds them.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

enum class quant_method { awq, gptq, rtn, fp8, compressed_tensors };

// "awq", "gptq", "rtn", "fp8", "compressed-tensors": vLLM's names, used in flags, configs and messages.
std::string_view name(quant_method m);

struct quantization_config {
  quant_method method = quant_method::awq;
  // Inputs per scale and zero point; -1: the whole input dimension, as AutoAWQ's WQLinear_GEMM and AutoGPTQ's
  // QuantLinear take it (group_size if != -1 else in_features). vLLM's plain awq kernel cannot run -1; its
  // awq_marlin and gptq paths can.
  int64_t group_size = 128;
  // Zero point fixed at 8 (GPTQ `sym`; AWQ `zero_point: false`): every stored zero must be 8.
  bool symmetric = false;
  // GPTQ `checkpoint_format: "gptq_v2"`: qzeros hold the zero point itself. The default (v1, AutoGPTQ's
  // format) stores zero − 1, and readers add the 1 back (vLLM's gptq_gemm: zero_offset 1 unless v2).
  bool gptq_v2 = false;
  // Linear layers left unquantized. AWQ `modules_to_not_convert`: a layer whose name contains one of these
  // (vLLM's is_layer_skipped_awq). FP8: Fp8Config's `ignored_layers` and compressed-tensors' `ignore`, a layer
  // (e.g. "model.layers.0.mlp.down_proj") named exactly, or matched from its start by a "re:" regular expression
  // (vLLM's is_layer_skipped, and compressed-tensors' should_ignore_layer).
  std::vector<std::string> modules_to_not_convert;

  // FP8 weights (fp8, compressed-tensors). W = code · weight_scale per output channel (a per-tensor scale is
  // every channel's); activations are quantized per token at each linear layer (scale = max|x| / 448) unless
  // static, where the checkpoint's per-tensor input_scale divides them all (vLLM's Fp8LinearOp).
  // The checkpoint holds F8_E4M3 weights and their weight_scale (and input_scale when static); false: the
  // checkpoint is unquantized and --quantization fp8 quantizes each weight at load, per output channel.
  bool fp8_serialized = false;
  // compressed-tensors' weights strategy "channel": weight_scale [out, 1]; else "tensor", one scale ([1]).
  // (Fp8Config does not say: troupe takes either shape.)
  bool fp8_channel_scales = false;
  // Activations divided by the checkpoint's per-tensor input_scale (Fp8Config activation_scheme "static";
  // compressed-tensors input_activations dynamic false, strategy tensor); else dynamic, per token.
  bool fp8_static_input = false;

  // AWQ, GPTQ or rtn.
  bool four_bit() const { return method == quant_method::awq || method == quant_method::gptq || method == quant_method::rtn; }
  // fp8 or compressed-tensors.
  bool fp8() const { return !four_bit(); }
  // A quantization made at load (rtn, --quantization fp8 on an unquantized checkpoint), which config.json does
  // not record.
  bool made_at_load() const { return method == quant_method::rtn || (method == quant_method::fp8 && !fp8_serialized); }

  // Inputs per group for a layer of `in_features` inputs. AWQ and GPTQ: group_size (in_features for -1).
  // RTN: 128, or where 128 does not divide in_features the largest of 64 and 32 that does, else the whole
  // input dimension (small models; vLLM's rtn would straddle rows).
  int64_t group_for(int64_t in_features) const;

  // Whether checkpoint tensor `weight_name` (e.g. "model.layers.0.mlp.up_proj.weight") is a quantized
  // linear weight under this config.
  bool quantizes(std::string_view weight_name) const;

  // Parses the JSON object `json_text` (config.json's quantization_config, or a quantize_config.json);
  // `where` names it in messages. `method_hint` is used when the object has no quant_method (AutoGPTQ's
  // quantize_config.json). Throws user_error naming the field, its value and what troupe supports for
  // anything else: bits other than 4, desc_act true, an AWQ version other than gemm, a GPTQ
  // checkpoint_format other than gptq / gptq_v2, group sizes other than 32, 64, 128 and -1, a quantized
  // lm_head, GPTQModel's per-module `dynamic` overrides, or an unknown quant_method. FP8: an
  // activation_scheme other than dynamic / static, block-wise weight_block_size, an fmt other than e4m3; for
  // compressed-tensors a format other than float-quantized, several config_groups, targets other than
  // "Linear", weights other than 8-bit float, symmetric, static, strategy tensor or channel, activations
  // other than 8-bit float dynamic or static per tensor (or none: weight-only), output activations, sparsity
  // or transforms.
  static quantization_config from_json(std::string_view json_text, const std::string& where,
                                       std::optional<quant_method> method_hint = std::nullopt);
  // The JSON object from_json reads back to this config, spelled as AutoAWQ / AutoGPTQ / AutoFP8 /
  // llm-compressor write it.
  std::string to_json() const;
};

// The quantization weights load with, decided as vLLM decides it: the checkpoint's quantization_config
// whatever the flag; `flag` ("" | awq | gptq | rtn | fp8 | compressed-tensors) when the checkpoint has none:
// rtn and fp8 quantize an unquantized checkpoint at load. Throws user_error for an unknown flag value, a flag
// naming another method than the checkpoint's (vLLM's message, naming both, also for rtn or fp8 on a
// quantized checkpoint), and awq, gptq or compressed-tensors on a checkpoint without a quantization config: as
// vLLM, an AWQ or GPTQ config in `model_dir`'s quant_config.json or quantize_config.json is read then, and
// without one that is vLLM's "Cannot find the config file" error.
std::optional<quantization_config> resolve_quantization(const std::optional<quantization_config>& from_checkpoint,
                                                        std::string_view flag, const std::filesystem::path& model_dir);

} // namespace troupe
