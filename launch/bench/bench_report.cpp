#include "launch/bench/bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "runtime/openai/python_repr.hpp"

namespace troupe {

namespace {

using ordered_json = nlohmann::ordered_json;

struct metric_name {
  const char* key;     // ttft
  const char* label;   // TTFT
  const char* header;  // Time to First Token
};

// In vLLM's order.
constexpr metric_name metric_names[] = {
    {"ttft", "TTFT", "Time to First Token"},
    {"tpot", "TPOT", "Time per Output Token (excl. 1st token)"},
    {"itl", "ITL", "Inter-token Latency"},
    {"e2el", "E2EL", "End-to-end Latency"},
};

const latency_summary& summary_of(const bench_metrics& m, std::string_view key) {
  return key == "ttft" ? m.ttft : key == "tpot" ? m.tpot : key == "itl" ? m.itl : m.e2el;
}

bool selected(const bench_run_info& run, std::string_view key) {
  return std::find(run.percentile_metrics.begin(), run.percentile_metrics.end(), key) != run.percentile_metrics.end();
}

// Python's "{s:{c}^{n}}": s centred in n columns, the odd fill character on the right.
std::string centred(std::string_view s, size_t width, char fill) {
  if (s.size() >= width) return std::string(s);
  const size_t pad = width - s.size(), left = pad / 2;
  return std::string(left, fill) + std::string(s) + std::string(pad - left, fill);
}

// "{:<40} {:<10}" and "{:<40} {:<10.2f}".
std::string row(std::string_view label, int64_t value) {
  char line[128];
  std::snprintf(line, sizeof line, "%-40.*s %-10lld\n", static_cast<int>(label.size()), label.data(), static_cast<long long>(value));
  return line;
}
std::string row(std::string_view label, double value) {
  char line[128];
  std::snprintf(line, sizeof line, "%-40.*s %-10.2f\n", static_cast<int>(label.size()), label.data(), value);
  return line;
}

// Python's json.dump of a float that may be infinite: vLLM writes "inf" for an infinite rate.
ordered_json rate_json(double v) { return std::isinf(v) ? ordered_json("inf") : ordered_json(v); }

} // namespace

std::string percentile_word(double p) {
  return p == std::floor(p) ? std::to_string(static_cast<int64_t>(p)) : python_float_repr(p);
}

std::string format_report(const bench_metrics& m, const bench_run_info& run) {
  std::string out = centred(" Serving Benchmark Result ", 50, '=') + "\n";
  out += row("Successful requests:", m.completed);
  out += row("Failed requests:", m.failed);
  if (run.max_concurrency > 0) out += row("Maximum request concurrency:", int64_t{run.max_concurrency});
  if (!std::isinf(run.request_rate)) out += row("Request rate configured (RPS):", run.request_rate);
  out += row("Benchmark duration (s):", m.duration_s);
  out += row("Total input tokens:", m.total_input);
  out += row("Total generated tokens:", m.total_output);
  out += row("Request throughput (req/s):", m.request_throughput);
  out += row("Output token throughput (tok/s):", m.output_throughput);
  out += row("Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
  out += row("Peak concurrent requests:", static_cast<double>(m.max_concurrent_requests));
  out += row("Total Token throughput (tok/s):", m.total_token_throughput);
  for (const auto& name : metric_names) {
    if (!selected(run, name.key)) continue;
    const latency_summary& s = summary_of(m, name.key);
    out += centred(name.header, 50, '-') + "\n";
    out += row(std::string("Mean ") + name.label + " (ms):", s.mean_ms);
    out += row(std::string("Median ") + name.label + " (ms):", s.median_ms);
    for (const auto& [p, value] : s.percentiles_ms) out += row("P" + percentile_word(p) + " " + name.label + " (ms):", value);
  }
  out += std::string(50, '=') + "\n";
  return out;
}

std::string result_json(const bench_metrics& m, const bench_run_info& run, std::span<const request_outcome> outcomes,
                        bool detailed) {
  ordered_json j;
  j["date"] = run.date;
  j["endpoint_type"] = run.backend;
  j["backend"] = run.backend;
  j["label"] = nullptr;
  j["model_id"] = run.model_id;
  j["tokenizer_id"] = nullptr;  // prompts are token ids; no tokenizer on this side
  j["num_prompts"] = run.num_prompts;
  j["request_rate"] = rate_json(run.request_rate);
  j["burstiness"] = rate_json(run.burstiness);
  j["max_concurrency"] = run.max_concurrency > 0 ? ordered_json(run.max_concurrency) : ordered_json(nullptr);
  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["total_input_tokens"] = m.total_input;
  j["total_output_tokens"] = m.total_output;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] = nullptr;
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  // NOTE: ordered_json keeps its members in a vector: build each list apart, then insert it.
  if (detailed) {
    ordered_json input_lens = ordered_json::array(), ttfts = ordered_json::array(), itls = ordered_json::array(),
                 latencies = ordered_json::array(), start_times = ordered_json::array(), texts = ordered_json::array();
    for (const auto& o : outcomes) {
      input_lens.push_back(o.prompt_len);
      ttfts.push_back(o.ttft);
      itls.push_back(o.itl);
      latencies.push_back(o.latency);
      start_times.push_back(o.start_time);
      texts.push_back(o.generated_text);
    }
    j["input_lens"] = std::move(input_lens);
    j["output_lens"] = m.output_lens;
    j["ttfts"] = std::move(ttfts);
    j["itls"] = std::move(itls);
    j["latencies"] = std::move(latencies);
    j["start_times"] = std::move(start_times);
    j["generated_texts"] = std::move(texts);
  }
  ordered_json errors = ordered_json::array();
  for (const auto& o : outcomes) errors.push_back(o.error);
  j["errors"] = std::move(errors);
  j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  j["max_concurrent_requests"] = m.max_concurrent_requests;
  for (const auto& name : metric_names) {
    if (!selected(run, name.key)) continue;
    const latency_summary& s = summary_of(m, name.key);
    const std::string key = name.key;
    j["mean_" + key + "_ms"] = s.mean_ms;
    j["median_" + key + "_ms"] = s.median_ms;
    j["std_" + key + "_ms"] = s.std_ms;
    for (const auto& [p, value] : s.percentiles_ms) j["p" + percentile_word(p) + "_" + key + "_ms"] = value;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string default_result_filename(const bench_run_info& run) {
  std::string model = run.model_id;
  if (const size_t slash = model.rfind('/'); slash != std::string::npos) model = model.substr(slash + 1);
  std::string name = run.backend + "-" + python_float_repr(run.request_rate) + "qps";
  if (run.max_concurrency > 0) name += "-concurrency" + std::to_string(run.max_concurrency);
  return name + "-" + model + "-" + run.date + ".json";
}

} // namespace troupe
