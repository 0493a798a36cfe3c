#pragma once
// What the API side needs of a model, without its weights: the names it answers to, its tokenizer, its chat
// templates and its context length. The engine loads one beside its weights; `troupe router` loads one alone,
// from the same folder as its workers', to render and tokenize prompts itself (and hash their blocks).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/chat/chat_template.hpp"
#include "runtime/model/generation_config.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/structured/grammar_cache.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

// Structured outputs for one model: its vocabulary as the grammar engine sees it, and the compiled grammars
// that every request with the same spec shares (the gateway compiles a request's spec to check it, the
// engine to admit it, the sampling shard to constrain it: one compile, then cache hits).
struct model_grammars {
  std::shared_ptr<const token_vocabulary> vocab;
  grammar_cache cache;
  // Throws std::invalid_argument with what is wrong with the spec.
  std::shared_ptr<const compiled_grammar> compile(const structured_output& spec) { return cache.get(spec, vocab); }
};

struct model_front_options {
  std::string model;          // Hugging Face folder; empty: the built-in default model
  std::string tokenizer;      // folder of tokenizer.json and tokenizer_config.json; empty: the model's
  // vLLM's --chat-template: a Jinja file, or the template itself (chat_template::from_flag), overriding
  // tokenizer_config.json's.
  std::string chat_template;
  std::vector<std::string> served_model_names;  // empty: the model's path, else "troupe-default"
  // vLLM's --generation-config (auto, vllm or a folder) and --override-generation-config (a JSON object).
  std::string generation_config = "auto";
  std::string override_generation_config;
  int64_t max_model_len = 0;  // 0: the model's
  bool allow_long_max_model_len = false;
};

struct model_front {
  std::filesystem::path dir;  // the model folder
  model_config config;
  std::unique_ptr<tokenizer> tok;  // null when the folder has no tokenizer.json
  // The chat template, and the tool-use variant some tokenizer_config.json files carry, with the bos/eos
  // tokens a template may use.
  std::optional<chat_template> chat, chat_tools;
  // The tokenizer's named templates (tokenizer_config.json's list form): a request's chat_template naming one
  // renders with it, as transformers resolves the name.
  std::vector<std::pair<std::string, chat_template>> named_chats;
  chat_template_options chat_options;
  generation_defaults sampling_defaults;  // from generation_config.json and its override
  std::vector<std::string> served_model_names;  // never empty
  std::string root;           // /v1/models' root: the model as given, else the served name
  int64_t max_model_len = 0;  // resolved
  // The ids that end generation: generation_config's EOS ids, and the tokenizer's EOS when it names another.
  std::vector<int32_t> eos_token_ids;
  std::shared_ptr<model_grammars> grammars;  // null when the folder has no tokenizer.json
};

// Reads the folder's config, tokenizer and templates. Throws user_error naming the folder or flag at fault.
model_front load_model_front(const model_front_options& options);

} // namespace troupe
