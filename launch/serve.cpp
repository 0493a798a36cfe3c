// `troupe serve`: load a model, start the engine, and serve vLLM's OpenAI-compatible HTTP API (--port) and
// the native client API (--client-host/--client-port, see client/troupe/client.hpp) until SIGINT or SIGTERM.
// On SIGTERM it stops taking requests (503, /health 503; native jobs refused), lets those in flight finish for
// up to --shutdown-timeout seconds, ends the rest with an error, and exits 0.

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "actors/client_endpoint.hpp"
#include "actors/gateway.hpp"
#include "launch/commands.hpp"
#include "launch/distributed.hpp"
#include "launch/engine_flags.hpp"
#include "runtime/cli/environment.hpp"
#include "runtime/cli/vllm_flags.hpp"
#include "runtime/engine/stats_log.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct serve_options {
  engine_options engine;
  std::string model_tag;  // the positional MODEL, as `vllm serve MODEL`
  gateway_options http;
  std::string client_host = "127.0.0.1";
  int32_t client_port = 8001;  // -1: off
  double shutdown_timeout = 30;
  std::string tenants_file;
  // The request log: on unless one of these turns it off (vLLM's flags; vLLM's own default is off).
  bool enable_log_requests = true;
  bool disable_log_requests = false;
  bool disable_access_log = false;
  bool disable_log_stats = false;
  double stats_interval_s = 10;  // VLLM_LOG_STATS_INTERVAL
  std::string allowed_origins = R"(["*"])", allowed_methods = R"(["*"])", allowed_headers = R"(["*"])";
};

// The process's environment, as runtime/cli/environment.hpp reads it.
const char* read_env(const char* name) { return std::getenv(name); }

// Logs the stats line every `interval` seconds (debug level while idle, as vLLM) until destroyed.
class stats_ticker {
public:
  stats_ticker(engine& e, double interval) : thread_([this, &e, interval] { run(e, interval); }) {}
  ~stats_ticker() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  stats_ticker(const stats_ticker&) = delete;
  stats_ticker& operator=(const stats_ticker&) = delete;

private:
  void run(engine& e, double interval) {
    using clock = std::chrono::steady_clock;
    metrics_snapshot previous = e.metrics();
    auto since = clock::now();
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::duration<double>(interval), [this] { return stop_; })) {
      const metrics_snapshot now = e.metrics();
      const auto at = clock::now();
      const stats_line line = make_stats_line(previous, now, std::chrono::duration<double>(at - since).count());
      spdlog::log(line.idle ? spdlog::level::debug : spdlog::level::info, "{}", line.text);
      previous = now;
      since = at;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;  // last: it starts once the members it uses exist
};

// What the command line and the environment leave to decide before anything starts: the model (MODEL or
// --model), the API key (--api-key, else TROUPE_API_KEY or VLLM_API_KEY), CORS lists, the request log, the
// stats interval.
// Throws user_error.
void resolve(serve_options& o) {
  if (!o.model_tag.empty()) {
    if (!o.engine.model.empty() && o.engine.model != o.model_tag)
      throw user_error("the model is given twice, as MODEL (" + o.model_tag + ") and as --model (" + o.engine.model +
                       "): give one");
    o.engine.model = o.model_tag;
  }
  if (o.http.admission.api_keys.empty())
    if (const auto key = api_key_from_env(read_env)) {
      o.http.admission.api_keys.push_back(key->value);
      spdlog::info("API key from {}: requests must send 'Authorization: Bearer <key>'", key->name);
    }
  o.http.cors.allowed_origins = parse_cors_list(o.allowed_origins, "--allowed-origins");
  o.http.cors.allowed_methods = parse_cors_list(o.allowed_methods, "--allowed-methods");
  o.http.cors.allowed_headers = parse_cors_list(o.allowed_headers, "--allowed-headers");
  o.http.log_requests = o.enable_log_requests && !o.disable_log_requests && !o.disable_access_log;
  o.stats_interval_s = stats_interval_from_env(read_env);
  if (!o.http.root_path.empty() && !o.http.root_path.starts_with("/"))
    throw user_error("--root-path must start with '/', got '" + o.http.root_path + "'");
  try {
    check_metrics_prefix(o.engine.metrics_prefix);
  } catch (const std::invalid_argument& e) {
    throw user_error(e.what());
  }
}

client_endpoint_options client_options_of(const serve_options& o) {
  client_endpoint_options c;
  c.host = o.client_host;
  c.port = static_cast<uint16_t>(o.client_port);
  c.max_tokens_limit = o.http.max_tokens_limit;
  if (o.http.admission.api_keys.empty() && o.tenants_file.empty() && c.host != "127.0.0.1" && c.host != "::1")
    spdlog::warn("the native client API listens on {} without an API key: anyone who reaches it can submit jobs "
                 "(give --api-key, or --client-host 127.0.0.1)", c.host);
  return c;
}

void run_serve(serve_options& o) {
  resolve(o);
  engine_options eo = o.engine;
  eo.usage = usage_context::server;  // vLLM's server defaults for the step size
  if (run_if_other_rank(eo)) return;  // under mpirun: a rank other than 0 runs its shard, rank 0 serves
  // Signals are taken by sigwait below: block them before any thread starts, so every thread inherits it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  gateway_options http_options = o.http;
  if (!o.tenants_file.empty()) http_options.admission.tenants = read_tenants_file(o.tenants_file);
  // HTTP listens while the model loads (503 on /health until it is ready).
  gateway http(http_options);
  // The native client port, bound as early as HTTP's: a port taken by another server fails before the model loads.
  std::optional<client_endpoint> native;
  if (o.client_port >= 0) native.emplace(client_options_of(o), http.admission());
  spdlog::info("HTTP API on http://{}:{}: loading the model", o.http.host, http.port());
  engine e(eo);
  http.attach(e);
  if (native) {
    native->attach(e);
    std::printf("troupe: native client API listening on %s:%u\n", o.client_host.c_str(), native->port());
    spdlog::info("native client API on {}:{}", o.client_host, native->port());
  }
  std::printf("troupe: HTTP API listening on %s:%u\n", o.http.host.c_str(), http.port());
  std::fflush(stdout);
  const std::string base = "http://" + o.http.host + ":" + std::to_string(http.port()) + o.http.root_path;
  std::string names;
  for (const std::string& n : e.served_model_names()) names += (names.empty() ? "" : ", ") + n;
  spdlog::info("serving {} as {}: OpenAI API at {}/v1, live dashboard at {}/dashboard, Prometheus metrics at {}/metrics",
               e.config().architecture_name, names, base, base, base);
  std::optional<stats_ticker> stats;
  if (!o.disable_log_stats) stats.emplace(e, o.stats_interval_s);
  int sig = 0;
  sigwait(&signals, &sig);
  if (eo.mpi && eo.tensor_parallel_size > 1) {
    // Under mpirun a signal means mpirun is ending the whole job (a rank died, or mpirun itself was told to
    // stop): the other ranks get it too, so no step can finish, and mpirun kills what is left within about
    // two seconds. Requests in flight end at once with an error their clients receive.
    const int64_t left = http.num_in_flight();
    spdlog::error("{} from mpirun: the tensor-parallel job is ending (a rank died, or the job was stopped); "
                  "failing {} requests in flight", sig == SIGTERM ? "SIGTERM" : "SIGINT", left);
    http.begin_draining();
    if (native) native->begin_draining();
    e.fail_all("the tensor-parallel job is ending: mpirun stopped it (a rank died, or the job was stopped)");
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (http.num_in_flight() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    http.stop();
    if (native) native->stop();
    // Not the engine's orderly stop: rank 0's shard may sit in a collective that a dead rank never enters.
    std::fflush(nullptr);
    std::_Exit(left > 0 ? 1 : 0);
  }
  spdlog::info("{}: draining ({} requests in flight, up to {} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
               http.num_in_flight(), o.shutdown_timeout);
  http.begin_draining();
  if (native) native->begin_draining();
  // HTTP requests and native jobs alike: both hold tickets of the one admission controller.
  auto in_flight = [&] { return http.num_in_flight(); };
  // Requests in flight get the timeout to finish, less a moment at the end in which those still running
  // are ended with an error that reaches their clients; then everything stops, within the timeout.
  using clock = std::chrono::steady_clock;
  const auto timeout = std::chrono::duration<double>(o.shutdown_timeout);
  const auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(timeout);
  const auto grace = std::chrono::duration_cast<clock::duration>(std::min(timeout / 4, std::chrono::duration<double>(0.5)));
  auto wait_until = [&](clock::time_point t) {
    while (in_flight() > 0 && clock::now() < t) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  wait_until(deadline - grace);
  if (const int64_t left = in_flight(); left > 0) {
    spdlog::warn("{} requests still running after the shutdown timeout: ending them with an error", left);
    e.fail_all("The server shut down before the request finished (--shutdown-timeout " + fmt::format("{:g}", o.shutdown_timeout) + " s)");
    wait_until(deadline);
  }
  stats.reset();
  http.stop();  // before the engine goes: no connection may reach it afterwards
  if (native) native->stop();  // native jobs still running end with an error; their clients' calls return
  spdlog::info("shut down");
}

} // namespace

// The help's closing lines, from the vLLM flag table: what troupe does with `vllm serve`'s other flags.
std::string vllm_flags_footer() {
  std::string no_effect;
  for (const vllm_flag& f : vllm_serve_flags())
    if (f.what == flag_class::no_effect) no_effect += (no_effect.empty() ? "" : ", ") + std::string(f.name);
  return "\nEvery command also takes --log-level LEVEL. The flags of vLLM " + std::string(compared_vllm_version) +
         "'s `vllm serve` that troupe has (above) work with vLLM's meaning; these it accepts, logging why each has "
         "no effect: " + no_effect + ". The others are refused, saying why; docs/vllm_flags.md has the whole table.\n";
}

void register_serve(CLI::App& app) {
  auto o = std::make_shared<serve_options>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model (troupe serve [MODEL] [flags], as vllm serve)");
  cmd->add_option("MODEL", o->model_tag, "Hugging Face model folder, as `vllm serve MODEL` (or --model; default: the built-in small model)");
  add_engine_flags(cmd, o->engine);
  cmd->add_option("--host", o->http.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->http.port, "Port of the OpenAI-compatible HTTP API (0: any free port)")->capture_default_str();
  cmd->add_option("--api-key", o->http.admission.api_keys,
                  "API key clients must send as 'Authorization: Bearer KEY' (repeatable; default: TROUPE_API_KEY, else "
                  "VLLM_API_KEY, else none)");
  cmd->add_option("--tenants-file", o->tenants_file, "JSON file mapping API keys to tenants with token-rate and concurrency limits");
  cmd->add_option("--max-queue-len", o->http.admission.max_queue_len, "Waiting requests beyond this are refused with 429 (0: no cap)")
      ->capture_default_str();
  cmd->add_option("--max-tokens-limit", o->http.max_tokens_limit, "Server-side cap on max_tokens (0: none)")->capture_default_str();
  cmd->add_option("--request-timeout", o->http.request_timeout_s, "Seconds a request may take before it is aborted (0: none)")
      ->capture_default_str();
  cmd->add_option("--max-connections", o->http.max_connections,
                  "Open HTTP connections at most; past it the longest-idle one is closed, else 503 (0: what the "
                  "descriptor limit allows, less a reserve)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-stream-buffer", o->http.max_stream_buffer, "SSE events queued for a slow client before it is cut off")
      ->capture_default_str();
  cmd->add_option("--served-model-name", o->engine.served_model_names,
                  "Model names the API answers to, the first in responses and metrics (default: the model's path)");
  cmd->add_option_function<uint64_t>(
      "--seed", [o](const uint64_t& seed) { o->engine.seed = seed; },
      "Seeds the sampling of requests that give no seed (default: a random seed each start)");
  cmd->add_option("--max-logprobs", o->http.max_logprobs, "Most logprobs a request may ask for (-1: the vocabulary)")
      ->capture_default_str();
  cmd->add_flag("--enable-prompt-tokens-details", o->http.prompt_tokens_details,
                "Usage reports the prompt tokens found in the prefix cache (prompt_tokens_details.cached_tokens)");
  cmd->add_option("--root-path", o->http.root_path,
                  "Path prefix a path-routing proxy leaves on requests ('/api'): paths are served with and without it");
  cmd->add_option("--allowed-origins", o->allowed_origins, "CORS: origins allowed, a JSON list")->capture_default_str();
  cmd->add_option("--allowed-methods", o->allowed_methods, "CORS: methods allowed, a JSON list")->capture_default_str();
  cmd->add_option("--allowed-headers", o->allowed_headers, "CORS: request headers allowed, a JSON list")->capture_default_str();
  cmd->add_flag("--allow-credentials", o->http.cors.allow_credentials, "CORS: allow credentials (cookies, authorization)");
  cmd->add_flag("--enable-request-id-headers", o->http.request_id_headers,
                "Responses carry X-Request-Id: the request's own, or a new one");
  cmd->add_flag("--disable-log-requests", o->disable_log_requests, "No request log (one line per API request; on by default)");
  cmd->add_flag_callback("--no-disable-log-requests", [o] { o->disable_log_requests = false; }, "The request log (the default)");
  cmd->add_flag("--enable-log-requests", o->enable_log_requests, "The request log (on by default, unlike vLLM's)");
  cmd->add_flag_callback("--no-enable-log-requests", [o] { o->enable_log_requests = false; }, "No request log");
  cmd->add_flag("--disable-uvicorn-access-log", o->disable_access_log, "No request log, as --disable-log-requests");
  cmd->add_flag("--disable-log-stats", o->disable_log_stats,
                "No stats line (throughput, running and waiting requests, KV cache use, prefix cache hit rate) every "
                "VLLM_LOG_STATS_INTERVAL seconds (default 10)");
  cmd->add_option("--metrics-prefix", o->engine.metrics_prefix,
                  "Name prefix of the /metrics families: troupe, or vllm so that dashboards and alerts written for vLLM "
                  "read troupe unchanged")
      ->capture_default_str();
  cmd->add_option("--dashboard-interval", o->http.dashboard_interval_s,
                  "Seconds between the /dashboard history's samples (it keeps the last hour)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout, "Seconds requests in flight get to finish after SIGTERM")
      ->capture_default_str();
  cmd->add_option("--client-host", o->client_host,
                  "Address the native client API listens on (loopback by default; it takes the same API keys as HTTP)")
      ->capture_default_str();
  cmd->add_option("--client-port", o->client_port, "Port of the native client API (0: any free port, -1: off)")
      ->capture_default_str()->check(CLI::Range(-1, 65535));
  cmd->footer(vllm_flags_footer());
  cmd->callback([o] { run_serve(*o); });
}

} // namespace troupe
