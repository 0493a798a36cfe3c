#include "launch/bench/prefix_cache_counts.hpp"

#include <cstdlib>
#include <string>

namespace troupe {

namespace {

// Whether a metric name is `suffix` itself or ends in ":" + suffix (troupe:..., vllm:...).
bool names(std::string_view name, std::string_view suffix) {
  if (name == suffix) return true;
  return name.size() > suffix.size() && name.ends_with(suffix) && name[name.size() - suffix.size() - 1] == ':';
}

} // namespace

std::optional<prefix_cache_counts> parse_prefix_cache_counts(std::string_view text) {
  prefix_cache_counts c;
  bool found = false;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    const std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string_view::npos) continue;
    const std::string_view name = line.substr(0, name_end);
    const bool queries = names(name, "prefix_cache_queries_total"), hits = names(name, "prefix_cache_hits_total");
    if (!queries && !hits) continue;
    // The value follows the labels' closing brace (label values may hold spaces) or the bare name.
    const size_t labels_end = line[name_end] == '{' ? line.rfind('}') : name_end;
    if (labels_end == std::string_view::npos) continue;
    const std::string value(line.substr(labels_end + 1));
    (queries ? c.queries : c.hits) += std::strtod(value.c_str(), nullptr);
    found = true;
  }
  if (!found) return std::nullopt;
  return c;
}

std::optional<double> prefix_cache_hit_rate(const prefix_cache_counts& before, const prefix_cache_counts& after) {
  const double queries = after.queries - before.queries;
  if (queries <= 0) return std::nullopt;
  return (after.hits - before.hits) / queries;
}

} // namespace troupe
