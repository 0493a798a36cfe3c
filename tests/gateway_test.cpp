// The gateway in-process: it listens before the model has loaded and answers 503 until it has.

#include <gtest/gtest.h>

#include "actors/engine.hpp"
#include "actors/gateway.hpp"
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
