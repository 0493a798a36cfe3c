#pragma once
// OpenAI response bodies and server-sent-event chunks, serialized as vLLM's OpenAI server sends them.
// vLLM writes whole responses with json.dumps(model_dump()) (every field, nulls included, floats as
// Python's repr) and chat stream chunks with model_dump_json(exclude_unset=True) (only the fields it
// set, floats as pydantic-core writes them); completion chunks keep every field. The field sets are
// vLLM 0.11's: message.reasoning_content, choice.stop_reason, no per-request metrics.
// Output is always valid UTF-8 JSON: text that is not UTF-8 has its bad bytes replaced by U+FFFD.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/openai/openai_error.hpp"

namespace troupe {

struct request_output;

// What every response and chunk of one request repeats.
struct response_header {
  std::string id;       // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// 32 random hex digits, as vLLM's random_uuid() (uuid4().hex) gives for ids.
std::string random_uuid_hex();

struct usage_info {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  std::optional<int64_t> cached_tokens;  // set (with --enable-prompt-tokens-details) to report them
};

// Why a choice stopped, beyond finish_reason: the stop string, the stop_token_ids entry, or nothing
// (EOS, length). JSON: "text", 42, or null.
using stop_reason = std::variant<std::monostate, std::string, int32_t>;

// stop_reason of an engine output.
stop_reason stop_reason_of(const request_output& output);

struct logprob_alternative {
  std::string token;
  double logprob = 0;
};

// The logprobs of one generated token. top holds the alternatives in vLLM's order: the sampled token
// first, then the top-k by rank, each token once; the builders cut it to the count asked for.
// logprob empty: not available for this token (vLLM then shows -9999.0 for chat, null for completions).
struct token_logprobs {
  std::string token;
  std::optional<double> logprob;
  std::vector<logprob_alternative> top;
};

// A tool call of a response message (vLLM's ToolCall): arguments is JSON text, as OpenAI sends it.
struct tool_call {
  std::string id;  // "chatcmpl-tool-<32 hex>" (Mistral's parser: 9 letters and digits)
  std::string name;
  std::string arguments;
};

// One piece of a streamed tool call (vLLM's DeltaToolCall). A call's first piece carries its id (and so
// "type": "function") and its name; later pieces carry arguments only. The arguments pieces of a call,
// concatenated, are its whole arguments text.
struct tool_call_delta {
  int32_t index = 0;                     // the call's place in the message's tool_calls
  std::string id;                        // the first piece only
  std::optional<std::string> name;       // the first piece only
  std::optional<std::string> arguments;  // absent: the piece has none
};

struct chat_choice {
  int32_t index = 0;
  std::optional<std::string> content;  // null when a parser found tool calls and no text before them
  std::string finish_reason;  // "stop", "length", "tool_calls"; "" is null
  troupe::stop_reason stop_reason;
  std::optional<std::vector<token_logprobs>> logprobs;  // set when the request asked for logprobs
  int32_t top_logprobs = 0;  // alternatives listed per token (-1: all given)
  std::optional<std::string> reasoning;  // message.reasoning_content (--reasoning-parser)
  std::vector<troupe::tool_call> tool_calls;
};

// A chat.completion body.
std::string chat_completion_body(const response_header& header, std::span<const chat_choice> choices,
                                 const usage_info& usage);

// One chat.completion.chunk for one choice.
struct chat_delta {
  int32_t index = 0;
  bool role = false;     // the opening chunk: delta {"role":"assistant","content":""}
  // Text released since the previous chunk; absent (a reasoning or tool-call piece) leaves "content" out.
  std::optional<std::string> content = std::string();
  std::optional<std::string> reasoning;   // delta.reasoning_content
  std::vector<tool_call_delta> tool_calls;
  const std::vector<token_logprobs>* logprobs = nullptr;  // this chunk's tokens, when asked for
  int32_t top_logprobs = 0;
  std::string finish_reason;  // set on a choice's last chunk (which also carries stop_reason)
  troupe::stop_reason stop_reason;
};

// usage: continuous usage stats to attach, or null.
std::string chat_chunk(const response_header& header, const chat_delta& delta, const usage_info* usage = nullptr);

// The last chunk of a stream with include_usage: no choices, the usage.
std::string chat_usage_chunk(const response_header& header, const usage_info& usage);

// Completions logprobs, vLLM's CompletionLogProbs (built by make_completion_logprobs).
struct completion_logprobs {
  std::vector<int64_t> text_offset;
  std::vector<std::optional<double>> token_logprobs;
  std::vector<std::string> tokens;
  std::vector<std::optional<std::vector<logprob_alternative>>> top_logprobs;  // a dict per token
};

// num_logprobs: the request's logprobs (each token lists up to num_logprobs + 1 alternatives, keyed by
// text so equal texts merge). initial_text_offset: characters of text before these tokens.
completion_logprobs make_completion_logprobs(std::span<const token_logprobs> tokens, int32_t num_logprobs,
                                             int64_t initial_text_offset);

struct completion_choice {
  int32_t index = 0;
  std::string text;
  std::string finish_reason;
  troupe::stop_reason stop_reason;
  std::optional<completion_logprobs> logprobs;
};

// A text_completion body.
std::string completion_body(const response_header& header, std::span<const completion_choice> choices,
                            const usage_info& usage);

// One text_completion stream chunk for one choice (finish_reason "" until its last chunk).
std::string completion_chunk(const response_header& header, const completion_choice& choice,
                             const usage_info* usage = nullptr);

std::string completion_usage_chunk(const response_header& header, const usage_info& usage);

// Server-sent-event framing: "data: <json>\n\n", "data: [DONE]\n\n".
std::string sse_event(std::string_view json);
std::string sse_done();
// An error after the stream started (vLLM sends it as a data event, then [DONE]).
std::string sse_error(const api_error& error);

// /v1/models.
struct model_card {
  std::string id;    // a served model name
  std::string root;  // the model path
  int64_t created = 0;
  int32_t max_model_len = 0;
  std::string permission_id;  // "modelperm-..."
};
std::string models_body(std::span<const model_card> models);

// /tokenize: {"count","max_model_len","tokens","token_strs"} (token_strs null unless asked for).
std::string tokenize_body(std::span<const int32_t> tokens, int32_t max_model_len,
                          const std::vector<std::string>* token_strs = nullptr);

// /detokenize: {"prompt": text}.
std::string detokenize_body(std::string_view prompt);

// /version: {"version": v}.
std::string version_body(std::string_view version);

} // namespace troupe
