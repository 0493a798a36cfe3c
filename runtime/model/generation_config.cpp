#include "runtime/model/generation_config.hpp"

#include <array>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/error.hpp"
#include "runtime/model/model_config.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

// The keys vLLM takes from a generation config, in its order, with transformers' GenerationConfig
// defaults (to_diff_dict leaves out a value equal to them; nullopt: no default there).
struct sampling_key {
  const char* name;
  std::optional<double> transformers_default;
  bool integer;
};
constexpr std::array<sampling_key, 6> keys{{{"repetition_penalty", 1.0, false},
                                            {"temperature", 1.0, false},
                                            {"top_k", 50.0, true},
                                            {"top_p", 1.0, false},
                                            {"min_p", std::nullopt, false},
                                            {"max_new_tokens", std::nullopt, true}}};

json read_object(const std::filesystem::path& path) {
  json j = json::parse(read_text_file(path), nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw user_error(path.string() + ": not a JSON object");
  return j;
}

// Copies the sampling keys of `from` into `into` (a null erases); from_file: drop transformers' defaults.
void merge(json& into, const json& from, bool from_file, const std::string& where) {
  for (const sampling_key& k : keys) {
    const auto it = from.find(k.name);
    if (it == from.end()) continue;
    if (it->is_null()) {
      into.erase(k.name);
      continue;
    }
    if (!it->is_number() || (k.integer && !it->is_number_integer()))
      throw user_error(where + ": " + k.name + " must be " + (k.integer ? "an integer" : "a number") + ", got " +
                       it->dump());
    if (from_file && k.transformers_default && it->get<double>() == *k.transformers_default) continue;
    into[k.name] = *it;
  }
}

} // namespace

std::string generation_defaults::describe() const {
  std::string out;
  auto add = [&out](const char* name, const auto& v) {
    if (v) out += fmt::format("{}{}={}", out.empty() ? "" : ", ", name, *v);
  };
  add("repetition_penalty", repetition_penalty);
  add("temperature", temperature);
  add("top_k", top_k);
  add("top_p", top_p);
  add("min_p", min_p);
  add("max_tokens", max_tokens);
  return out;
}

generation_defaults resolve_generation_defaults(const std::filesystem::path& model_dir, std::string_view mode,
                                                std::string_view override_json) {
  json merged = json::object();
  if (mode != "vllm") {
    std::filesystem::path dir = model_dir;
    if (mode != "auto") {
      dir = std::string(mode);
      if (!std::filesystem::is_directory(dir))
        throw user_error("--generation-config " + std::string(mode) +
                         ": no such folder (give auto, vllm, or a folder holding generation_config.json)");
    }
    const auto path = dir / "generation_config.json";
    if (std::filesystem::exists(path)) merge(merged, read_object(path), true, path.string());
  }
  if (!override_json.empty()) {
    json o = json::parse(override_json, nullptr, false);
    if (o.is_discarded() || !o.is_object())
      throw user_error("--override-generation-config must be a JSON object, as '{\"temperature\": 0.5}', got '" +
                       std::string(override_json) + "'");
    merge(merged, o, false, "--override-generation-config");
  }
  generation_defaults d;
  auto number = [&](const char* k, std::optional<double>& out) {
    if (merged.contains(k)) out = merged[k].get<double>();
  };
  auto integer = [&](const char* k, std::optional<int64_t>& out) {
    if (merged.contains(k)) out = merged[k].get<int64_t>();
  };
  number("repetition_penalty", d.repetition_penalty);
  number("temperature", d.temperature);
  integer("top_k", d.top_k);
  number("top_p", d.top_p);
  number("min_p", d.min_p);
  integer("max_new_tokens", d.max_tokens);
  return d;
}

generation_defaults defaults_for_flags_not_given(generation_defaults d, const std::function<bool(std::string_view)>& given) {
  if (given("--temperature")) d.temperature.reset();
  if (given("--top-p")) d.top_p.reset();
  if (given("--top-k")) d.top_k.reset();
  if (given("--min-p")) d.min_p.reset();
  if (given("--repetition-penalty")) d.repetition_penalty.reset();
  if (given("--max-tokens")) d.max_tokens.reset();
  return d;
}

} // namespace troupe
