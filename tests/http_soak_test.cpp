// A soak of a live `troupe serve` (CPU, the built-in model): thousands of short requests from many
// clients, a good share of them ending badly (reset mid-stream or before any answer, pipelined garbage,
// half-closes, bodies cut short, timeouts, 429s from a full queue and a tenant's concurrency cap).
// Afterwards every admission counter is back at zero, nothing runs in the engine, and the server's
// resident memory stays flat after two warm-up rounds. 3,000 requests, about 12 s on 2 cores.

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/raw_http.hpp"
#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using namespace troupe::testing;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string capped_key = "Authorization: Bearer k-capped\r\n";  // max_concurrent 2
const std::string open_key = "Authorization: Bearer k-open\r\n";

// How the soak's requests ended, by kind: statuses seen and endings that carry none.
struct tally {
  std::mutex mutex;
  std::map<std::string, std::map<int, int>> statuses;  // kind -> status -> count
  std::vector<std::string> surprises;                  // what no ending allows

  void saw(const std::string& kind, int status) {
    std::lock_guard lock(mutex);
    ++statuses[kind][status];
  }
  void surprise(const std::string& what) {
    std::lock_guard lock(mutex);
    if (surprises.size() < 10) surprises.push_back(what);
  }
  int count(const std::string& kind, int status) {
    std::lock_guard lock(mutex);
    return statuses[kind][status];
  }
};

std::string completion(int max_tokens, bool stream, int salt) {
  return json({{"prompt", "soak " + std::to_string(salt % 50)}, {"max_tokens", max_tokens}, {"ignore_eos", true}, {"stream", stream}}).dump();
}

// One client's share: `n` requests, each of a kind drawn from its seeded generator.
void client(uint16_t port, int seed, int n, tally& t) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::unique_ptr<raw_connection> kept;  // keep-alive connection for the plain requests
  const auto expect = [&](const std::string& kind, const std::optional<raw_response>& r, std::initializer_list<int> allowed) {
    if (!r) return t.surprise(kind + ": no response");
    t.saw(kind, r->status);
    if (std::find(allowed.begin(), allowed.end(), r->status) == allowed.end())
      t.surprise(kind + ": status " + std::to_string(r->status) + " " + r->body.substr(0, 200));
  };
  for (int i = 0; i < n; ++i) {
    const std::string& key = rng() % 3 == 0 ? capped_key : open_key;
    const int salt = static_cast<int>(rng() % 1000);
    const int kind = static_cast<int>(rng() % 100);
    try {
      if (kind < 30) {  // plain, on a kept-alive connection
        if (!kept) kept = std::make_unique<raw_connection>(port);
        kept->send(http_request("POST", "/v1/completions", completion(1 + salt % 4, false, salt), key));
        auto r = kept->read_response();
        expect("plain", r, {200, 429});
        if (!r) kept.reset();
      } else if (kind < 45) {  // streamed to the end
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(4, true, salt), key));
        auto r = c.read_response();
        expect("stream", r, {200, 429});
        if (r && r->status == 200 && r->body.find("data: [DONE]") == std::string::npos) t.surprise("stream without [DONE]");
      } else if (kind < 55) {  // reset mid-stream
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(200, true, salt), key));
        c.wait_for_bytes(5s);
        c.reset();
        t.saw("reset_mid_stream", 0);
      } else if (kind < 63) {  // pipelined: a request, a stray CRLF, another, then garbage
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(2, false, salt), key) + "\r\n" +
               http_request("GET", "/health") + "NOT HTTP AT ALL\r\n\r\n");
        expect("pipelined", c.read_response(), {200, 429});
        expect("pipelined_health", c.read_response(), {200});
        expect("pipelined_garbage", c.read_response(), {400});
      } else if (kind < 71) {  // half-close after the request
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(2, salt % 2 == 0, salt), key));
        c.shutdown_write();
        expect("half_close", c.read_response(), {200, 429});
      } else if (kind < 79) {  // reset before any answer
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(100, false, salt), key));
        std::this_thread::sleep_for(std::chrono::milliseconds(salt % 5));
        c.reset();
        t.saw("reset_before_answer", 0);
      } else if (kind < 85) {  // the body cut short
        raw_connection c(port);
        const std::string request = http_request("POST", "/v1/completions", completion(2, false, salt), key);
        c.send(request.substr(0, request.size() - 5));
        if (salt % 2) c.reset();
        t.saw("cut_short", 0);
      } else if (kind < 87) {  // past --request-timeout
        raw_connection c(port);
        c.send(http_request("POST", "/v1/completions", completion(3000, salt % 2 == 0, salt), key));
        auto r = c.read_response();
        expect("timeout", r, {504, 200, 429});  // a stream's timeout is an error event in a 200
        if (r && r->status == 200 && r->body.find("TimeoutError") == std::string::npos) t.surprise("timeout without TimeoutError");
      } else if (kind < 93) {  // a malformed request
        raw_connection c(port);
        c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + key + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n");
        expect("gzip", c.read_response(), {501});
      } else {  // tokenize
        raw_connection c(port);
        c.send(http_request("POST", "/tokenize", R"({"prompt": "soak"})", key));
        expect("tokenize", c.read_response(), {200});
      }
    } catch (const std::exception& e) {
      kept.reset();
      t.surprise(std::string("client error: ") + e.what());
    }
  }
}

void soak_round(uint16_t port, int round, int n, tally& t) {
  constexpr int num_clients = 12;
  std::vector<std::thread> clients;
  for (int c = 0; c < num_clients; ++c) clients.emplace_back(client, port, round * 100 + c, n / num_clients, std::ref(t));
  for (auto& c : clients) c.join();
}

std::string labelled(const std::string& name, const std::string& more = "") {
  return name + "{model_name=\"troupe-default\"" + more + "}";
}

// Waits (bounded) until nothing is in flight anywhere; returns the last /metrics.
std::string settled(const server_process& s) {
  std::string text;
  for (int i = 0; i < 300; ++i) {
    text = fetch(s.http_port(), "/metrics", open_key);
    const auto at = [&](const std::string& name) { return metric_value(text, labelled(name)); };
    if (at("troupe:http_requests_in_flight") == 0 && at("troupe:http_requests_queued") == 0 &&
        at("troupe:num_requests_running") == 0 && at("troupe:num_requests_waiting") == 0 && at("troupe:http_connections") == 1)
      break;
    std::this_thread::sleep_for(20ms);
  }
  return text;
}

int64_t resident_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

} // namespace

TEST(http_soak, thousands_of_requests_with_hostile_endings_leave_every_counter_at_zero_and_memory_flat) {
  const fs::path tenants = fs::temp_directory_path() / ("troupe_soak_tenants_" + std::to_string(::getpid()) + ".json");
  std::ofstream(tenants) << R"({"tenants": [{"name": "capped", "api_keys": ["k-capped"], "max_concurrent": 2},
                                          {"name": "open", "api_keys": ["k-open"]}]})";
  // A small KV cache (512 blocks), so that the warm-up touches all of it: the CPU cache is paged in lazily.
  server_process s("--tenants-file " + tenants.string() +
                   " --max-queue-len 6 --request-timeout 1 --kv-cache-memory 16777216 --max-connections 200");
  tally t;
  constexpr int per_round = 600;
  for (int round = 0; round < 2; ++round) soak_round(s.http_port(), round, per_round, t);  // warm-up
  settled(s);
  const int64_t warm = resident_kib(s.pid());
  std::vector<int64_t> after;
  for (int round = 2; round < 5; ++round) {
    soak_round(s.http_port(), round, per_round, t);
    settled(s);
    after.push_back(resident_kib(s.pid()));
  }
  const std::string text = settled(s);
  fs::remove(tenants);

  for (const std::string& what : t.surprises) ADD_FAILURE() << what;
  EXPECT_EQ(metric_value(text, labelled("troupe:http_requests_in_flight")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:http_requests_queued")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:tenant_requests_in_flight", ",tenant=\"capped\"")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:tenant_requests_in_flight", ",tenant=\"open\"")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:http_connections")), 1);  // the one asking
  EXPECT_EQ(metric_value(text, labelled("troupe:num_requests_running")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:num_requests_waiting")), 0);
  EXPECT_EQ(metric_value(text, labelled("troupe:kv_cache_usage_perc")), 0);
  // Every hostile ending happened, and so did both kinds of 429.
  EXPECT_GT(t.count("timeout", 504), 0);
  EXPECT_GT(t.count("timeout", 200), 0);
  EXPECT_GT(t.count("reset_mid_stream", 0), 0);
  EXPECT_GT(t.count("reset_before_answer", 0), 0);
  EXPECT_GT(t.count("pipelined_garbage", 400), 0);
  EXPECT_GT(metric_value(text, labelled("troupe:request_rejected_total", ",reason=\"queue_full\"")), 0);
  EXPECT_GT(metric_value(text, labelled("troupe:request_rejected_total", ",reason=\"rate_limited\"")), 0);
  EXPECT_GT(metric_value(text, "troupe:request_success_total{finished_reason=\"abort\",model_name=\"troupe-default\"}"), 0);
  // Resident memory after the warm-up (1,200 requests): flat within 2 MiB over 1,800 more (measured: 4 to
  // 130 KiB; after a single warm-up round it still grew by up to 2.5 MiB, malloc's arenas settling). About
  // 750 of them end badly; a leak of what one lost request holds (its plan, builder, sink actor, queued
  // events: several KiB) would pass the tolerance.
  for (size_t r = 0; r < after.size(); ++r)
    EXPECT_LT(after[r] - warm, 2 << 10) << "round " << r + 1 << ": " << warm << " KiB after the warm-up, " << after[r] << " KiB now";
  for (const auto& [kind, statuses] : t.statuses)
    for (const auto& [status, n] : statuses) std::printf("%s %d: %d\n", kind.c_str(), status, n);
  std::printf("resident KiB: warm %lld, then %lld %lld %lld\n", static_cast<long long>(warm), static_cast<long long>(after[0]),
              static_cast<long long>(after[1]), static_cast<long long>(after[2]));
}
