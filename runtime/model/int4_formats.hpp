#pragma once
// 4-bit linear weights: round-to-nearest quantization of an f32 weight, the packed tensors AutoAWQ (GEMM) and
// AutoGPTQ write for it, and the way back: unpacking a checkpoint's packed tensors and dequantizing them to
// the f32 weight in Hugging Face's [out_features, in_features] layout, w = (q − zero) · scale per group of
// inputs. This is the CPU reference (the oracle) the 4-bit kernels are checked against.
//
// The packed layouts (each cited where it is implemented, in int4_formats.cpp):
//   AWQ  qweight int32 [in, out/8]      8 outputs per word, in AutoAWQ's interleaved nibble order
//        qzeros  int32 [in/group, out/8] the same order
//        scales  fp16  [in/group, out]
//   GPTQ qweight int32 [in/8, out]      8 inputs per word, nibble k = input 8·row + k
//        qzeros  int32 [in/group, out/8] 8 outputs per word in plain order, holding zero − 1 (v1) or zero (v2)
//        scales  fp16  [in/group, out]
//        g_idx   int32 [in]              group of each input: i / group (no act-order)

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/model/quantization.hpp"
#include "runtime/model/safetensors.hpp"

namespace troupe {

struct weight_slice;

// A linear weight [out_features, in_features] quantized to 4 bits per group of `group_size` inputs.
struct int4_weight {
  int64_t out_features = 0;
  int64_t in_features = 0;
  int64_t group_size = 0;
  std::vector<uint8_t> q;      // [out, in], each in [0, 15]
  std::vector<uint8_t> zeros;  // [out, in / group_size], each in [0, 15]; 8 for a symmetric code
  std::vector<float> scales;   // [out, in / group_size], each exactly an fp16 value (what the formats store)

  int64_t num_groups() const { return group_size > 0 ? in_features / group_size : 0; }
};

// Round-to-nearest (ties to even, as torch.round) of `w` [out, in] per group of `group_size` inputs. Each
// scale is rounded to fp16 first and the codes are computed with it, so (q − zero) · scale is exactly what a
// packed file holds.
//   asymmetric (AutoAWQ's pseudo_quantize_tensor): scale = max(max − min, 1e-5) / 15,
//                zero = clamp(−round(min / scale), min_zero, 15)
//   symmetric (vLLM's rtn at 4 bits; AutoGPTQ's Quantizer with sym): scale = 2 · max(|min|, |max|) / 15
//                (2 / 15 for an all-zero group), zero = 8
// then q = clamp(round(w / scale) + zero, 0, 15). `min_zero` 1 keeps every zero storable in GPTQ v1 (which
// stores zero − 1 in 4 bits). Throws std::invalid_argument when group_size does not divide `in`.
int4_weight rtn_quantize(std::span<const float> w, int64_t out_features, int64_t in_features, int64_t group_size,
                         bool symmetric, int min_zero = 0);

// (q − zero) · scale of every element, as f32 [out, in] into `out` (resized).
void dequantize(const int4_weight& w, std::vector<float>& out);

// A linear layer's tensors as a quantized checkpoint stores them.
struct packed_int4 {
  std::vector<int64_t> qweight_shape, qzeros_shape, scales_shape;
  std::vector<int32_t> qweight, qzeros;
  std::vector<uint16_t> scales;  // fp16 bits
  std::vector<int32_t> g_idx;    // [in]; GPTQ only
};

// The tensors AutoAWQ (WQLinear_GEMM) or AutoGPTQ (QuantLinear.pack, v1 unless q.gptq_v2) writes for `w`.
// Throws user_error when the layer's sizes cannot be packed (out, or for GPTQ in, not a multiple of 8) or, for
// GPTQ v1, a zero point is 0 (quantize with min_zero 1).
packed_int4 pack_int4(const int4_weight& w, const quantization_config& q);

// p's tensors named `module` + ".qweight", ".qzeros", ".scales" (and ".g_idx"), pointing into p's storage.
std::vector<tensor_to_write> packed_tensors(const std::string& module, const packed_int4& p);

// One quantized linear layer's tensors as found in a checkpoint (null: absent).
struct packed_linear {
  const tensor_info* qweight = nullptr;
  const tensor_info* qzeros = nullptr;
  const tensor_info* scales = nullptr;
  const tensor_info* g_idx = nullptr;  // GPTQ; optional
};

// Unpacks module `module`'s tensors (e.g. "model.layers.0.mlp.up_proj") in q's format into the codes, zero
// points and scales of the weight [out_features, in_features] (each zero as stored plus GPTQ v1's 1). Throws checkpoint_error, one line naming
// the tensor (and its file; `where` for a missing one) and what is wrong: a missing qweight, qzeros or scales;
// a shape other than the layout above for these sizes; a dtype other than I32 (scales: F16, BF16 or F32); a
// group size that does not divide in_features; sizes the format cannot pack; a zero other than 8 in a
// symmetric code; a g_idx other than i / group.
int4_weight unpack_linear(const std::string& module, const packed_linear& t, const quantization_config& q,
                          int64_t out_features, int64_t in_features, const std::string& where);
// The part of module `module`'s weight [slice.shape] that `slice` cuts (one tensor-parallel rank's: dim 0 output
// rows, dim 1 input columns), unpacked as unpack_linear unpacks the whole, reading from the checkpoint only the
// slice's words of qweight, qzeros and scales: a dim-1 slice is a row range (AWQ rows are inputs; GPTQ's are 8
// inputs each), a dim-0 slice a column range per row. Equals slice_int4(unpack_linear(...), slice). Throws
// checkpoint_error as unpack_linear does for the whole layer's tensors, and user_error naming the module for a
// slice that splits a packed word (an output range not in whole 8s; for GPTQ, an input range not in whole 8s) or
// a group (an input range not in whole groups, unless the layer has one group, whose scales every rank keeps).
int4_weight unpack_linear_slice(const std::string& module, const packed_linear& t, const quantization_config& q,
                                const weight_slice& slice, const std::string& where);

// The codes, zeros and scales of `slice` of `whole`, in the slice's local shape [out, in]: the rows (dim 0) or
// the columns (dim 1) it cuts, so dequantize(result) == slice_f32(slice, dequantize(whole)). A column slice's
// group is the largest that divides both whole's group and its length (each local group inside one of the
// whole's, scales and zeros repeated). Throws std::invalid_argument for a slice that is not a cut of whole (a
// range outside it, local_shape not [length] on dim, or a column range not starting on a local group).
int4_weight slice_int4(const int4_weight& whole, const weight_slice& slice);

// The same, dequantized: (q − zero) · scale of each element.
void dequantize_linear(const std::string& module, const packed_linear& t, const quantization_config& q,
                       int64_t out_features, int64_t in_features, const std::string& where, std::vector<float>& values);

} // namespace troupe
