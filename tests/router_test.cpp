// `troupe router` end to end: real `troupe serve` workers (the built-in small model on the CPU) behind a real
// router, in two pools: "short" (max_tokens up to 256, two workers) and "long" (one worker). What the fleet
// must show: a burst of long generations leaves the short pool's time to first token alone; prefix affinity
// finds the workers' prefix caches at least twice as often as round robin; a worker killed under load loses
// no request that had not started, ends every stream it had started with an error event, and the router's
// /health stays 200.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/raw_http.hpp"
#include "tests/support/server_process.hpp"

using namespace troupe::testing;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

// What one completion request got back.
struct reply {
  int status = 0;
  double ttft_s = 0;         // from sending to the first token's event (a stream), or the first bytes of the answer
  std::string body;
  std::vector<json> events;  // a stream's data events, [DONE] left out
  bool done = false;         // a stream ended with data: [DONE]
  int num_token_events = 0;  // completion chunks (each carries tokens, its text possibly empty) before any error event
  bool error_event = false;  // a stream carried an error event
};

// A stream's data events, in r.body, into r.events.
void read_events(reply& r) {
  size_t at = 0;
  while ((at = r.body.find("data: ", at)) != std::string::npos) {
    const size_t end = r.body.find("\n\n", at);
    const std::string data = r.body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      r.done = true;
      continue;
    }
    json e = json::parse(data);
    if (e.contains("error")) r.error_event = true;
    else if (!r.error_event && !e["choices"].empty()) {
      // A completion chunk: a step's tokens reached the client, even when their text is empty (a special
      // token, part of a UTF-8 character), as vLLM streams them.
      ++r.num_token_events;
    }
    r.events.push_back(std::move(e));
  }
}

// POSTs body to path; on_first_token runs when the first token's event (a stream) or the answer arrives.
reply post(uint16_t port, const std::string& path, const json& body, const std::function<void()>& on_first_token = {},
           const std::string& key = "") {
  reply r;
  raw_connection c(port);
  const auto start = steady::now();
  c.send(http_request("POST", path, body.dump(), key.empty() ? "" : "Authorization: Bearer " + key + "\r\n"));
  // A stream's headers go out when the request is accepted; its first event carries the first token.
  if (!(body.value("stream", false) ? c.read_until("data: ", std::chrono::seconds(30)) : c.wait_for_bytes(std::chrono::seconds(30))))
    return r;
  r.ttft_s = std::chrono::duration<double>(steady::now() - start).count();
  if (on_first_token) on_first_token();
  const auto answer = c.read_response(false, std::chrono::seconds(60));
  if (!answer) return r;
  r.status = answer->status;
  r.body = answer->body;
  if (body.value("stream", false)) read_events(r);
  return r;
}

// The p-quantile of some samples (nearest rank).
double quantile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

bool wait_healthy(uint16_t port, std::chrono::seconds limit = std::chrono::seconds(20)) {
  const auto deadline = steady::now() + limit;
  while (steady::now() < deadline) {
    raw_connection c(port);
    c.send(http_request("GET", "/health"));
    if (auto r = c.read_response(); r && r->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

const std::string model_name = "troupe-default";

double worker_metric(const server_process& w, const std::string& name) {
  return metric_value(fetch(w.http_port(), "/metrics"), name + "{model_name=\"" + model_name + "\"}");
}

// Three workers and a router over them, in two pools: "short" (max_tokens up to 256: workers 0 and 1) and
// "long" (worker 2), each pinned to a core of its own pool as it would have its own GPU (on a 2-core machine the
// short pool shares core 0, the long pool has core 1). The long worker runs under SCHED_IDLE (chrt --idle): its
// arithmetic stands in for a GPU's, and must not keep the router and the test's client, which have no core of
// their own here, from running when they have work (the kernel places a waking thread on a core that runs only
// SCHED_IDLE work as on an idle one; a niced worker still counts as busy there). Or, one_pool, the three in one pool
// "all", unpinned.
struct fleet {
  std::vector<std::unique_ptr<server_process>> workers;
  std::unique_ptr<server_process> router;
  bool one_pool = false;
  std::string key;  // the router's API key, when it has one

  // max_model_len: the workers' and the router's.
  fleet(int max_model_len, const std::string& worker_args, const std::string& router_args = "", bool one_pool = false,
        const std::string& key = "")
      : one_pool(one_pool), key(key) {
    const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
    const std::string len = "--max-model-len " + std::to_string(max_model_len) + " ";
    const std::string common = "--disable-log-requests --disable-log-stats " + len + worker_args;
    for (int i = 0; i < 3; ++i)
      workers.push_back(std::make_unique<server_process>(
          common, "", one_pool ? "" : i < 2 ? "taskset -c 0" : "chrt --idle 0 taskset -c " + std::to_string(cores - 1)));
    std::string args = "--disable-log-requests --health-interval 0.1 " + len + (one_pool ? "" : "--pool short:256 --pool long ") + router_args;
    for (int i = 0; i < 3; ++i)
      args += " --worker http://127.0.0.1:" + std::to_string(workers[i]->http_port()) + ",pool=" + pool_of(i) +
              ",native=" + std::to_string(workers[i]->port());
    router = std::make_unique<server_process>(args, "", "", "router");
    // Every worker in rotation: the router's own series say so.
    const auto deadline = steady::now() + std::chrono::seconds(20);
    for (int i = 0; i < 3; ++i)
      while (router_metric(worker_series("troupe:router_worker_healthy", i)) != 1 && steady::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string pool_of(int w) const { return one_pool ? "all" : w < 2 ? "short" : "long"; }
  uint16_t port() const { return router->http_port(); }
  double router_metric(const std::string& series) const {
    return metric_value(fetch(port(), "/metrics", key.empty() ? "" : "Authorization: Bearer " + key + "\r\n"), series);
  }
  std::string worker_series(const std::string& family, int w) const {
    return family + "{model_name=\"" + model_name + "\",pool=\"" + pool_of(w) + "\",worker=\"http://127.0.0.1:" +
           std::to_string(workers[w]->http_port()) + "\"}";
  }
};

// A prompt of n token ids of the built-in model's vocabulary (448), none of them special, different for each seed.
std::vector<int32_t> tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(100 + rng() % 300));
  return t;
}

} // namespace

TEST(router, a_burst_of_long_generations_leaves_the_short_pools_time_to_first_token_within_20_percent) {
  fleet f(4096, "");
  ASSERT_TRUE(wait_healthy(f.port()));
  uint32_t seed = 1;
  // Sequential short streams with fresh 256-token prompts (no prefix cache hits): their TTFT is a prefill.
  auto short_ttfts = [&](int n) {
    std::vector<double> t;
    for (int i = 0; i < n; ++i) {
      const reply r = post(f.port(), "/v1/completions", {{"prompt", tokens(256, seed++)}, {"max_tokens", 4}, {"stream", true}});
      EXPECT_EQ(r.status, 200);
      EXPECT_TRUE(r.done);
      t.push_back(r.ttft_s);
    }
    return t;
  };
  short_ttfts(20);  // warm-up
  // One measurement: rounds of 25 without the burst, then 25 during it, so that whatever else the machine does
  // falls on both. Returns p95 busy / p95 quiet.
  auto measure = [&](int attempt) {
    std::vector<double> quiet_ttfts, busy_ttfts;
    for (int round = 0; round < 4; ++round) {
      for (double t : short_ttfts(25)) quiet_ttfts.push_back(t);
      // The burst: 8 generations of 3000 tokens (the long pool), running on while the short requests are measured.
      std::vector<std::unique_ptr<raw_connection>> burst;
      for (uint32_t i = 0; i < 8; ++i) {
        burst.push_back(std::make_unique<raw_connection>(f.port()));
        burst.back()->send(http_request("POST", "/v1/completions",
                                        json{{"prompt", tokens(32, 1000 + i)}, {"max_tokens", 3000}, {"ignore_eos", true}}.dump()));
      }
      const auto deadline = steady::now() + std::chrono::seconds(10);
      while (f.router_metric(f.worker_series("troupe:router_worker_queue_length", 2)) < 8 && steady::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_requests_in_flight", 2)), 8);  // all on the long worker
      for (double t : short_ttfts(25)) busy_ttfts.push_back(t);
      EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_requests_in_flight", 2)), 8);  // still generating
      for (auto& c : burst) c->reset();  // the clients go away: the router aborts the burst on the worker
      while (f.router_metric(f.worker_series("troupe:router_worker_queue_length", 2)) > 0 &&
             steady::now() < deadline + std::chrono::seconds(10))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const double quiet = quantile(quiet_ttfts, 0.95), busy = quantile(busy_ttfts, 0.95);
    std::printf("attempt %d: short pool TTFT p50 %.1f / %.1f ms, p95 %.1f ms without the burst, %.1f ms during it (%+.0f%%)\n",
                attempt, quantile(quiet_ttfts, 0.5) * 1e3, quantile(busy_ttfts, 0.5) * 1e3, quiet * 1e3, busy * 1e3,
                (busy / quiet - 1) * 100);
    return busy / quiet;
  };
  // NOTE: on CI's shared 2-core machine a stall from outside (a neighbour, the hypervisor) that lands on the busy
  // samples alone once pushed one measurement to +36% (every other run: +2% to +7%). Such a stall rarely hits three
  // measurements in a row; a router that lets the burst reach the short pool slows every one of them. So the
  // claim is: of up to three measurements, one holds within 20%, and all of them are printed.
  double ratio = 0;
  for (int attempt = 1; attempt <= 3 && !testing::Test::HasFailure(); ++attempt)
    if ((ratio = measure(attempt)) <= 1.2) break;
  EXPECT_LE(ratio, 1.2);
}

TEST(router, prefix_affinity_finds_the_workers_prefix_caches_at_least_twice_as_often_as_round_robin) {
  // 8 system prompts of 64 tokens (4 blocks) shared by 400 requests, each adding 8 tokens of its own and
  // choosing its system prompt at random, 6 at a time, over three workers in one pool whose caches hold 14
  // blocks: a worker keeps 3 system prompts, not 8. Affinity gives each worker 3 or 2 of them.
  // NOTE: one pool of three, not the short pool of two: with prompts chosen at random, no placement over two
  // workers beats round robin by more than 2x (it halves each worker's working set, which at best doubles an
  // LRU cache's hit rate; measured 1.98x); over three the bound is 8/3.
  std::vector<std::vector<int32_t>> system_prompts;
  for (uint32_t s = 0; s < 8; ++s) system_prompts.push_back(tokens(64, 500 + s));
  auto hit_rate = [&](const std::string& routing, double& router_hits) {
    fleet f(224, "--num-gpu-blocks-override 14 --max-num-seqs 8", "--routing " + routing, /*one_pool=*/true);
    EXPECT_TRUE(wait_healthy(f.port()));
    std::atomic<int> next = 0, failed = 0;
    std::vector<std::thread> clients;
    for (int c = 0; c < 6; ++c)
      clients.emplace_back([&] {
        for (int i; (i = next++) < 400;) {
          std::mt19937 pick(static_cast<uint32_t>(i));
          std::vector<int32_t> p = system_prompts[pick() % 8];
          const auto user = tokens(8, 10000 + static_cast<uint32_t>(i));
          p.insert(p.end(), user.begin(), user.end());
          if (post(f.port(), "/v1/completions", {{"prompt", p}, {"max_tokens", 2}}).status != 200) ++failed;
        }
      });
    for (auto& t : clients) t.join();
    EXPECT_EQ(failed, 0);
    double hits = 0, queries = 0;
    router_hits = 0;
    for (int w = 0; w < 3; ++w) {
      hits += worker_metric(*f.workers[w], "troupe:prefix_cache_hits_total");
      queries += worker_metric(*f.workers[w], "troupe:prefix_cache_queries_total");
      router_hits += f.router_metric(f.worker_series("troupe:router_prefix_affinity_hits_total", w));
    }
    return hits / queries;
  };
  double affinity_router_hits = 0, round_robin_router_hits = 0;
  const double affinity = hit_rate("prefix_affinity", affinity_router_hits);
  const double round_robin = hit_rate("round_robin", round_robin_router_hits);
  std::printf("prefix cache hit rate: %.1f%% with prefix affinity (%g requests sent to their prefix's worker), %.1f%% "
              "with round robin (%.2fx)\n",
              affinity * 100, affinity_router_hits, round_robin * 100, affinity / round_robin);
  EXPECT_EQ(affinity_router_hits, 400 - 8);  // every request but each prompt's first
  EXPECT_EQ(round_robin_router_hits, 0);
  EXPECT_GE(affinity, 2 * round_robin);
}

TEST(router, a_worker_killed_under_load_loses_no_request_that_had_not_started_and_ends_each_started_stream_with_an_error) {
  // Two sequences at a time per worker: most requests wait, not started, when one worker is killed.
  fleet f(512, "--max-num-seqs 2");
  ASSERT_TRUE(wait_healthy(f.port()));
  std::atomic<bool> watching = true;
  std::atomic<int> health_checks = 0, unhealthy = 0;
  std::thread watch([&] {
    while (watching) {
      raw_connection c(f.port());
      c.send(http_request("GET", "/health"));
      const auto r = c.read_response();
      ++health_checks;
      if (!r || r->status != 200) ++unhealthy;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  // 12 streams (short prompts: no affinity key, so they spread evenly), then, once both workers stream, 6
  // requests without streaming that wait behind them; then the first short worker dies.
  std::vector<reply> streams(12), wholes(6);
  std::atomic<int> streaming = 0;
  std::vector<std::thread> clients;
  const json stream_body = {{"prompt", tokens(8, 1)}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}};
  for (auto& r : streams)
    clients.emplace_back([&, &r = r] { r = post(f.port(), "/v1/completions", stream_body, [&] { ++streaming; }); });
  auto deadline = steady::now() + std::chrono::seconds(10);
  while (streaming < 4 && steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  for (auto& r : wholes)
    clients.emplace_back([&, &r = r] { r = post(f.port(), "/v1/completions", {{"prompt", tokens(8, 2)}, {"max_tokens", 50}, {"ignore_eos", true}}); });
  deadline = steady::now() + std::chrono::seconds(10);
  while (f.router_metric(f.worker_series("troupe:router_requests_in_flight", 0)) < 5 && steady::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double on_killed = f.router_metric(f.worker_series("troupe:router_requests_in_flight", 0));
  f.workers[0]->signal(SIGKILL);
  for (auto& t : clients) t.join();
  // Requests after the kill go to the worker left.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(post(f.port(), "/v1/completions", {{"prompt", tokens(8, 3)}, {"max_tokens", 4}}).status, 200);
  watching = false;
  watch.join();

  int errored = 0;
  for (const reply& r : streams) {
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(r.done);  // every stream ends properly, with [DONE]
    if (r.error_event) {
      ++errored;
      EXPECT_GE(r.num_token_events, 1) << "a stream that had not started failed instead of moving: " << r.body;
      EXPECT_EQ(r.events.back()["error"]["type"], "ServiceUnavailableError");
    } else {
      EXPECT_EQ(r.events.back()["choices"][0]["finish_reason"], "length");
    }
  }
  for (const reply& r : wholes) {
    EXPECT_EQ(r.status, 200) << r.body;  // nothing reached its client: it started over on the worker left
    EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 50);
  }
  const double failovers = f.router_metric(f.worker_series("troupe:router_failovers_total", 0));
  std::printf("killed a short worker with %g requests in flight: %d streams ended with an error event, %g requests "
              "moved to the other worker; router /health answered 200 %d times of %d\n",
              on_killed, errored, failovers, health_checks - unhealthy, health_checks.load());
  EXPECT_GE(errored, 1);
  EXPECT_GE(failovers, 1);
  EXPECT_EQ(unhealthy, 0);
  EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_worker_healthy", 0)), 0);
}

TEST(router, answers_as_its_workers_do_token_for_token_behind_its_own_keys_and_tenants) {
  // Workers that take a key of their own; a router with its own keys, and a tenant allowed 100 tokens a minute.
  const std::string tenants = std::filesystem::temp_directory_path() / ("router_tenants_" + std::to_string(::getpid()) + ".json");
  std::ofstream(tenants) << R"({"tenants": [{"name": "small", "api_keys": ["small-key"], "tokens_per_minute": 100}]})";
  fleet f(512, "--api-key worker-key", "--worker-api-key worker-key --api-key router-key --tenants-file " + tenants, false, "router-key");
  ASSERT_TRUE(wait_healthy(f.port()));
  std::filesystem::remove(tenants);

  const json chat = {{"messages", {{{"role", "user"}, {"content", "Say something"}}}}, {"max_tokens", 12}, {"n", 2}, {"seed", 7},
                     {"logprobs", true}, {"top_logprobs", 2}, {"stop", {"e"}}};
  EXPECT_EQ(post(f.port(), "/v1/chat/completions", chat).status, 401);
  const reply routed = post(f.port(), "/v1/chat/completions", chat, {}, "router-key");
  const reply direct = post(f.workers[0]->http_port(), "/v1/chat/completions", chat, {}, "worker-key");
  ASSERT_EQ(routed.status, 200) << routed.body;
  ASSERT_EQ(direct.status, 200) << direct.body;
  // The same choices (text, logprobs, finish and stop reasons) and usage: the worker's tokens, relayed unchanged.
  EXPECT_EQ(json::parse(routed.body)["choices"], json::parse(direct.body)["choices"]);
  EXPECT_EQ(json::parse(routed.body)["usage"], json::parse(direct.body)["usage"]);

  // A stream through the router ends as a worker's does.
  json stream = chat;
  stream["stream"] = true;
  stream["n"] = 1;
  const reply streamed = post(f.port(), "/v1/chat/completions", stream, {}, "router-key");
  EXPECT_TRUE(streamed.done);
  EXPECT_FALSE(streamed.error_event);

  // The tenant's budget is the router's to keep: 60 tokens pass, the next 60 do not.
  const json small = {{"prompt", tokens(10, 1)}, {"max_tokens", 50}};
  EXPECT_EQ(post(f.port(), "/v1/completions", small, {}, "small-key").status, 200);
  const reply refused = post(f.port(), "/v1/completions", small, {}, "small-key");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(json::parse(refused.body)["error"]["type"], "RateLimitError");
  // A request the workers would refuse is refused by the router first, in the same words.
  const json too_long = {{"prompt", tokens(10, 1)}, {"max_tokens", 600}};
  const reply r1 = post(f.port(), "/v1/completions", too_long, {}, "router-key");
  const reply r2 = post(f.workers[0]->http_port(), "/v1/completions", too_long, {}, "worker-key");
  EXPECT_EQ(r1.status, 400);
  EXPECT_EQ(r1.body, r2.body);
}

TEST(router, a_worker_that_refuses_for_its_full_queue_passes_the_request_on_and_when_every_worker_refuses_the_client_gets_429) {
  // Backpressure: a worker's --max-queue-len refusal sends the request to the pool's next worker, then to the
  // other pool's.
  // One sequence at a time and one waiting per worker.
  fleet f(4096, "--max-num-seqs 1 --max-queue-len 1");
  ASSERT_TRUE(wait_healthy(f.port()));
  const json request = {{"prompt", tokens(40, 9)}, {"max_tokens", 4}};  // 2 full blocks: a prefix key
  ASSERT_EQ(post(f.port(), "/v1/completions", request).status, 200);
  const int home = f.router_metric(f.worker_series("troupe:router_requests_routed_total", 0)) == 1 ? 0 : 1;
  const int other = 1 - home;
  // Fills a worker from outside the router: one request runs, one waits.
  std::vector<std::unique_ptr<raw_connection>> fillers;
  auto fill = [&](int w) {
    const auto deadline = steady::now() + std::chrono::seconds(10);
    for (const char* gauge : {"troupe:num_requests_running", "troupe:num_requests_waiting"}) {
      fillers.push_back(std::make_unique<raw_connection>(f.workers[w]->http_port()));
      fillers.back()->send(http_request("POST", "/v1/completions",
                                        json{{"prompt", tokens(8, 50)}, {"max_tokens", 3000}, {"ignore_eos", true}}.dump()));
      while (worker_metric(*f.workers[w], gauge) < 1 && steady::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  fill(home);
  // The prefix's worker refuses (429, its queue is full): the other worker answers.
  EXPECT_EQ(post(f.port(), "/v1/completions", request).status, 200);
  EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_requests_routed_total", home)), 2);
  EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_requests_routed_total", other)), 1);
  // Both full: the long pool's worker takes it.
  fill(other);
  EXPECT_EQ(post(f.port(), "/v1/completions", request).status, 200);
  EXPECT_EQ(f.router_metric(f.worker_series("troupe:router_requests_routed_total", 2)), 1);
  // Every worker full: the client gets the workers' refusal.
  fill(2);
  const reply refused = post(f.port(), "/v1/completions", request);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(json::parse(refused.body)["error"]["type"], "RateLimitError");
  for (auto& c : fillers) c->reset();
}

namespace {

// One source of a router's /dashboard.json history: its samples' times and one column's values.
struct source_view {
  std::string state;
  std::vector<std::string> columns;
  std::vector<int64_t> t;
  std::vector<double> column(const json& h, const std::string& c) const {
    std::vector<double> v;
    for (const json& x : h["values"][c]) v.push_back(x.is_null() ? 0.0 : x.get<double>());
    return v;
  }
};

// The tokens a history's rate column stands for: each sample's rate times the time it covers (from the sample
// before, or from the history's start).
double integral(const json& h, const std::string& c, int64_t started_ms) {
  double sum = 0;
  int64_t before = started_ms;
  for (size_t i = 0; i < h["t"].size(); ++i) {
    const int64_t t = h["t"][i];
    if (!h["values"][c][i].is_null()) sum += h["values"][c][i].get<double>() * static_cast<double>(t - before) / 1000.0;
    before = t;
  }
  return sum;
}

} // namespace

TEST(router, the_dashboard_plots_the_fleet_as_the_router_measures_it_and_each_worker_and_marks_one_that_left) {
  fleet f(512, "", "--dashboard-interval 0.2", true);
  ASSERT_TRUE(wait_healthy(f.port()));
  for (uint32_t i = 0; i < 6; ++i) {
    const reply r = post(f.port(), "/v1/completions", {{"prompt", tokens(20, 100 + i)}, {"max_tokens", 8}, {"ignore_eos", true},
                                                      {"stream", i % 2 == 0}});
    ASSERT_EQ(r.status, 200);
  }
  // The router counts the tokens it relays: 6 prompts of 20 in, 6 x 8 out.
  EXPECT_EQ(f.router_metric("troupe:generation_tokens_total{model_name=\"" + model_name + "\"}"), 48);
  EXPECT_EQ(f.router_metric("troupe:prompt_tokens_total{model_name=\"" + model_name + "\"}"), 120);

  // Every token in a sample: the fleet's history and the workers' each add up to 48 tokens out.
  json d;
  auto worker_tokens = [&] {
    double sum = 0;
    for (size_t s = 1; s < d["history"].size(); ++s) sum += integral(d["history"][s], "tokens_out_per_s", d["started_ms"]);
    return sum;
  };
  const auto deadline = steady::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    d = json::parse(fetch(f.port(), "/dashboard.json"));
  } while ((integral(d["history"][0], "tokens_out_per_s", d["started_ms"]) < 47.5 || worker_tokens() < 47.5) && steady::now() < deadline);
  ASSERT_EQ(d["history"].size(), 4u);
  EXPECT_EQ(d["history"][0]["name"], "fleet");
  EXPECT_FALSE(d["history"][0].contains("state"));
  EXPECT_NEAR(integral(d["history"][0], "tokens_out_per_s", d["started_ms"]), 48, 1e-6);
  EXPECT_NEAR(integral(d["history"][0], "tokens_in_per_s", d["started_ms"]), 120, 1e-6);
  EXPECT_NEAR(worker_tokens(), 48, 1e-6);
  for (int w = 0; w < 3; ++w) {
    const json& h = d["history"][static_cast<size_t>(w) + 1];
    EXPECT_EQ(h["name"], "http://127.0.0.1:" + std::to_string(f.workers[static_cast<size_t>(w)]->http_port()));
    EXPECT_EQ(h["state"], "in rotation");
    EXPECT_EQ(h["columns"], json({"ttft_p95_s", "itl_p95_s", "tokens_in_per_s", "tokens_out_per_s", "requests_per_s", "running",
                                  "waiting", "kv_cache_usage"}));
  }
  EXPECT_NE(fetch(f.port(), "/dashboard").find("id=\"workers\""), std::string::npos);

  // Worker 2 dies: its state says why, its samples stop, the others' go on.
  const std::string dead = d["history"][3]["name"];
  f.workers[2].reset();
  size_t dead_samples = 0, live_samples = 0;
  auto refresh = [&] {
    d = json::parse(fetch(f.port(), "/dashboard.json"));
    dead_samples = d["history"][3]["t"].size();
    live_samples = d["history"][1]["t"].size();
  };
  const auto left_by = steady::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    refresh();
  } while (!d["history"][3]["state"].get<std::string>().starts_with("out of rotation: ") && steady::now() < left_by);
  EXPECT_EQ(d["history"][3]["name"], dead);
  // Why: its connection was lost, or (a probe later) its /health no longer answers.
  const std::string why = d["history"][3]["state"];
  EXPECT_TRUE(why.starts_with("out of rotation: native port 127.0.0.1:") ||
              why.starts_with("out of rotation: its /health did not answer 200"))
      << why;
  const size_t dead_then = dead_samples, live_then = live_samples;
  const auto later = steady::now() + std::chrono::seconds(10);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    refresh();
  } while (live_samples < live_then + 3 && steady::now() < later);
  EXPECT_GE(live_samples, live_then + 3);
  EXPECT_EQ(dead_samples, dead_then);
}
