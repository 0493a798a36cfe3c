#include "launch/bench/bench_sse.hpp"

namespace troupe {

std::vector<std::string> sse_parser::feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (const char c : bytes) {
    if (after_cr_ && c == '\n') {
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      take_line(line_, events);
      line_.clear();
    } else {
      line_ += c;
    }
  }
  return events;
}

std::vector<std::string> sse_parser::finish() {
  std::vector<std::string> events;
  if (!line_.empty()) take_line(line_, events);
  line_.clear();
  take_line("", events);
  return events;
}

void sse_parser::take_line(std::string_view line, std::vector<std::string>& events) {
  if (line.empty()) {
    if (has_data_) events.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") return;
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (value.starts_with(' ')) value.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_ += value;
  has_data_ = true;
}

} // namespace troupe
