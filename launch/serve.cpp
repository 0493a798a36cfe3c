// `troupe serve`: load a model, start the engine, and serve it until SIGINT or SIGTERM. This far: the
// native client API (--client-port, see client/troupe/client.hpp).

#include <csignal>
#include <cstdio>

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "actors/client_endpoint.hpp"
#include "launch/commands.hpp"
#include "launch/engine_flags.hpp"

namespace troupe {
namespace {

struct serve_options {
  engine_options engine;
  std::string host = "0.0.0.0";
  int32_t client_port = 8001;
};

void run_serve(const serve_options& o) {
  // Signals are taken by sigwait below: block them before any thread starts, so every thread inherits it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  engine e(o.engine);
  const uint16_t port = publish_client_endpoint(e, o.host, static_cast<uint16_t>(o.client_port));
  std::printf("troupe: native client API listening on %s:%u\n", o.host.c_str(), port);
  std::fflush(stdout);
  spdlog::info("serving {}; native client API on {}:{}", e.config().architecture_name, o.host, port);
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

} // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<serve_options>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model");
  add_engine_flags(cmd, o->engine);
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--client-port", o->client_port, "Port of the native client API (0: any free port)")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->callback([o] { run_serve(*o); });
}

} // namespace troupe
