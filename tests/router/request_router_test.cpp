// Which worker takes each request (runtime/router/request_router): buckets, prefix affinity, bounded load,
// least loaded, round robin and failover, with exact expectations, then invariants over random mixes.

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "runtime/router/request_router.hpp"

using namespace troupe;

namespace {

// Two pools: "short" (max_tokens up to 64) with workers 0 and 1, "long" with worker 2. Blocks of 4 tokens,
// keys from the first 2 blocks.
request_router fleet(routing_policy policy = routing_policy::prefix_affinity, double load_factor = 1.25, int32_t load_slack = 0) {
  request_router_config c;
  c.pools = {{"short", 64}, {"long", 0}};
  c.worker_pool = {"short", "short", "long"};
  c.policy = policy;
  c.block_size = 4;
  c.affinity_blocks = 2;
  c.load_factor = load_factor;
  c.load_slack = load_slack;
  request_router r(c);
  for (size_t w = 0; w < 3; ++w) r.set_healthy(w, true);
  return r;
}

// A prompt of 12 tokens whose first 8 (the key's two blocks) are system prompt `s`, the rest user text `u`.
std::vector<int32_t> prompt(int32_t s, int32_t u = 0) {
  std::vector<int32_t> p;
  for (int32_t i = 0; i < 8; ++i) p.push_back(100 * s + i);
  for (int32_t i = 0; i < 4; ++i) p.push_back(10000 + 10 * u + i);
  return p;
}

size_t routed(request_router& r, const std::vector<int32_t>& p, int32_t max_tokens = 16, std::vector<size_t> exclude = {}) {
  const auto d = r.route(p, "", max_tokens, exclude);
  EXPECT_TRUE(d.has_value());
  return d ? d->worker : SIZE_MAX;
}

} // namespace

TEST(request_router, a_request_goes_to_the_first_pool_whose_max_tokens_covers_its_own) {
  request_router r = fleet();
  EXPECT_EQ(r.bucket_of(1), 0u);
  EXPECT_EQ(r.bucket_of(64), 0u);
  EXPECT_EQ(r.bucket_of(65), 1u);
  EXPECT_EQ(r.bucket_of(1 << 30), 1u);
  const auto d = r.route(prompt(1), "", 65);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker, 2u);
  EXPECT_EQ(d->pool, 1u);
  EXPECT_LT(routed(r, prompt(1), 64), 2u);
}

TEST(request_router, a_pool_without_a_healthy_worker_passes_its_requests_to_the_next_longer_pool_then_the_shorter) {
  request_router r = fleet();
  r.set_healthy(2, false);
  auto d = r.route(prompt(1), "", 500);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->pool, 0u);
  EXPECT_EQ(d->bucket_pool, 1u);
  EXPECT_FALSE(r.every_pool_served());
  r.set_healthy(2, true);
  r.set_healthy(0, false);
  r.set_healthy(1, false);
  d = r.route(prompt(1), "", 8);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker, 2u);
  EXPECT_EQ(d->bucket_pool, 0u);
  r.set_healthy(2, false);
  EXPECT_FALSE(r.route(prompt(1), "", 8).has_value());
}

TEST(request_router, requests_sharing_their_leading_blocks_go_where_the_first_of_them_went) {
  request_router r = fleet();
  const auto first = r.route(prompt(7, 0), "", 16);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->reason, route_reason::new_key);
  r.release(first->worker);
  for (int32_t u = 1; u < 6; ++u) {
    const auto d = r.route(prompt(7, u), "", 16);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->worker, first->worker);
    EXPECT_EQ(d->reason, route_reason::affinity);
    r.release(d->worker);
  }
  EXPECT_EQ(r.counts(first->worker).num_affinity_hits, 5);
  EXPECT_EQ(r.counts(first->worker).num_routed, 6);
}

TEST(request_router, new_prefixes_spread_evenly_over_the_pool_and_each_stays_put) {
  request_router r = fleet();
  std::map<int32_t, size_t> home;
  for (int32_t s = 0; s < 8; ++s) {
    home[s] = routed(r, prompt(s));
    r.release(home[s]);
  }
  EXPECT_EQ(r.num_keys(0), 4u);
  EXPECT_EQ(r.num_keys(1), 4u);
  for (int round = 0; round < 3; ++round)
    for (int32_t s = 0; s < 8; ++s) {
      EXPECT_EQ(routed(r, prompt(s, round + 1)), home[s]);
      r.release(home[s]);
    }
}

TEST(request_router, the_cache_salt_makes_a_different_prefix) {
  request_router r = fleet();
  EXPECT_NE(r.key_of(prompt(1), "a"), r.key_of(prompt(1), "b"));
  EXPECT_EQ(r.key_of(prompt(1, 1), "a"), r.key_of(prompt(1, 2), "a"));
}

TEST(request_router, a_prompt_without_a_full_block_has_no_key_and_goes_to_the_least_loaded) {
  request_router r = fleet();
  EXPECT_FALSE(r.key_of(std::vector<int32_t>{1, 2, 3}, "").has_value());
  // A prompt of one full block is keyed by it alone.
  EXPECT_TRUE(r.key_of(std::vector<int32_t>{1, 2, 3, 4, 5}, "").has_value());
  r.set_load(0, {3, 1, 0.5});
  const auto d = r.route(std::vector<int32_t>{1, 2, 3}, "", 16);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker, 1u);
  EXPECT_EQ(d->reason, route_reason::least_loaded);
}

TEST(request_router, a_prefixs_worker_over_the_load_bound_passes_the_request_to_the_least_loaded) {
  // load_factor 1.25: with m requests in flight (this one included) over 2 workers none takes more than
  // ceil(1.25 m / 2). Held requests: 1st -> w0 (new key); 2nd: m=2, cap 2, w0 takes it (2); 3rd: m=3, cap 2,
  // w0 would hold 3: w1; 4th: m=4, cap 3: w0 again.
  request_router r = fleet();
  std::vector<size_t> got;
  std::vector<route_reason> why;
  for (int i = 0; i < 4; ++i) {
    const auto d = r.route(prompt(3, i), "", 16);
    ASSERT_TRUE(d);
    got.push_back(d->worker);
    why.push_back(d->reason);
  }
  EXPECT_EQ(got, (std::vector<size_t>{0, 0, 1, 0}));
  EXPECT_EQ(why, (std::vector<route_reason>{route_reason::new_key, route_reason::affinity, route_reason::affinity_overflow,
                                            route_reason::affinity}));
  EXPECT_EQ(r.counts(0).num_affinity_overflows, 1);
  EXPECT_EQ(r.in_flight(0), 3);
  EXPECT_EQ(r.in_flight(1), 1);
}

TEST(request_router, a_prefixs_worker_within_the_slack_of_the_least_loaded_keeps_its_requests_whatever_the_mean) {
  // Slack 3: the key's worker takes requests until it would hold 4 more than the least loaded (0 here).
  request_router r = fleet(routing_policy::prefix_affinity, 1.25, 3);
  std::vector<size_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(routed(r, prompt(3, i)));
  EXPECT_EQ(got, (std::vector<size_t>{0, 0, 0, 1, 0}));  // the 4th would make 4 - 0 > 3 and pass the mean bound (cap 3)
}

TEST(request_router, least_loaded_takes_the_shortest_queue_then_the_lowest_kv_use_and_equal_workers_take_turns) {
  request_router r = fleet(routing_policy::least_loaded);
  EXPECT_EQ(routed(r, prompt(1)), 0u);
  r.release(0);
  EXPECT_EQ(routed(r, prompt(1)), 1u);  // equal: the turn moved on
  r.release(1);
  r.set_load(0, {2, 0, 0.1});
  r.set_load(1, {1, 1, 0.9});
  EXPECT_EQ(routed(r, prompt(1)), 0u);  // queues equal (2): the lower KV use
  r.release(0);
  r.set_load(1, {1, 0, 0.9});
  EXPECT_EQ(routed(r, prompt(1)), 1u);  // the shorter queue, whatever its KV use
  // The router's own count in flight counts when it is larger than the worker's last report.
  r.set_load(0, {0, 0, 0});
  r.set_load(1, {0, 0, 0});
  EXPECT_EQ(routed(r, prompt(2)), 0u);  // worker 1 still holds one
}

TEST(request_router, round_robin_takes_each_healthy_worker_of_the_pool_in_turn) {
  request_router r = fleet(routing_policy::round_robin);
  std::vector<size_t> got;
  for (int i = 0; i < 4; ++i) got.push_back(routed(r, prompt(1)));
  EXPECT_EQ(got, (std::vector<size_t>{0, 1, 0, 1}));
  r.set_healthy(1, false);
  EXPECT_EQ(routed(r, prompt(1)), 0u);
  EXPECT_EQ(routed(r, prompt(1)), 0u);
}

TEST(request_router, failover_skips_the_workers_tried_then_other_pools_then_gives_up) {
  request_router r = fleet();
  const size_t first = routed(r, prompt(5));
  const size_t other = 1 - first;
  r.note_failover(first);
  r.release(first);
  EXPECT_EQ(routed(r, prompt(5), 16, {first}), other);
  auto d = r.route(prompt(5), "", 16, std::vector<size_t>{0, 1});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->worker, 2u);
  EXPECT_EQ(d->bucket_pool, 0u);
  EXPECT_FALSE(r.route(prompt(5), "", 16, std::vector<size_t>{0, 1, 2}).has_value());
  EXPECT_EQ(r.counts(first).num_failovers, 1);
}

TEST(request_router, a_prefix_whose_worker_left_moves_and_stays_where_it_moved_when_the_worker_returns) {
  request_router r = fleet();
  const size_t home = routed(r, prompt(4));
  r.release(home);
  r.set_healthy(home, false);
  const auto moved = r.route(prompt(4, 1), "", 16);
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->worker, 1 - home);
  EXPECT_EQ(moved->reason, route_reason::new_key);
  r.release(moved->worker);
  r.set_healthy(home, true);
  EXPECT_EQ(routed(r, prompt(4, 2)), 1 - home);  // its KV is there now
  EXPECT_EQ(r.num_keys(home), 0u);
}

TEST(request_router, the_least_recently_used_key_is_forgotten_first) {
  request_router_config c;
  c.pools = {{"all", 0}};
  c.worker_pool = {"all", "all"};
  c.block_size = 4;
  c.affinity_blocks = 2;
  c.max_keys = 2;
  request_router r(c);
  r.set_healthy(0, true);
  r.set_healthy(1, true);
  const size_t a = routed(r, prompt(1));  // keys: 1
  r.release(a);
  const size_t b = routed(r, prompt(2));  // keys: 2, 1
  r.release(b);
  EXPECT_EQ(routed(r, prompt(1)), a);     // keys: 1, 2
  r.release(a);
  r.release(routed(r, prompt(3)));        // keys: 3, 1 (2 forgotten)
  EXPECT_EQ(r.num_keys(0) + r.num_keys(1), 2u);
  const auto d = r.route(prompt(2, 1), "", 16);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, route_reason::new_key);
}

TEST(request_router, invariants_hold_over_a_random_mix_of_requests_failures_and_returns) {
  for (routing_policy policy : {routing_policy::prefix_affinity, routing_policy::least_loaded, routing_policy::round_robin}) {
    request_router r = fleet(policy);
    std::mt19937 rng(7);
    std::vector<size_t> open;                        // the worker of each request in flight
    std::map<std::pair<uint64_t, uint64_t>, size_t> home;  // affinity: where each key's requests go
    for (int step = 0; step < 5000; ++step) {
      const int action = static_cast<int>(rng() % 10);
      if (action == 0) {
        r.set_healthy(rng() % 3, rng() % 3 != 0);
        continue;
      }
      if (action <= 3 && !open.empty()) {
        const size_t i = rng() % open.size();
        r.release(open[i]);
        open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      const auto p = prompt(static_cast<int32_t>(rng() % 8), static_cast<int32_t>(rng() % 100));
      const int32_t max_tokens = rng() % 2 ? 16 : 200;
      std::vector<size_t> exclude;
      if (rng() % 5 == 0) exclude.push_back(rng() % 3);
      std::vector<int32_t> before(3);
      for (size_t w = 0; w < 3; ++w) before[w] = r.in_flight(w);
      const auto d = r.route(p, "", max_tokens, exclude);
      bool any = false;
      for (size_t w = 0; w < 3; ++w) any = any || (r.healthy(w) && std::find(exclude.begin(), exclude.end(), w) == exclude.end());
      ASSERT_EQ(d.has_value(), any);
      if (!d) continue;
      open.push_back(d->worker);
      ASSERT_TRUE(r.healthy(d->worker));
      ASSERT_EQ(std::count(exclude.begin(), exclude.end(), d->worker), 0);
      ASSERT_EQ(r.pool_of(d->worker), d->pool);
      // The bucket's pool whenever it has a worker to take the request.
      bool bucket_open = false;
      for (size_t w = 0; w < 3; ++w)
        bucket_open = bucket_open || (r.pool_of(w) == d->bucket_pool && r.healthy(w) && std::count(exclude.begin(), exclude.end(), w) == 0);
      ASSERT_EQ(d->pool == d->bucket_pool, bucket_open);
      if (policy == routing_policy::prefix_affinity) {
        const block_key k = r.key_of(p, "").value();
        const auto key = std::make_pair(k.lo, k.hi);
        if (d->reason == route_reason::affinity) {
          ASSERT_EQ(home.at(key), d->worker);
        }
        if (d->reason == route_reason::new_key) home[key] = d->worker;
        if (d->reason == route_reason::affinity || d->reason == route_reason::new_key) {
          // Bounded load: within ceil(load_factor * m / n) over the pool's candidates.
          int64_t m = 1, n = 0;
          for (size_t w = 0; w < 3; ++w)
            if (r.pool_of(w) == d->pool && r.healthy(w) && std::count(exclude.begin(), exclude.end(), w) == 0) m += before[w], ++n;
          ASSERT_LE(before[d->worker] + 1, std::ceil(1.25 * static_cast<double>(m) / static_cast<double>(n)));
        }
      }
      int64_t sum = 0;
      for (size_t w = 0; w < 3; ++w) sum += r.in_flight(w);
      ASSERT_EQ(sum, static_cast<int64_t>(open.size()));
    }
    for (size_t w : open) r.release(w);
    for (size_t w = 0; w < 3; ++w) EXPECT_EQ(r.in_flight(w), 0);
  }
}

TEST(request_router, routing_policies_are_named_as_the_flag_takes_them) {
  EXPECT_EQ(parse_routing_policy("prefix_affinity"), routing_policy::prefix_affinity);
  EXPECT_EQ(parse_routing_policy("least_loaded"), routing_policy::least_loaded);
  EXPECT_EQ(parse_routing_policy("round_robin"), routing_policy::round_robin);
  EXPECT_FALSE(parse_routing_policy("random").has_value());
}
