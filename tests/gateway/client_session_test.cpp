// The native client endpoint's decisions for one connection (runtime/gateway/client_session), without sockets or
// actors: the handshake's key, admission of each job through the admission_controller HTTP uses, job
// ownership, and each job's slot released exactly once.

#include <gtest/gtest.h>

#include <set>

#include "runtime/gateway/client_session.hpp"

using namespace troupe;

namespace {

admission_config one_tenant(double tokens_per_minute, int32_t max_concurrent, int32_t max_queue_len = 0) {
  admission_config c;
  c.tenants = {{"t", {"key-t"}, tokens_per_minute, max_concurrent}};
  c.max_queue_len = max_queue_len;
  return c;
}

uint64_t admitted_id(const std::variant<uint64_t, admission_refusal>& r) {
  if (const auto* refusal = std::get_if<admission_refusal>(&r)) ADD_FAILURE() << "refused: " << refusal->message;
  return std::holds_alternative<uint64_t>(r) ? std::get<uint64_t>(r) : 0;
}

std::string refusal_of(const std::variant<uint64_t, admission_refusal>& r) {
  return std::holds_alternative<admission_refusal>(r) ? std::get<admission_refusal>(r).message : "admitted";
}

} // namespace

TEST(client_session, a_missing_or_wrong_key_is_refused_when_keys_are_configured) {
  admission_controller a(one_tenant(0, 0));
  client_session s(a, {});
  EXPECT_EQ(s.authenticate("").value_or("accepted"),
            "Missing API key: this server requires one (--api-key or --tenants-file); pass it in client_options::api_key");
  EXPECT_EQ(s.authenticate("key-x").value_or("accepted"), "Invalid API key");
  EXPECT_FALSE(s.authenticated());
  EXPECT_EQ(refusal_of(s.admit(3, 4)), "Send the handshake first");
  EXPECT_EQ(s.authenticate("key-t").value_or("accepted"), "accepted");
  EXPECT_TRUE(s.authenticated());
}

TEST(client_session, without_keys_any_connection_is_accepted) {
  admission_controller a({});
  client_session s(a, {});
  EXPECT_EQ(s.authenticate("").value_or("accepted"), "accepted");
  EXPECT_NE(admitted_id(s.admit(3, 4)), 0u);
}

TEST(client_session, a_job_over_the_tenants_token_rate_is_refused_and_the_bucket_is_shared_with_http) {
  admission_controller a(one_tenant(100, 0));
  client_session s(a, {});
  ASSERT_FALSE(s.authenticate("key-t"));
  admitted_id(s.admit(10, 50));  // 60 of 100 tokens
  admission_ticket http_request;
  EXPECT_FALSE(a.admit("key-t", 30, http_request));  // an HTTP request takes 30 more: 10 left
  EXPECT_EQ(refusal_of(s.admit(10, 50)), "Tenant 't' is over its token rate (100 tokens per minute); retry in 30 s");
}

TEST(client_session, max_concurrent_counts_jobs_until_each_ends_exactly_once) {
  admission_controller a(one_tenant(0, 2));
  client_session s(a, {});
  client_session other(a, {});
  ASSERT_FALSE(s.authenticate("key-t"));
  ASSERT_FALSE(other.authenticate("key-t"));
  const uint64_t first = admitted_id(s.admit(1, 1));
  admitted_id(other.admit(1, 1));
  EXPECT_EQ(refusal_of(s.admit(1, 1)), "Tenant 't' already has 2 requests in flight, its limit; retry when one finishes");
  EXPECT_FALSE(other.end(first));  // not its job: nothing released
  EXPECT_EQ(refusal_of(s.admit(1, 1)), "Tenant 't' already has 2 requests in flight, its limit; retry when one finishes");
  EXPECT_TRUE(s.end(first));
  EXPECT_FALSE(s.end(first));  // a second end (an abort racing the last output) releases nothing more
  const uint64_t third = admitted_id(s.admit(1, 1));
  EXPECT_EQ(refusal_of(s.admit(1, 1)), "Tenant 't' already has 2 requests in flight, its limit; retry when one finishes");
  EXPECT_TRUE(s.end(third));
}

TEST(client_session, a_closed_connection_releases_every_open_job) {
  admission_controller a(one_tenant(0, 3, /*max_queue_len=*/5));
  {
    client_session s(a, {});
    ASSERT_FALSE(s.authenticate("key-t"));
    for (int i = 0; i < 3; ++i) admitted_id(s.admit(1, 1));
    EXPECT_EQ(a.num_queued(), 3);
  }
  EXPECT_EQ(a.num_queued(), 0);
  client_session s(a, {});
  ASSERT_FALSE(s.authenticate("key-t"));
  for (int i = 0; i < 3; ++i) admitted_id(s.admit(1, 1));
}

TEST(client_session, a_job_leaves_the_queue_at_its_first_output_and_the_queue_cap_counts_waiting_jobs) {
  admission_controller a(one_tenant(0, 0, /*max_queue_len=*/2));
  client_session s(a, {});
  ASSERT_FALSE(s.authenticate("key-t"));
  const uint64_t first = admitted_id(s.admit(1, 1));
  admitted_id(s.admit(1, 1));
  EXPECT_EQ(refusal_of(s.admit(1, 1)), "The server's queue is full (2 requests waiting); retry later");
  s.started(first);
  s.started(first);  // once only
  EXPECT_EQ(a.num_queued(), 1);
  admitted_id(s.admit(1, 1));
  EXPECT_TRUE(s.end(first));  // started: leaves nothing more
  EXPECT_EQ(a.num_queued(), 2);
}

TEST(client_session, max_tokens_over_the_servers_limit_is_refused_as_http_refuses_it) {
  admission_controller a({});
  client_session s(a, {8});
  ASSERT_FALSE(s.authenticate(""));
  EXPECT_EQ(refusal_of(s.admit(3, 9)), "max_tokens must be at most 8 on this server, got 9. Request fewer output tokens.");
  EXPECT_NE(admitted_id(s.admit(3, 8)), 0u);
}

TEST(client_session, job_ids_are_random_not_counted_and_belong_to_their_connection) {
  admission_controller a({});
  client_session s(a, {}), other(a, {});
  ASSERT_FALSE(s.authenticate(""));
  ASSERT_FALSE(other.authenticate(""));
  std::set<uint64_t> ids;
  uint64_t previous = 0;
  int consecutive = 0;
  for (int i = 0; i < 64; ++i) {
    const uint64_t id = admitted_id(s.admit(1, 1));
    consecutive += id == previous + 1;
    previous = id;
    ids.insert(id);
    EXPECT_TRUE(s.owns(id));
    EXPECT_FALSE(other.owns(id));
  }
  EXPECT_EQ(ids.size(), 64u);
  EXPECT_EQ(consecutive, 0);
  EXPECT_EQ(s.num_open_jobs(), 64u);
}
