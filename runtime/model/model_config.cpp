#include "runtime/model/model_config.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/error.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

struct parse_context {
  const json& j;
  const std::string& where;

  [[noreturn]] void fail(const std::string& what) const { throw user_error(where + ": " + what); }

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }

  int64_t positive_int(const char* key) const {
    if (!has(key)) fail(std::string("missing '") + key + "'");
    const json& v = j.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      fail(std::string("'") + key + "' must be a positive integer, got " + v.dump());
    return v.get<int64_t>();
  }
  int64_t positive_int_or(const char* key, int64_t fallback) const {
    return has(key) ? positive_int(key) : fallback;
  }
  double number_or(const json& obj, const char* key, double fallback) const {
    if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
    if (!obj.at(key).is_number()) fail(std::string("'") + key + "' must be a number, got " + obj.at(key).dump());
    return obj.at(key).get<double>();
  }
  bool bool_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j.at(key).is_boolean()) fail(std::string("'") + key + "' must be true or false, got " + j.at(key).dump());
    return j.at(key).get<bool>();
  }
};

architecture parse_architecture(const parse_context& c, std::string& name) {
  if (c.has("architectures")) {
    const json& a = c.j.at("architectures");
    if (!a.is_array() || a.empty() || !a[0].is_string()) c.fail("'architectures' must be a list of names");
    name = a[0].get<std::string>();
  } else if (c.has("model_type") && c.j.at("model_type").is_string()) {
    const std::string type = c.j.at("model_type").get<std::string>();
    if (type == "llama") name = "LlamaForCausalLM";
    else if (type == "mistral") name = "MistralForCausalLM";
    else if (type == "qwen2") name = "Qwen2ForCausalLM";
    else if (type == "qwen3") name = "Qwen3ForCausalLM";
    else name = type;
  } else {
    c.fail("neither 'architectures' nor 'model_type' is given");
  }
  if (name == "LlamaForCausalLM") return architecture::llama;
  if (name == "MistralForCausalLM") return architecture::mistral;
  if (name == "Qwen2ForCausalLM") return architecture::qwen2;
  if (name == "Qwen3ForCausalLM") return architecture::qwen3;
  c.fail("architecture '" + name +
         "' is not supported; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM");
}

rope_config parse_rope(const parse_context& c) {
  rope_config rope;
  // transformers 5 writes everything into `rope_parameters`; older files split theta and scaling.
  const json empty = json::object();
  const json* scaling = &empty;
  if (c.has("rope_parameters")) {
    scaling = &c.j.at("rope_parameters");
    if (!scaling->is_object()) c.fail("'rope_parameters' must be an object");
    rope.theta = c.number_or(*scaling, "rope_theta", c.number_or(c.j, "rope_theta", rope.theta));
  } else {
    rope.theta = c.number_or(c.j, "rope_theta", rope.theta);
    if (c.has("rope_scaling")) {
      scaling = &c.j.at("rope_scaling");
      if (!scaling->is_object()) c.fail("'rope_scaling' must be an object or null");
    }
  }
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (scaling->contains(key) && scaling->at(key).is_string()) {
      type = scaling->at(key).get<std::string>();
      break;
    }
  }
  if (type == "default") {
    rope.type = rope_config::kind::default_;
  } else if (type == "linear") {
    rope.type = rope_config::kind::linear;
    rope.factor = c.number_or(*scaling, "factor", 1.0);
  } else if (type == "llama3") {
    rope.type = rope_config::kind::llama3;
    rope.factor = c.number_or(*scaling, "factor", 8.0);
    rope.low_freq_factor = c.number_or(*scaling, "low_freq_factor", 1.0);
    rope.high_freq_factor = c.number_or(*scaling, "high_freq_factor", 4.0);
    rope.original_max_position_embeddings =
        static_cast<int64_t>(c.number_or(*scaling, "original_max_position_embeddings", 8192));
    if (rope.high_freq_factor <= rope.low_freq_factor)
      c.fail("llama3 rope scaling needs high_freq_factor > low_freq_factor");
  } else {
    c.fail("rope type '" + type + "' is not supported; supported: default, linear, llama3");
  }
  if (rope.theta <= 0) c.fail("'rope_theta' must be positive");
  if (rope.factor <= 0) c.fail("rope scaling 'factor' must be positive");
  const double partial = c.number_or(*scaling, "partial_rotary_factor", c.number_or(c.j, "partial_rotary_factor", 1.0));
  if (partial != 1.0) c.fail("'partial_rotary_factor' " + std::to_string(partial) + " is not supported (only 1.0)");
  return rope;
}

std::vector<int32_t> parse_token_ids(const json& v) {
  std::vector<int32_t> ids;
  if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const json& e : v)
      if (e.is_number_integer()) ids.push_back(e.get<int32_t>());
  return ids;
}

} // namespace

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw user_error(path.string() + ": cannot be read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string_view architecture_name(architecture arch) {
  switch (arch) {
    case architecture::llama: return "LlamaForCausalLM";
    case architecture::mistral: return "MistralForCausalLM";
    case architecture::qwen2: return "Qwen2ForCausalLM";
    case architecture::qwen3: return "Qwen3ForCausalLM";
  }
  return "?";
}

int64_t model_config::num_parameters() const {
  const int64_t attn = hidden_size * (q_size() + 2 * kv_size()) + q_size() * hidden_size +
                       (qkv_bias ? q_size() + 2 * kv_size() : 0) + (o_bias ? hidden_size : 0) +
                       (qk_norm ? 2 * head_dim : 0);
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t per_layer = attn + mlp + 2 * hidden_size;
  return num_layers * per_layer + vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
}

model_config model_config::from_json(std::string_view json_text, const std::string& where) {
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw user_error(where + ": not a JSON object");
  const parse_context c{j, where};

  model_config m;
  m.arch = parse_architecture(c, m.architecture_name);
  m.hidden_size = c.positive_int("hidden_size");
  m.num_layers = c.positive_int("num_hidden_layers");
  m.num_heads = c.positive_int("num_attention_heads");
  m.num_kv_heads = c.positive_int_or("num_key_value_heads", m.num_heads);
  m.intermediate_size = c.positive_int("intermediate_size");
  m.vocab_size = c.positive_int("vocab_size");
  m.max_position_embeddings = c.positive_int_or("max_position_embeddings", 2048);
  if (m.hidden_size % m.num_heads != 0 && !c.has("head_dim"))
    c.fail("hidden_size " + std::to_string(m.hidden_size) + " is not divisible by num_attention_heads " +
           std::to_string(m.num_heads) + " and no 'head_dim' is given");
  m.head_dim = c.positive_int_or("head_dim", m.hidden_size / m.num_heads);
  if (m.head_dim % 2 != 0) c.fail("'head_dim' must be even for rotary embeddings, got " + std::to_string(m.head_dim));
  if (m.num_heads % m.num_kv_heads != 0)
    c.fail("num_attention_heads " + std::to_string(m.num_heads) + " is not a multiple of num_key_value_heads " +
           std::to_string(m.num_kv_heads));
  m.rms_norm_eps = c.number_or(j, "rms_norm_eps", 1e-6);
  if (m.rms_norm_eps <= 0) c.fail("'rms_norm_eps' must be positive");
  m.tie_word_embeddings = c.bool_or("tie_word_embeddings", false);

  const std::string act = c.has("hidden_act") && j.at("hidden_act").is_string() ? j.at("hidden_act").get<std::string>() : "silu";
  if (act != "silu") c.fail("hidden_act '" + act + "' is not supported (only silu)");
  if (c.has("quantization_config"))
    m.quantization = quantization_config::from_json(j.at("quantization_config").dump(), where + ": quantization_config");

  switch (m.arch) {
    case architecture::qwen2:
      m.qkv_bias = true;
      if (c.bool_or("use_sliding_window", false))
        c.fail("'use_sliding_window': true is not supported for Qwen2ForCausalLM");
      break;
    case architecture::llama:
      m.qkv_bias = c.bool_or("attention_bias", false);
      m.o_bias = m.qkv_bias;
      if (c.bool_or("mlp_bias", false)) c.fail("'mlp_bias': true is not supported");
      break;
    case architecture::mistral:
      if (c.has("sliding_window")) m.sliding_window = c.positive_int("sliding_window");
      break;
    case architecture::qwen3:
      // Qwen3Attention: q/k/v and o_proj biases only with attention_bias; q_norm and k_norm always.
      m.qkv_bias = c.bool_or("attention_bias", false);
      m.o_bias = m.qkv_bias;
      m.qk_norm = true;
      if (c.bool_or("use_sliding_window", false))
        c.fail("'use_sliding_window': true is not supported for Qwen3ForCausalLM");
      break;
  }
  m.rope = parse_rope(c);
  if (c.has("torch_dtype") && j.at("torch_dtype").is_string()) m.torch_dtype = j.at("torch_dtype").get<std::string>();
  else if (c.has("dtype") && j.at("dtype").is_string()) m.torch_dtype = j.at("dtype").get<std::string>();
  if (c.has("eos_token_id")) m.eos_token_ids = parse_token_ids(j.at("eos_token_id"));
  if (c.has("bos_token_id") && j.at("bos_token_id").is_number_integer()) m.bos_token_id = j.at("bos_token_id").get<int32_t>();
  return m;
}

model_config model_config::from_dir(const std::filesystem::path& dir) {
  const auto config_path = dir / "config.json";
  if (!std::filesystem::exists(config_path))
    throw user_error(dir.string() + ": no config.json; --model must name a Hugging Face model folder");
  model_config m = from_json(read_text_file(config_path), config_path.string());
  const auto gen_path = dir / "generation_config.json";
  if (std::filesystem::exists(gen_path)) {
    json g = json::parse(read_text_file(gen_path), nullptr, false);
    if (g.is_discarded() || !g.is_object()) throw user_error(gen_path.string() + ": not a JSON object");
    if (g.contains("eos_token_id") && !g.at("eos_token_id").is_null()) {
      auto ids = parse_token_ids(g.at("eos_token_id"));
      if (!ids.empty()) m.eos_token_ids = ids;
    }
    if (g.contains("bos_token_id") && g.at("bos_token_id").is_number_integer())
      m.bos_token_id = g.at("bos_token_id").get<int32_t>();
  }
  return m;
}

std::string model_config::to_json() const {
  json j;
  j["architectures"] = json::array({std::string(troupe::architecture_name(arch))});
  j["model_type"] = arch == architecture::qwen2   ? "qwen2"
                    : arch == architecture::qwen3 ? "qwen3"
                    : arch == architecture::mistral ? "mistral"
                                                    : "llama";
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["intermediate_size"] = intermediate_size;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = torch_dtype;
  j["rope_theta"] = rope.theta;
  if (arch == architecture::llama || arch == architecture::qwen3) j["attention_bias"] = qkv_bias;
  if (arch == architecture::mistral) j["sliding_window"] = sliding_window ? json(*sliding_window) : json(nullptr);
  switch (rope.type) {
    case rope_config::kind::default_: j["rope_scaling"] = nullptr; break;
    case rope_config::kind::linear: j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope.factor}}; break;
    case rope_config::kind::llama3:
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", rope.factor},
                           {"low_freq_factor", rope.low_freq_factor},
                           {"high_freq_factor", rope.high_freq_factor},
                           {"original_max_position_embeddings", rope.original_max_position_embeddings}};
      break;
  }
  if (quantization && !quantization->made_at_load())  // rtn and dynamic fp8 are load options, not a checkpoint's
    j["quantization_config"] = json::parse(quantization->to_json());
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j.dump(2);
}

int64_t derived_max_model_len(const model_config& c) {
  const double factor = c.rope.type == rope_config::kind::linear ? c.rope.factor : 1.0;
  return static_cast<int64_t>(static_cast<double>(c.max_position_embeddings) * factor);
}

max_model_len_choice resolve_max_model_len(const model_config& c, int64_t requested, bool allow_long) {
  const int64_t derived = derived_max_model_len(c);
  if (requested < 0) throw user_error("--max-model-len must be positive, got " + std::to_string(requested));
  if (requested == 0) return {derived, ""};
  if (requested <= derived) return {requested, ""};
  // vLLM's words (ModelConfig's _get_and_verify_max_len), so that searches for them find this case too.
  const std::string msg = "User-specified max_model_len (" + std::to_string(requested) +
                          ") is greater than the derived max_model_len (max_position_embeddings=" +
                          std::to_string(derived) + " in model's config.json).";
  const std::string caution = "Positions beyond the derived length give the model rotary angles it was never "
                              "trained on: expect worse output there.";
  if (!allow_long)
    throw user_error(msg + " To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. " + caution);
  return {requested, msg + " " + caution};
}

} // namespace troupe
