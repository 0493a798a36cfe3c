#include "runtime/metrics/sliding_window.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

const clock::time_point t0 = clock::time_point{} + 1000h;

// Three 1 s slots, two channels.
sliding_window three_seconds() { return sliding_window(2, 1s, 3, t0); }

TEST(sliding_window, sums_what_was_added_within_the_window_and_says_how_long_it_is) {
  sliding_window w = three_seconds();
  w.add(t0 + 500ms, 0, 5);
  w.add(t0 + 1200ms, 0, 3);
  w.add(t0 + 1200ms, 1, 1);
  const sliding_window::totals t = w.sum(t0 + 2500ms);
  EXPECT_EQ(t.sums, (std::vector<double>{8, 1}));
  EXPECT_DOUBLE_EQ(t.seconds, 2.5);
}

TEST(sliding_window, is_only_as_long_as_the_time_since_start) {
  sliding_window w = three_seconds();
  EXPECT_DOUBLE_EQ(w.sum(t0).seconds, 0.0);
  EXPECT_DOUBLE_EQ(w.sum(t0 + 250ms).seconds, 0.25);
  // Later, two whole slots and the current one so far: between 2 and 3 s.
  EXPECT_DOUBLE_EQ(w.sum(t0 + 10s).seconds, 2.0);
  EXPECT_DOUBLE_EQ(w.sum(t0 + 10s + 400ms).seconds, 2.4);
}

TEST(sliding_window, forgets_slots_that_fell_out_of_the_window) {
  sliding_window w = three_seconds();
  w.add(t0 + 500ms, 0, 5);   // slot 0
  w.add(t0 + 1200ms, 0, 3);  // slot 1
  EXPECT_EQ(w.sum(t0 + 2900ms).sums, (std::vector<double>{8, 0}));
  EXPECT_EQ(w.sum(t0 + 3s).sums, (std::vector<double>{3, 0}));
  EXPECT_EQ(w.sum(t0 + 4s).sums, (std::vector<double>{0, 0}));
}

TEST(sliding_window, starts_a_reused_ring_position_afresh) {
  sliding_window w = three_seconds();
  w.add(t0 + 500ms, 0, 5);   // slot 0, ring position 0
  w.add(t0 + 3500ms, 0, 2);  // slot 3, ring position 0 again
  EXPECT_EQ(w.sum(t0 + 3500ms).sums, (std::vector<double>{2, 0}));
}

TEST(sliding_window, drops_a_late_event_older_than_the_window_and_keeps_one_inside_it) {
  sliding_window w = three_seconds();
  w.add(t0 + 5s, 0, 1);
  w.add(t0 + 1s, 0, 10);    // slot 1: out of the window of slot 5
  w.add(t0 + 4200ms, 0, 2); // slot 4: still inside
  EXPECT_EQ(w.sum(t0 + 5s).sums, (std::vector<double>{3, 0}));
}

TEST(sliding_window, counts_times_before_start_as_start) {
  sliding_window w = three_seconds();
  w.add(t0 - 5s, 1, 4);
  EXPECT_EQ(w.sum(t0 + 100ms).sums, (std::vector<double>{0, 4}));
}

TEST(sliding_window, rejects_a_shapeless_window_or_an_unknown_channel) {
  EXPECT_THROW(sliding_window(1, 0s, 3, t0), std::invalid_argument);
  EXPECT_THROW(sliding_window(1, 1s, 0, t0), std::invalid_argument);
  sliding_window w = three_seconds();
  EXPECT_THROW(w.add(t0, 2, 1), std::out_of_range);
  EXPECT_EQ(w.span(), 3s);
}

} // namespace
} // namespace troupe
