// The gateway's connection cap: which connection makes room, and the back-off of a failing accept().

#include <gtest/gtest.h>

#include "runtime/gateway/connection_table.hpp"
#include "runtime/gateway/gateway_metrics.hpp"

using namespace troupe;
using namespace std::chrono_literals;

TEST(connection_table, is_full_at_the_cap_and_names_the_connection_idle_the_longest) {
  connection_table t(3);
  const auto t0 = connection_table::clock::now();
  const uint64_t a = t.open(t0), b = t.open(t0 + 1s), c = t.open(t0 + 2s);
  EXPECT_TRUE(t.full());
  EXPECT_EQ(t.longest_idle(), a);
  // A busy connection is never chosen; one idle again counts from then.
  t.set_idle(a, false, t0 + 3s);
  EXPECT_EQ(t.longest_idle(), b);
  t.set_idle(a, true, t0 + 4s);
  t.set_idle(b, false, t0 + 4s);
  EXPECT_EQ(t.longest_idle(), c);
  t.set_idle(c, false, t0 + 5s);
  EXPECT_EQ(t.longest_idle(), a);
  t.set_idle(a, false, t0 + 6s);
  EXPECT_EQ(t.longest_idle(), std::nullopt);
  t.close(b);
  t.close(b);  // once is enough
  EXPECT_EQ(t.size(), 2);
  EXPECT_FALSE(t.full());
}

TEST(connection_table, the_default_cap_leaves_a_reserve_of_the_descriptor_limit) {
  EXPECT_EQ(default_max_connections(1024), 896);
  EXPECT_EQ(default_max_connections(64), 8);
  EXPECT_EQ(default_max_connections(1 << 20), 65536);
  EXPECT_EQ(default_max_connections(0), 65536);
}

TEST(accept_backoff, doubles_up_to_its_maximum_and_starts_over_after_a_success) {
  accept_backoff b(10ms, 50ms);
  EXPECT_EQ(b.next_delay(), 10ms);
  EXPECT_EQ(b.next_delay(), 20ms);
  EXPECT_EQ(b.next_delay(), 40ms);
  EXPECT_EQ(b.next_delay(), 50ms);
  EXPECT_EQ(b.next_delay(), 50ms);
  b.reset();
  EXPECT_EQ(b.next_delay(), 10ms);
}

TEST(gateway_metrics, renders_connections_and_the_admission_counters_per_tenant) {
  gateway_figures f;
  f.num_connections = 3;
  f.admission.num_in_flight = 2;
  f.admission.num_queued = 1;
  f.admission.tenant_in_flight = {{"a", 2}, {"b", 0}};
  const std::string text = gateway_metrics_text(f, "m");
  EXPECT_NE(text.find("troupe:http_connections{model_name=\"m\"} 3.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("troupe:http_requests_in_flight{model_name=\"m\"} 2.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:http_requests_queued{model_name=\"m\"} 1.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:tenant_requests_in_flight{model_name=\"m\",tenant=\"a\"} 2.0\n"), std::string::npos);
  EXPECT_NE(text.find("troupe:tenant_requests_in_flight{model_name=\"m\",tenant=\"b\"} 0.0\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE troupe:tenant_requests_in_flight gauge\n"), std::string::npos);
}
