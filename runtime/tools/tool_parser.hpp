#pragma once
// runtime/tools/: what a chat model's text means beyond its text, as vLLM's OpenAI server reads it: tool
// calls (--enable-auto-tool-choice --tool-call-parser NAME) and reasoning (--reasoning-parser NAME), and the
// calls of tool_choice "required" and named functions. May include runtime/error.hpp and runtime/openai/
// (the response shapes, Python's json.loads).
//
// Each parser reads a choice's text two ways that agree: whole (extract), for a response sent at once, and
// streamed (push each detokenized delta, then finish), for SSE. The streamed pieces, concatenated, give the
// whole reading of the same text for every output a model means as calls (what vLLM's whole reading would
// call malformed may differ once streamed: vLLM cannot take back what it streamed either). Text that may
// begin a call ("<tool_" of "<tool_call>") is held until it is decided, never lost or sent twice.

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/openai/openai_response.hpp"

namespace troupe {

// A whole text read by a tool parser (vLLM's ExtractedToolCallInformation).
struct tool_extraction {
  bool tools_called = false;
  std::optional<std::string> content;  // null: the calls had no text before them
  std::vector<tool_call> calls;
};

// What one streamed delta adds: content, reasoning and tool-call pieces (each empty when it adds none).
struct message_delta {
  std::string content;
  std::string reasoning;
  std::vector<tool_call_delta> tool_calls;
  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }
};

class tool_parser {
public:
  virtual ~tool_parser() = default;
  // The whole text of a finished choice. Malformed calls leave the text as content, as vLLM does.
  virtual tool_extraction extract(std::string_view text) = 0;
  // The next detokenized piece of a streamed choice; what it releases.
  virtual message_delta push(std::string_view delta) = 0;
  // The choice ended: what was held back, decided.
  virtual message_delta finish() = 0;
  // Whether the stream so far produced a tool call (vLLM's prev_tool_call_arr is not empty).
  virtual bool called() const = 0;
};

// What a parser needs from the request.
struct tool_parser_request {
  std::string tools_json;  // the request's tools, as runtime/openai gives them ("" for none)
};

// The --tool-call-parser names troupe has: hermes, llama3_json, mistral, qwen3 (hermes' JSON calls and
// Qwen3-Coder's XML calls, each call as it comes), qwen3_coder.
std::span<const std::string_view> tool_parser_names();

// A fresh parser for one choice; null for a name tool_parser_names() lacks.
std::unique_ptr<tool_parser> make_tool_parser(std::string_view name, const tool_parser_request& request);

// Whether vLLM's parser of that name turns off skip_special_tokens for requests with tools (its
// adjust_request): its start marker may be a special token the detokenizer would otherwise drop.
bool tool_parser_keeps_special_tokens(std::string_view name);

// What is wrong with --enable-auto-tool-choice, --tool-call-parser and --reasoning-parser as given, in
// vLLM's words ("invalid tool call parser: x (chose from { hermes,... })"); "" when they are fine.
std::string check_parser_flags(bool enable_auto_tool_choice, std::string_view tool_call_parser,
                               std::string_view reasoning_parser);

// A new random tool-call id: "chatcmpl-tool-" and 32 hex digits (vLLM's make_tool_call_id), or, for the
// mistral parser, 9 letters and digits (MistralToolCall.generate_random_id; Mistral's templates check it).
std::string make_tool_call_id(bool mistral = false);

} // namespace troupe
