// `troupe bench serve`: drives a running OpenAI-compatible server (troupe's or vLLM's) as vLLM's
// `vllm bench serve` does (its flags, its random dataset, its report and result JSON): random token-id
// prompts sent as streamed completions at a request rate, measuring TTFT, TPOT, ITL and end-to-end
// latency from the event stream. The figures are in launch/bench/bench_metrics.hpp, the HTTP client in
// launch/bench_client.cpp.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "launch/bench_client.hpp"
#include "launch/commands.hpp"
#include "launch/progress_bar.hpp"
#include "launch/bench/bench_report.hpp"
#include "launch/bench/bench_workload.hpp"
#include "runtime/error.hpp"
#include "runtime/openai/python_repr.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

struct serve_bench_options {
  std::string base_url;  // empty: http://{host}:{port}
  std::string host = "127.0.0.1";
  int32_t port = 8000;
  std::string endpoint;  // empty: from the backend
  std::string backend = "openai";
  std::string model;     // empty: the first of GET /v1/models
  std::string api_key;   // empty: $OPENAI_API_KEY
  random_workload_options workload;
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  int32_t max_concurrency = 0;
  bool ignore_eos = false;
  double temperature = 0;
  std::string percentile_metrics = "ttft,tpot,itl,e2el";
  std::string metric_percentiles = "50,95,99";
  bool save_result = false;
  bool save_detailed = false;
  std::string result_dir;
  std::string result_filename;
  bool disable_tqdm = false;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// The model to benchmark: --model, else the first model the server lists (as vLLM does).
std::string first_served_model(const http_target& target, const std::string& api_key) {
  const http_reply r = http_call(target, "GET", "/v1/models", "", api_key);
  const std::string url = target.url("/v1/models");
  if (r.status != 200)
    throw user_error("GET " + url + " answered HTTP " + std::to_string(r.status) + ": " + error_message_of(r.body) +
                     (r.status == 401 ? " (give --api-key or set OPENAI_API_KEY)" : "; or name the model with --model"));
  const json j = json::parse(r.body, nullptr, false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() || !j["data"][0].contains("id"))
    throw user_error("GET " + url + " lists no models; name the model with --model");
  return j["data"][0]["id"].get<std::string>();
}

// Chat prompts are text: the random ids detokenized by the server's /detokenize (troupe and vLLM have
// it), so the text is in the model's own vocabulary; a server without it gets random common words.
std::vector<std::string> chat_texts(const http_target& target, const std::string& api_key, const std::string& model,
                                    const std::vector<bench_prompt>& prompts, uint64_t seed) {
  std::vector<std::string> texts;
  for (const auto& p : prompts) {
    const http_reply r = http_call(target, "POST", "/detokenize", json{{"model", model}, {"tokens", p.token_ids}}.dump(), api_key);
    const json j = json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object() || !j.contains("prompt") || !j["prompt"].is_string()) {
      spdlog::warn("{} is not available (HTTP {}); the chat prompts are random words instead", target.url("/detokenize"), r.status);
      texts.clear();
      break;
    }
    texts.push_back(j["prompt"].get<std::string>());
  }
  if (!texts.empty()) return texts;
  static const char* const words[] = {"time", "river", "light", "stone", "garden", "music", "number", "window",
                                      "paper", "winter", "market", "doctor", "silver", "forest", "engine", "signal"};
  std::mt19937_64 rng(seed);
  for (const auto& p : prompts) {
    std::string text;
    for (size_t i = 0; i < p.token_ids.size(); ++i) text += (i ? " " : "") + std::string(words[rng() % std::size(words)]);
    texts.push_back(std::move(text));
  }
  return texts;
}

std::vector<bench_request> make_requests(const serve_bench_options& o, bool chat, const std::string& endpoint,
                                         const std::string& model, const http_target& target, const std::string& api_key) {
  const std::vector<bench_prompt> prompts = random_prompts(o.workload);
  std::vector<std::string> texts;
  if (chat) texts = chat_texts(target, api_key, model, prompts, o.workload.seed);
  std::vector<bench_request> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    json body = {{"model", model}};
    if (chat) {
      body["messages"] = json::array({{{"role", "user"}, {"content", texts[i]}}});
      body["max_completion_tokens"] = prompts[i].output_len;
    } else {
      body["prompt"] = prompts[i].token_ids;
      body["max_tokens"] = prompts[i].output_len;
    }
    body["temperature"] = o.temperature;
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    if (o.ignore_eos) body["ignore_eos"] = true;
    requests.push_back({endpoint, body.dump(), static_cast<int64_t>(prompts[i].token_ids.size())});
  }
  return requests;
}

// Thousands of streams need as many sockets: take the hard limit on open files.
void raise_open_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string local_date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

void run_serve_bench(serve_bench_options o) {
  const http_target target = parse_base_url(o.base_url.empty() ? "http://" + o.host + ":" + std::to_string(o.port) : o.base_url);
  if (o.api_key.empty())
    if (const char* key = std::getenv("OPENAI_API_KEY")) o.api_key = key;
  const bool chat = o.backend == "openai-chat" || o.endpoint.ends_with("chat/completions");
  const std::string endpoint = !o.endpoint.empty() ? o.endpoint : chat ? "/v1/chat/completions" : "/v1/completions";
  if (o.backend == "openai-chat" && !endpoint.ends_with("chat/completions"))
    throw user_error("--backend openai-chat sends chat requests: --endpoint must end in chat/completions, not " + endpoint);
  bench_run_info run;
  run.backend = chat ? "openai-chat" : o.backend;
  run.num_prompts = o.workload.num_prompts;
  run.request_rate = o.request_rate;
  run.burstiness = o.burstiness;
  run.max_concurrency = o.max_concurrency;
  run.percentile_metrics = split_commas(o.percentile_metrics);
  std::vector<double> percentiles;
  for (const auto& p : split_commas(o.metric_percentiles)) percentiles.push_back(std::stod(p));
  raise_open_file_limit();

  run.model_id = o.model.empty() ? first_served_model(target, o.api_key) : o.model;
  const std::vector<bench_request> requests = make_requests(o, chat, endpoint, run.model_id, target, o.api_key);

  std::printf("Starting initial single prompt test run...\n");
  std::fflush(stdout);
  const double at_once[] = {0.0};
  const bench_run test = run_streamed_requests(target, o.api_key, std::span(requests).first(1), at_once, 0, [] {});
  if (!test.outcomes[0].success)
    throw user_error("Initial test run failed - Please make sure benchmark arguments are correctly specified. Error: " +
                     test.outcomes[0].error);
  std::printf("Initial test run completed. Starting main benchmark run...\n");
  std::printf("Traffic request rate: %s\n", python_float_repr(o.request_rate).c_str());
  std::printf("Burstiness factor: %s (%s)\n", python_float_repr(o.burstiness).c_str(),
              o.burstiness == 1.0 ? "Poisson process" : "Gamma distribution");
  std::printf("Maximum request concurrency: %s\n", o.max_concurrency > 0 ? std::to_string(o.max_concurrency).c_str() : "None");
  std::fflush(stdout);

  const std::vector<double> arrivals = arrival_times(o.workload.num_prompts, o.request_rate, o.burstiness, o.workload.seed);
  progress_bar bar(requests.size(), !o.disable_tqdm);
  const bench_run result = run_streamed_requests(target, o.api_key, requests, arrivals, o.max_concurrency, [&] { bar.tick(); });

  const bench_metrics metrics = compute_bench_metrics(result.outcomes, result.duration_s, percentiles);
  if (metrics.failed > 0) {
    const auto first = std::find_if(result.outcomes.begin(), result.outcomes.end(), [](const auto& r) { return !r.success; });
    spdlog::warn("{} of {} requests failed; the first error: {}", metrics.failed, result.outcomes.size(), first->error);
  }
  run.date = local_date();
  std::fputs(format_report(metrics, run).c_str(), stdout);
  std::fflush(stdout);

  if (o.save_result || !o.result_filename.empty()) {
    std::string file = o.result_filename.empty() ? default_result_filename(run) : o.result_filename;
    if (!o.result_dir.empty()) file = o.result_dir + "/" + file;
    std::ofstream out(file);
    out << result_json(metrics, run, result.outcomes, o.save_detailed) << "\n";
    if (!out) throw user_error("--result-filename " + file + ": cannot be written");
    spdlog::info("saved the result to {}", file);
  }
}

// CLI11 validators that say what to change.
CLI::Validator comma_list_of(std::vector<std::string> allowed) {
  return CLI::Validator(
      [allowed](std::string& value) -> std::string {
        const auto parts = split_commas(value);
        if (parts.empty()) return "give at least one of ttft,tpot,itl,e2el";
        for (const auto& part : parts)
          if (std::find(allowed.begin(), allowed.end(), part) == allowed.end())
            return "'" + part + "' is not a metric; choose from ttft,tpot,itl,e2el (comma-separated)";
        return {};
      },
      "METRIC,...");
}

CLI::Validator percentile_list() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        const auto parts = split_commas(value);
        if (parts.empty()) return "give percentiles such as 50,95,99";
        for (const auto& part : parts) {
          char* end = nullptr;
          const double p = std::strtod(part.c_str(), &end);
          if (end != part.c_str() + part.size() || !(p > 0 && p <= 100))
            return "'" + part + "' is not a percentile; give numbers in (0, 100] such as 50,95,99";
        }
        return {};
      },
      "P,...");
}

// CLI11's PositiveNumber names the whole double range in its message; these say what to give.
CLI::Validator number_check(bool allow_zero, std::string hint) {
  return CLI::Validator(
      [allow_zero, hint](std::string& value) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        if (end != value.c_str() + value.size() || !(allow_zero ? v >= 0 : v > 0))
          return std::string(allow_zero ? "must be 0 or more" : "must be greater than 0") + ", not '" + value + "'" + hint;
        return {};
      },
      "");
}
CLI::Validator positive(std::string hint) { return number_check(false, std::move(hint)); }

CLI::Validator range_ratio() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        char* end = nullptr;
        const double r = std::strtod(value.c_str(), &end);
        if (end != value.c_str() + value.size() || !(r >= 0 && r < 1))
          return "--random-range-ratio must be in [0, 1): lengths are drawn from [len*(1-r), len*(1+r)]";
        return {};
      },
      "[0,1)");
}

} // namespace

void register_bench_serve(CLI::App& bench) {
  auto o = std::make_shared<serve_bench_options>();
  CLI::App* cmd = bench.add_subcommand("serve", "Online serving benchmark against a running OpenAI-compatible server (vllm bench serve)");
  cmd->footer(
      "Sends --num-prompts random token-id prompts (/v1/completions: \"prompt\": [ids]; chat: the ids detokenized by the\n"
      "server's /detokenize, else random words) as streamed requests, Poisson arrivals at --request-rate (gamma with\n"
      "--burstiness), and prints vLLM's report: TTFT (send to first token chunk), TPOT ((latency - TTFT) / (output\n"
      "tokens - 1)), ITL (gaps between token chunks), E2EL (send to the response's last event); percentiles as numpy's\n"
      "linear interpolation. The exit code is 1 when the server cannot be reached or the first request fails.");
  cmd->add_option("--base-url", o->base_url, "Server URL, http://HOST[:PORT][/PREFIX] (default: http://--host:--port)");
  cmd->add_option("--host", o->host, "Server host when --base-url is not given")->capture_default_str();
  cmd->add_option("--port", o->port, "Server port when --base-url is not given")->capture_default_str()->check(CLI::Range(1, 65535));
  cmd->add_option("--endpoint", o->endpoint, "API path (default: /v1/completions; /v1/chat/completions for openai-chat)");
  cmd->add_option("--backend", o->backend, "openai (or vllm): /v1/completions with token-id prompts; openai-chat: chat completions")
      ->capture_default_str()
      ->check(CLI::IsMember({"openai", "openai-chat", "vllm"}));
  cmd->add_option("--model", o->model, "Model name to request (default: the first of GET /v1/models)");
  cmd->add_option("--api-key", o->api_key, "Sent as 'Authorization: Bearer KEY' (default: $OPENAI_API_KEY)");
  cmd->add_option("--num-prompts", o->workload.num_prompts, "Requests to send")->capture_default_str()->check(positive(""));
  cmd->add_option("--random-input-len", o->workload.input_len, "Prompt tokens per request")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--random-output-len", o->workload.output_len, "max_tokens per request")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--random-range-ratio", o->workload.range_ratio,
                  "Lengths uniform in [len*(1-r), len*(1+r)]; 0: exactly the lengths given")
      ->capture_default_str()->check(range_ratio());
  cmd->add_option("--random-vocab-size", o->workload.vocab_size,
                  "Prompt token ids are drawn from [0, N); 256 is inside every tokenizer's vocabulary (troupe only)")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--seed", o->workload.seed, "Seed of the prompts and the arrival times")->capture_default_str();
  cmd->add_option("--request-rate", o->request_rate, "Requests per second (Poisson arrivals); inf: all at once")
      ->capture_default_str()->check(positive("; inf sends every request at once"));
  cmd->add_option("--burstiness", o->burstiness,
                  "Arrival gaps are gamma-distributed with this shape: 1 Poisson, below 1 burstier, above 1 more even")
      ->capture_default_str()->check(positive("; 1 gives Poisson arrivals"));
  cmd->add_option("--max-concurrency", o->max_concurrency, "Most requests in flight at once (default: no limit)")
      ->check(positive(""));
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Send vLLM's ignore_eos so every request generates its max_tokens");
  cmd->add_option("--temperature", o->temperature, "Sampling temperature sent with each request; 0: greedy")
      ->capture_default_str()->check(number_check(true, ""));
  cmd->add_option("--percentile-metrics", o->percentile_metrics, "Metrics to report, of ttft,tpot,itl,e2el")
      ->capture_default_str()->check(comma_list_of({"ttft", "tpot", "itl", "e2el"}));
  cmd->add_option("--metric-percentiles", o->metric_percentiles, "Percentiles to report, comma-separated")
      ->capture_default_str()->check(percentile_list());
  cmd->add_flag("--save-result", o->save_result, "Write the result JSON (vLLM's keys)");
  cmd->add_flag("--save-detailed", o->save_detailed, "Add per-request lists (ttfts, itls, latencies, ...) to the JSON");
  cmd->add_option("--result-dir", o->result_dir, "Folder of the result JSON");
  cmd->add_option("--result-filename", o->result_filename,
                  "Name of the result JSON (default: BACKEND-RATEqps[-concurrencyN]-MODEL-DATE.json); implies --save-result");
  cmd->add_flag("--disable-tqdm", o->disable_tqdm, "No progress bar");
  cmd->callback([o] { run_serve_bench(*o); });
}

} // namespace troupe
