#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/gateway/admission.hpp"
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
  admission_ticket ticket;
  EXPECT_FALSE(a.requires_key());
  EXPECT_FALSE(a.admit("", 100, ticket).has_value());
  EXPECT_TRUE(ticket.held());
  EXPECT_EQ(ticket.tenant(), "default");
}

TEST(admission, a_missing_or_wrong_key_is_refused_with_401) {
  admission_controller a(two_tenants());
  admission_ticket ticket;
  auto r = a.admit("", 10, ticket);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->message, "Missing API key: send 'Authorization: Bearer <key>'");
  EXPECT_FALSE(ticket.held());
  r = a.admit("nope", 10, ticket);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "Invalid API key");
  EXPECT_EQ(r->reason, "unauthorized");
}

TEST(admission, a_tenant_over_its_token_rate_gets_429_with_retry_after_and_others_are_unaffected) {
  admission_controller a(two_tenants());
  const auto t0 = admission_controller::clock::now();
  admission_ticket ticket;
  EXPECT_FALSE(a.admit("key-small", 400, ticket, t0));
  ticket.release();
  // 200 tokens left; 300 more is over: 100 short at 10 tokens/s is 10 s.
  auto r = a.admit("key-small", 300, ticket, t0);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->retry_after_s, 10);
  EXPECT_EQ(r->message, "Tenant 'small' is over its token rate (600 tokens per minute); retry in 10 s");
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(a.admit("key-big", 100000, ticket, t0));
    ticket.release();
  }
  // Ten seconds later the bucket holds exactly enough.
  EXPECT_FALSE(a.admit("key-small", 300, ticket, t0 + 10s));
}

TEST(admission, a_request_larger_than_a_minutes_budget_says_so) {
  admission_controller a(two_tenants());
  admission_ticket ticket;
  auto r = a.admit("key-small", 601, ticket);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message,
            "The request needs 601 tokens (prompt + max_tokens), more than tenant 'small' may use per minute (600); "
            "lower max_tokens or shorten the prompt");
}

TEST(admission, the_concurrency_cap_frees_a_seat_on_release) {
  admission_controller a(two_tenants());
  admission_ticket t1, t2, t3;
  EXPECT_FALSE(a.admit("key-small", 1, t1));
  EXPECT_FALSE(a.admit("key-small", 1, t2));
  auto r = a.admit("key-small", 1, t3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "Tenant 'small' already has 2 requests in flight, its limit; retry when one finishes");
  t1.release();
  EXPECT_FALSE(a.admit("key-small", 1, t3));
}

TEST(admission, a_full_queue_refuses_with_429_until_a_request_leaves_it) {
  admission_config c;
  c.max_queue_len = 3;
  admission_controller a(c);
  admission_ticket t[4];
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(a.admit("", 1, t[i]));
  auto r = a.admit("", 1, t[3]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reason, "queue_full");
  EXPECT_EQ(r->message, "The server's queue is full (3 requests waiting); retry later");
  EXPECT_EQ(r->retry_after_s, 1);
  // The first output takes a request out of the queue; it is still in flight.
  t[0].leave_queue();
  EXPECT_FALSE(a.admit("", 1, t[3]));
  EXPECT_EQ(a.counts().num_queued, 3);
  EXPECT_EQ(a.counts().num_in_flight, 4);
}

TEST(admission, every_slot_comes_back_exactly_once_however_the_ticket_ends) {
  admission_config c;
  c.tenants = {{"small", {"key-small"}, 0, 2}};
  c.max_queue_len = 2;
  admission_controller a(c);
  {
    admission_ticket finished, dropped;
    ASSERT_FALSE(a.admit("key-small", 1, finished));
    ASSERT_FALSE(a.admit("key-small", 1, dropped));
    EXPECT_EQ(a.counts().num_in_flight, 2);
    EXPECT_EQ(a.counts().num_queued, 2);
    EXPECT_EQ(a.counts().tenant_in_flight, (std::vector<std::pair<std::string, int64_t>>{{"small", 2}}));
    // Ended normally: out of the queue at its first output, then released; twice is once.
    finished.leave_queue();
    finished.leave_queue();
    EXPECT_EQ(a.counts().num_queued, 1);
    finished.release();
    finished.release();
    EXPECT_FALSE(finished.held());
    EXPECT_EQ(a.counts().num_in_flight, 1);
    EXPECT_EQ(a.counts().num_queued, 1);
    // Moved (into the object that runs the request), then its owner goes without a word: the destructor frees it.
    admission_ticket moved = std::move(dropped);
    EXPECT_FALSE(dropped.held());
    EXPECT_TRUE(moved.held());
    EXPECT_EQ(moved.tenant(), "small");
  }
  const admission_counts after = a.counts();
  EXPECT_EQ(after.num_in_flight, 0);
  EXPECT_EQ(after.num_queued, 0);
  EXPECT_EQ(after.tenant_in_flight, (std::vector<std::pair<std::string, int64_t>>{{"small", 0}}));
  // Assigning over a held ticket frees the old slots first.
  admission_ticket t, u;
  ASSERT_FALSE(a.admit("key-small", 1, t));
  ASSERT_FALSE(a.admit("key-small", 1, u));
  t = std::move(u);
  EXPECT_EQ(a.counts().num_in_flight, 1);
  // Admitting into a held ticket frees it first too.
  ASSERT_FALSE(a.admit("key-small", 1, t));
  EXPECT_EQ(a.counts().num_in_flight, 1);
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
