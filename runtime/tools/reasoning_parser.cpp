#include "runtime/tools/reasoning_parser.hpp"

#include <array>

#include "runtime/tools/tool_stream.hpp"

namespace troupe {
namespace {

constexpr std::string_view think_open = "<think>";
constexpr std::string_view think_close = "</think>";
constexpr std::array<std::string_view, 2> names = {"qwen3", "deepseek_r1"};

} // namespace

reasoning_extraction reasoning_parser::extract(std::string_view text) const {
  if (const size_t open = text.find(think_open); open != std::string_view::npos) text.remove_prefix(open + think_open.size());
  const size_t close = text.find(think_close);
  if (close == std::string_view::npos) {
    if (deepseek_) return {std::string(text), std::nullopt};
    return {std::nullopt, std::string(text)};
  }
  reasoning_extraction out{std::string(text.substr(0, close)), std::nullopt};
  const std::string_view content = text.substr(close + think_close.size());
  if (!content.empty()) out.content = std::string(content);
  return out;
}

message_delta reasoning_parser::push(std::string_view delta) {
  message_delta out;
  held_ += delta;
  run(out, false);
  return out;
}

message_delta reasoning_parser::finish() {
  message_delta out;
  run(out, true);
  (mode_ == mode::content ? out.content : out.reasoning) += held_;
  held_.clear();
  return out;
}

void reasoning_parser::run(message_delta& out, bool final) {
  if (mode_ == mode::start) {
    // Wait until the text shows whether it opens with <think> (dropped, as vLLM drops it).
    if (!final && think_open.starts_with(held_)) return;
    const bool opened = held_.starts_with(think_open);
    if (opened) held_.erase(0, think_open.size());
    mode_ = opened || deepseek_ || starts_in_reasoning_ ? mode::reasoning : mode::content;
  }
  if (mode_ == mode::reasoning) {
    const size_t close = held_.find(think_close);
    if (close == std::string::npos) {
      const size_t keep = final ? 0 : partial_marker_suffix(held_, think_close);
      out.reasoning += held_.substr(0, held_.size() - keep);
      held_.erase(0, held_.size() - keep);
      return;
    }
    out.reasoning += held_.substr(0, close);
    held_.erase(0, close + think_close.size());
    mode_ = mode::content;
  }
  out.content += held_;
  held_.clear();
}

std::span<const std::string_view> reasoning_parser_names() { return names; }

std::unique_ptr<reasoning_parser> make_reasoning_parser(std::string_view name, std::string_view prompt) {
  // A prompt whose last <think> is still open has the model thinking from its first token.
  const size_t open = prompt.rfind(think_open);
  const size_t close = prompt.rfind(think_close);
  const bool opened = open != std::string_view::npos && (close == std::string_view::npos || close < open);
  if (name == "qwen3") return std::make_unique<reasoning_parser>(false, opened);
  if (name == "deepseek_r1") return std::make_unique<reasoning_parser>(true, true);
  return nullptr;
}

} // namespace troupe
