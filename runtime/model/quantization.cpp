#include "runtime/model/quantization.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <regex>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// config.json's quantization_config, or a quantize_config.json, with messages naming `where` and the field.
struct quant_fields {
  const json& j;
  const std::string& where;

  [[noreturn]] void fail(const std::string& what) const { throw user_error(where + ": " + what); }

  // The first of `keys` present (vLLM's get_from_keys: AutoAWQ's old files say w_bit and q_group_size).
  const json* first(std::initializer_list<const char*> keys) const {
    for (const char* k : keys)
      if (j.contains(k) && !j.at(k).is_null()) return &j.at(k);
    return nullptr;
  }
  int64_t integer(std::initializer_list<const char*> keys, std::optional<int64_t> fallback) const {
    const json* v = first(keys);
    if (!v) {
      if (fallback) return *fallback;
      fail(std::string("quantization config has no '") + *keys.begin() + "'");
    }
    if (!v->is_number_integer()) fail(std::string("'") + *keys.begin() + "' must be an integer, got " + v->dump());
    return v->get<int64_t>();
  }
  bool boolean(const char* key, bool fallback) const {
    const json* v = first({key});
    if (!v) return fallback;
    if (!v->is_boolean()) fail(std::string("'") + key + "' must be true or false, got " + v->dump());
    return v->get<bool>();
  }
  std::string text(const char* key, const std::string& fallback) const {
    const json* v = first({key});
    if (!v) return fallback;
    if (!v->is_string()) fail(std::string("'") + key + "' must be a string, got " + v->dump());
    return v->get<std::string>();
  }
};

constexpr const char* supported_methods =
    "supported: awq (AutoAWQ, GEMM), gptq (AutoGPTQ / GPTQModel), fp8, compressed-tensors (float-quantized, FP8)";

quant_method parse_method(const quant_fields& f, std::optional<quant_method> hint) {
  if (!f.first({"quant_method"})) {
    if (hint) return *hint;
    f.fail(std::string("quantization config has no 'quant_method'; ") + supported_methods);
  }
  const std::string m = lower(f.text("quant_method", ""));
  if (m == "awq") return quant_method::awq;
  if (m == "gptq") return quant_method::gptq;
  if (m == "fp8") return quant_method::fp8;
  if (m == "compressed-tensors") return quant_method::compressed_tensors;
  f.fail("'quant_method' \"" + m + "\" is not supported; " + supported_methods);
}

// A list of module names (Fp8Config's ignored_layers, compressed-tensors' ignore); null or absent: none.
std::vector<std::string> module_list(const quant_fields& f, const char* key) {
  std::vector<std::string> names;
  const json* v = f.first({key});
  if (!v) return names;
  const auto refuse = [&] { f.fail(std::string("'") + key + "' must be a list of module names, got " + v->dump()); };
  if (!v->is_array()) refuse();
  for (const json& m : *v) {
    if (!m.is_string()) refuse();
    names.push_back(m.get<std::string>());
  }
  return names;
}

// vLLM's Fp8Config.from_config (model_executor/layers/quantization/fp8.py): activation_scheme (required),
// ignored_layers, weight_block_size; a quant_method containing "fp8" means F8_E4M3 weights in the checkpoint
// (is_checkpoint_fp8_serialized).
void parse_fp8(const quant_fields& f, quantization_config& q) {
  q.fp8_serialized = true;
  if (!f.first({"activation_scheme"})) f.fail("quantization config has no 'activation_scheme' (dynamic or static)");
  const std::string scheme = f.text("activation_scheme", "");
  if (scheme != "dynamic" && scheme != "static")
    f.fail("FP8 'activation_scheme' \"" + scheme + "\" is not supported; supported: dynamic, static");
  q.fp8_static_input = scheme == "static";
  if (const json* block = f.first({"weight_block_size"}))
    f.fail("FP8 'weight_block_size' " + block->dump() +
           " (block-wise scales, weight_scale_inv) is not supported; troupe reads FP8 checkpoints with per-tensor or "
           "per-channel weight_scale");
  // transformers' FineGrainedFP8Config names the format.
  if (const std::string fmt = f.text("fmt", "e4m3"); fmt != "e4m3")
    f.fail("FP8 'fmt' \"" + fmt + "\" is not supported; troupe reads float8_e4m3fn weights (e4m3)");
  q.modules_to_not_convert = module_list(f, "ignored_layers");
}

// One QuantizationArgs of a compressed-tensors config group (compressed_tensors/quantization/quant_args.py),
// checked as vLLM's CompressedTensorsConfig._is_fp8_w8a8 checks it: 8-bit float, symmetric; `what` names it.
// A missing strategy is what compressed-tensors' validator fills in: tensor for weights (no group_size), token for
// dynamic activations.
struct ct_args {
  std::string strategy;
  bool dynamic = false;
};
ct_args read_ct_args(const quant_fields& f, const json& j, const std::string& what) {
  if (!j.is_object()) f.fail("'" + what + "' must be an object, got " + j.dump());
  const quant_fields a{j, f.where};
  const int64_t bits = a.integer({"num_bits"}, 8);
  const std::string type = a.text("type", "int");
  if (bits != 8 || type != "float")
    f.fail("compressed-tensors '" + what + "' of " + std::to_string(bits) + "-bit " + type +
           " are not supported; troupe reads FP8 (num_bits 8, type float) weights and activations");
  if (!a.boolean("symmetric", true)) f.fail("compressed-tensors '" + what + "' with symmetric false are not supported");
  ct_args r;
  if (const json* d = a.first({"dynamic"})) {
    if (d->is_string()) f.fail("compressed-tensors '" + what + "' dynamic " + d->dump() + " is not supported; troupe reads true or false");
    r.dynamic = a.boolean("dynamic", false);
  }
  r.strategy = a.text("strategy", r.dynamic && what != "weights" ? "token" : "tensor");
  return r;
}

// llm-compressor's FP8 checkpoints as vLLM's CompressedTensorsConfig reads them (compressed_tensors.py:
// _is_fp8_w8a8; schemes/compressed_tensors_w8a8_fp8.py): one config group targeting Linear, weights 8-bit float
// static per tensor or per channel, activations 8-bit float dynamic (quantized per token whatever their
// strategy: act_q_group_shape PER_TOKEN) or static per tensor.
void parse_compressed_tensors(const quant_fields& f, quantization_config& q) {
  q.fp8_serialized = true;
  for (const char* key : {"sparsity_config", "transform_config"})
    if (const json* v = f.first({key}); v && !v->empty())
      f.fail(std::string("compressed-tensors '") + key + "' is not supported; got " + v->dump());
  const json* groups = f.first({"config_groups"});
  if (!groups || !groups->is_object() || groups->empty())
    f.fail("compressed-tensors config has no 'config_groups'");
  if (groups->size() != 1)
    f.fail("compressed-tensors 'config_groups' with " + std::to_string(groups->size()) +
           " groups (mixed schemes) are not supported; troupe reads one group");
  const std::string group_name = groups->begin().key();
  const json& g = groups->begin().value();
  if (!g.is_object()) f.fail("compressed-tensors group '" + group_name + "' must be an object");
  const quant_fields gf{g, f.where};
  const std::string format = gf.text("format", f.text("format", ""));
  if (format != "float-quantized")
    f.fail("compressed-tensors 'format' \"" + format +
           "\" is not supported; troupe reads \"float-quantized\" (FP8 weights and activations)");
  const json* targets = gf.first({"targets"});
  if (!targets || *targets != json::array({"Linear"}))
    f.fail("compressed-tensors group '" + group_name + "' targets " + (targets ? targets->dump() : std::string("nothing")) +
           "; troupe reads a group whose targets are [\"Linear\"]");
  const json* weights = gf.first({"weights"});
  if (!weights) f.fail("compressed-tensors group '" + group_name + "' has no 'weights'");
  const ct_args w = read_ct_args(f, *weights, "weights");
  if (w.dynamic) f.fail("compressed-tensors 'weights' with dynamic true are not supported");
  if (w.strategy != "tensor" && w.strategy != "channel")
    f.fail("compressed-tensors weights strategy \"" + w.strategy +
           "\" is not supported; supported: tensor, channel (block and group scales are not)");
  q.fp8_channel_scales = w.strategy == "channel";
  const json* inputs = gf.first({"input_activations"});
  if (!inputs)
    f.fail("compressed-tensors weight-only FP8 ('input_activations' null, vLLM's W8A16 through Marlin) is not "
           "supported; troupe runs FP8 weights with FP8 activations");
  const ct_args in = read_ct_args(f, *inputs, "input_activations");
  if (!in.dynamic && in.strategy != "tensor")
    f.fail("compressed-tensors static input_activations of strategy \"" + in.strategy +
           "\" are not supported; static activations have one scale per tensor (strategy tensor)");
  q.fp8_static_input = !in.dynamic;
  if (const json* out = gf.first({"output_activations"}))
    f.fail("compressed-tensors 'output_activations' " + out->dump() + " are not supported");
  q.modules_to_not_convert = module_list(f, "ignore");
}

} // namespace

std::string_view name(quant_method m) {
  switch (m) {
    case quant_method::awq: return "awq";
    case quant_method::gptq: return "gptq";
    case quant_method::rtn: return "rtn";
    case quant_method::fp8: return "fp8";
    case quant_method::compressed_tensors: return "compressed-tensors";
  }
  return "?";
}

int64_t quantization_config::group_for(int64_t in_features) const {
  if (method != quant_method::rtn) return group_size == -1 ? in_features : group_size;
  for (int64_t g : {int64_t{128}, int64_t{64}, int64_t{32}})
    if (in_features % g == 0) return g;
  return in_features;
}

bool quantization_config::quantizes(std::string_view weight_name) const {
  static constexpr std::array<std::string_view, 7> linears = {
      ".self_attn.q_proj.weight", ".self_attn.k_proj.weight", ".self_attn.v_proj.weight", ".self_attn.o_proj.weight",
      ".mlp.gate_proj.weight",    ".mlp.up_proj.weight",      ".mlp.down_proj.weight"};
  if (!weight_name.starts_with("model.layers.")) return false;
  if (std::none_of(linears.begin(), linears.end(), [&](std::string_view s) { return weight_name.ends_with(s); }))
    return false;
  if (four_bit())
    return std::none_of(modules_to_not_convert.begin(), modules_to_not_convert.end(),
                        [&](const std::string& m) { return weight_name.find(m) != std::string_view::npos; });
  const std::string module(weight_name.substr(0, weight_name.size() - 7));  // without ".weight"
  return std::none_of(modules_to_not_convert.begin(), modules_to_not_convert.end(), [&](const std::string& m) {
    if (!m.starts_with("re:")) return m == module;
    // Python's re.match: anchored at the start only.
    return std::regex_search(module, std::regex(m.substr(3)), std::regex_constants::match_continuous);
  });
}

quantization_config quantization_config::from_json(std::string_view json_text, const std::string& where,
                                                   std::optional<quant_method> method_hint) {
  const json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw user_error(where + ": the quantization config is not a JSON object");
  const quant_fields f{j, where};
  quantization_config q;
  q.method = parse_method(f, method_hint);
  const std::string method(name(q.method));
  if (q.method == quant_method::fp8 || q.method == quant_method::compressed_tensors) {
    if (q.method == quant_method::fp8) parse_fp8(f, q);
    else parse_compressed_tensors(f, q);
    for (const std::string& m : q.modules_to_not_convert)
      if (m.starts_with("re:")) {
        try {
          std::regex(m.substr(3));
        } catch (const std::regex_error&) {
          f.fail("the module pattern \"" + m + "\" is not a regular expression troupe can read");
        }
      }
    return q;
  }

  const int64_t bits = q.method == quant_method::awq ? f.integer({"bits", "w_bit"}, std::nullopt)
                                                     : f.integer({"bits"}, std::nullopt);
  if (bits != 4) f.fail("'bits' " + std::to_string(bits) + " is not supported for " + method + "; troupe supports 4");
  q.group_size = q.method == quant_method::awq ? f.integer({"group_size", "q_group_size"}, std::nullopt)
                                               : f.integer({"group_size"}, std::nullopt);
  if (q.group_size != 32 && q.group_size != 64 && q.group_size != 128 && q.group_size != -1)
    f.fail("'group_size' " + std::to_string(q.group_size) + " is not supported for " + method +
           "; supported: 32, 64, 128 and -1 (the whole input dimension)");

  if (q.method == quant_method::awq) {
    // AutoAWQ's older quant_config.json files spell it "GEMM".
    const std::string version = lower(f.text("version", "gemm"));
    if (version != "gemm")
      f.fail("AWQ 'version' \"" + version + "\" is not supported; troupe reads AutoAWQ's GEMM layout (\"gemm\") only");
    // NOTE: vLLM's AWQ reads qzeros whatever zero_point says; AutoAWQ's GEMM writer always stores them. With
    // zero_point false the zeros must all be 8 (a symmetric code), which the loader checks.
    q.symmetric = !f.boolean("zero_point", true);
    if (const json* skip = f.first({"modules_to_not_convert"})) {
      if (!skip->is_array()) f.fail("'modules_to_not_convert' must be a list of module names, got " + skip->dump());
      for (const json& m : *skip) {
        if (!m.is_string()) f.fail("'modules_to_not_convert' must be a list of module names, got " + skip->dump());
        q.modules_to_not_convert.push_back(m.get<std::string>());
      }
    }
  } else {
    if (f.boolean("desc_act", false))
      f.fail("GPTQ 'desc_act' true (act-order) is not supported; troupe reads GPTQ checkpoints with desc_act false");
    q.symmetric = f.boolean("sym", true);
    const std::string format = f.text("checkpoint_format", "gptq");
    if (format == "gptq_v2") q.gptq_v2 = true;
    else if (format != "gptq" && !format.empty())
      f.fail("GPTQ 'checkpoint_format' \"" + format + "\" is not supported; supported: gptq, gptq_v2");
    if (f.boolean("is_marlin_format", false))
      f.fail("GPTQ 'is_marlin_format' true is not supported; troupe reads AutoGPTQ's gptq checkpoint format");
    if (const json* dynamic = f.first({"dynamic"}); dynamic && !dynamic->empty())
      f.fail("GPTQModel's per-module 'dynamic' overrides are not supported; got " + dynamic->dump());
  }
  if (f.boolean("lm_head", false))
    f.fail("a quantized lm_head ('lm_head': true) is not supported; troupe quantizes the decoder layers' linear weights");
  return q;
}

std::string quantization_config::to_json() const {
  json j;
  j["quant_method"] = std::string(name(method));
  if (method == quant_method::fp8) {  // as AutoFP8 writes it
    j["activation_scheme"] = fp8_static_input ? "static" : "dynamic";
    if (!modules_to_not_convert.empty()) j["ignored_layers"] = modules_to_not_convert;
    return j.dump();
  }
  if (method == quant_method::compressed_tensors) {  // as llm-compressor writes an FP8 scheme
    const json weights = {{"num_bits", 8},     {"type", "float"},   {"symmetric", true},
                          {"dynamic", false},  {"group_size", nullptr},
                          {"strategy", fp8_channel_scales ? "channel" : "tensor"}};
    const json inputs = {{"num_bits", 8},
                         {"type", "float"},
                         {"symmetric", true},
                         {"dynamic", !fp8_static_input},
                         {"group_size", nullptr},
                         {"strategy", fp8_static_input ? "tensor" : "token"}};
    j["format"] = "float-quantized";
    j["quantization_status"] = "compressed";
    j["config_groups"] = {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", inputs},
                                       {"output_activations", nullptr}}}};
    j["ignore"] = modules_to_not_convert.empty() ? json::array({"lm_head"}) : json(modules_to_not_convert);
    j["kv_cache_scheme"] = nullptr;
    return j.dump();
  }
  j["bits"] = 4;
  j["group_size"] = group_size;
  if (method == quant_method::awq) {
    j["version"] = "gemm";
    j["zero_point"] = !symmetric;
    j["modules_to_not_convert"] = modules_to_not_convert.empty() ? json(nullptr) : json(modules_to_not_convert);
  } else {
    j["desc_act"] = false;
    j["sym"] = symmetric;
    j["checkpoint_format"] = gptq_v2 ? "gptq_v2" : "gptq";
  }
  return j.dump();
}

std::optional<quantization_config> resolve_quantization(const std::optional<quantization_config>& from_checkpoint,
                                                        std::string_view flag, const std::filesystem::path& model_dir) {
  if (flag.empty()) return from_checkpoint;
  std::optional<quant_method> wanted;
  for (quant_method m : {quant_method::awq, quant_method::gptq, quant_method::rtn, quant_method::fp8,
                         quant_method::compressed_tensors})
    if (flag == name(m)) wanted = m;
  if (!wanted)
    throw user_error("--quantization must be awq, gptq, rtn, fp8 or compressed-tensors, got '" + std::string(flag) + "'");
  if (from_checkpoint) {
    if (from_checkpoint->method == *wanted) return from_checkpoint;
    const std::string have(name(from_checkpoint->method));
    throw user_error("Quantization method specified in the model config (" + have +
                     ") does not match the quantization method specified in the `quantization` argument (" +
                     std::string(flag) + "); the checkpoint is already quantized with " + have +
                     ": drop --quantization or give --quantization " + have);
  }
  if (*wanted == quant_method::rtn || *wanted == quant_method::fp8) {
    // fp8 on an unquantized checkpoint: vLLM's dynamic FP8 (Fp8Config with is_checkpoint_fp8_serialized false),
    // each weight quantized at load; troupe scales it per output channel (fp8_formats.hpp says why).
    quantization_config q;
    q.method = *wanted;
    q.fp8_channel_scales = *wanted == quant_method::fp8;
    return q;
  }
  if (*wanted == quant_method::compressed_tensors)
    throw user_error("Cannot find the config file for compressed-tensors: --quantization compressed-tensors needs a "
                     "checkpoint quantized with llm-compressor, and " + model_dir.string() +
                     " has no quantization_config in config.json; for FP8 weights made at load, use --quantization fp8");
  // vLLM's get_quant_config: without quantization_config in config.json, the method's own config file.
  for (const char* file : {"quant_config.json", "quantize_config.json"}) {
    if (*wanted == quant_method::gptq && std::string_view(file) == "quant_config.json") continue;
    const auto path = model_dir / file;
    if (std::filesystem::exists(path)) {
      quantization_config q = quantization_config::from_json(read_text_file(path), path.string(), wanted);
      if (q.method != *wanted)
        throw user_error(path.string() + ": says quant_method " + std::string(name(q.method)) + ", but --quantization is " +
                         std::string(flag));
      return q;
    }
  }
  throw user_error("Cannot find the config file for " + std::string(flag) + ": --quantization " + std::string(flag) +
                   " needs a checkpoint quantized with " + std::string(flag) + ", and " + model_dir.string() +
                   " has no quantization_config in config.json (nor a " +
                   (*wanted == quant_method::awq ? "quant_config.json or quantize_config.json" : "quantize_config.json") +
                   "); for 4-bit weights made at load, use --quantization rtn");
}

} // namespace troupe
