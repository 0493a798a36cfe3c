#pragma once
// Server-side sampling defaults from a model's generation_config.json, as vLLM's --generation-config and
// --override-generation-config give them (ModelConfig.get_diff_sampling_param): a request's own value wins,
// then these, then OpenAI's defaults.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace troupe {

struct generation_defaults {
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int64_t> top_k;
  std::optional<int64_t> max_tokens;  // generation_config's max_new_tokens: caps a request's max_tokens
  bool empty() const { return !temperature && !top_p && !min_p && !repetition_penalty && !top_k && !max_tokens; }
  // "temperature=0.6, top_p=0.95" (the set ones, in vLLM's order), for the log.
  std::string describe() const;
};

// The defaults for `mode`: "auto" reads model_dir/generation_config.json, "vllm" reads nothing, any other
// value is a folder whose generation_config.json is read; then override_json (a JSON object, or empty)
// is merged on top, a null removing a key. As transformers' GenerationConfig.to_diff_dict, a file's
// value equal to transformers' own default (temperature 1.0, top_p 1.0, top_k 50, repetition_penalty
// 1.0) is no default; an override's always is. Throws user_error naming the flag or file at fault (a
// folder that does not exist, a value that is not a number, JSON that does not parse).
generation_defaults resolve_generation_defaults(const std::filesystem::path& model_dir, std::string_view mode,
                                                std::string_view override_json);

// The defaults an offline run (troupe generate, bench throughput) takes: those of `d` whose flag
// (--temperature, --top-p, --top-k, --min-p, --repetition-penalty, --max-tokens) `given` says the command
// line did not give, as vLLM's LLM.generate takes the model's defaults where its caller sets nothing.
generation_defaults defaults_for_flags_not_given(generation_defaults d, const std::function<bool(std::string_view flag)>& given);

} // namespace troupe
