#pragma once
// Server-sent events as `troupe bench serve` reads them: bytes arrive in pieces cut anywhere (mid-line,
// mid-"\r\n"), and each complete event's data comes out once its blank line has arrived.
//
// Follows the WHATWG event-stream rules that matter for OpenAI streams: lines end in \n, \r\n or \r;
// "data:" lines (one optional space after the colon) are joined with \n; lines starting with ':' are
// comments; other fields (event, id, retry) are ignored; an event without data lines is dropped.

#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class sse_parser {
public:
  // Takes the next bytes of the stream; returns the data of each event they complete, in order.
  std::vector<std::string> feed(std::string_view bytes);

  // The data of an event the stream ended in without its blank line (servers that close instead), if any.
  std::vector<std::string> finish();

private:
  void take_line(std::string_view line, std::vector<std::string>& events);

  std::string line_;         // the incomplete line so far
  std::string data_;         // the current event's data lines, joined
  bool has_data_ = false;    // the current event has a data line (its data may be empty)
  bool after_cr_ = false;    // the last byte was \r: a \n right after it ends no second line
};

} // namespace troupe
