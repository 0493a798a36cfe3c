// `troupe router`: one OpenAI-compatible front (the HTTP layer, API, errors, API keys, tenants and admission of
// `troupe serve`) over workers that are `troupe serve` processes, here or on other hosts. Requests go to a pool
// by max_tokens and to a worker of it by prefix affinity and load (runtime/router/request_router.hpp), through
// the workers' native client ports; workers are health-checked, leave rotation when they fail and return when
// healthy (actors/router.hpp). On SIGTERM it stops taking requests, lets those in flight finish for up to
// --shutdown-timeout seconds and exits 0.

#include <csignal>
#include <cstdio>

#include <pthread.h>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "actors/gateway.hpp"
#include "actors/router.hpp"
#include "launch/commands.hpp"
#include "launch/gateway_flags.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

struct router_flags {
  std::string model_tag;  // the positional MODEL
  router_options router;
  gateway_flags http;
  std::vector<std::string> workers;
  std::string workers_file;
  std::vector<std::string> pools;
  std::string routing = "prefix_affinity";
  double shutdown_timeout = 30;
};

// The fleet and the model from the flags. Throws user_error.
router_options resolve(router_flags& f) {
  router_options o = f.router;
  if (!f.model_tag.empty()) {
    if (!o.model.model.empty() && o.model.model != f.model_tag)
      throw user_error("the model is given twice, as MODEL (" + f.model_tag + ") and as --model (" + o.model.model + "): give one");
    o.model.model = f.model_tag;
  }
  const auto policy = parse_routing_policy(f.routing);
  if (!policy) throw user_error("--routing must be prefix_affinity, least_loaded or round_robin, got '" + f.routing + "'");
  o.policy = *policy;
  std::vector<worker_address> workers;
  for (const std::string& spec : f.workers) workers.push_back(parse_worker_spec(spec, "--worker"));
  if (!f.workers_file.empty())
    for (worker_address& w : read_workers_file(f.workers_file)) workers.push_back(std::move(w));
  std::vector<pool_config> pools;
  for (const std::string& spec : f.pools) pools.push_back(parse_pool_spec(spec));
  o.fleet = make_fleet_config(std::move(pools), std::move(workers));
  return o;
}

void run_router(router_flags& f) {
  const gateway_options http_options = resolve_gateway_flags(f.http);
  router_options ro = resolve(f);
  ro.metrics_prefix = f.http.metrics_prefix;
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  gateway http(http_options);  // 503 until the router is attached
  router fleet(ro);
  http.attach(fleet);
  std::printf("troupe: HTTP API listening on %s:%u\n", http_options.host.c_str(), http.port());
  std::fflush(stdout);
  for (const pool_config& p : ro.fleet.pools) {
    std::string members;
    for (const worker_address& w : ro.fleet.workers)
      if (w.pool == p.name) members += (members.empty() ? "" : ", ") + w.url;
    spdlog::info("pool {} ({}): {}", p.name, p.max_tokens ? "max_tokens up to " + std::to_string(p.max_tokens) : std::string("the rest"),
                 members);
  }
  spdlog::info("OpenAI API at http://{}:{}{}/v1; /health answers 200 while every pool has a worker in rotation",
               http_options.host, http.port(), http_options.root_path);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{}: draining ({} requests in flight, up to {} s)", sig == SIGTERM ? "SIGTERM" : "SIGINT", http.num_in_flight(),
               f.shutdown_timeout);
  http.begin_draining();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                               std::chrono::duration<double>(f.shutdown_timeout));
  while (http.num_in_flight() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (const int64_t left = http.num_in_flight(); left > 0)
    spdlog::warn("{} requests still running after the shutdown timeout: ending them", left);
  http.stop();   // before the router: no connection may reach it afterwards
  fleet.stop();  // the workers' connections close; their jobs are aborted there
  spdlog::info("shut down");
}

} // namespace

void register_router(CLI::App& app) {
  auto f = std::make_shared<router_flags>();
  CLI::App* cmd = app.add_subcommand(
      "router", "Route an OpenAI-compatible API over troupe serve workers (troupe router [MODEL] --worker URL... [flags])");
  cmd->add_option("MODEL", f->model_tag,
                  "The workers' model folder, for chat templates, the tokenizer and limits (or --model; default: the "
                  "built-in small model)");
  model_front_options& m = f->router.model;
  cmd->add_option("--model", m.model, "The workers' model folder (default: the built-in small model)");
  cmd->add_option("--tokenizer", m.tokenizer, "Folder of the tokenizer.json and tokenizer_config.json to use (default: the model's)");
  cmd->add_option("--served-model-name", m.served_model_names,
                  "Model names the API answers to, the first in responses and metrics (default: the model's path)");
  cmd->add_option("--chat-template", m.chat_template,
                  "The chat template: a Jinja file, or the template itself (default: the model's tokenizer_config.json)");
  cmd->add_option("--generation-config", m.generation_config,
                  "Default sampling parameters for requests that give none: auto (the model's generation_config.json), "
                  "vllm (none), or a folder holding a generation_config.json")
      ->capture_default_str();
  cmd->add_option("--override-generation-config", m.override_generation_config,
                  "A JSON object of default sampling parameters merged over --generation-config's");
  cmd->add_option("--max-model-len", m.max_model_len, "Context length (default: the model's; give the workers' when they set one)");
  cmd->add_option("--worker", f->workers,
                  "A worker: URL[,pool=NAME][,native=[HOST:]PORT] (repeatable): its HTTP API http://HOST:PORT, its pool, "
                  "and its native client port (default: the URL's port + 1)");
  cmd->add_option("--workers-file", f->workers_file, "A file of workers, one URL[,pool=NAME][,native=...] a line (# comments)");
  cmd->add_option("--pool", f->pools,
                  "A pool NAME[:MAX_TOKENS] (repeatable, ascending): a request goes to the first pool whose MAX_TOKENS "
                  "covers its max_tokens; the last pool has none and takes the rest (default: one pool)");
  cmd->add_option("--routing", f->routing, "prefix_affinity, least_loaded or round_robin")->capture_default_str();
  cmd->add_option("--block-size", f->router.block_size, "The workers' --block-size: prefix affinity hashes their cache's blocks")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--affinity-blocks", f->router.affinity_blocks,
                  "Leading full blocks of a prompt that decide its worker (requests sharing them share a worker)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--affinity-load-factor", f->router.load_factor,
                  "Bounded load: a worker with more requests in flight than this times its pool's mean (and more than "
                  "--affinity-load-slack above the least loaded) passes a request to the least loaded")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1000.0));
  cmd->add_option("--affinity-load-slack", f->router.load_slack,
                  "Requests in flight above the pool's least loaded worker that never break prefix affinity")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--health-interval", f->router.health_interval_s, "Seconds between checks of each worker's /health and load")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--worker-api-key", f->router.worker_api_key, "The API key the workers take (their --api-key), if any");
  add_gateway_flags(cmd, f->http);
  cmd->add_option("--shutdown-timeout", f->shutdown_timeout, "Seconds requests in flight get to finish after SIGTERM")
      ->capture_default_str();
  cmd->callback([f] { run_router(*f); });
}

} // namespace troupe
