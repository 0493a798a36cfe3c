#include "runtime/model/quantization.hpp"

#include <algorithm>
#include <array>
#include <cctype>

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

quant_method parse_method(const quant_fields& f, std::optional<quant_method> hint) {
  if (!f.first({"quant_method"})) {
    if (hint) return *hint;
    f.fail("quantization config has no 'quant_method'; supported: awq, gptq");
  }
  const std::string m = lower(f.text("quant_method", ""));
  if (m == "awq") return quant_method::awq;
  if (m == "gptq") return quant_method::gptq;
  f.fail("'quant_method' \"" + m + "\" is not supported; supported: awq (AutoAWQ, GEMM), gptq (AutoGPTQ / GPTQModel)");
}

} // namespace

std::string_view name(quant_method m) {
  switch (m) {
    case quant_method::awq: return "awq";
    case quant_method::gptq: return "gptq";
    case quant_method::rtn: return "rtn";
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
  return std::none_of(modules_to_not_convert.begin(), modules_to_not_convert.end(),
                      [&](const std::string& m) { return weight_name.find(m) != std::string_view::npos; });
}

quantization_config quantization_config::from_json(std::string_view json_text, const std::string& where,
                                                   std::optional<quant_method> method_hint) {
  const json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw user_error(where + ": the quantization config is not a JSON object");
  const quant_fields f{j, where};
  quantization_config q;
  q.method = parse_method(f, method_hint);
  const std::string method(name(q.method));

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
  for (quant_method m : {quant_method::awq, quant_method::gptq, quant_method::rtn})
    if (flag == name(m)) wanted = m;
  if (!wanted) throw user_error("--quantization must be awq, gptq or rtn, got '" + std::string(flag) + "'");
  if (from_checkpoint) {
    if (from_checkpoint->method == *wanted) return from_checkpoint;
    const std::string have(name(from_checkpoint->method));
    throw user_error("Quantization method specified in the model config (" + have +
                     ") does not match the quantization method specified in the `quantization` argument (" +
                     std::string(flag) + "); the checkpoint is already quantized with " + have +
                     ": drop --quantization or give --quantization " + have);
  }
  if (*wanted == quant_method::rtn) {
    quantization_config q;
    q.method = quant_method::rtn;
    return q;
  }
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
