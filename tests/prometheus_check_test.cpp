// deploy/prometheus/troupe_alerts.yml and deploy/grafana/troupe.json against a real Prometheus (Debian's
// package, which scripts/setup.sh installs) scraping two live `troupe serve` and a `troupe router` over each:
// one pair with the default prefix, one with --metrics-prefix vllm. promtool accepts the rules; Prometheus loads them (and their
// vllm: form) and evaluates each without error; every query of the Grafana dashboard, its variables
// filled in for each prefix, runs and returns series; and every metric a query or a rule names exists.
//
// A missing prometheus is a failure that says to run scripts/setup.sh, never a skip.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"
#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using troupe::testing::child_process;
using troupe::testing::server_process;
using troupe::testing::shell;
using troupe::testing::shell_quote;
namespace fs = std::filesystem;

namespace {

const fs::path repo = fs::path(TROUPE_TEST_DATA).parent_path().parent_path();
const fs::path rules_file = repo / "deploy/prometheus/troupe_alerts.yml";
const fs::path dashboard_file = repo / "deploy/grafana/troupe.json";
const char* const missing = "prometheus (with promtool) is not installed: run scripts/setup.sh, which installs Debian's "
                            "prometheus package";

bool installed(const std::string& program) { return !shell("command -v " + program + " 2>/dev/null").empty(); }

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// Polls ok() every 200 ms until it holds or the deadline passes; whether it held.
template <class F>
bool eventually(F ok, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ok()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return true;
}

// A Prometheus HTTP API answer (null when the body is not JSON: no answer at all).
json api(uint16_t port, const std::string& path, const std::string& query = "") {
  const std::string body = shell("curl -s -m 10 -G " + (query.empty() ? "" : "--data-urlencode " + shell_quote("query=" + query) + " ") +
                                 shell_quote("http://127.0.0.1:" + std::to_string(port) + path));
  return json::parse(body, nullptr, false).is_discarded() ? json() : json::parse(body);
}

// The metric names Prometheus holds samples of.
std::set<std::string> exported_names(uint16_t port) {
  const json names = api(port, "/api/v1/label/__name__/values");
  std::set<std::string> out;
  for (const json& n : names.value("data", json::array())) out.insert(n.get<std::string>());
  return out;
}

// Every "expr" of the dashboard's panels (rows' nested panels too).
void collect_exprs(const json& panels, std::vector<std::string>& out) {
  for (const json& p : panels) {
    if (p.contains("panels")) collect_exprs(p["panels"], out);
    for (const json& t : p.value("targets", json::array()))
      if (t.contains("expr")) out.push_back(t["expr"]);
  }
}

// A dashboard query as Grafana sends it: the template variables filled in (a range of 1 minute, which
// holds a dozen scrapes here). Any other variable is left, and fails the test.
std::string fill_variables(const std::string& expr, const std::string& prefix) {
  std::string q = replace_all(expr, "${prefix}", prefix);
  q = replace_all(q, "$__rate_interval", "1m");
  q = replace_all(q, "$model_name", "troupe-default");
  return replace_all(q, "$instance", ".*");
}

// The metric names a query or rule mentions (troupe:... or vllm:...).
std::set<std::string> metric_names(const std::string& promql) {
  static const std::regex name(R"((troupe|vllm):[a-zA-Z0-9_]+)");
  std::set<std::string> out;
  for (auto it = std::sregex_iterator(promql.begin(), promql.end(), name); it != std::sregex_iterator(); ++it) out.insert(it->str());
  return out;
}

// A `troupe router` over one worker, with the worker's metric prefix.
std::string router_args(const server_process& worker, const std::string& prefix) {
  return "--worker http://127.0.0.1:" + std::to_string(worker.http_port()) + ",native=" + std::to_string(worker.port()) +
         " --health-interval 0.2 --metrics-prefix " + prefix;
}

// Two servers, a router over each (in the same prefix), a few requests through each router, and a Prometheus
// scraping all four every second with the alert rules loaded, in both prefixes.
struct live_prometheus {
  fs::path dir = fs::temp_directory_path() / ("troupe_prometheus_" + std::to_string(::getpid()));
  server_process troupe_server{""};
  server_process vllm_server{"--metrics-prefix vllm"};
  server_process troupe_router{router_args(troupe_server, "troupe"), "", "", "router"};
  server_process vllm_router{router_args(vllm_server, "vllm"), "", "", "router"};
  uint16_t port = troupe::testing::free_port();
  std::unique_ptr<child_process> prometheus;
  std::string problem;  // why it is not ready, when it is not

  live_prometheus() {
    fs::create_directories(dir);
    std::ofstream(dir / "vllm_alerts.yml") << replace_all(read_file(rules_file), "troupe:", "vllm:");
    std::ofstream(dir / "prometheus.yml")
        << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "rule_files:\n  - " << rules_file.string() << "\n  - " << (dir / "vllm_alerts.yml").string() << "\n"
        << "scrape_configs:\n  - job_name: troupe\n    static_configs:\n      - targets: ['127.0.0.1:"
        << troupe_server.http_port() << "', '127.0.0.1:" << vllm_server.http_port() << "', '127.0.0.1:" << troupe_router.http_port()
        << "', '127.0.0.1:" << vllm_router.http_port() << "']\n";
    prometheus = std::make_unique<child_process>(
        "prometheus --config.file=" + (dir / "prometheus.yml").string() + " --storage.tsdb.path=" + (dir / "data").string() +
            " --web.listen-address=127.0.0.1:" + std::to_string(port) + " --log.level=warn",
        dir / "prometheus.log");
    if (!eventually([&] { return shell("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" + std::to_string(port) + "/-/ready") == "200"; },
                    std::chrono::seconds(20))) {
      problem = "Prometheus did not become ready: " + prometheus->log();
      return;
    }
    // Traffic after the first scrape, so that rates see it rise.
    if (!eventually([&] { return api(port, "/api/v1/query", "up == 1").value("data", json::object()).value("result", json::array()).size() == 4; },
                    std::chrono::seconds(10))) {
      problem = "Prometheus did not scrape both servers and both routers: " + api(port, "/api/v1/targets").dump();
      return;
    }
    for (const server_process* r : {&troupe_router, &vllm_router})
      if (!eventually([&] { return shell("curl -s -o /dev/null -w '%{http_code}' " + shell_quote(r->url("/health"))) == "200"; },
                      std::chrono::seconds(10))) {
        problem = "a router did not see its worker healthy";
        return;
      }
    // Through the routers: the workers and the routers count the same requests.
    for (const server_process* s : {&troupe_router, &vllm_router})
      for (int i = 0; i < 3; ++i)
        shell("curl -s -o /dev/null " + shell_quote(s->url("/v1/completions")) +
              " -H 'Content-Type: application/json' -d '{\"prompt\": \"Hi\", \"max_tokens\": 8, \"ignore_eos\": true}'");
    // A scrape with the tokens in it, after two without, so every rate() over a minute has points before and after.
    const bool sampled = eventually(
        [&] {
          for (const char* p : {"troupe", "vllm"}) {
            const std::string name = std::string(p) + ":generation_tokens_total";
            const json r = api(port, "/api/v1/query", "count_over_time(" + name + "[1m]) >= 3 and " + name + " > 0");
            if (r.value("data", json::object()).value("result", json::array()).empty()) return false;
          }
          return true;
        },
        std::chrono::seconds(15));
    if (!sampled) problem = "Prometheus never saw the generated tokens of both servers";
  }
  ~live_prometheus() {
    prometheus.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

TEST(prometheus_check, promtool_accepts_the_alert_rules) {
  ASSERT_TRUE(installed("promtool")) << missing;
  int code = -1;
  const std::string out = shell("promtool check rules " + shell_quote(rules_file.string()) + " 2>&1", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("SUCCESS: 5 rules found"), std::string::npos) << out;
}

// Prometheus loaded every alert rule, in both prefixes, and evaluates each without error.
void expect_every_rule_healthy(const live_prometheus& p) {
  json groups;
  // Rules are evaluated every second; wait until each has been once.
  ASSERT_TRUE(eventually(
      [&] {
        groups = api(p.port, "/api/v1/rules").value("data", json::object()).value("groups", json::array());
        for (const json& g : groups)
          for (const json& r : g["rules"])
            if (r.value("health", "unknown") == "unknown") return false;
        return !groups.empty();
      },
      std::chrono::seconds(10)));
  size_t num_rules = 0;
  for (const json& g : groups)
    for (const json& r : g["rules"]) {
      ++num_rules;
      EXPECT_EQ(r["health"], "ok") << r["name"] << ": " << r.value("lastError", "");
      EXPECT_EQ(r["type"], "alerting");
    }
  EXPECT_EQ(num_rules, 10u);  // 5 rules, in both prefixes
}

// Every alert expression runs as a query and names only metrics the servers export (a misspelt name
// would make an alert that can never fire).
void expect_every_alert_expression_to_run(const live_prometheus& p) {
  const std::set<std::string> exported = exported_names(p.port);
  size_t num_checked = 0;
  const json rules = api(p.port, "/api/v1/rules");
  for (const json& g : rules["data"]["groups"])
    for (const json& r : g["rules"]) {
      const std::string expr = r["query"];
      const json answer = api(p.port, "/api/v1/query", expr);
      EXPECT_EQ(answer.value("status", ""), "success") << expr << "\n" << answer.dump();
      const std::set<std::string> names = metric_names(expr);
      EXPECT_FALSE(names.empty()) << expr;
      for (const std::string& name : names) EXPECT_TRUE(exported.count(name)) << name << " (in " << expr << ") is not exported";
      ++num_checked;
    }
  EXPECT_EQ(num_checked, 10u);
}

// Every query of the Grafana dashboard, for each prefix, runs and returns series of exported metrics.
void expect_every_grafana_query_to_return_series(const live_prometheus& p) {
  const json dashboard = json::parse(read_file(dashboard_file));
  std::vector<std::string> exprs;
  collect_exprs(dashboard["panels"], exprs);
  ASSERT_GE(exprs.size(), 20u);
  const std::set<std::string> exported = exported_names(p.port);
  for (const std::string prefix : {"troupe", "vllm"})
    for (const std::string& expr : exprs) {
      const std::string q = fill_variables(expr, prefix);
      EXPECT_EQ(q.find('$'), std::string::npos) << "a template variable the test does not know: " << q;
      const json answer = api(p.port, "/api/v1/query", q);
      EXPECT_EQ(answer.value("status", ""), "success") << q << "\n" << answer.dump();
      EXPECT_FALSE(answer.value("data", json::object()).value("result", json::array()).empty()) << "no series: " << q;
      for (const std::string& name : metric_names(q)) EXPECT_TRUE(exported.count(name)) << name << " (in " << q << ") is not exported";
    }
}

// A process started with --metrics-prefix vllm exports no troupe: series, and the reverse (the router's own
// router_* families included).
void expect_each_instance_in_its_own_prefix(const live_prometheus& p) {
  const std::vector<std::pair<const server_process*, std::string>> instances = {
      {&p.troupe_server, "vllm"}, {&p.troupe_router, "vllm"}, {&p.vllm_server, "troupe"}, {&p.vllm_router, "troupe"}};
  for (const auto& [s, other] : instances) {
    const std::string instance = "instance=\"127.0.0.1:" + std::to_string(s->http_port()) + "\"";
    const json foreign = api(p.port, "/api/v1/query", "count({__name__=~\"" + other + ":.*\", " + instance + "})");
    EXPECT_TRUE(foreign.value("data", json::object()).value("result", json::array()).empty()) << instance << ": " << foreign.dump();
    const std::string own = other == "vllm" ? "troupe" : "vllm";
    const json mine = api(p.port, "/api/v1/query", "count({__name__=~\"" + own + ":.*\", " + instance + "})");
    EXPECT_FALSE(mine.value("data", json::object()).value("result", json::array()).empty()) << instance;
  }
  for (const std::string prefix : {"troupe", "vllm"}) {
    const json healthy = api(p.port, "/api/v1/query", prefix + ":router_worker_healthy == 1");
    EXPECT_EQ(healthy.value("data", json::object()).value("result", json::array()).size(), 1u) << prefix << ": " << healthy.dump();
  }
}

// One Prometheus for all the checks: starting it and waiting for its scrapes is most of the time.
TEST(prometheus_check, a_prometheus_scraping_live_servers_and_routers_evaluates_every_alert_rule_and_every_grafana_query) {
  ASSERT_TRUE(installed("prometheus")) << missing;
  const live_prometheus p;
  ASSERT_EQ(p.problem, "");
  expect_every_rule_healthy(p);
  expect_every_alert_expression_to_run(p);
  expect_every_grafana_query_to_return_series(p);
  expect_each_instance_in_its_own_prefix(p);
}

} // namespace
