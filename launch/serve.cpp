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
#include "launch/gateway_flags.hpp"
#include "runtime/cli/environment.hpp"
#include "runtime/cli/vllm_flags.hpp"
#include "runtime/engine/stats_log.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct serve_options {
  engine_options engine;
  std::string model_tag;  // the positional MODEL, as `vllm serve MODEL`
  gateway_flags http;
  std::string client_host = "127.0.0.1";
  int32_t client_port = 8001;  // -1: off
  double shutdown_timeout = 30;
  bool disable_log_stats = false;
  double stats_interval_s = 10;  // VLLM_LOG_STATS_INTERVAL
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
// --model), the HTTP API's options (gateway_flags), the stats interval.
// Throws user_error.
gateway_options resolve(serve_options& o) {
  if (!o.model_tag.empty()) {
    if (!o.engine.model.empty() && o.engine.model != o.model_tag)
      throw user_error("the model is given twice, as MODEL (" + o.model_tag + ") and as --model (" + o.engine.model +
                       "): give one");
    o.engine.model = o.model_tag;
  }
  o.stats_interval_s = stats_interval_from_env(read_env);
  gateway_options http = resolve_gateway_flags(o.http);
  o.engine.metrics_prefix = o.http.metrics_prefix;
  return http;
}

client_endpoint_options client_options_of(const serve_options& o, const gateway_options& http) {
  client_endpoint_options c;
  c.host = o.client_host;
  c.port = static_cast<uint16_t>(o.client_port);
  c.max_tokens_limit = http.max_tokens_limit;
  if (http.admission.api_keys.empty() && http.admission.tenants.empty() && c.host != "127.0.0.1" && c.host != "::1")
    spdlog::warn("the native client API listens on {} without an API key: anyone who reaches it can submit jobs "
                 "(give --api-key, or --client-host 127.0.0.1)", c.host);
  return c;
}

void run_serve(serve_options& o) {
  const gateway_options http_options = resolve(o);
  engine_options eo = o.engine;
  eo.usage = usage_context::server;  // vLLM's server defaults for the step size
  if (run_if_other_rank(eo)) return;  // under mpirun: a rank other than 0 runs its shard, rank 0 serves
  // Signals are taken by sigwait below: block them before any thread starts, so every thread inherits it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // HTTP listens while the model loads (503 on /health until it is ready).
  gateway http(http_options);
  // The native client port, bound as early as HTTP's: a port taken by another server fails before the model loads.
  std::optional<client_endpoint> native;
  if (o.client_port >= 0) native.emplace(client_options_of(o, http_options), http.admission());
  spdlog::info("HTTP API on http://{}:{}: loading the model", http_options.host, http.port());
  eo.steps_in_scheduler = false;  // clients submit while steps run (engine_options says why)
  engine e(eo);
  http.attach(e);
  if (native) {
    native->attach(e);
    std::printf("troupe: native client API listening on %s:%u\n", o.client_host.c_str(), native->port());
    spdlog::info("native client API on {}:{}", o.client_host, native->port());
  }
  std::printf("troupe: HTTP API listening on %s:%u\n", http_options.host.c_str(), http.port());
  std::fflush(stdout);
  const std::string base = "http://" + http_options.host + ":" + std::to_string(http.port()) + http_options.root_path;
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
  add_gateway_flags(cmd, o->http);
  cmd->add_option("--served-model-name", o->engine.served_model_names,
                  "Model names the API answers to, the first in responses and metrics (default: the model's path)");
  cmd->add_option("--chat-template", o->engine.chat_template,
                  "The chat template: a Jinja file, or the template itself (default: the model's tokenizer_config.json)");
  add_generation_config_flags(cmd, o->engine);
  cmd->add_option_function<uint64_t>(
      "--seed", [o](const uint64_t& seed) { o->engine.seed = seed; },
      "Seeds the sampling of requests that give no seed (default: a random seed each start)");
  cmd->add_flag("--disable-log-stats", o->disable_log_stats,
                "No stats line (throughput, running and waiting requests, KV cache use, prefix cache hit rate) every "
                "VLLM_LOG_STATS_INTERVAL seconds (default 10)");
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
