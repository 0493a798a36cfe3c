// When a worker is in the router's rotation (runtime/router/worker_health).

#include <gtest/gtest.h>

#include "runtime/router/worker_health.hpp"

using namespace troupe;

TEST(worker_health, a_worker_joins_once_its_health_answers_and_its_connection_is_up) {
  worker_health h;
  EXPECT_FALSE(h.in_rotation());
  EXPECT_FALSE(h.wants_connection());
  h.on_probe(true);
  EXPECT_FALSE(h.in_rotation());
  EXPECT_TRUE(h.wants_connection());
  h.on_connection(true);
  EXPECT_TRUE(h.in_rotation());
  EXPECT_FALSE(h.wants_connection());
}

TEST(worker_health, it_leaves_at_the_third_failed_probe_in_a_row_not_the_first) {
  worker_health h;
  h.on_probe(true);
  h.on_connection(true);
  h.on_probe(false, "slow");
  h.on_probe(false, "slow");
  EXPECT_TRUE(h.in_rotation());
  h.on_probe(true);  // the count starts over
  h.on_probe(false, "slow");
  h.on_probe(false, "slow");
  EXPECT_TRUE(h.in_rotation());
  h.on_probe(false, "/health answered 503");
  EXPECT_FALSE(h.in_rotation());
  EXPECT_EQ(h.why_out(), "/health answered 503 (3 times in a row)");
  h.on_probe(true);  // back at the first answer
  EXPECT_TRUE(h.in_rotation());
}

TEST(worker_health, a_lost_connection_takes_it_out_at_once_and_a_new_one_brings_it_back) {
  worker_health h;
  h.on_probe(true);
  h.on_connection(true);
  h.on_connection(false, "the worker closed the connection");
  EXPECT_FALSE(h.in_rotation());
  EXPECT_EQ(h.why_out(), "the worker closed the connection");
  EXPECT_TRUE(h.wants_connection());
  h.on_probe(false, "refused");  // a dead process: no new connection is tried
  EXPECT_FALSE(h.wants_connection());
  h.on_probe(true);
  h.on_connection(true);
  EXPECT_TRUE(h.in_rotation());
}
