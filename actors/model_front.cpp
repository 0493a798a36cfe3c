#include "actors/model_front.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "runtime/error.hpp"
#include "runtime/model/random_model.hpp"

namespace troupe {
namespace fs = std::filesystem;

model_front load_model_front(const model_front_options& o) {
  model_front f;
  f.dir = o.model.empty() ? default_model_dir() : fs::path(o.model);
  if (!fs::is_directory(f.dir))
    throw user_error("--model " + f.dir.string() + ": no such folder (troupe serves a local Hugging Face folder; it never "
                     "downloads one)");
  f.config = model_config::from_dir(f.dir);
  // vLLM's --tokenizer: the tokenizer and its config (the chat template) from another folder.
  const fs::path tok_dir = o.tokenizer.empty() ? f.dir : fs::path(o.tokenizer);
  if (!o.tokenizer.empty() && !fs::exists(tok_dir / "tokenizer.json"))
    throw user_error("--tokenizer " + o.tokenizer + ": no tokenizer.json there");
  if (fs::exists(tok_dir / "tokenizer.json")) f.tok = std::make_unique<tokenizer>(tokenizer::from_file(tok_dir / "tokenizer.json"));
  const fs::path tokenizer_config = tok_dir / "tokenizer_config.json";
  if (!o.chat_template.empty()) {
    f.chat = chat_template::from_flag(o.chat_template);
  } else if (fs::exists(tokenizer_config)) {
    f.chat = chat_template::from_tokenizer_config(tokenizer_config, false);
    f.chat_tools = chat_template::from_tokenizer_config(tokenizer_config, true);
  }
  if (fs::exists(tokenizer_config)) {
    f.chat_options = chat_template_options_from_tokenizer_config(tokenizer_config);
    f.named_chats = chat_template::named_in_tokenizer_config(tokenizer_config);
  }
  f.sampling_defaults = resolve_generation_defaults(f.dir, o.generation_config, o.override_generation_config);
  const max_model_len_choice len = resolve_max_model_len(f.config, o.max_model_len, o.allow_long_max_model_len);
  if (!len.warning.empty()) spdlog::warn("{}", len.warning);
  f.max_model_len = len.value;
  f.served_model_names = o.served_model_names;
  if (f.served_model_names.empty()) f.served_model_names.push_back(!o.model.empty() ? o.model : "troupe-default");
  f.root = o.model.empty() ? f.served_model_names.front() : o.model;
  f.eos_token_ids = f.config.eos_token_ids;
  if (f.tok && f.tok->eos_id() && std::find(f.eos_token_ids.begin(), f.eos_token_ids.end(), *f.tok->eos_id()) == f.eos_token_ids.end())
    f.eos_token_ids.push_back(*f.tok->eos_id());
  if (f.tok) {
    f.grammars = std::make_shared<model_grammars>();
    // Bitmasks span the logits: a model padded past the tokenizer's vocabulary never samples the padding.
    const int32_t model_vocab = static_cast<int32_t>(f.config.vocab_size);
    f.grammars->vocab = make_token_vocabulary(*f.tok, f.eos_token_ids, model_vocab > f.tok->vocab_size() ? model_vocab : 0);
  }
  return f;
}

} // namespace troupe
