#include "kernels/model_loader.hpp"

#include <cmath>
#include <functional>
#include <optional>
#include <set>

#include "runtime/error.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_names.hpp"
#include "runtime/model/weight_slice_reader.hpp"

namespace troupe {
namespace {

using quantization = std::optional<quantization_config>;

// Whether checkpoint weight `name` is stored packed (AWQ, GPTQ) rather than as itself.
bool is_packed(const quantization& q, const std::string& name) {
  return q && q->four_bit() && q->method != quant_method::rtn && q->quantizes(name);
}

// Whether checkpoint weight `name` is stored in FP8 with its scales.
bool is_fp8_stored(const quantization& q, const std::string& name) {
  return q && q->fp8() && q->fp8_serialized && q->quantizes(name);
}

fp8_linear fp8_tensors_of(const checkpoint& ckpt, const std::string& m) {
  return {ckpt.find(m + ".weight"), ckpt.find(m + ".weight_scale"), ckpt.find(m + ".input_scale")};
}

// The whole tensor as a slice (dim 0, every row), for the readers that take slices.
weight_slice whole_slice(const weight_spec& spec) {
  weight_slice s;
  s.name = spec.name;
  s.shape = s.local_shape = spec.shape;
  s.length = spec.shape.at(0);
  return s;
}

std::string module_of(const std::string& weight_name) { return weight_name.substr(0, weight_name.size() - 7); }  // ".weight"

// The 4-bit round-to-nearest code of `values`, the weight [shape[0], shape[1]]: what --quantization rtn loads,
// and what dummy weights of a quantized model hold.
int4_weight quantize_int4(const quantization_config& q, const std::string& name, const std::vector<int64_t>& shape,
                          const std::vector<float>& values) {
  const int64_t group = q.group_for(shape[1]);
  if (shape[1] % group != 0)
    throw user_error("quantization_config's group_size " + std::to_string(q.group_size) + " does not divide the " +
                     std::to_string(shape[1]) + " inputs of '" + name + "'");
  return rtn_quantize(values, shape[0], shape[1], group, q.symmetric);
}

// Replaces `values` with its 4-bit code dequantized (quantize_int4).
void round_to_int4(const quantization_config& q, const std::string& name, const std::vector<int64_t>& shape,
                   std::vector<float>& values) {
  dequantize(quantize_int4(q, name, shape, values), values);
}

// `values` of weight `name` [shape] as a quantization made at load rounds them: to 4 bits (rtn, and the
// dummy weights of a 4-bit config), or to FP8 per output channel (--quantization fp8, and the dummy weights of an
// FP8 config); unchanged for a weight q does not quantize.
void round_at_load(const quantization& q, const std::string& name, const std::vector<int64_t>& shape,
                   std::vector<float>& values) {
  if (!q || !q->quantizes(name)) return;
  if (q->four_bit()) round_to_int4(*q, name, shape, values);
  else dequantize(quantize_fp8(values, shape[0], shape[1], true), values);
}

packed_linear packed_tensors_of(const checkpoint& ckpt, const std::string& m) {
  return {ckpt.find(m + ".qweight"), ckpt.find(m + ".qzeros"), ckpt.find(m + ".scales"), ckpt.find(m + ".g_idx")};
}

// The names under which a checkpoint may hold layer `layer`'s FP8 KV cache scales, as vLLM reads them
// (maybe_remap_kv_scale_name): llm-compressor's self_attn.k_scale / v_scale, ModelOpt's
// self_attn.k_proj.k_scale / v_proj.v_scale, and the deprecated self_attn.kv_scale for both.
struct kv_scale_names {
  std::string k, v, modelopt_k, modelopt_v, both;
};
kv_scale_names kv_scale_names_of(int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".self_attn.";
  return {p + "k_scale", p + "v_scale", p + "k_proj.k_scale", p + "v_proj.v_scale", p + "kv_scale"};
}

// Throws checkpoint_error when the checkpoint holds a tensor the config does not use.
void refuse_unused_tensors(const checkpoint& ckpt, const model_config& config) {
  std::set<std::string> expected;
  for (const weight_spec& spec : hf_weight_specs(config)) {
    if (!is_packed(config.quantization, spec.name) && !is_fp8_stored(config.quantization, spec.name)) {
      expected.insert(spec.name);
      continue;
    }
    const std::string m = module_of(spec.name);
    if (config.quantization->fp8()) {  // an input_scale beside dynamic activations is refused by name when read
      expected.insert({spec.name, m + ".weight_scale", m + ".input_scale"});
      continue;
    }
    expected.insert({m + ".qweight", m + ".qzeros", m + ".scales"});
    if (config.quantization->method == quant_method::gptq) expected.insert(m + ".g_idx");
  }
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const kv_scale_names n = kv_scale_names_of(l);
    expected.insert({n.k, n.v, n.modelopt_k, n.modelopt_v, n.both});
  }
  for (const std::string& name : ckpt.names()) {
    if (expected.count(name)) continue;
    // Tied checkpoints sometimes keep a copy of the head; old ones stored rotary tables.
    if ((name == "lm_head.weight" && config.tie_word_embeddings) || name.ends_with("rotary_emb.inv_freq")) continue;
    const tensor_info* t = ckpt.find(name);
    const quantization& q = config.quantization;
    const std::string method = q && !q->made_at_load() ? std::string(troupe::name(q->method)) : "";
    const std::string a = method.empty() ? "a " : (method[0] == 'a' || method[0] == 'f' ? "an " : "a ") + method + "-quantized ";
    throw checkpoint_error((t && t->file ? t->file->string() : std::string("checkpoint")) + ": tensor '" + name +
                           "' is not used by " + a + config.architecture_name +
                           " with this config.json; the config and the weights disagree");
  }
}

// The f32 values [shape] of weight `name`: read, dequantized from its packed tensors, or read and rounded to
// 4 bits (rtn).
void read_weight(const checkpoint& ckpt, const quantization& q, const std::string& name, const std::vector<int64_t>& shape,
                 std::vector<float>& values) {
  if (is_packed(q, name)) {
    const std::string m = module_of(name);
    dequantize_linear(m, packed_tensors_of(ckpt, m), *q, shape[0], shape[1], ckpt.directory().string(), values);
    return;
  }
  if (is_fp8_stored(q, name)) {
    const weight_spec spec{name, shape};
    dequantize(read_fp8_linear(module_of(name), fp8_tensors_of(ckpt, module_of(name)), *q, whole_slice(spec),
                               ckpt.directory().string()),
               values);
    return;
  }
  ckpt.read_f32(name, shape, values);
  round_at_load(q, name, shape, values);
}

// The 4-bit round-to-nearest code of `slice` of weight [slice.shape] whose values `read` gives for any slice of
// it: rounded from the slice's rows, and along the inputs from the groups that cover its columns only, then cut
// to it, so it is exactly slice_int4(quantize_int4(whole), slice) without reading the whole. `values` is the
// caller's buffer for the values read, kept from weight to weight.
int4_weight quantize_int4_slice(const quantization_config& q, const weight_slice& slice, std::vector<float>& values,
                                const std::function<void(const weight_slice&, std::vector<float>&)>& read) {
  const std::vector<int64_t>& shape = slice.shape;
  const int64_t group = q.group_for(shape[1]);
  if (shape[1] % group != 0)
    throw user_error("quantization_config's group_size " + std::to_string(q.group_size) + " does not divide the " +
                     std::to_string(shape[1]) + " inputs of '" + slice.name + "'");
  weight_slice covering = slice;
  if (slice.dim == 1) {
    covering.begin = slice.begin / group * group;
    covering.length = (slice.begin + slice.length + group - 1) / group * group - covering.begin;
    covering.local_shape[1] = covering.length;
  }
  read(covering, values);
  const int4_weight code = rtn_quantize(values, covering.local_shape[0], covering.local_shape[1], group, q.symmetric);
  if (slice.dim != 1) return code;
  weight_slice within = slice;  // the slice's columns inside the covering ones
  within.begin = slice.begin - covering.begin;
  return slice_int4(code, within);
}

// The one value of scale tensor `name`, or nullopt where the checkpoint has none; throws checkpoint_error for
// a scale that is not one positive finite number (per-head scales are not supported).
std::optional<float> read_kv_scale(const checkpoint& ckpt, const std::string& name) {
  const tensor_info* t = ckpt.find(name);
  if (!t) return std::nullopt;
  const std::string where = (t->file ? t->file->string() : std::string("checkpoint")) + ": tensor '" + name + "'";
  if (t->num_elements() != 1)
    throw checkpoint_error(where + " holds " + std::to_string(t->num_elements()) +
                           " values; troupe reads one per-tensor KV cache scale per layer");
  std::vector<float> value;
  ckpt.read_f32(name, t->shape, value);
  if (!(value[0] > 0) || !std::isfinite(value[0]))
    throw checkpoint_error(where + " is " + std::to_string(value[0]) + "; a KV cache scale must be positive and finite");
  return value[0];
}

} // namespace

kv_cache_scales checkpoint_kv_cache_scales(const checkpoint& ckpt, const model_config& config) {
  kv_cache_scales s;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const kv_scale_names n = kv_scale_names_of(l);
    const std::optional<float> both = read_kv_scale(ckpt, n.both);
    std::optional<float> k = read_kv_scale(ckpt, n.k), v = read_kv_scale(ckpt, n.v);
    if (!k) k = read_kv_scale(ckpt, n.modelopt_k);
    if (!v) v = read_kv_scale(ckpt, n.modelopt_v);
    s.k.push_back(k.value_or(both.value_or(1.0f)));
    s.v.push_back(v.value_or(both.value_or(1.0f)));
  }
  return s;
}

weight_source checkpoint_weight_source(const checkpoint& ckpt, const model_config& config) {
  refuse_unused_tensors(ckpt, config);
  return [&ckpt, q = config.quantization](const weight_spec& spec, std::vector<float>& values) {
    read_weight(ckpt, q, spec.name, spec.shape, values);
  };
}

weight_source sharded_weight_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan) {
  refuse_unused_tensors(ckpt, config);
  return [&ckpt, &plan, int4 = sharded_int4_source(ckpt, config, plan), fp8 = sharded_fp8_source(ckpt, config, plan)](
             const weight_spec& spec, std::vector<float>& values) {
    int4_weight w;
    if (int4 && int4(spec, w)) {  // the rank's 4-bit slice alone, dequantized
      dequantize(w, values);
      return;
    }
    fp8_weight w8;
    if (fp8 && fp8(spec, w8)) {  // the rank's FP8 slice, dequantized
      dequantize(w8, values);
      return;
    }
    read_slice_f32(ckpt, plan.slice(spec.name), values);
  };
}

weight_source dummy_weight_source(uint64_t seed, const std::optional<quantization_config>& q) {
  return [seed, q](const weight_spec& spec, std::vector<float>& values) {
    random_weight_values(spec, seed, values);
    round_at_load(q, spec.name, spec.shape, values);
  };
}

weight_source sharded_dummy_weight_source(uint64_t seed, const sharding_plan& plan,
                                          const std::optional<quantization_config>& q) {
  return [seed, &plan, int4 = sharded_dummy_int4_source(seed, plan, q), fp8 = sharded_dummy_fp8_source(seed, plan, q)](
             const weight_spec& spec, std::vector<float>& values) {
    int4_weight w;
    if (int4 && int4(spec, w)) {
      dequantize(w, values);
      return;
    }
    fp8_weight w8;
    if (fp8 && fp8(spec, w8)) {
      dequantize(w8, values);
      return;
    }
    random_slice_f32(plan.slice(spec.name), spec.kind, seed, values);
  };
}

weight_fill dummy_weight_fill(uint64_t seed, const sharding_plan* plan, const std::optional<quantization_config>& q) {
  return [seed, plan, q](const weight_spec& spec, ops& backend, const tensor& out) {
    if (q && q->quantizes(spec.name)) return false;  // rounded on the host (the 4-bit or FP8 sources, round_at_load)
    random_slice s;
    s.state = random_weight_state(spec.name, seed);
    s.kind = static_cast<int32_t>(spec.kind);
    if (plan) {
      const weight_slice& w = plan->slice(spec.name);
      s.dim = w.dim;
      s.begin = w.begin;
      s.length = w.length;
      s.full_cols = w.shape.size() > 1 ? w.shape[1] : 1;
    } else {
      s.length = spec.shape.at(0);
      s.full_cols = spec.shape.size() > 1 ? spec.shape[1] : 1;
    }
    backend.fill_random(s, out);
    return true;
  };
}

int4_source checkpoint_int4_source(const checkpoint& ckpt, const model_config& config) {
  if (!config.quantization || !config.quantization->four_bit()) return {};
  return [&ckpt, q = config.quantization, values = std::vector<float>()](const weight_spec& spec, int4_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    if (is_packed(q, spec.name)) {
      const std::string m = module_of(spec.name);
      out = unpack_linear(m, packed_tensors_of(ckpt, m), *q, spec.shape[0], spec.shape[1], ckpt.directory().string());
      return true;
    }
    ckpt.read_f32(spec.name, spec.shape, values);
    out = quantize_int4(*q, spec.name, spec.shape, values);
    return true;
  };
}

int4_source dummy_int4_source(uint64_t seed, const std::optional<quantization_config>& q) {
  if (!q || !q->four_bit()) return {};
  // `values` lives as long as the source: one buffer for every weight, whose pages the kernel clears once (a
  // fresh vector a weight made page faults and their zeroing a third of a 7B model's load).
  return [seed, q, values = std::vector<float>()](const weight_spec& spec, int4_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    random_weight_values(spec, seed, values);
    out = quantize_int4(*q, spec.name, spec.shape, values);
    return true;
  };
}

int4_source sharded_int4_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan) {
  if (!config.quantization || !config.quantization->four_bit()) return {};
  return [&ckpt, &plan, q = config.quantization, values = std::vector<float>()](const weight_spec& spec, int4_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    const weight_slice& slice = plan.slice(spec.name);
    if (is_packed(q, spec.name)) {
      const std::string m = module_of(spec.name);
      out = unpack_linear_slice(m, packed_tensors_of(ckpt, m), *q, slice, ckpt.directory().string());
      return true;
    }
    out = quantize_int4_slice(*q, slice, values, [&](const weight_slice& s, std::vector<float>& v) { read_slice_f32(ckpt, s, v); });
    return true;
  };
}

int4_source sharded_dummy_int4_source(uint64_t seed, const sharding_plan& plan, const std::optional<quantization_config>& q) {
  if (!q || !q->four_bit()) return {};
  return [seed, &plan, q, values = std::vector<float>()](const weight_spec& spec, int4_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    out = quantize_int4_slice(*q, plan.slice(spec.name), values, [&](const weight_slice& s, std::vector<float>& v) {
      random_slice_f32(s, spec.kind, seed, v);
    });
    return true;
  };
}

fp8_source checkpoint_fp8_source(const checkpoint& ckpt, const model_config& config) {
  if (!config.quantization || !config.quantization->fp8()) return {};
  return [&ckpt, q = config.quantization, values = std::vector<float>()](const weight_spec& spec, fp8_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    if (q->fp8_serialized) {
      const std::string m = module_of(spec.name);
      out = read_fp8_linear(m, fp8_tensors_of(ckpt, m), *q, whole_slice(spec), ckpt.directory().string());
      return true;
    }
    ckpt.read_f32(spec.name, spec.shape, values);
    out = quantize_fp8(values, spec.shape[0], spec.shape[1], true);
    return true;
  };
}

fp8_source sharded_fp8_source(const checkpoint& ckpt, const model_config& config, const sharding_plan& plan) {
  if (!config.quantization || !config.quantization->fp8()) return {};
  return [&ckpt, &plan, q = config.quantization, values = std::vector<float>()](const weight_spec& spec, fp8_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    const weight_slice& slice = plan.slice(spec.name);
    if (q->fp8_serialized) {
      const std::string m = module_of(spec.name);
      out = read_fp8_linear(m, fp8_tensors_of(ckpt, m), *q, slice, ckpt.directory().string());
      return true;
    }
    read_slice_f32(ckpt, slice, values);
    out = quantize_fp8(values, slice.local_shape[0], slice.local_shape[1], true);
    return true;
  };
}

fp8_source dummy_fp8_source(uint64_t seed, const std::optional<quantization_config>& q) {
  if (!q || !q->fp8()) return {};
  return [seed, q, values = std::vector<float>()](const weight_spec& spec, fp8_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    random_weight_values(spec, seed, values);
    out = quantize_fp8(values, spec.shape[0], spec.shape[1], true);
    return true;
  };
}

fp8_source sharded_dummy_fp8_source(uint64_t seed, const sharding_plan& plan, const std::optional<quantization_config>& q) {
  if (!q || !q->fp8()) return {};
  return [seed, &plan, q, values = std::vector<float>()](const weight_spec& spec, fp8_weight& out) mutable {
    if (!q->quantizes(spec.name)) return false;
    const weight_slice& slice = plan.slice(spec.name);
    random_slice_f32(slice, spec.kind, seed, values);
    out = quantize_fp8(values, slice.local_shape[0], slice.local_shape[1], true);
    return true;
  };
}

} // namespace troupe
