#pragma once
// runtime/router/: what `troupe router` decides, without sockets: the fleet it is given (this file), which
// worker takes each request (request_router.hpp) and the series its /metrics adds (router_metrics.hpp).
// May include runtime/error.hpp, runtime/engine/ (the prefix cache's block keys) and runtime/metrics/.
//
// The fleet: workers (`troupe serve` processes, here or on other hosts) in named pools, and the pools as
// output-length buckets. A worker is given as
//
//   URL[,pool=NAME][,native=[HOST:]PORT]      e.g. http://10.0.0.7:8000,pool=short
//
// URL is its HTTP API (http://HOST:PORT; health checks go to URL/health); native is its native client port
// (--client-port), which requests and their tokens travel through: by default the URL's host and its port + 1
// (serve's defaults, 8000 and 8001). A workers file holds one such spec a line (blank lines and lines
// starting with # are skipped). A pool is given as NAME[:MAX_TOKENS], in ascending order: a request goes to
// the first pool whose MAX_TOKENS is at least its max_tokens; the last pool has no MAX_TOKENS and takes the rest.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct worker_address {
  std::string url;  // http://HOST:PORT, as given (without a trailing '/'): the worker's name in logs and metrics
  std::string host;
  uint16_t http_port = 0;
  std::string native_host;
  uint16_t native_port = 0;
  std::string pool;  // empty: not given
};

struct pool_config {
  std::string name;
  int32_t max_tokens = 0;  // the bucket's top: requests asking up to this many tokens; 0: no top (the last pool)
};

// The workers and pools, checked against each other: every worker in a declared pool, every pool with a
// worker. workers[i].pool is filled in; pools are in bucket order.
struct fleet_config {
  std::vector<pool_config> pools;
  std::vector<worker_address> workers;
};

// Parses one worker spec; `where` names its origin in messages ("--worker", "workers.txt:3").
// Throws user_error saying what is wrong and what is expected.
worker_address parse_worker_spec(std::string_view spec, std::string_view where);

// One spec per line of the file; throws user_error naming the file and line.
std::vector<worker_address> read_workers_file(const std::filesystem::path& path);

// Parses NAME[:MAX_TOKENS]; throws user_error.
pool_config parse_pool_spec(std::string_view spec);

// Checks pools as output-length buckets: names once each, MAX_TOKENS ascending, the last without one.
// Throws user_error saying which pool is wrong.
void check_pool_buckets(const std::vector<pool_config>& pools);

// Checks pools and workers together. No pools: one pool, named by the workers' pool= if they agree on one
// (else "default"), taking every request. Throws user_error for no worker, a worker given twice, pools out of
// order or named twice, a last pool with a top, a worker in no declared pool, or a pool without a worker.
fleet_config make_fleet_config(std::vector<pool_config> pools, std::vector<worker_address> workers);

} // namespace troupe
