// CORS answers as vLLM's (Starlette's CORSMiddleware): preflights, and the headers of other responses.

#include <gtest/gtest.h>

#include "runtime/error.hpp"
#include "runtime/gateway/cors.hpp"

using namespace troupe;

namespace {

using headers = std::vector<cors_header>;

cors_config only(std::vector<std::string> origins, bool credentials = false) {
  cors_config c;
  c.allowed_origins = std::move(origins);
  c.allow_credentials = credentials;
  return c;
}

} // namespace

TEST(cors, vllms_defaults_allow_any_origin_method_and_header_and_mirror_the_asked_headers) {
  const cors_policy p;
  const preflight_answer a = p.preflight("https://app.example", "POST", std::string("authorization, content-type"));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "OK");
  EXPECT_EQ(a.headers, (headers{{"Access-Control-Allow-Origin", "*"},
                                {"Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"},
                                {"Access-Control-Max-Age", "600"},
                                {"Access-Control-Allow-Headers", "authorization, content-type"}}));
  EXPECT_EQ(p.response_headers("https://app.example", false), (headers{{"Access-Control-Allow-Origin", "*"}}));
  // A request with cookies cannot be answered with "*".
  EXPECT_EQ(p.response_headers("https://app.example", true),
            (headers{{"Access-Control-Allow-Origin", "https://app.example"}, {"Vary", "Origin"}}));
}

TEST(cors, listed_origins_are_named_back_and_others_get_400_naming_what_failed) {
  cors_config c = only({"https://app.example"});
  c.allowed_methods = {"POST"};
  c.allowed_headers = {"Authorization"};
  const cors_policy p(c);
  const preflight_answer ok = p.preflight("https://app.example", "POST", std::string("authorization"));
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.headers, (headers{{"Vary", "Origin"},
                                 {"Access-Control-Allow-Methods", "POST"},
                                 {"Access-Control-Max-Age", "600"},
                                 {"Access-Control-Allow-Headers", "Accept, Accept-Language, Authorization, Content-Language, Content-Type"},
                                 {"Access-Control-Allow-Origin", "https://app.example"}}));
  const preflight_answer bad = p.preflight("https://evil.example", "DELETE", std::string("x-secret"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body, "Disallowed CORS origin, method, headers");
  EXPECT_EQ(p.preflight("https://app.example", "POST", std::string("content-type, x-other")).body, "Disallowed CORS headers");
  EXPECT_EQ(p.response_headers("https://app.example", false),
            (headers{{"Access-Control-Allow-Origin", "https://app.example"}, {"Vary", "Origin"}}));
  EXPECT_TRUE(p.response_headers("https://evil.example", false).empty());
}

TEST(cors, credentials_name_the_origin_even_when_any_is_allowed) {
  const cors_policy p(only({"*"}, true));
  const preflight_answer a = p.preflight("https://app.example", "GET", std::nullopt);
  EXPECT_EQ(a.headers, (headers{{"Vary", "Origin"},
                                {"Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"},
                                {"Access-Control-Max-Age", "600"},
                                {"Access-Control-Allow-Credentials", "true"},
                                {"Access-Control-Allow-Origin", "https://app.example"}}));
  EXPECT_EQ(p.response_headers("https://app.example", false),
            (headers{{"Access-Control-Allow-Origin", "*"}, {"Access-Control-Allow-Credentials", "true"}}));
}

TEST(cors, only_an_options_request_with_origin_and_request_method_is_a_preflight) {
  EXPECT_TRUE(cors_policy::is_preflight("OPTIONS", true, true));
  EXPECT_FALSE(cors_policy::is_preflight("OPTIONS", true, false));
  EXPECT_FALSE(cors_policy::is_preflight("OPTIONS", false, true));
  EXPECT_FALSE(cors_policy::is_preflight("POST", true, true));
}

TEST(cors, list_flags_take_a_json_list_or_one_bare_value) {
  EXPECT_EQ(parse_cors_list(R"(["https://a.example", "https://b.example"])", "--allowed-origins"),
            (std::vector<std::string>{"https://a.example", "https://b.example"}));
  EXPECT_EQ(parse_cors_list("https://a.example", "--allowed-origins"), std::vector<std::string>{"https://a.example"});
  try {
    parse_cors_list("[1, 2]", "--allowed-methods");
    FAIL();
  } catch (const user_error& e) {
    EXPECT_STREQ(e.what(), "--allowed-methods takes a JSON list of strings, as '[\"https://example.com\"]', got '[1, 2]'");
  }
}
