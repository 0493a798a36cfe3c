#pragma once
// Sums of several quantities over the most recent stretch of time, for live rates ("tokens/s over the
// last 10 s") and windowed distributions. Time is cut into slots of a fixed width; a ring keeps the
// last num_slots of them, so adding is O(1) and summing O(num_slots × num_channels), and memory stays
// fixed however many events arrive.
//
// The window at time `now` is the slot holding `now` (partly elapsed) and the num_slots - 1 slots
// before it; seconds() says how long that is, so sum / seconds is a rate. Right after `start` the
// window is only as long as the time since start, so early rates are not diluted by time that never
// happened.
//
// Not thread-safe: the owner locks.

#include <chrono>
#include <cstdint>
#include <vector>

namespace troupe {

class sliding_window {
public:
  using clock = std::chrono::steady_clock;

  // num_channels quantities; slot > 0 wide; num_slots >= 1. Throws std::invalid_argument otherwise.
  sliding_window(size_t num_channels, clock::duration slot, size_t num_slots, clock::time_point start);

  // Adds amount to a channel (< num_channels) at time now. Times before start count as start; a time
  // older than the window (an event reported late) is dropped.
  void add(clock::time_point now, size_t channel, double amount);

  struct totals {
    std::vector<double> sums;  // per channel, over the window
    double seconds = 0;        // how long the window is
  };
  // The window's sums at time now (now no earlier than the latest add, or late events may be missed).
  totals sum(clock::time_point now) const;

  size_t num_channels() const { return num_channels_; }
  // The longest window: num_slots × slot.
  clock::duration span() const { return slot_ * static_cast<int64_t>(num_slots_); }

private:
  int64_t tick_of(clock::time_point t) const;

  size_t num_channels_;
  clock::duration slot_;
  size_t num_slots_;
  clock::time_point start_;
  int64_t latest_tick_ = 0;    // the newest slot written
  std::vector<int64_t> tick_;  // per ring position: the slot it holds, -1 when none
  std::vector<double> sums_;   // [num_slots, num_channels]
};

} // namespace troupe
