// `troupe bench serve`: drives a running OpenAI-compatible server (troupe's or vLLM's) as vLLM's
// `vllm bench serve` does (its flags, its random and prefix_repetition datasets, its report and result
// JSON): token-id prompts sent as streamed completions at a request rate, measuring TTFT, TPOT, ITL and end-to-end
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
#include "launch/bench/bench_sweep.hpp"
#include "launch/bench/bench_workload.hpp"
#include "launch/bench/prefix_cache_counts.hpp"
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
  std::string dataset_name = "random";  // random | prefix_repetition
  random_workload_options workload;      // num_prompts, vocab_size and seed serve both datasets
  prefix_repetition_options prefix_repetition;
  std::vector<std::string> metrics_urls;  // where to read prefix-cache counters (empty: the server's /metrics)
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
  bool sweep = false;         // --sweep: raise the rate step by step to the knee (launch/bench/bench_sweep.hpp)
  sweep_options sweep_ladder;
  std::string json_file;      // --json: the sweep's result (else the run's, as --result-filename)
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

// The prompts of --dataset-name for o.workload's count and seed.
std::vector<bench_prompt> dataset_prompts(const serve_bench_options& o) {
  if (o.dataset_name == "random") return random_prompts(o.workload);
  prefix_repetition_options p = o.prefix_repetition;
  p.num_prompts = o.workload.num_prompts;
  p.vocab_size = o.workload.vocab_size;
  p.seed = o.workload.seed;
  return prefix_repetition_prompts(p);
}

std::vector<bench_request> make_requests(const serve_bench_options& o, std::vector<bench_prompt> prompts, bool chat,
                                         const std::string& endpoint, const std::string& model, const http_target& target,
                                         const std::string& api_key) {
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

// What every run of a benchmark shares: where, who, what to send.
struct bench_setup {
  http_target target;
  bool chat = false;
  std::string endpoint;
  bench_run_info run;
  std::vector<double> percentiles;
};

// Resolves the target, the endpoint and the model; sends one request to see that the server answers.
bench_setup prepare(serve_bench_options& o) {
  bench_setup b;
  b.target = parse_base_url(o.base_url.empty() ? "http://" + o.host + ":" + std::to_string(o.port) : o.base_url);
  if (o.api_key.empty())
    if (const char* key = std::getenv("OPENAI_API_KEY")) o.api_key = key;
  b.chat = o.backend == "openai-chat" || o.endpoint.ends_with("chat/completions");
  b.endpoint = !o.endpoint.empty() ? o.endpoint : b.chat ? "/v1/chat/completions" : "/v1/completions";
  if (o.backend == "openai-chat" && !b.endpoint.ends_with("chat/completions"))
    throw user_error("--backend openai-chat sends chat requests: --endpoint must end in chat/completions, not " + b.endpoint);
  bench_run_info& run = b.run;
  run.backend = b.chat ? "openai-chat" : o.backend;
  const std::vector<bench_prompt> prompts = dataset_prompts(o);  // its user_error before any connection
  run.num_prompts = static_cast<int64_t>(prompts.size());
  run.request_rate = o.request_rate;
  run.burstiness = o.burstiness;
  run.max_concurrency = o.max_concurrency;
  run.percentile_metrics = split_commas(o.percentile_metrics);
  for (const auto& p : split_commas(o.metric_percentiles)) b.percentiles.push_back(std::stod(p));
  raise_open_file_limit();
  run.model_id = o.model.empty() ? first_served_model(b.target, o.api_key) : o.model;

  // One request of the workload (the first of a one-prompt run: its prompt is that of the full run's first).
  std::printf("Starting initial single prompt test run...\n");
  std::fflush(stdout);
  const std::vector<bench_request> first =
      make_requests(o, {prompts.front()}, b.chat, b.endpoint, run.model_id, b.target, o.api_key);
  const double at_once[] = {0.0};
  const bench_run test = run_streamed_requests(b.target, o.api_key, first, at_once, 0, [] {});
  if (!test.outcomes[0].success)
    throw user_error("Initial test run failed - Please make sure benchmark arguments are correctly specified. Error: " +
                     test.outcomes[0].error);
  return b;
}

// One run of the workload's requests (o.workload.seed's prompts and arrivals) at `rate`; warns of failures.
struct rate_run {
  bench_run result;
  bench_metrics metrics;
};
rate_run run_at_rate(const serve_bench_options& o, const bench_setup& b, double rate, std::span<const double> percentiles) {
  const std::vector<bench_request> requests =
      make_requests(o, dataset_prompts(o), b.chat, b.endpoint, b.run.model_id, b.target, o.api_key);
  const std::vector<double> arrivals = arrival_times(static_cast<int64_t>(requests.size()), rate, o.burstiness, o.workload.seed);
  progress_bar bar(requests.size(), !o.disable_tqdm);
  rate_run r;
  r.result = run_streamed_requests(b.target, o.api_key, requests, arrivals, o.max_concurrency, [&] { bar.tick(); });
  r.metrics = compute_bench_metrics(r.result.outcomes, r.result.duration_s, percentiles);
  if (r.metrics.failed > 0) {
    const auto& outcomes = r.result.outcomes;
    const auto first = std::find_if(outcomes.begin(), outcomes.end(), [](const auto& x) { return !x.success; });
    spdlog::warn("{} of {} requests failed; the first error: {}", r.metrics.failed, outcomes.size(), first->error);
  }
  return r;
}

void write_file(const std::string& file, const std::string& text, const char* flag) {
  std::ofstream out(file);
  out << text << "\n";
  if (!out) throw user_error(std::string(flag) + " " + file + ": cannot be written");
  spdlog::info("saved the result to {}", file);
}

// The prefix-cache counters summed over --metrics-url (default: the server's /metrics); nullopt when one
// of them cannot be read or exports none (spdlog says which).
std::optional<prefix_cache_counts> read_prefix_cache_counts(const serve_bench_options& o, const http_target& server) {
  std::vector<std::pair<http_target, std::string>> sources;  // target, path
  if (o.metrics_urls.empty()) sources.emplace_back(server, "/metrics");
  for (const auto& url : o.metrics_urls) sources.emplace_back(parse_base_url(url), "");
  prefix_cache_counts sum;
  for (const auto& [target, path] : sources) {
    http_reply r;
    try {
      r = http_call(target, "GET", path, "", o.api_key);
    } catch (const user_error& e) {
      spdlog::warn("no prefix cache hit rate: {}", e.what());
      return std::nullopt;
    }
    const auto counts = r.status == 200 ? parse_prefix_cache_counts(r.body) : std::nullopt;
    if (!counts) {
      spdlog::warn("no prefix cache hit rate: {} (HTTP {}) has no prefix_cache_queries_total", target.url(path), r.status);
      return std::nullopt;
    }
    sum.queries += counts->queries;
    sum.hits += counts->hits;
  }
  return sum;
}

void run_serve_bench(serve_bench_options o) {
  bench_setup b = prepare(o);
  const auto cache_before = read_prefix_cache_counts(o, b.target);
  bench_run_info& run = b.run;
  std::printf("Initial test run completed. Starting main benchmark run...\n");
  std::printf("Traffic request rate: %s\n", python_float_repr(o.request_rate).c_str());
  std::printf("Burstiness factor: %s (%s)\n", python_float_repr(o.burstiness).c_str(),
              o.burstiness == 1.0 ? "Poisson process" : "Gamma distribution");
  std::printf("Maximum request concurrency: %s\n", o.max_concurrency > 0 ? std::to_string(o.max_concurrency).c_str() : "None");
  std::fflush(stdout);

  const rate_run r = run_at_rate(o, b, o.request_rate, b.percentiles);
  const bench_metrics& metrics = r.metrics;
  const auto& result = r.result;
  run.date = local_date();
  std::fputs(format_report(metrics, run).c_str(), stdout);
  // Beyond vLLM's report: the servers' prefix-cache hit rate over the run (its prompt tokens found cached).
  const auto cache_after = cache_before ? read_prefix_cache_counts(o, b.target) : std::nullopt;
  const auto hit_rate = cache_after ? prefix_cache_hit_rate(*cache_before, *cache_after) : std::nullopt;
  if (hit_rate) std::printf("%-40s %-10.2f\n", "Prefix cache hit rate (%):", *hit_rate * 100);
  else std::printf("%-40s %-10s\n", "Prefix cache hit rate (%):", "n/a");
  std::fflush(stdout);

  // vLLM's keys in vLLM's order, then troupe's two (a parsed nlohmann object would sort them all).
  std::string saved = result_json(metrics, run, result.outcomes, o.save_detailed);
  saved.pop_back();  // its closing '}'
  saved += ",\"dataset_name\":" + json(o.dataset_name).dump() +
           ",\"prefix_cache_hit_rate\":" + (hit_rate ? json(*hit_rate) : json(nullptr)).dump() + "}";
  if (!o.json_file.empty()) write_file(o.json_file, saved, "--json");
  if (o.save_result || !o.result_filename.empty()) {
    std::string file = o.result_filename.empty() ? default_result_filename(run) : o.result_filename;
    if (!o.result_dir.empty()) file = o.result_dir + "/" + file;
    write_file(file, saved, "--result-filename");
  }
}

// --sweep: the ladder of rate_sweep, each step a run of --num-prompts fresh prompts (another seed, so no
// step finds the last one's prompts in the prefix cache).
void run_sweep(serve_bench_options o) {
  o.sweep_ladder.start_rate = o.request_rate == std::numeric_limits<double>::infinity() ? 1.0 : o.request_rate;
  rate_sweep sweep(o.sweep_ladder);
  bench_setup b = prepare(o);
  std::printf("Initial test run completed. Sweeping the request rate from %.2f req/s (x%s up) until TTFT p95 passes %s ms\n",
              o.sweep_ladder.start_rate, python_float_repr(o.sweep_ladder.factor).c_str(),
              python_float_repr(o.sweep_ladder.ttft_slo_ms).c_str());
  std::fflush(stdout);
  const double percentiles[] = {50, 95};
  const uint64_t first_seed = o.workload.seed;
  while (const auto rate = sweep.next_rate()) {
    o.workload.seed = first_seed + sweep.steps().size() + 1;
    const bench_metrics m = run_at_rate(o, b, *rate, percentiles).metrics;
    sweep_step s;
    s.request_rate = *rate;
    s.completed = m.completed;
    s.failed = m.failed;
    s.duration_s = m.duration_s;
    s.ttft_p50_ms = m.ttft.percentiles_ms[0].second;
    s.ttft_p95_ms = m.ttft.percentiles_ms[1].second;
    s.itl_p50_ms = m.itl.percentiles_ms[0].second;
    s.itl_p95_ms = m.itl.percentiles_ms[1].second;
    s.input_tokens_per_s = static_cast<double>(m.total_input) / m.duration_s;
    s.output_tokens_per_s = m.output_throughput;
    s.total_tokens_per_s = m.total_token_throughput;
    const step_verdict v = sweep.record(s);
    spdlog::info("{:.2f} req/s: TTFT p95 {:.1f} ms, {:.1f} total tokens/s, {} failed: {}", s.request_rate, s.ttft_p95_ms,
                 s.total_tokens_per_s, s.failed, verdict_name(v));
  }
  std::fputs(format_sweep_report(sweep).c_str(), stdout);
  std::fflush(stdout);
  const json workload = {{"backend", b.run.backend},
                         {"endpoint", b.endpoint},
                         {"model_id", b.run.model_id},
                         {"num_prompts", o.workload.num_prompts},
                         {"dataset_name", o.dataset_name},
                         {"random_input_len", o.workload.input_len},
                         {"random_output_len", o.workload.output_len},
                         {"random_range_ratio", o.workload.range_ratio},
                         {"prefix_repetition_prefix_len", o.prefix_repetition.prefix_len},
                         {"prefix_repetition_suffix_len", o.prefix_repetition.suffix_len},
                         {"prefix_repetition_num_prefixes", o.prefix_repetition.num_prefixes},
                         {"prefix_repetition_output_len", o.prefix_repetition.output_len},
                         {"burstiness", o.burstiness},
                         {"max_concurrency", o.max_concurrency > 0 ? json(o.max_concurrency) : json(nullptr)},
                         {"seed", first_seed}};
  if (!o.json_file.empty()) write_file(o.json_file, sweep_json(sweep, workload.dump()), "--json");
  const sweep_summary sum = sweep.summary();
  if (!sum.knee) throw user_error("the sweep found no knee: " + sum.reason);
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
  cmd->add_option("--dataset-name", o->dataset_name,
                  "random: --random-* lengths; prefix_repetition: --prefix-repetition-num-prefixes shared prefixes, each "
                  "prompt one of them and a random suffix (num-prompts / num-prefixes per prefix, shuffled)")
      ->capture_default_str()
      ->check(CLI::IsMember({"random", "prefix_repetition"}));
  cmd->add_option("--prefix-repetition-prefix-len", o->prefix_repetition.prefix_len, "prefix_repetition: tokens of each shared prefix")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--prefix-repetition-suffix-len", o->prefix_repetition.suffix_len,
                  "prefix_repetition: random tokens after the prefix, each prompt its own")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--prefix-repetition-num-prefixes", o->prefix_repetition.num_prefixes, "prefix_repetition: distinct prefixes")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--prefix-repetition-output-len", o->prefix_repetition.output_len, "prefix_repetition: max_tokens per request")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--metrics-url", o->metrics_urls,
                  "A Prometheus /metrics URL (repeatable) whose prefix_cache_{hits,queries}_total, read before and after the "
                  "run, give the report's prefix cache hit rate, e.g. each worker behind a router (default: the server's "
                  "/metrics) (troupe only)");
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
  cmd->add_option("--json", o->json_file,
                  "Write the result as JSON to this file: with --sweep every step, the knee and C (what `troupe plan "
                  "--capacity` reads); otherwise vLLM's result JSON");
  cmd->add_flag("--sweep", o->sweep,
                "Raise the request rate step by step (from --request-rate, default 1) until TTFT p95 passes --ttft-slo-ms "
                "or the throughput stops growing; report each step and the sustained tokens/s C at the knee");
  cmd->add_option("--ttft-slo-ms", o->sweep_ladder.ttft_slo_ms, "--sweep: the TTFT p95 a rate must keep to hold")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--sweep-factor", o->sweep_ladder.factor, "--sweep: each step up multiplies the highest rate that held by this")
      ->capture_default_str();
  cmd->add_option("--sweep-max-steps", o->sweep_ladder.max_steps, "--sweep: runs in all, refinements included")
      ->capture_default_str()->check(positive(""));
  cmd->add_option("--sweep-refine", o->sweep_ladder.refine_steps,
                  "--sweep: midpoints tried between the highest rate that held and the lowest that did not")
      ->capture_default_str()->check(number_check(true, ""));
  cmd->add_option("--sweep-min-growth", o->sweep_ladder.min_growth,
                  "--sweep: a step up whose total tokens/s grew less than this fraction is saturated and ends the sweep")
      ->capture_default_str()->check(number_check(true, ""));
  cmd->callback([o] {
    if (o->sweep) run_sweep(*o);
    else run_serve_bench(*o);
  });
}

} // namespace troupe
