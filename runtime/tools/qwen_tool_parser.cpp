// The <tool_call> parsers: hermes (Hermes 2 Pro, Qwen2.5 and Qwen3's own templates: a JSON object per
// call), qwen3_coder (Qwen3-Coder: <function=NAME><parameter=P>value</parameter></function>), and qwen3,
// which takes each call in whichever of the two forms it comes. As vLLM's Hermes2ProToolParser and
// Qwen3CoderToolParser read a whole text: content is the text before the first <tool_call>; each
// <tool_call>…</tool_call> (the last may be unterminated) is one call; text between calls is dropped; one
// malformed call leaves the whole text as content. A text without <tool_call> whose model left the wrapper
// out is read as Qwen3CoderToolParser's fallback reads it (qwen3_coder and qwen3): content is the text
// before the first <function=, and each <function=…</function> (the last may be unterminated) is one call.
// vLLM streams such a text as content; troupe streams the calls its whole reading finds.

#include <algorithm>
#include <cmath>

#include "runtime/tools/json_call_reader.hpp"
#include "runtime/tools/python_dumps.hpp"
#include "runtime/tools/qwen_xml_call.hpp"
#include "runtime/tools/tool_parser.hpp"
#include "runtime/tools/tool_stream.hpp"

namespace troupe {
namespace {

constexpr std::string_view call_open = "<tool_call>";
constexpr std::string_view call_close = "</tool_call>";
constexpr std::string_view function_open = "<function=";
constexpr std::string_view function_close = "</function>";

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t first_non_ws(std::string_view s, size_t from = 0) {
  while (from < s.size() && is_ws(s[from])) ++from;
  return from;
}

class qwen_tool_parser : public tool_parser {
public:
  qwen_tool_parser(bool json_calls, bool xml_calls, const tool_parser_request& request)
      : json_calls_(json_calls), xml_calls_(xml_calls), schemas_(request.tools_json) {}

  tool_extraction extract(std::string_view text) override {
    const size_t first = text.find(call_open);
    if (first == std::string_view::npos) return xml_calls_ ? bare_calls(text) : tool_extraction{false, std::string(text), {}};
    tool_extraction out;
    for (size_t pos = first; pos != std::string_view::npos;) {
      const size_t begin = pos + call_open.size();
      const size_t end = text.find(call_close, begin);
      const std::string_view body = text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
      auto call = whole_call(body);
      if (!call) return {false, std::string(text), {}};
      out.calls.push_back(std::move(*call));
      pos = end == std::string_view::npos ? end : text.find(call_open, end + call_close.size());
    }
    out.tools_called = true;
    if (first > 0) out.content = std::string(text.substr(0, first));
    return out;
  }

  message_delta push(std::string_view delta) override {
    message_delta out;
    if (mode_ == mode::plain) {
      out.content = delta;
      return out;
    }
    (mode_ == mode::call ? body_ : held_) += delta;
    run(out, false);
    return out;
  }

  message_delta finish() override {
    message_delta out;
    run(out, true);
    if (mode_ == mode::content) out.content += held_;
    held_.clear();
    return out;
  }

  bool called() const override { return called_; }

private:
  enum class mode : uint8_t { content, call, between, plain };
  enum class format : uint8_t { undecided, json, xml };

  // One call's body (the text between the tags), read whole; nullopt when vLLM would fail on it.
  std::optional<tool_call> whole_call(std::string_view body) const {
    const size_t start = first_non_ws(body);
    const bool json = json_calls_ && (!xml_calls_ || (start < body.size() && body[start] == '{'));
    if (json) {
      const python_json_result r = parse_python_json(body);
      if (r.error || !r.value.is_object()) return std::nullopt;
      const auto name = r.value.find("name");
      const auto arguments = r.value.find("arguments");
      if (name == r.value.end() || !name->is_string() || arguments == r.value.end()) return std::nullopt;
      return tool_call{make_tool_call_id(), name->get<std::string>(), python_dumps(*arguments)};
    }
    qwen_xml_call xml;
    xml.advance(body, true, schemas_);
    if (xml.failed || !xml.has_name) return std::nullopt;
    return tool_call{make_tool_call_id(), xml.name, xml.arguments};
  }

  // The calls of a text without <tool_call>: its bare <function=…</function>s, when it has any.
  tool_extraction bare_calls(std::string_view text) const {
    const size_t first = text.find(function_open);
    if (first == std::string_view::npos) return {false, std::string(text), {}};
    tool_extraction out;
    for (size_t pos = first; pos != std::string_view::npos;) {
      size_t end = text.find(function_close, pos + function_open.size());
      if (end != std::string_view::npos) end += function_close.size();
      auto call = whole_call(text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
      if (!call) return {false, std::string(text), {}};
      out.calls.push_back(std::move(*call));
      pos = end == std::string_view::npos ? end : text.find(function_open, end);
    }
    out.tools_called = true;
    if (first > 0) out.content = std::string(text.substr(0, first));
    return out;
  }

  // Where the next call begins in held_ (npos when it does not yet), and its marker: <tool_call>, or a bare
  // <function= before any <tool_call> or after a bare call.
  std::pair<size_t, std::string_view> next_call() const {
    const bool wrapped = !bare_;
    const bool unwrapped = xml_calls_ && (mode_ == mode::content || bare_);
    const size_t c = wrapped ? held_.find(call_open) : std::string::npos;
    const size_t f = unwrapped ? held_.find(function_open) : std::string::npos;
    return f < c ? std::pair{f, function_open} : std::pair{c, call_open};
  }

  size_t partial_call_marker() const {
    const bool unwrapped = xml_calls_ && (mode_ == mode::content || bare_);
    return std::max(bare_ ? 0 : partial_marker_suffix(held_, call_open),
                    unwrapped ? partial_marker_suffix(held_, function_open) : 0);
  }

  void run(message_delta& out, bool final) {
    for (;;) {
      if (mode_ == mode::plain) return;
      if (mode_ == mode::content || mode_ == mode::between) {
        const auto [p, marker] = next_call();
        if (p == std::string::npos) {
          const size_t keep = final ? 0 : partial_call_marker();
          if (mode_ == mode::content) out.content += held_.substr(0, held_.size() - keep);
          held_.erase(0, held_.size() - keep);
          return;
        }
        if (mode_ == mode::content) out.content += held_.substr(0, p);
        bare_ = marker == function_open;
        begin_call(held_.substr(bare_ ? p : p + call_open.size()));
        held_.clear();
        continue;
      }
      // mode::call; a bare call ends at its </function>, which the XML reader sees.
      const std::string_view close = bare_ ? function_close : call_close;
      const size_t q = body_.find(close);
      const bool closed = q != std::string::npos;
      const size_t usable = closed ? (bare_ ? q + close.size() : q)
                            : final ? body_.size()
                                    : body_.size() - partial_marker_suffix(body_, close);
      const bool ok = advance_call(std::string_view(body_).substr(0, usable), closed || final, out);
      if (!ok) return fail_call(out, q, close);
      if (!closed) return;
      held_ = body_.substr(q + close.size());
      body_.clear();
      mode_ = mode::between;
    }
  }

  void begin_call(std::string body) {
    mode_ = mode::call;
    body_ = std::move(body);
    body_fed_ = 0;
    format_ = bare_ || !json_calls_ ? format::xml : !xml_calls_ ? format::json : format::undecided;
    reader_.emplace(false, std::vector<std::string>{"arguments"});
    xml_ = qwen_xml_call{};
    index_ = streamer_.num_started();
  }

  // Reads more of the current call's body; false when the call cannot be one.
  bool advance_call(std::string_view body, bool final, message_delta& out) {
    if (format_ == format::undecided) {
      const size_t start = first_non_ws(body);
      if (start == body.size()) return !final;
      format_ = body[start] == '{' ? format::json : format::xml;
    }
    const size_t before = out.tool_calls.size();
    if (format_ == format::xml) {
      xml_.advance(body, final, schemas_);
      if (xml_.failed || (final && !xml_.has_name)) return false;
      streamer_.update(index_, xml_.has_name ? &xml_.name : nullptr, xml_.arguments, out.tool_calls);
    } else {
      if (!reader_->done()) body_fed_ += reader_->feed(body.substr(body_fed_));
      if (final) reader_->finish();
      if (reader_->failed()) return false;
      if (reader_->done() && first_non_ws(body, body_fed_) != body.size()) return false;  // more after the object
      if (final && !reader_->done()) return false;
      if (!reader_->calls().empty()) {
        const auto& c = reader_->calls().front();
        if (final && (!c.has_name || !c.arguments_done)) return false;
        streamer_.update(index_, c.has_name ? &c.name : nullptr, c.arguments, out.tool_calls);
      }
    }
    if (out.tool_calls.size() > before) called_ = true;
    return true;
  }

  // The current call turned out malformed: a call not yet begun goes out as the text it was; from here
  // on everything is content.
  void fail_call(message_delta& out, size_t close, std::string_view close_marker) {
    if (!streamer_.announced(index_))
      out.content += std::string(bare_ ? "" : call_open) + body_;
    else if (close != std::string::npos)
      out.content += body_.substr(close + close_marker.size());
    body_.clear();
    held_.clear();
    mode_ = mode::plain;
  }

  bool json_calls_, xml_calls_;
  tool_schemas schemas_;
  mode mode_ = mode::content;
  std::string held_;   // content or between: text that may begin <tool_call>
  std::string body_;   // call: the text after <tool_call>, or from a bare call's <function=
  bool bare_ = false;  // the calls came without <tool_call>
  size_t body_fed_ = 0;
  format format_ = format::undecided;
  std::optional<json_call_reader> reader_;
  qwen_xml_call xml_;
  int32_t index_ = 0;
  call_streamer streamer_;
  bool called_ = false;
};

} // namespace

std::unique_ptr<tool_parser> make_qwen_tool_parser(bool json_calls, bool xml_calls, const tool_parser_request& request) {
  return std::make_unique<qwen_tool_parser>(json_calls, xml_calls, request);
}

} // namespace troupe
