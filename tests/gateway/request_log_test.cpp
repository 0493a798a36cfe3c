// The request log's line, and which requests get one.

#include <gtest/gtest.h>

#include "runtime/gateway/request_log.hpp"

using namespace troupe;

TEST(request_log, a_completion_line_names_client_request_status_id_tokens_finish_and_time) {
  request_log_entry e;
  e.client = "127.0.0.1:51234";
  e.method = "POST";
  e.path = "/v1/chat/completions";
  e.status = 200;
  e.id = "chatcmpl-1f2e";
  e.prompt_tokens = 12;
  e.completion_tokens = 16;
  e.finish_reason = "stop";
  e.seconds = 0.3124;
  EXPECT_EQ(request_log_line(e),
            "127.0.0.1:51234 \"POST /v1/chat/completions HTTP/1.1\" 200 chatcmpl-1f2e: 12 prompt + 16 generated tokens, "
            "stop, 0.312 s");
}

TEST(request_log, a_refused_request_has_status_and_time_only) {
  request_log_entry e;
  e.client = "[::1]:80";
  e.method = "GET";
  e.path = "/v1/models";
  e.version = 10;
  e.status = 401;
  EXPECT_EQ(request_log_line(e), "[::1]:80 \"GET /v1/models HTTP/1.0\" 401 0.000 s");
}

TEST(request_log, probes_scrapes_and_the_dashboard_are_not_logged) {
  for (route r : {route::health, route::version, route::metrics, route::dashboard, route::dashboard_json})
    EXPECT_FALSE(is_logged(r));
  for (route r : {route::none, route::models, route::tokenize, route::detokenize, route::completions, route::chat_completions})
    EXPECT_TRUE(is_logged(r));
}
