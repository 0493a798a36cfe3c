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
#include <optional>
#include <thread>

#include "actors/client_endpoint.hpp"
#include "actors/gateway.hpp"
#include "launch/commands.hpp"
#include "launch/distributed.hpp"
#include "launch/engine_flags.hpp"

namespace troupe {
namespace {

struct serve_options {
  engine_options engine;
  gateway_options http;
  std::string client_host = "127.0.0.1";
  int32_t client_port = 8001;  // -1: off
  double shutdown_timeout = 30;
  std::string tenants_file;
};

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

void run_serve(const serve_options& o) {
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
  spdlog::info("serving {}: OpenAI API on http://{}:{}", e.config().architecture_name, o.http.host, http.port());
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
  http.stop();  // before the engine goes: no connection may reach it afterwards
  if (native) native->stop();  // native jobs still running end with an error; their clients' calls return
  spdlog::info("shut down");
}

} // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<serve_options>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model");
  add_engine_flags(cmd, o->engine);
  cmd->add_option("--host", o->http.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->http.port, "Port of the OpenAI-compatible HTTP API (0: any free port)")->capture_default_str();
  cmd->add_option("--api-key", o->http.admission.api_keys, "API key clients must send as 'Authorization: Bearer KEY' (repeatable)");
  cmd->add_option("--tenants-file", o->tenants_file, "JSON file mapping API keys to tenants with token-rate and concurrency limits");
  cmd->add_option("--max-queue-len", o->http.admission.max_queue_len, "Waiting requests beyond this are refused with 429 (0: no cap)");
  cmd->add_option("--max-tokens-limit", o->http.max_tokens_limit, "Server-side cap on max_tokens (0: none)");
  cmd->add_option("--request-timeout", o->http.request_timeout_s, "Seconds a request may take before it is aborted (0: none)");
  cmd->add_option("--max-connections", o->http.max_connections,
                  "Open HTTP connections at most; past it the longest-idle one is closed, else 503 (0: what the "
                  "descriptor limit allows, less a reserve)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-stream-buffer", o->http.max_stream_buffer, "SSE events queued for a slow client before it is cut off")
      ->capture_default_str();
  cmd->add_option("--served-model-name", o->engine.served_model_name, "Model name in the API (default: --model)");
  cmd->add_option("--shutdown-timeout", o->shutdown_timeout, "Seconds requests in flight get to finish after SIGTERM")
      ->capture_default_str();
  cmd->add_option("--client-host", o->client_host,
                  "Address the native client API listens on (loopback by default; it takes the same API keys as HTTP)")
      ->capture_default_str();
  cmd->add_option("--client-port", o->client_port, "Port of the native client API (0: any free port, -1: off)")
      ->capture_default_str()->check(CLI::Range(-1, 65535));
  cmd->callback([o] { run_serve(*o); });
}

} // namespace troupe
