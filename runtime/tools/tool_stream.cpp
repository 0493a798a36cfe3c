#include "runtime/tools/tool_stream.hpp"

#include "runtime/tools/tool_parser.hpp"

namespace troupe {

size_t partial_marker_suffix(std::string_view text, std::string_view marker) {
  const size_t longest = std::min(text.size(), marker.size() - 1);
  for (size_t n = longest; n > 0; --n)
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

void call_streamer::update(int32_t index, const std::string* name, const std::string& arguments,
                           std::vector<tool_call_delta>& out) {
  if (static_cast<size_t>(index) >= sent_.size()) sent_.resize(static_cast<size_t>(index) + 1);
  progress& p = sent_[static_cast<size_t>(index)];
  if (!p.announced) {
    if (!name) return;
    p.announced = true;
    tool_call_delta d;
    d.index = index;
    d.id = make_tool_call_id(mistral_ids_);
    d.name = *name;
    out.push_back(std::move(d));
  }
  if (arguments.size() > p.arguments_sent) {
    tool_call_delta d;
    d.index = index;
    d.arguments = arguments.substr(p.arguments_sent);
    p.arguments_sent = arguments.size();
    out.push_back(std::move(d));
  }
}

} // namespace troupe
