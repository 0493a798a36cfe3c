// The tool parsers whose calls are bare JSON: llama3_json (Llama 3.1/3.2's {"name": ..., "parameters": ...},
// several joined by ";"), mistral ([TOOL_CALLS][{"name": ..., "arguments": ...}, ...], or from tokenizer v11
// on [TOOL_CALLS]NAME[ARGS]{...} per call), and the calls
// vLLM itself asks the model for: tool_choice "required" (a JSON array of {"name", "parameters"}) and a
// named function (the whole output is its arguments).

#include "runtime/tools/json_call_reader.hpp"
#include "runtime/tools/python_dumps.hpp"
#include "runtime/tools/tool_parser.hpp"
#include "runtime/tools/tool_stream.hpp"

namespace troupe {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Reports a reader's calls from `first_index` on to the streamer; true when a call began.
bool stream_calls(const json_call_reader& reader, int32_t first_index, call_streamer& streamer,
                  std::vector<tool_call_delta>& out) {
  const size_t before = out.size();
  for (size_t k = 0; k < reader.calls().size(); ++k) {
    const auto& c = reader.calls()[k];
    streamer.update(first_index + static_cast<int32_t>(k), c.has_name ? &c.name : nullptr, c.arguments, out);
  }
  return out.size() > before;
}

// ---- llama3_json ----

// As vLLM's Llama3JsonToolParser streams: the output is calls when it begins with "{" (after an optional
// <|python_tag|>), else content. Calls are JSON objects joined by ";"; text after the last is dropped;
// content is null. The whole reading is the streamed one, so the two agree by construction.
class llama3_json_tool_parser : public tool_parser {
public:
  tool_extraction extract(std::string_view text) override {
    llama3_json_tool_parser p;
    p.push(text);
    p.finish();
    if (!p.called_ || p.failed_) return {false, std::string(text), {}};
    tool_extraction out;
    out.tools_called = true;
    for (const auto& r : p.readers_)
      for (const auto& c : r.calls()) out.calls.push_back({make_tool_call_id(), c.name, c.arguments});
    return out;
  }

  message_delta push(std::string_view delta) override {
    message_delta out;
    text_ += delta;
    run(out, false);
    return out;
  }

  message_delta finish() override {
    message_delta out;
    run(out, true);
    return out;
  }

  bool called() const override { return called_; }

private:
  static constexpr std::string_view python_tag = "<|python_tag|>";
  enum class mode : uint8_t { undecided, content, calls, after_calls };

  void run(message_delta& out, bool final) {
    if (mode_ == mode::undecided) {
      if (!final && python_tag.starts_with(text_)) return;  // may still become <|python_tag|>
      pos_ = text_.starts_with(python_tag) ? python_tag.size() : 0;
      if (pos_ == text_.size() && !final) return;
      mode_ = pos_ < text_.size() && text_[pos_] == '{' ? mode::calls : mode::content;
      if (mode_ == mode::calls) readers_.emplace_back(false, std::vector<std::string>{"arguments", "parameters"});
    }
    if (mode_ == mode::content) {
      out.content = text_.substr(pos_);
      pos_ = text_.size();
      return;
    }
    while (mode_ == mode::calls && pos_ < text_.size()) {
      json_call_reader& r = readers_.back();
      if (!r.done()) {
        pos_ += r.feed(std::string_view(text_).substr(pos_));
        if (r.failed()) {
          failed_ = true;
          mode_ = mode::after_calls;
          break;
        }
        if (!r.done()) break;
      }
      // Between calls: "; " and the next object.
      while (pos_ < text_.size() && is_ws(text_[pos_])) ++pos_;
      if (pos_ == text_.size()) break;
      if (text_[pos_] != ';') {
        mode_ = mode::after_calls;
        break;
      }
      size_t next = pos_ + 1;
      while (next < text_.size() && is_ws(text_[next])) ++next;
      if (next == text_.size()) break;  // wait for what follows the ";"
      if (text_[next] != '{') {
        mode_ = mode::after_calls;
        break;
      }
      pos_ = next;
      readers_.emplace_back(false, std::vector<std::string>{"arguments", "parameters"});
    }
    if (final && mode_ == mode::calls) {
      readers_.back().finish();
      if (!readers_.back().done()) failed_ = true;
    }
    int32_t index = 0;
    for (const auto& r : readers_) {
      if (stream_calls(r, index, streamer_, out.tool_calls)) called_ = true;
      index += static_cast<int32_t>(r.calls().size());
    }
    for (const auto& r : readers_)
      for (const auto& c : r.calls())
        if (final && (!c.has_name || !c.arguments_done)) failed_ = true;
  }

  std::string text_;
  size_t pos_ = 0;
  mode mode_ = mode::undecided;
  std::vector<json_call_reader> readers_;
  call_streamer streamer_;
  bool called_ = false;
  bool failed_ = false;
};

// ---- mistral, and tool_choice "required" ----

// A JSON array of calls, after a marker (mistral's [TOOL_CALLS]) or from the start (required).
class json_array_tool_parser : public tool_parser {
public:
  json_array_tool_parser(std::string_view marker, std::string arguments_key, bool mistral_ids)
      : marker_(marker), arguments_key_(std::move(arguments_key)), mistral_ids_(mistral_ids), streamer_(mistral_ids),
        reader_(true, std::vector<std::string>{arguments_key_}) {
    if (marker_.empty()) mode_ = mode::calls;
  }

  tool_extraction extract(std::string_view text) override {
    if (marker_.empty()) return required_calls(text);
    // vLLM's MistralToolParser: content before the marker; the calls are the text without markers, or
    // failing that its first "[{" to its last "}]"; anything wrong leaves that text as content.
    const size_t first = text.find(marker_);
    if (first == std::string_view::npos) return {false, std::string(text), {}};
    std::string rest;
    for (size_t pos = 0;;) {
      const size_t at = text.find(marker_, pos);
      rest += text.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos);
      if (at == std::string_view::npos) break;
      pos = at + marker_.size();
    }
    const std::string tool_content(strip(rest));
    auto calls = calls_of(tool_content);
    if (!calls) {
      const size_t open = tool_content.find("[{");
      const size_t close = tool_content.rfind("}]");
      if (open != std::string::npos && close != std::string::npos && close >= open)
        calls = calls_of(std::string_view(tool_content).substr(open, close + 2 - open));
    }
    if (!calls) return {false, tool_content, {}};
    tool_extraction out;
    out.tools_called = true;
    out.calls = std::move(*calls);
    if (first > 0) out.content = std::string(text.substr(0, first));
    return out;
  }

  message_delta push(std::string_view delta) override {
    message_delta out;
    if (mode_ == mode::content) {
      held_ += delta;
      const size_t at = held_.find(marker_);
      if (at == std::string::npos) {
        const size_t keep = partial_marker_suffix(held_, marker_);
        out.content = held_.substr(0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return out;
      }
      out.content = held_.substr(0, at);
      delta = std::string_view(held_).substr(at + marker_.size());
      mode_ = mode::calls;
      feed(delta, out);
      held_.clear();
      return out;
    }
    feed(delta, out);
    return out;
  }

  message_delta finish() override {
    message_delta out;
    if (mode_ == mode::content) out.content = std::move(held_);
    held_.clear();
    return out;
  }

  bool called() const override { return called_; }

private:
  enum class mode : uint8_t { content, calls };

  void feed(std::string_view text, message_delta& out) {
    if (reader_.done() || reader_.failed()) return;  // what follows the array is dropped
    reader_.feed(text);
    if (stream_calls(reader_, 0, streamer_, out.tool_calls)) called_ = true;
  }

  // The calls of a JSON array of {"name": str, arguments_key: value}; nullopt when it is not one.
  std::optional<std::vector<tool_call>> calls_of(std::string_view json) const {
    const python_json_result r = parse_python_json(json);
    if (r.error || !r.value.is_array()) return std::nullopt;
    std::vector<tool_call> calls;
    for (const auto& item : r.value) {
      if (!item.is_object()) return std::nullopt;
      const auto name = item.find("name");
      if (name == item.end() || !name->is_string()) return std::nullopt;
      const auto args = item.find(arguments_key_);
      // mistral: KeyError without "arguments"; required: FunctionDefinition.parameters defaults to None.
      if (args == item.end() && !marker_.empty()) return std::nullopt;
      calls.push_back({make_tool_call_id(mistral_ids_), name->get<std::string>(),
                       args == item.end() ? std::string("null") : python_dumps(*args)});
    }
    return calls;
  }

  // tool_choice "required": vLLM validates the output as list[FunctionDefinition]; content is "".
  tool_extraction required_calls(std::string_view text) const {
    auto calls = calls_of(text);
    if (!calls) return {false, std::string(text), {}};
    return {true, std::string(), std::move(*calls)};
  }

  std::string marker_;
  std::string arguments_key_;
  bool mistral_ids_;
  call_streamer streamer_;
  json_call_reader reader_;
  mode mode_ = mode::content;
  std::string held_;
  bool called_ = false;
};

// ---- mistral ----

// vLLM's MistralToolParser, both forms: before tokenizer v11 one JSON array of calls after [TOOL_CALLS]
// (json_array_tool_parser); from v11 on (Mistral Small 3.1+, Devstral, Magistral) each call is
// [TOOL_CALLS]NAME[ARGS]{...}, or NAME{...} where the detokenizer dropped [ARGS]. vLLM picks the form by
// the tokenizer; troupe by the text: after the first [TOOL_CALLS] an array opens with "[", a name does not.
// In the name form (as vLLM): content is the text before the first [TOOL_CALLS] (null when empty); a call
// is each [TOOL_CALLS] segment with [ARGS] or "{" in it, its name what comes before, its arguments the rest
// of the segment as the model wrote it (malformed JSON included: the model sees its own call next turn);
// a segment without either is dropped, and the text still counts as calls.
class mistral_tool_parser : public tool_parser {
public:
  tool_extraction extract(std::string_view text) override {
    const size_t first = text.find(marker);
    if (first == std::string_view::npos || !named_form(text.substr(first + marker.size()), true))
      return array_.extract(text);
    tool_extraction out;
    out.tools_called = true;
    if (first > 0) out.content = std::string(text.substr(0, first));
    for (size_t pos = first + marker.size(); pos != std::string_view::npos;) {
      const size_t next = text.find(marker, pos);
      const std::string_view segment = text.substr(pos, next == std::string_view::npos ? next : next - pos);
      const auto [name_end, arguments_begin] = name_bounds(segment);
      if (name_end != std::string_view::npos)
        out.calls.push_back({make_tool_call_id(true), std::string(segment.substr(0, name_end)),
                             std::string(segment.substr(arguments_begin))});
      pos = next == std::string_view::npos ? next : next + marker.size();
    }
    return out;
  }

  message_delta push(std::string_view delta) override {
    if (mode_ == mode::array) return array_.push(delta);
    message_delta out;
    held_ += delta;
    run(out, false);
    return out;
  }

  message_delta finish() override {
    message_delta out;
    run(out, true);
    return out;
  }

  bool called() const override { return mode_ == mode::array ? array_.called() : mode_ != mode::content; }

private:
  static constexpr std::string_view marker = "[TOOL_CALLS]";
  static constexpr std::string_view args_marker = "[ARGS]";
  enum class mode : uint8_t { content, undecided, array, name, arguments };

  // Whether the text after the first [TOOL_CALLS] is a name (v11) rather than a JSON array; nullopt while
  // too little of it came to tell.
  static std::optional<bool> form_of(std::string_view rest, bool final) {
    size_t start = 0;
    while (start < rest.size() && is_ws(rest[start])) ++start;
    rest.remove_prefix(start);
    if (rest.starts_with(args_marker)) return true;
    if (!final && (rest.empty() || args_marker.starts_with(rest))) return std::nullopt;
    return rest.empty() || rest.front() != '[';
  }
  static bool named_form(std::string_view rest, bool final) { return form_of(rest, final).value_or(false); }

  // Where a segment's name ends and its arguments begin: at [ARGS] (dropped) or "{" (kept); npos, npos
  // when it has neither.
  static std::pair<size_t, size_t> name_bounds(std::string_view segment) {
    const size_t args = segment.find(args_marker);
    const size_t brace = segment.find('{');
    if (args < brace) return {args, args + args_marker.size()};
    return {brace, brace};
  }

  void run(message_delta& out, bool final) {
    for (;;) {
      switch (mode_) {
        case mode::array: return;
        case mode::content: {
          const size_t at = held_.find(marker);
          const size_t keep = at != std::string::npos ? held_.size() - at : final ? 0 : partial_marker_suffix(held_, marker);
          out.content += held_.substr(0, held_.size() - keep);
          held_.erase(0, held_.size() - keep);
          if (at == std::string::npos) return;
          held_.erase(0, marker.size());
          mode_ = mode::undecided;
          break;
        }
        case mode::undecided: {
          const std::optional<bool> named = form_of(held_, final);
          if (!named) return;
          if (*named) {
            mode_ = mode::name;
            break;
          }
          mode_ = mode::array;
          message_delta a = array_.push(std::string(marker) + held_);
          if (final) {
            message_delta f = array_.finish();
            a.content += f.content;
            for (auto& c : f.tool_calls) a.tool_calls.push_back(std::move(c));
          }
          out.content += a.content;
          for (auto& c : a.tool_calls) out.tool_calls.push_back(std::move(c));
          held_.clear();
          return;
        }
        case mode::name: {
          const auto [name_end, arguments_begin] = name_bounds(held_);
          const size_t next = held_.find(marker);
          if (next < name_end) {  // a segment without arguments
            held_.erase(0, next + marker.size());
            break;
          }
          if (name_end == std::string::npos) {
            if (final) held_.clear();
            return;
          }
          name_ = held_.substr(0, name_end);
          held_.erase(0, arguments_begin);
          arguments_.clear();
          mode_ = mode::arguments;
          streamer_.update(index_, &name_, arguments_, out.tool_calls);
          break;
        }
        case mode::arguments: {
          const size_t next = held_.find(marker);
          const size_t take = next != std::string::npos ? next : final ? held_.size() : held_.size() - partial_marker_suffix(held_, marker);
          arguments_ += held_.substr(0, take);
          streamer_.update(index_, &name_, arguments_, out.tool_calls);
          if (next == std::string::npos) {
            held_.erase(0, take);
            return;
          }
          held_.erase(0, next + marker.size());
          ++index_;
          mode_ = mode::name;
          break;
        }
      }
    }
  }

  json_array_tool_parser array_{marker, "arguments", true};
  mode mode_ = mode::content;
  std::string held_;
  std::string name_;
  std::string arguments_;
  int32_t index_ = 0;
  call_streamer streamer_{true};
};

// ---- a named function ----

// tool_choice {"type": "function", "function": {"name": NAME}}: the whole output is NAME's arguments,
// streamed as they come (vLLM: index is the choice's index; content is "").
class named_tool_parser : public tool_parser {
public:
  named_tool_parser(std::string name, int32_t choice_index) : name_(std::move(name)), index_(choice_index) {}

  tool_extraction extract(std::string_view text) override {
    return {false, std::string(), {tool_call{make_tool_call_id(), name_, std::string(text)}}};
  }

  message_delta push(std::string_view delta) override {
    message_delta out;
    tool_call_delta d;
    d.index = index_;
    if (!started_) {
      started_ = true;
      d.id = make_tool_call_id();
      d.name = name_;
    }
    d.arguments = std::string(delta);
    out.tool_calls.push_back(std::move(d));
    return out;
  }

  message_delta finish() override { return {}; }
  bool called() const override { return false; }  // vLLM's finish_reason stays the engine's for a named function

private:
  std::string name_;
  int32_t index_;
  bool started_ = false;
};

} // namespace

std::unique_ptr<tool_parser> make_llama3_json_tool_parser() { return std::make_unique<llama3_json_tool_parser>(); }

std::unique_ptr<tool_parser> make_mistral_tool_parser() { return std::make_unique<mistral_tool_parser>(); }

std::unique_ptr<tool_parser> make_required_tool_parser() {
  return std::make_unique<json_array_tool_parser>("", "parameters", false);
}

std::unique_ptr<tool_parser> make_named_tool_parser(std::string name, int32_t choice_index) {
  return std::make_unique<named_tool_parser>(std::move(name), choice_index);
}

} // namespace troupe
