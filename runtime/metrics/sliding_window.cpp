#include "runtime/metrics/sliding_window.hpp"

#include <algorithm>
#include <stdexcept>

namespace troupe {

sliding_window::sliding_window(size_t num_channels, clock::duration slot, size_t num_slots, clock::time_point start)
    : num_channels_(num_channels), slot_(slot), num_slots_(num_slots), start_(start), tick_(num_slots, -1),
      sums_(num_slots * num_channels, 0.0) {
  if (slot <= clock::duration::zero()) throw std::invalid_argument("sliding_window: the slot width must be positive");
  if (num_slots == 0) throw std::invalid_argument("sliding_window: needs at least one slot");
}

int64_t sliding_window::tick_of(clock::time_point t) const {
  if (t <= start_) return 0;
  return static_cast<int64_t>((t - start_) / slot_);
}

void sliding_window::add(clock::time_point now, size_t channel, double amount) {
  if (channel >= num_channels_) throw std::out_of_range("sliding_window: no such channel");
  const int64_t tick = tick_of(now);
  if (tick + static_cast<int64_t>(num_slots_) <= latest_tick_) return;  // already out of the window
  latest_tick_ = std::max(latest_tick_, tick);

  const size_t at = static_cast<size_t>(tick % static_cast<int64_t>(num_slots_));
  double* slot_sums = &sums_[at * num_channels_];
  if (tick_[at] != tick) {  // the ring position still holds an old slot: start it afresh
    std::fill(slot_sums, slot_sums + num_channels_, 0.0);
    tick_[at] = tick;
  }
  slot_sums[channel] += amount;
}

sliding_window::totals sliding_window::sum(clock::time_point now) const {
  totals t;
  t.sums.assign(num_channels_, 0.0);
  const int64_t tick = tick_of(now);
  const int64_t oldest = tick - static_cast<int64_t>(num_slots_) + 1;
  for (size_t at = 0; at < num_slots_; ++at) {
    if (tick_[at] < oldest || tick_[at] > tick) continue;
    for (size_t c = 0; c < num_channels_; ++c) t.sums[c] += sums_[at * num_channels_ + c];
  }

  // Whole slots before the current one (as many as have passed since start), plus the current one so far.
  const clock::duration elapsed = now > start_ ? now - start_ : clock::duration::zero();
  const clock::duration into_slot = elapsed - slot_ * tick;
  const int64_t whole_slots = std::min<int64_t>(tick, static_cast<int64_t>(num_slots_) - 1);
  t.seconds = std::chrono::duration<double>(slot_ * whole_slots + into_slot).count();
  return t;
}

} // namespace troupe
