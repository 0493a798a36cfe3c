#pragma once
// One chat choice's text turned into vLLM's message: reasoning (--reasoning-parser), content and tool calls
// (--tool-call-parser for tool_choice "auto"; the forced forms for "required" and a named function), and
// the finish_reason vLLM gives it. Whole for a response sent at once; piece by piece for a stream.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/openai/openai_request.hpp"
#include "runtime/tools/reasoning_parser.hpp"
#include "runtime/tools/tool_parser.hpp"

namespace troupe {

// What the server was started with: --tool-call-parser (with --enable-auto-tool-choice) and
// --reasoning-parser; "" for none.
struct chat_parsers {
  std::string tool_parser;
  std::string reasoning_parser;
};

// Whether a request's choices are read at all (when not, the text is the content, as before).
bool reads_chat_output(const chat_parsers& parsers, const chat_request& request);

// Whether the request's output must keep special tokens in its text (vLLM's tool parsers' adjust_request).
bool keeps_special_tokens(const chat_parsers& parsers, const chat_request& request);

struct chat_message_out {
  std::optional<std::string> content;
  std::optional<std::string> reasoning;
  std::vector<tool_call> tool_calls;
  std::string finish_reason;
};

class chat_output {
public:
  // prompt: the rendered chat template (whether it left <think> open). choice_index: the choice's index.
  chat_output(const chat_parsers& parsers, const chat_request& request, std::string_view prompt, int32_t choice_index);

  // A finished choice's whole text and the engine's finish reason ("stop", "length", ...).
  chat_message_out read_whole(std::string_view text, const std::string& engine_finish_reason) const;

  // Streaming: the next piece of text, then the end.
  message_delta push(std::string_view delta);
  message_delta finish();
  // The finish_reason of the streamed choice's last chunk.
  std::string stream_finish_reason(const std::string& engine_finish_reason) const;

private:
  message_delta pass_content(message_delta d);
  void keep_first_call(std::vector<tool_call_delta>& calls) const;

  tool_choice_mode choice_;
  bool parallel_tool_calls_;
  bool include_reasoning_;
  std::unique_ptr<reasoning_parser> reasoning_;
  std::unique_ptr<tool_parser> tools_;
  bool tools_streamed_ = false;
};

} // namespace troupe
