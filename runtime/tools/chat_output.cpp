#include "runtime/tools/chat_output.hpp"

namespace troupe {

// Defined in json_tool_parsers.cpp.
std::unique_ptr<tool_parser> make_required_tool_parser();
std::unique_ptr<tool_parser> make_named_tool_parser(std::string name, int32_t choice_index);

namespace {

// vLLM's serving_chat: tool calls are read for a named function, for "required", and for "auto" (tools
// given, auto tool choice on); tool_choice "none" (or no tools) leaves the text alone.
bool reads_tool_calls(const chat_parsers& parsers, const chat_request& r) {
  if (r.tools_json.empty()) return false;
  switch (r.tool_choice) {
    case tool_choice_mode::function:
    case tool_choice_mode::required: return true;
    case tool_choice_mode::auto_: return !parsers.tool_parser.empty();
    case tool_choice_mode::none: return false;
  }
  return false;
}

} // namespace

bool reads_chat_output(const chat_parsers& parsers, const chat_request& r) {
  return !parsers.reasoning_parser.empty() || reads_tool_calls(parsers, r);
}

bool keeps_special_tokens(const chat_parsers& parsers, const chat_request& r) {
  return r.tool_choice == tool_choice_mode::auto_ && reads_tool_calls(parsers, r) &&
         tool_parser_keeps_special_tokens(parsers.tool_parser);
}

chat_output::chat_output(const chat_parsers& parsers, const chat_request& r, std::string_view prompt, int32_t choice_index)
    : choice_(r.tool_choice), parallel_tool_calls_(r.parallel_tool_calls), include_reasoning_(r.include_reasoning) {
  if (!parsers.reasoning_parser.empty()) reasoning_ = make_reasoning_parser(parsers.reasoning_parser, prompt);
  if (!reads_tool_calls(parsers, r)) return;
  if (choice_ == tool_choice_mode::function)
    tools_ = make_named_tool_parser(r.tool_choice_function, choice_index);
  else if (choice_ == tool_choice_mode::required)
    tools_ = make_required_tool_parser();
  else
    tools_ = make_tool_parser(parsers.tool_parser, tool_parser_request{r.tools_json});
}

chat_message_out chat_output::read_whole(std::string_view text, const std::string& engine_finish_reason) const {
  chat_message_out m;
  m.finish_reason = engine_finish_reason.empty() ? "stop" : engine_finish_reason;
  std::optional<std::string> content = std::string(text);
  if (reasoning_) {
    reasoning_extraction r = reasoning_->extract(text);
    if (include_reasoning_) m.reasoning = std::move(r.reasoning);
    content = std::move(r.content);
  }
  if (!tools_) {
    m.content = std::move(content);
    return m;
  }
  tool_extraction t = tools_->extract(content.value_or(""));
  if (choice_ == tool_choice_mode::auto_) {
    // vLLM: without calls, the parser's content when it gave any, else the text.
    m.content = t.tools_called ? std::move(t.content) : t.content && !t.content->empty() ? std::move(t.content) : content;
    if (t.tools_called) m.finish_reason = "tool_calls";
  } else {
    m.content = std::move(t.content);
    if (choice_ == tool_choice_mode::required && t.tools_called && m.finish_reason == "stop") m.finish_reason = "tool_calls";
  }
  m.tool_calls = std::move(t.calls);
  if (!parallel_tool_calls_ && m.tool_calls.size() > 1) m.tool_calls.resize(1);
  return m;
}

message_delta chat_output::pass_content(message_delta d) {
  if (!include_reasoning_) d.reasoning.clear();
  if (!tools_ || d.content.empty()) return d;
  message_delta t = tools_->push(d.content);
  d.content = std::move(t.content);
  d.tool_calls = std::move(t.tool_calls);
  keep_first_call(d.tool_calls);
  if (!d.tool_calls.empty()) tools_streamed_ = true;
  return d;
}

void chat_output::keep_first_call(std::vector<tool_call_delta>& calls) const {
  // vLLM's maybe_filter_parallel_tool_calls: with parallel_tool_calls false only the first call streams.
  if (parallel_tool_calls_ || choice_ == tool_choice_mode::function) return;
  std::erase_if(calls, [](const tool_call_delta& d) { return d.index != 0; });
}

message_delta chat_output::push(std::string_view delta) {
  if (!reasoning_) {
    message_delta d;
    d.content = delta;
    return pass_content(std::move(d));
  }
  return pass_content(reasoning_->push(delta));
}

message_delta chat_output::finish() {
  message_delta d;
  if (reasoning_) d = reasoning_->finish();
  d = pass_content(std::move(d));
  if (tools_) {
    message_delta t = tools_->finish();
    d.content += t.content;
    keep_first_call(t.tool_calls);
    if (!t.tool_calls.empty()) tools_streamed_ = true;
    for (auto& c : t.tool_calls) d.tool_calls.push_back(std::move(c));
  }
  return d;
}

std::string chat_output::stream_finish_reason(const std::string& engine_finish_reason) const {
  // vLLM: "tool_calls" when the parser found calls, or calls were streamed for anything but a named function.
  if ((tools_ && tools_->called()) || (tools_streamed_ && choice_ != tool_choice_mode::function)) return "tool_calls";
  return engine_finish_reason.empty() ? "stop" : engine_finish_reason;
}

} // namespace troupe
