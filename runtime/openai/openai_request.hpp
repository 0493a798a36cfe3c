#pragma once
// runtime/openai/: the OpenAI HTTP schema as vLLM serves it: requests parsed and validated (this file),
// responses and SSE chunks, error objects, and the Python-compatible JSON and float formatting they need
// to match vLLM byte for byte. May include runtime/error.hpp, runtime/engine/ (sampling parameters,
// outputs) and runtime/tokenizer/ (UTF-8).
//
// OpenAI request bodies (/v1/chat/completions, /v1/completions, /tokenize, /detokenize) parsed and
// validated as vLLM's OpenAI server does it, step for step, so a client gets the same status, type,
// param and message from troupe as from vLLM:
//
//   1. parse_*_request: the body as FastAPI + pydantic see it (JSON decode errors, field types, vLLM's
//      model validators), then the served-model check (404), then the bounds on fields that size work
//      (openai_server_config: n, logit_bias, stop, stop_token_ids; checked before they are copied),
//      then what the serving layer refuses before rendering (suffix, features troupe does not have).
//   2. the gateway renders the chat template (render_messages_json, tools_json) and tokenizes;
//   3. check_context_length: prompt + requested output against max_model_len (vLLM's renderer);
//   4. to_generation: the engine's sampling_params, with vLLM's defaults and SamplingParams checks,
//      then the engine's own checks (logprobs limit, logit_bias vocabulary).
// Each step returns an api_error (openai_error.hpp) or its result; the first error is the answer.
//
// A chat request in the gateway, in order:
//   auto req = parse_chat_request(body, server);            if (!req) reply(req.error());
//   const chat_request& r = req.value();
//   auto msgs = render_messages_json(r.messages, content_format::string);  // with r.tools_json
//   if (auto e = check_max_tokens_limit(r, limit)) reply(*e);      // --max-tokens-limit
//   ... render the template; check_prompt_characters; tokenize -> n tokens ...
//   if (auto e = check_context_length(n, requested_max_tokens(r), server.max_model_len, prompt_form::text,
//                                     requested_max_tokens_param(r))) reply(*e);
//   auto gen = to_generation(r, n, server);                  if (!gen) reply(gen.error());
// Completions: the same per prompt, with prompt_form::token_ids for token-id prompts. Errors go out as
// error_body(e) with e.status; after a stream has started, as sse_error(e) then sse_done().
//
// Followed: vLLM's main branch as of 2026 (chat_completion/protocol.py, completion/protocol.py,
// renderers/params.py, sampling_params.py, serve/exception_handling). Where troupe lacks a feature
// vLLM has (beam search, multimodal input, prompt logprobs), the request is refused with a 400 that
// names the field rather than silently ignored. Structured outputs (response_format, structured_outputs,
// guided_*) are compiled while the body is parsed (openai_server_config::compile_structured) and travel in
// sampling_params::structured.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "runtime/openai/openai_error.hpp"
#include "runtime/engine/sampling_params.hpp"

namespace troupe {

// A value or the error that replaced it.
template <class T>
class checked {
public:
  checked(T value) : v_(std::move(value)) {}
  checked(api_error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const api_error& error() const { return std::get<1>(v_); }

private:
  std::variant<T, api_error> v_;
};

// What the server knows that request validation needs.
struct openai_server_config {
  std::vector<std::string> served_model_names;  // the first answers requests that name no model
  int32_t max_model_len = 0;
  int32_t vocab_size = 0;
  int32_t max_logprobs = 20;             // vLLM's --max-logprobs
  bool prompt_tokens_details = false;    // vLLM's --enable-prompt-tokens-details: usage reports cached prompt tokens
  // Bounds on the fields that size a request's work, checked as the body is parsed, before anything
  // is allocated or copied in proportion to them (logit_bias entries and stop_token_ids are bounded
  // by vocab_size: more of either must repeat a token or name one outside the vocabulary).
  // n, and n × prompts of a completion: vLLM's VLLM_MAX_N_SEQUENCES (16384), the fix of its CVE for
  // "n": 1e20 (SamplingParams._verify_num_sequences).
  int64_t max_n_sequences = 16384;
  // stop: vLLM's VLLM_MAX_STOP_STRINGS (4, OpenAI's documented limit), a pydantic max_length on the
  // list since vLLM PR #51447 ("Bound generation inputs before expensive work").
  int32_t max_stop_strings = 4;
  // troupe's own: the stop checker rescans up to a stop string's length of text for every token.
  int32_t max_stop_string_chars = 1024;
  // The longest token's characters (0: unknown): a text prompt with more characters than this many
  // times the tokens that fit is refused before it is tokenized (check_prompt_characters).
  int64_t max_chars_per_token = 0;
  // vLLM's --trust-request-chat-template: without it a request that sends a chat template is refused.
  bool trust_request_chat_template = false;
  // vLLM's --chat-template-content-format as given: "auto" (each template decides, see
  // chat_template::loops_over_message_content), "string" or "openai".
  std::string chat_template_content_format = "auto";
  // vLLM's --enable-auto-tool-choice: tool_choice "auto" (the default with tools) is refused without it.
  bool enable_auto_tool_choice = false;
  std::string tool_call_parser;   // --tool-call-parser ("" none): reads tool calls out of "auto" outputs
  std::string reasoning_parser;   // --reasoning-parser ("" none): reads reasoning out of every chat output
  // Compiles a structured-output spec for the model's vocabulary, throwing std::invalid_argument with what
  // is wrong with it; a request's spec is compiled while its body is parsed. Empty: the server has no
  // grammar engine, and the fields are refused.
  std::function<void(const structured_output&)> compile_structured;
  // Defaults from the model's generation_config.json (vLLM's --generation-config auto); a request's
  // own value wins, then these, then OpenAI's defaults.
  std::optional<double> default_temperature, default_top_p, default_min_p, default_repetition_penalty;
  std::optional<int64_t> default_top_k;
  std::optional<int64_t> default_max_tokens;  // caps max_tokens (generation_config max_new_tokens)
};

// The sampling fields chat and completion requests share (vLLM's names; empty = not sent).
struct openai_sampling_fields {
  std::optional<double> temperature, top_p, min_p;
  std::optional<double> presence_penalty, frequency_penalty, repetition_penalty;
  std::optional<int64_t> top_k;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;       // a single string arrives as a list of one
  std::vector<int64_t> stop_token_ids;
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
  int64_t min_tokens = 0;
  std::vector<std::pair<std::string, double>> logit_bias;  // keys as sent; converted in to_generation
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
  std::optional<structured_output> structured;  // response_format, structured_outputs or guided_*, compiled
};

struct stream_options {
  bool include_usage = false;           // a final chunk with usage and no choices
  bool continuous_usage_stats = false;  // usage on every chunk
};

struct chat_tool_call {
  std::string id;
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text as the client sent it
};

struct chat_message {
  std::string role;  // any string: vLLM passes custom roles to the chat template
  // Text content: a string, or the text parts of a content list (content_is_list). Absent or null
  // content (an assistant turn with tool calls) is has_content == false.
  bool has_content = false;
  bool content_is_list = false;
  std::vector<std::string> content;  // one entry when the content was a string
  std::optional<std::string> name;
  std::optional<std::string> tool_call_id;
  std::optional<std::vector<chat_tool_call>> tool_calls;
  std::optional<std::string> reasoning;  // "reasoning", or the older "reasoning_content"
};

enum class tool_choice_mode : uint8_t { none, auto_, required, function };

struct chat_request {
  std::optional<std::string> model;
  std::vector<chat_message> messages;
  // The tools as vLLM hands them to the chat template: [{"type":"function","function":{"name",
  // "description","parameters"}}], in the client's key order; "" when the request has none.
  std::string tools_json;
  tool_choice_mode tool_choice = tool_choice_mode::none;
  std::string tool_choice_function;  // the named function when tool_choice == function
  bool parallel_tool_calls = true;
  std::optional<std::string> reasoning_effort;  // passed to the chat template, as vLLM does
  bool include_reasoning = true;  // vLLM's include_reasoning: false leaves reasoning_content out

  std::optional<int64_t> max_tokens;             // deprecated by OpenAI, still honoured
  std::optional<int64_t> max_completion_tokens;  // wins over max_tokens
  std::optional<int64_t> n;
  openai_sampling_fields sampling;
  bool logprobs = false;
  int64_t top_logprobs = 0;

  bool stream = false;
  std::optional<troupe::stream_options> stream_options;

  bool echo = false;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool add_special_tokens = false;
  std::optional<std::string> chat_template;
  std::string chat_template_kwargs_json = "{}";  // a JSON object, in the client's key order
  std::optional<std::string> documents_json;     // a JSON array when sent

  int64_t priority = 0;
  std::optional<std::string> user;
  std::optional<std::string> request_id;
  std::optional<std::string> cache_salt;
};

// One prompt of a completion request: text, or token ids.
struct completion_prompt {
  bool is_tokens = false;
  std::string text;
  std::vector<int32_t> token_ids;
};

struct completion_request {
  std::optional<std::string> model;
  std::vector<completion_prompt> prompts;  // a list of prompts answers with one choice group each
  bool echo = false;
  std::optional<int64_t> logprobs;
  int64_t max_tokens = 16;  // null means 16 too
  bool max_tokens_sent = false;  // the body set max_tokens (not null): what --max-tokens-limit judges
  int64_t n = 1;
  openai_sampling_fields sampling;

  bool stream = false;
  std::optional<troupe::stream_options> stream_options;

  bool add_special_tokens = true;
  int64_t priority = 0;
  std::optional<std::string> user;
  std::optional<std::string> request_id;
  std::optional<std::string> cache_salt;
};

// /tokenize: either a prompt or chat messages (vLLM's TokenizeCompletionRequest | TokenizeChatRequest).
struct tokenize_request {
  std::optional<std::string> model;
  bool is_chat = false;
  std::string prompt;                 // !is_chat
  std::vector<chat_message> messages; // is_chat
  std::string tools_json;             // is_chat
  bool add_special_tokens = true;     // true for a prompt, false for messages, unless sent
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  std::optional<std::string> chat_template;
  std::string chat_template_kwargs_json = "{}";
  bool return_token_strs = false;
};

struct detokenize_request {
  std::optional<std::string> model;
  std::vector<int32_t> tokens;
};

// Parse and validate a body (steps 1 of the header comment). Errors: invalid JSON, wrong field
// types, vLLM's validator messages, 404 for an unknown model, 400 for features troupe lacks.
checked<chat_request> parse_chat_request(std::string_view body, const openai_server_config& server);
checked<completion_request> parse_completion_request(std::string_view body, const openai_server_config& server);
checked<tokenize_request> parse_tokenize_request(std::string_view body, const openai_server_config& server);
checked<detokenize_request> parse_detokenize_request(std::string_view body, const openai_server_config& server);

// 404 unless model is empty (the default model) or one of the served names.
std::optional<api_error> check_model(const std::optional<std::string>& model, const openai_server_config& server);

// The model name responses report: vLLM's first served name, whichever alias the request used.
std::string response_model_name(const openai_server_config& server);

// How the chat template wants message content: a string (text parts joined with "\n"), or OpenAI's
// list of {"type":"text","text":...} parts (vLLM's --chat-template-content-format).
enum class content_format : uint8_t { string, openai };

// The conversation as vLLM passes it to the chat template: roles and content, tool calls with their
// arguments decoded into objects (as Hugging Face templates expect), tool_call_id, name, reasoning.
// Error: tool-call arguments that are not JSON (vLLM's 400 with Python's JSONDecodeError text).
checked<std::string> render_messages_json(const std::vector<chat_message>& messages, content_format format);

// How the prompt reached the tokenizer: text is tokenized with truncation one token past what fits,
// so vLLM can only say "at least N" tokens; token ids are counted exactly.
enum class prompt_form : uint8_t { text, token_ids };

// max_tokens as vLLM's renderer counts it for the context check, and the name the error gives it:
// chat: max_completion_tokens, else max_tokens, else nothing (0); completions: max_tokens (16 unless sent).
std::optional<int64_t> requested_max_tokens(const chat_request& r);
std::string_view requested_max_tokens_param(const chat_request& r);
inline std::optional<int64_t> requested_max_tokens(const completion_request& r) { return r.max_tokens; }

// vLLM's renderer check: max_tokens above max_model_len, then a prompt with no room left for
// max_tokens outputs ("This model's maximum context length is ..."). nullopt when it fits.
std::optional<api_error> check_context_length(int64_t num_prompt_tokens, std::optional<int64_t> max_tokens,
                                              int32_t max_model_len, prompt_form form = prompt_form::text,
                                              std::string_view max_tokens_param = "max_tokens");

// vLLM's cheap check before tokenizing text: more characters than max_chars_per_token (the longest
// token in the vocabulary) times the tokens that fit cannot fit. nullopt when it may fit.
std::optional<api_error> check_prompt_characters(int64_t num_characters, int64_t max_chars_per_token,
                                                 std::optional<int64_t> max_tokens, int32_t max_model_len,
                                                 std::string_view max_tokens_param = "max_tokens");

// What the engine needs for one prompt of a validated request.
struct openai_generation {
  sampling_params params;
  int32_t n = 1;
  std::optional<int32_t> num_logprobs;  // alternatives per generated token; empty: no logprobs
  bool echo_only = false;  // completions echo with max_tokens 0: one token is generated and dropped
  bool skip_special_tokens = true;             // for the detokenizer
  bool spaces_between_special_tokens = true;
};

// The server's --max-tokens-limit (0: none) on the field the client sent: chat's max_completion_tokens,
// else its max_tokens; a completion's max_tokens (not a null one). Asking for more is a 400 naming the
// field; nullopt when it fits. Cheap: call it before rendering and tokenizing.
std::optional<api_error> check_max_tokens_limit(const chat_request& r, int64_t limit);
std::optional<api_error> check_max_tokens_limit(const completion_request& r, int64_t limit);
// The same for any client that asks for `requested` tokens (the native client API's jobs).
std::optional<api_error> check_max_tokens_limit(int64_t requested, int64_t limit);
// Holds a generation to the limit (0: none): what a request that asked no number gets.
void apply_max_tokens_limit(openai_generation& g, int64_t limit);

// The constraint vLLM puts on a chat's output for its tool_choice (_get_json_schema_from_tool): "required"
// -> a JSON schema of a non-empty array of {"name": one of the tools' names, "parameters": that tool's
// parameters schema} (anyOf over the tools, their $defs gathered at the top); a named function -> its
// parameters schema (the empty object's when it has none); none or auto -> nullopt. tools_json as
// chat_request::tools_json holds it. Errors: 400 for a named tool not in tools, or two tools defining one
// $defs name differently.
checked<std::optional<structured_output>> tool_choice_structured_output(std::string_view tools_json,
                                                                         tool_choice_mode mode,
                                                                         std::string_view function_name);

// Step 4 for a prompt of num_prompt_tokens tokens (after check_context_length passed).
checked<openai_generation> to_generation(const chat_request& r, int64_t num_prompt_tokens,
                                         const openai_server_config& server);
checked<openai_generation> to_generation(const completion_request& r, int64_t num_prompt_tokens,
                                         const openai_server_config& server);

} // namespace troupe
