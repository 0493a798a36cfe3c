#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/admission.hpp"
#include "runtime/error.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

admission_config two_tenants() {
  admission_config c;
  c.tenants = {{"small", {"key-small"}, 600, 2}, {"big", {"key-big"}, 0, 0}};
  return c;
}

} // namespace

TEST(admission, without_keys_everyone_is_admitted) {
  admission_controller a({});
  std::string tenant;
  EXPECT_FALSE(a.requires_key());
  EXPECT_FALSE(a.admit("", 100, 0, tenant).has_value());
  EXPECT_EQ(tenant, "default");
}

TEST(admission, a_missing_or_wrong_key_is_refused_with_401) {
  admission_controller a(two_tenants());
  std::string tenant;
  auto r = a.admit("", 10, 0, tenant);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->message, "Missing API key: send 'Authorization: Bearer <key>'");
  r = a.admit("nope", 10, 0, tenant);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "Invalid API key");
  EXPECT_EQ(r->reason, "unauthorized");
}

TEST(admission, a_tenant_over_its_token_rate_gets_429_with_retry_after_and_others_are_unaffected) {
  admission_controller a(two_tenants());
  const auto t0 = admission_controller::clock::now();
  std::string tenant;
  EXPECT_FALSE(a.admit("key-small", 400, 0, tenant, t0));
  a.release(tenant);
  // 200 tokens left; 300 more is over: 100 short at 10 tokens/s is 10 s.
  auto r = a.admit("key-small", 300, 0, tenant, t0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->retry_after_s, 10);
  EXPECT_EQ(r->message, "Tenant 'small' is over its token rate (600 tokens per minute); retry in 10 s");
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(a.admit("key-big", 100000, 0, tenant, t0));
    a.release(tenant);
  }
  // Ten seconds later the bucket holds exactly enough.
  EXPECT_FALSE(a.admit("key-small", 300, 0, tenant, t0 + 10s));
}

TEST(admission, a_request_larger_than_a_minutes_budget_says_so) {
  admission_controller a(two_tenants());
  std::string tenant;
  auto r = a.admit("key-small", 601, 0, tenant);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message,
            "The request needs 601 tokens (prompt + max_tokens), more than tenant 'small' may use per minute (600); "
            "lower max_tokens or shorten the prompt");
}

TEST(admission, the_concurrency_cap_frees_a_seat_on_release) {
  admission_controller a(two_tenants());
  std::string t1, t2, t3;
  EXPECT_FALSE(a.admit("key-small", 1, 0, t1));
  EXPECT_FALSE(a.admit("key-small", 1, 0, t2));
  auto r = a.admit("key-small", 1, 0, t3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "Tenant 'small' already has 2 requests in flight, its limit; retry when one finishes");
  a.release(t1);
  EXPECT_FALSE(a.admit("key-small", 1, 0, t3));
}

TEST(admission, a_full_queue_refuses_with_429) {
  admission_config c;
  c.max_queue_len = 3;
  admission_controller a(c);
  std::string tenant;
  EXPECT_FALSE(a.admit("", 1, 2, tenant));
  auto r = a.admit("", 1, 3, tenant);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "queue_full");
  EXPECT_EQ(r->retry_after_s, 1);
}

TEST(admission, reads_a_tenants_file_and_names_what_is_wrong) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto good = dir / "troupe_tenants_good.json", bad = dir / "troupe_tenants_bad.json";
  std::ofstream(good) << R"({"tenants": [{"name": "a", "api_keys": ["k1", "k2"], "tokens_per_minute": 1000, "max_concurrent": 3}]})";
  std::ofstream(bad) << R"({"tenants": [{"name": "a", "api_keys": []}]})";
  const auto tenants = read_tenants_file(good);
  ASSERT_EQ(tenants.size(), 1u);
  EXPECT_EQ(tenants[0].api_keys, (std::vector<std::string>{"k1", "k2"}));
  EXPECT_EQ(tenants[0].max_concurrent, 3);
  try {
    read_tenants_file(bad);
    FAIL();
  } catch (const user_error& e) {
    EXPECT_EQ(std::string(e.what()), "--tenants-file " + bad.string() + ": tenant 'a' needs a non-empty \"api_keys\" list");
  }
  std::filesystem::remove(good);
  std::filesystem::remove(bad);
}
