#pragma once
// runtime/chat/: a Jinja interpreter (jinja_*) and the chat templates rendered with it; this is its
// public face. May include runtime/error.hpp only.
//
// A model's chat template (the Jinja template in tokenizer_config.json), rendered exactly as Hugging
// Face transformers' apply_chat_template(messages, tools=..., add_generation_prompt=...,
// tokenize=False, **extra) renders it: jinja2 semantics under transformers' settings (trim_blocks,
// lstrip_blocks, the immutable sandbox, its tojson, raise_exception and strftime_now).
// A parsed template is immutable: copies share it, and render may run on several threads at once.

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {

namespace jinja {
struct template_program;
}

struct chat_template_options {
  bool add_generation_prompt = true;
  // Empty: the template sees them undefined, as transformers does for a tokenizer without the token.
  std::string bos_token;
  std::string eos_token;
  // A JSON array of tool definitions (OpenAI style), or empty: the template then sees tools = none.
  std::string tools_json;
  // A JSON array of documents for retrieval templates ({title, text} objects), or empty: documents = none.
  std::string documents_json;
  // A JSON object whose members become template variables (e.g. {"enable_thinking": false}), or empty.
  std::string extra_context_json;
  // Leave the final message open for the model to continue (transformers' continue_final_message):
  // the prompt ends where that message's content ends. Needs add_generation_prompt false.
  bool continue_final_message = false;
  // The clock strftime_now() reads; unset: the real one (local time, like Python's datetime.now()).
  std::optional<std::chrono::system_clock::time_point> now;
};

class chat_template {
public:
  // Parses source. Throws user_error "chat template error: <what> at line <L>" for a malformed
  // template, an unknown tag, filter or test.
  static chat_template parse(std::string_view source);

  // Reads a template file (--chat-template). Throws user_error naming the file when it cannot be read,
  // and like parse when it does not parse.
  static chat_template from_file(const std::filesystem::path& path);

  // The named templates of tokenizer_config.json's "chat_template" when it is a list of {name, template}
  // (empty for a single template or none), in the file's order: transformers' apply_chat_template takes a
  // chat_template argument that is one of these names as that template. Throws like from_tokenizer_config.
  static std::vector<std::pair<std::string, chat_template>> named_in_tokenizer_config(
      const std::filesystem::path& tokenizer_config_json);

  // vLLM's load_chat_template for --chat-template: the file `value` names when it can be opened, else
  // `value` itself as the template when it holds '{', '}' or a newline. Throws user_error "The supplied
  // chat template (<value>) looks like a file path, but it failed to be opened..." otherwise, and like
  // parse for a template that does not parse.
  static chat_template from_flag(std::string_view value);

  // The model's template from tokenizer_config.json's "chat_template": a string, or a list of
  // {name, template} where "tool_use" is taken when want_tool_use and present, else "default". Without
  // one there, chat_template.jinja (or chat_template.json) beside the file, as newer checkpoints ship
  // it. nullopt when the model has none; throws user_error for unreadable files or templates.
  static std::optional<chat_template> from_tokenizer_config(const std::filesystem::path& tokenizer_config_json,
                                                            bool want_tool_use);

  // The prompt for messages_json (a JSON array of {role, content, ...} objects). Throws user_error:
  // for raise_exception(msg) in the template exactly msg; for any other failure "chat template error:
  // <Python's message> at line <L>"; for malformed JSON arguments a message naming the argument.
  std::string render(std::string_view messages_json, const chat_template_options& options) const;

  // Renders with exactly the variables of context_json (a JSON object) and jinja2's and transformers'
  // globals (range, namespace, dict, raise_exception, strftime_now): what transformers' compiled
  // template.render(**context) gives, without apply_chat_template's checks. Throws like render.
  std::string render_context(std::string_view context_json, const chat_template_options& options = {}) const;

  // Whether the template loops over a message's content ({% for part in message['content'] %}), tracing
  // `messages` and `message` through sets and loops as vLLM's _detect_content_format does: such a
  // template wants content as a list of {type, text} parts (vLLM's "openai" content format), any other
  // a string ("string").
  bool loops_over_message_content() const;

  // The template source as given.
  const std::string& source() const { return *source_; }

private:
  chat_template(std::shared_ptr<const jinja::template_program> program, std::shared_ptr<const std::string> source);

  std::shared_ptr<const jinja::template_program> program_;
  std::shared_ptr<const std::string> source_;
};

// bos_token and eos_token of tokenizer_config.json (each a string or {"content": ...}), for
// chat_template_options; empty where the file has none. Throws user_error when it cannot be read.
chat_template_options chat_template_options_from_tokenizer_config(const std::filesystem::path& tokenizer_config_json);

} // namespace troupe
