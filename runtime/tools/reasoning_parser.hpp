#pragma once
// --reasoning-parser qwen3|deepseek_r1: the model's thinking, <think>…</think>, apart from its answer, as
// vLLM's Qwen3ReasoningParser and DeepSeekR1ReasoningParser read it. Whole: the text up to the first
// </think> is reasoning (a <think> before it dropped), the rest content (null when empty); with no </think>,
// qwen3 calls everything content and deepseek_r1 everything reasoning. Streamed: deepseek_r1 starts in
// reasoning; qwen3 starts in reasoning when the output opens with <think> or the prompt left a <think> open
// (Qwen3's templates with enable_thinking), and in content otherwise (the template closed an empty
// <think></think>: thinking is off). The two readings agree whenever </think> comes.

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "runtime/tools/tool_parser.hpp"

namespace troupe {

struct reasoning_extraction {
  std::optional<std::string> reasoning;
  std::optional<std::string> content;
};

class reasoning_parser {
public:
  // everything_reasoning_without_end: deepseek_r1's reading of a text with no </think>.
  reasoning_parser(bool everything_reasoning_without_end, bool starts_in_reasoning)
      : deepseek_(everything_reasoning_without_end), starts_in_reasoning_(starts_in_reasoning) {}

  reasoning_extraction extract(std::string_view text) const;
  // The next streamed piece, split into reasoning and content.
  message_delta push(std::string_view delta);
  message_delta finish();

private:
  void run(message_delta& out, bool final);
  enum class mode : uint8_t { start, reasoning, content };
  bool deepseek_;
  bool starts_in_reasoning_;
  mode mode_ = mode::start;
  std::string held_;
};

// qwen3, deepseek_r1.
std::span<const std::string_view> reasoning_parser_names();

// A parser for one choice of a prompt (the rendered chat template); null for an unknown name.
std::unique_ptr<reasoning_parser> make_reasoning_parser(std::string_view name, std::string_view prompt);

} // namespace troupe
