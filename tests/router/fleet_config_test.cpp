// The fleet `troupe router` is given (runtime/router/fleet_config): worker specs, the workers file, pools as
// output-length buckets, and the messages that say what is wrong.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/error.hpp"
#include "runtime/router/fleet_config.hpp"
#include "runtime/router/router_metrics.hpp"

using namespace troupe;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "no error";
}

} // namespace

TEST(fleet_config, a_worker_is_its_url_with_its_native_port_one_above_unless_given) {
  const worker_address w = parse_worker_spec("http://10.0.0.7:8000", "--worker");
  EXPECT_EQ(w.url, "http://10.0.0.7:8000");
  EXPECT_EQ(w.host, "10.0.0.7");
  EXPECT_EQ(w.http_port, 8000);
  EXPECT_EQ(w.native_host, "10.0.0.7");
  EXPECT_EQ(w.native_port, 8001);
  EXPECT_EQ(w.pool, "");

  const worker_address v = parse_worker_spec("http://[::1]:9000/, pool=long ,native=9100", "--worker");
  EXPECT_EQ(v.url, "http://[::1]:9000");
  EXPECT_EQ(v.host, "::1");
  EXPECT_EQ(v.native_host, "::1");
  EXPECT_EQ(v.native_port, 9100);
  EXPECT_EQ(v.pool, "long");

  const worker_address x = parse_worker_spec("http://gpu3:8000,native=gpu3-ib:7001", "--worker");
  EXPECT_EQ(x.native_host, "gpu3-ib");
  EXPECT_EQ(x.native_port, 7001);
}

TEST(fleet_config, a_malformed_worker_is_refused_saying_what_a_worker_is) {
  EXPECT_EQ(error_of([] { parse_worker_spec("10.0.0.7:8000", "--worker"); }),
            "--worker '10.0.0.7:8000': a worker is http://HOST:PORT[,pool=NAME][,native=[HOST:]PORT] (its HTTP API; put a "
            "TLS-terminating proxy in front for https)");
  EXPECT_EQ(error_of([] { parse_worker_spec("http://h:80/v1", "--worker"); }),
            "--worker 'http://h:80/v1': the URL must be http://HOST:PORT with a port from 1 to 65535, and no path");
  EXPECT_EQ(error_of([] { parse_worker_spec("http://h", "--worker"); }),
            "--worker 'http://h': the URL must be http://HOST:PORT with a port from 1 to 65535, and no path");
  EXPECT_EQ(error_of([] { parse_worker_spec("http://h:8000,weight=2", "w.txt:4"); }),
            "w.txt:4 'http://h:8000,weight=2': unknown part 'weight=2' (a worker takes pool=NAME and native=[HOST:]PORT)");
  EXPECT_EQ(error_of([] { parse_worker_spec("http://h:8000,native=x", "--worker"); }),
            "--worker 'http://h:8000,native=x': native= takes PORT or HOST:PORT (the worker's --client-port)");
}

TEST(fleet_config, the_workers_file_takes_one_worker_a_line_and_names_the_line_at_fault) {
  const auto path = std::filesystem::temp_directory_path() / ("workers_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(path) << "# the fleet\n\nhttp://a:8000,pool=short\n  http://b:8000,pool=long  \n";
  const auto workers = read_workers_file(path);
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].url, "http://a:8000");
  EXPECT_EQ(workers[1].pool, "long");
  std::ofstream(path) << "http://a:8000\nhttps://b:8000\n";
  EXPECT_NE(error_of([&] { read_workers_file(path); }).find(path.string() + ":2 'https://b:8000'"), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(error_of([&] { read_workers_file(path); }), "--workers-file " + path.string() + ": cannot be read");
}

TEST(fleet_config, pools_are_buckets_in_ascending_order_the_last_without_a_top) {
  EXPECT_EQ(parse_pool_spec("short:256").max_tokens, 256);
  EXPECT_EQ(parse_pool_spec("long").max_tokens, 0);
  EXPECT_EQ(error_of([] { parse_pool_spec("short:0"); }),
            "--pool 'short:0': MAX_TOKENS must be a positive number (the most tokens a request of this pool asks for)");
  auto w = [](const std::string& pool) {
    worker_address a = parse_worker_spec("http://h" + pool + ":8000", "--worker");
    a.pool = pool;
    return a;
  };
  const fleet_config f = make_fleet_config({{"short", 256}, {"medium", 2048}, {"long", 0}}, {w("long"), w("short"), w("medium")});
  EXPECT_EQ(f.pools.size(), 3u);
  EXPECT_EQ(error_of([&] { make_fleet_config({{"short", 256}, {"long", 100}}, {w("short"), w("long")}); }),
            "--pool long:100: the last pool takes every longer request; give it no MAX_TOKENS");
  EXPECT_EQ(error_of([&] { make_fleet_config({{"a", 256}, {"b", 100}, {"c", 0}}, {w("a"), w("b"), w("c")}); }),
            "--pool b:100: pools go in ascending order of MAX_TOKENS");
  EXPECT_EQ(error_of([&] { make_fleet_config({{"short", 0}, {"long", 0}}, {w("short"), w("long")}); }),
            "--pool short: every pool but the last needs MAX_TOKENS (NAME:MAX_TOKENS)");
  EXPECT_EQ(error_of([&] { make_fleet_config({{"short", 256}, {"long", 0}}, {w("short"), w("huge")}); }),
            "the worker http://hhuge:8000 is in pool huge, which no --pool declares");
  EXPECT_EQ(error_of([&] { make_fleet_config({{"short", 256}, {"long", 0}}, {w("short")}); }),
            "--pool long has no worker (give one with pool=long)");
  EXPECT_EQ(error_of([&] { make_fleet_config({{"short", 256}, {"long", 0}}, {w("short"), w(""), w("long")}); }),
            "the worker http://h:8000 names no pool: give it pool=NAME");
  EXPECT_EQ(error_of([&] { make_fleet_config({}, {w("a"), w("b")}); }),
            "the workers name 2 pools: declare them in bucket order with --pool NAME:MAX_TOKENS (the last without MAX_TOKENS)");
  EXPECT_EQ(error_of([&] { make_fleet_config({}, {w("a"), w("a")}); }), "the worker http://ha:8000 is given twice");
  EXPECT_EQ(error_of([&] { make_fleet_config({}, {}); }), "no workers: give --worker URL (repeatable) or --workers-file FILE");
}

TEST(fleet_config, without_pools_every_worker_is_in_one_pool_that_takes_every_request) {
  worker_address a = parse_worker_spec("http://a:8000", "--worker");
  worker_address b = parse_worker_spec("http://b:8000,pool=gpu", "--worker");
  const fleet_config f = make_fleet_config({}, {a, b});
  ASSERT_EQ(f.pools.size(), 1u);
  EXPECT_EQ(f.pools[0].name, "gpu");
  EXPECT_EQ(f.pools[0].max_tokens, 0);
  EXPECT_EQ(f.workers[0].pool, "gpu");
  EXPECT_EQ(make_fleet_config({}, {a}).pools[0].name, "default");
}

TEST(router_metrics, each_worker_and_pool_has_its_series) {
  request_router_config c;
  c.pools = {{"short", 64}, {"long", 0}};
  c.worker_pool = {"short", "long"};
  request_router r(c);
  r.set_healthy(0, true);
  r.set_load(1, {2, 3, 0.5});
  const std::vector<int32_t> p(40, 7);
  r.route(p, "", 8);
  r.route(p, "", 8);
  const std::string text = router_metrics_text(router_figures_of(r, {"http://a:1", "http://b:1"}), "m");
  EXPECT_NE(text.find("troupe:router_worker_healthy{model_name=\"m\",pool=\"short\",worker=\"http://a:1\"} 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_worker_healthy{model_name=\"m\",pool=\"long\",worker=\"http://b:1\"} 0.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_requests_routed_total{model_name=\"m\",pool=\"short\",worker=\"http://a:1\"} 2.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_prefix_affinity_hits_total{model_name=\"m\",pool=\"short\",worker=\"http://a:1\"} 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_requests_in_flight{model_name=\"m\",pool=\"short\",worker=\"http://a:1\"} 2.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_worker_queue_length{model_name=\"m\",pool=\"long\",worker=\"http://b:1\"} 5.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_worker_kv_cache_usage_perc{model_name=\"m\",pool=\"long\",worker=\"http://b:1\"} 0.5\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_pool_healthy_workers{model_name=\"m\",pool=\"short\"} 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_pool_healthy_workers{model_name=\"m\",pool=\"long\"} 0.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:router_pool_requests_in_flight{model_name=\"m\",pool=\"short\"} 2.0\n"), std::string::npos);
}

TEST(router_metrics, the_vllm_prefix_names_every_router_family) {
  request_router_config c;
  c.pools = {{"all", 0}};
  c.worker_pool = {"all"};
  request_router r(c);
  r.set_healthy(0, true);
  const std::string text = router_metrics_text(router_figures_of(r, {"http://a:1"}), "m", "vllm");
  EXPECT_NE(text.find("vllm:router_worker_healthy{model_name=\"m\",pool=\"all\",worker=\"http://a:1\"} 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("vllm:router_pool_healthy_workers{model_name=\"m\",pool=\"all\"} 1.0\n"), std::string::npos);
  EXPECT_EQ(text.find("troupe:"), std::string::npos) << text;
}
