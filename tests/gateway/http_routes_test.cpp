// The gateway's route table and the rules it applies to a request head, without a server.

#include <gtest/gtest.h>

#include "runtime/gateway/http_request_head.hpp"
#include "runtime/gateway/http_routes.hpp"

using namespace troupe;

TEST(http_routes, a_get_route_answers_get_and_head_and_names_both_when_refusing_another_method) {
  const route_match get = match_route("GET", "/v1/models?x=1");
  EXPECT_EQ(get.which, route::models);
  EXPECT_EQ(get.status, 200);
  EXPECT_FALSE(get.head);
  const route_match head = match_route("HEAD", "/v1/models");
  EXPECT_EQ(head.status, 200);
  EXPECT_TRUE(head.head);
  const route_match del = match_route("DELETE", "/v1/models");
  EXPECT_EQ(del.status, 405);
  EXPECT_EQ(del.allow, "GET, HEAD");
  EXPECT_FALSE(del.head);
}

TEST(http_routes, a_post_route_refuses_get_and_head_with_405_allow_post) {
  for (const char* method : {"GET", "HEAD", "PUT"}) {
    const route_match m = match_route(method, "/v1/chat/completions");
    EXPECT_EQ(m.which, route::chat_completions);
    EXPECT_EQ(m.status, 405) << method;
    EXPECT_EQ(m.allow, "POST");
  }
  const route_match post = match_route("POST", "/v1/completions");
  EXPECT_EQ(post.status, 200);
  EXPECT_TRUE(post.has_body);
}

TEST(http_routes, an_absolute_target_names_the_same_route) {
  EXPECT_EQ(match_route("GET", "http://troupe:8000/health").which, route::health);
  EXPECT_EQ(target_path("https://troupe/v1/models?x=1"), "/v1/models");
  EXPECT_EQ(target_path("http://troupe"), "/");
}

TEST(http_routes, an_unknown_path_is_404_whatever_the_method) {
  EXPECT_EQ(match_route("GET", "/v1/nothing").status, 404);
  EXPECT_EQ(match_route("POST", "/").status, 404);
  EXPECT_EQ(match_route("GET", "/health/").status, 404);
  EXPECT_TRUE(match_route("GET", "/v1/nothing").allow.empty());
}

TEST(http_routes, only_health_version_and_the_dashboard_page_are_open_when_keys_are_set) {
  const std::pair<const char*, const char*> open[] = {{"GET", "/health"}, {"GET", "/version"}, {"GET", "/dashboard"}};
  const std::pair<const char*, const char*> keyed[] = {{"GET", "/v1/models"},       {"GET", "/metrics"},
                                                       {"GET", "/dashboard.json"},  {"POST", "/tokenize"},
                                                       {"POST", "/detokenize"},     {"POST", "/v1/completions"},
                                                       {"POST", "/v1/chat/completions"}};
  for (auto [method, path] : open) EXPECT_FALSE(match_route(method, path).needs_key) << path;
  for (auto [method, path] : keyed) EXPECT_TRUE(match_route(method, path).needs_key) << path;
}

TEST(http_request_head, a_lone_chunked_coding_or_a_length_is_accepted) {
  request_head h{"POST", 11, true, {}, {}};
  EXPECT_EQ(check_request_head(h, true).status, 0);
  h = request_head{"POST", 11, false, {"Chunked"}, {}};
  EXPECT_EQ(check_request_head(h, true).status, 0);
}

TEST(http_request_head, any_other_transfer_coding_is_501_and_named) {
  const request_head h{"POST", 11, false, {"gzip, chunked"}, {}};
  const head_verdict v = check_request_head(h, true);
  EXPECT_EQ(v.status, 501);
  EXPECT_EQ(v.message,
            "Transfer-Encoding 'gzip, chunked' is not supported: send the body as is, with Content-Length or "
            "Transfer-Encoding: chunked");
  // Split over two fields it is the same list.
  EXPECT_EQ(check_request_head(request_head{"POST", 11, false, {"gzip", "chunked"}, {}}, true).status, 501);
  EXPECT_EQ(check_request_head(request_head{"POST", 10, false, {"chunked"}, {}}, true).status, 400);
}

TEST(http_request_head, a_post_without_length_is_411_and_a_get_without_one_is_fine) {
  const head_verdict v = check_request_head(request_head{"POST", 11, false, {}, {}}, true);
  EXPECT_EQ(v.status, 411);
  EXPECT_EQ(v.message, "A POST request needs a Content-Length header (or Transfer-Encoding: chunked)");
  EXPECT_EQ(check_request_head(request_head{"GET", 11, false, {}, {}}, false).status, 0);
}

TEST(http_request_head, expect_100_continue_is_answered_and_other_expectations_are_417) {
  head_verdict v = check_request_head(request_head{"POST", 11, true, {}, {"100-Continue"}}, true);
  EXPECT_EQ(v.status, 0);
  EXPECT_TRUE(v.send_continue);
  // HTTP/1.0 clients get no 1xx; a request without a body has nothing to continue with.
  EXPECT_FALSE(check_request_head(request_head{"POST", 10, true, {}, {"100-continue"}}, true).send_continue);
  EXPECT_FALSE(check_request_head(request_head{"GET", 11, false, {}, {"100-continue"}}, false).send_continue);
  v = check_request_head(request_head{"POST", 11, true, {}, {"200-ok"}}, true);
  EXPECT_EQ(v.status, 417);
  EXPECT_EQ(v.message, "Expectation '200-ok' is not supported; only 'Expect: 100-continue' is");
}

TEST(http_request_head, parser_failures_map_to_400_413_and_431_with_pythons_phrases) {
  EXPECT_EQ(status_of(parse_failure::malformed), 400);
  EXPECT_EQ(status_of(parse_failure::body_limit), 413);
  EXPECT_EQ(status_of(parse_failure::header_limit), 431);
  EXPECT_EQ(status_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(status_phrase(405), "Method Not Allowed");
  EXPECT_EQ(status_phrase(411), "Length Required");
}

TEST(http_routes, a_root_path_is_served_with_and_without_its_prefix) {
  EXPECT_EQ(match_route("GET", "/api/v1/models", "/api").which, route::models);
  EXPECT_EQ(match_route("GET", "/api/v1/models?x=1", "/api/").which, route::models);
  EXPECT_EQ(match_route("GET", "/v1/models", "/api").which, route::models);
  EXPECT_EQ(match_route("GET", "/apiv1/models", "/api").status, 404);
  EXPECT_EQ(match_route("GET", "/api", "/api").status, 404);  // "/" is no route
  EXPECT_EQ(match_route("GET", "/api/api/v1/models", "/api").status, 404);
}

TEST(http_routes, a_query_parameter_is_found_by_name_as_sent) {
  EXPECT_EQ(query_parameter("/dashboard.json?since=1700000000000", "since"), "1700000000000");
  EXPECT_EQ(query_parameter("/dashboard.json?a=1&since=5&b", "since"), "5");
  EXPECT_EQ(query_parameter("/dashboard.json?a=1&b", "b"), "");
  EXPECT_EQ(query_parameter("/x?since=5#frag", "since"), "5");
  EXPECT_EQ(query_parameter("/x?sinc=5&since_ms=6", "since"), std::nullopt);
  EXPECT_EQ(query_parameter("/dashboard.json", "since"), std::nullopt);
  EXPECT_EQ(query_parameter("/x#since=5", "since"), std::nullopt);
}
