#pragma once
// What the streaming tool parsers share: holding back text that may be the start of a marker, and turning
// the progress of calls (name known, arguments so far) into OpenAI's tool-call pieces.

#include <string>
#include <string_view>
#include <vector>

#include "runtime/openai/openai_response.hpp"

namespace troupe {

// Length of the longest end of text that is a proper beginning of marker ("<tool_" for "<tool_call>"):
// what must wait for more text before it can be called content.
size_t partial_marker_suffix(std::string_view text, std::string_view marker);

// The pieces each call has been sent, by the call's index in the message.
class call_streamer {
public:
  explicit call_streamer(bool mistral_ids = false) : mistral_ids_(mistral_ids) {}
  // Call `index` now has this much: its first piece goes out once the name is known, then the arguments
  // text it did not send yet.
  void update(int32_t index, const std::string* name, const std::string& arguments, std::vector<tool_call_delta>& out);
  int32_t num_started() const { return static_cast<int32_t>(sent_.size()); }
  bool announced(int32_t index) const {
    return static_cast<size_t>(index) < sent_.size() && sent_[static_cast<size_t>(index)].announced;
  }

private:
  struct progress {
    bool announced = false;
    size_t arguments_sent = 0;
  };
  bool mistral_ids_;
  std::vector<progress> sent_;
};

} // namespace troupe
