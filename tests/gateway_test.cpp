// The gateway in-process: it listens before the model has loaded and answers 503 until it has; stopping it
// ends every request it runs.

#include <gtest/gtest.h>

#include "actors/engine.hpp"
#include "actors/gateway.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/server_process.hpp"

using troupe::testing::shell;

namespace {

std::string status_of(const troupe::gateway& g, const std::string& path) {
  return shell("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:" + std::to_string(g.port()) + path);
}

} // namespace

TEST(gateway, answers_503_while_the_model_loads_and_200_once_it_is_attached) {
  troupe::gateway_options o;
  o.host = "127.0.0.1";
  o.port = 0;
  troupe::gateway g(o);
  EXPECT_EQ(status_of(g, "/health"), "503");
  EXPECT_EQ(status_of(g, "/v1/models"), "503");
  EXPECT_EQ(status_of(g, "/version"), "200");
  troupe::engine_options eo;
  eo.model = std::string(TROUPE_TEST_DATA) + "/reference/llama_f32";
  eo.kv_cache_memory = 16 << 20;
  troupe::engine e(eo);
  g.attach(e);
  EXPECT_EQ(status_of(g, "/health"), "200");
  EXPECT_EQ(status_of(g, "/v1/models"), "200");
  g.stop();
}

TEST(gateway, stopping_aborts_the_requests_in_flight_and_gives_their_slots_back) {
  troupe::engine_options eo;  // the built-in model: long enough a context for a generation that outlives the test
  eo.kv_cache_memory = 16 << 20;
  troupe::engine e(eo);
  troupe::gateway_options o;
  o.host = "127.0.0.1";
  o.port = 0;
  troupe::gateway g(e, o);
  troupe::testing::raw_connection c(g.port());
  c.send(troupe::testing::http_request("POST", "/v1/completions",
                                       R"({"prompt": [1, 2, 3], "max_tokens": 4000, "ignore_eos": true, "stream": true})"));
  ASSERT_TRUE(c.wait_for_bytes(std::chrono::seconds(10)));
  EXPECT_EQ(g.num_in_flight(), 1);
  g.stop();
  EXPECT_EQ(g.num_in_flight(), 0);
  EXPECT_EQ(g.admission().counts().num_queued, 0);
  EXPECT_TRUE(c.closed_by_server());
}
