#include "runtime/router/request_router.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <tuple>

namespace troupe {

std::optional<routing_policy> parse_routing_policy(std::string_view name) {
  if (name == "prefix_affinity") return routing_policy::prefix_affinity;
  if (name == "least_loaded") return routing_policy::least_loaded;
  if (name == "round_robin") return routing_policy::round_robin;
  return std::nullopt;
}

request_router::request_router(request_router_config config) : config_(std::move(config)) {
  if (config_.pools.empty()) throw std::invalid_argument("request_router: no pools");
  if (config_.block_size < 1 || config_.affinity_blocks < 1) throw std::invalid_argument("request_router: block sizes below 1");
  if (!(config_.load_factor >= 1) || config_.load_slack < 0) throw std::invalid_argument("request_router: load factor below 1 or negative slack");
  pool_workers_.resize(config_.pools.size());
  next_.assign(config_.pools.size(), 0);
  for (size_t w = 0; w < config_.worker_pool.size(); ++w) {
    const auto it = std::find_if(config_.pools.begin(), config_.pools.end(),
                                 [&](const pool_config& p) { return p.name == config_.worker_pool[w]; });
    if (it == config_.pools.end()) throw std::invalid_argument("request_router: worker in no pool: " + config_.worker_pool[w]);
    worker_state s;
    s.pool = static_cast<size_t>(it - config_.pools.begin());
    workers_.push_back(s);
    pool_workers_[s.pool].push_back(w);
  }
}

size_t request_router::bucket_of(int32_t max_tokens) const {
  for (size_t p = 0; p + 1 < config_.pools.size(); ++p)
    if (max_tokens <= config_.pools[p].max_tokens) return p;
  return config_.pools.size() - 1;
}

std::vector<size_t> request_router::pool_order(size_t bucket) const {
  std::vector<size_t> order;
  for (size_t p = bucket; p < config_.pools.size(); ++p) order.push_back(p);
  for (size_t p = bucket; p-- > 0;) order.push_back(p);
  return order;
}

std::vector<size_t> request_router::candidates(size_t pool, std::span<const size_t> exclude) const {
  std::vector<size_t> out;
  for (size_t w : pool_workers_[pool])
    if (workers_[w].healthy && std::find(exclude.begin(), exclude.end(), w) == exclude.end()) out.push_back(w);
  return out;
}

bool request_router::within_bound(size_t w, const std::vector<size_t>& among) const {
  // Consistent hashing with bounded loads: with m requests (this one included) over n workers, none takes
  // more than ceil(load_factor * m / n) -- unless it stays within load_slack of the least loaded.
  int64_t total = 1, least = INT64_MAX;
  for (size_t v : among) {
    total += workers_[v].in_flight;
    least = std::min<int64_t>(least, workers_[v].in_flight);
  }
  const int64_t load = int64_t{workers_[w].in_flight} + 1;
  if (load - least <= config_.load_slack) return true;
  const double cap = std::ceil(config_.load_factor * static_cast<double>(total) / static_cast<double>(among.size()));
  return static_cast<double>(load) <= cap;
}

int64_t request_router::queue_of(size_t w) const {
  const worker_state& s = workers_[w];
  return std::max<int64_t>(s.in_flight, int64_t{s.load.num_running} + s.load.num_waiting);
}

size_t request_router::least_loaded(const std::vector<size_t>& among, size_t pool) {
  // Ties go to the first worker at or after the pool's turn, and the turn moves past the one chosen: equal
  // workers take turns.
  const std::vector<size_t>& all = pool_workers_[pool];
  const auto turn_distance = [&](size_t w) {
    const size_t at = static_cast<size_t>(std::find(all.begin(), all.end(), w) - all.begin());
    return (at + all.size() - next_[pool] % all.size()) % all.size();
  };
  const auto rank = [&](size_t w) { return std::make_tuple(queue_of(w), workers_[w].load.kv_cache_usage, turn_distance(w)); };
  size_t best = among.front();
  for (size_t w : among)
    if (rank(w) < rank(best)) best = w;
  next_[pool] = static_cast<size_t>(std::find(all.begin(), all.end(), best) - all.begin()) + 1;
  return best;
}

size_t request_router::round_robin(const std::vector<size_t>& among, size_t pool) {
  // The next worker of the pool's list at or after the turn, among those allowed.
  const std::vector<size_t>& all = pool_workers_[pool];
  for (size_t i = 0; i < all.size(); ++i) {
    const size_t w = all[(next_[pool] + i) % all.size()];
    if (std::find(among.begin(), among.end(), w) != among.end()) {
      next_[pool] = (next_[pool] + i + 1) % all.size();
      return w;
    }
  }
  return among.front();  // not reached: among is a nonempty subset of the pool
}

std::optional<block_key> request_router::key_of(std::span<const int32_t> prompt, std::string_view salt) const {
  const size_t full = prompt.size() / static_cast<size_t>(config_.block_size);
  const size_t blocks = std::min(full, static_cast<size_t>(config_.affinity_blocks));
  if (blocks == 0) return std::nullopt;
  const auto keys = compute_block_keys(prompt.first(blocks * static_cast<size_t>(config_.block_size)), config_.block_size, salt);
  return keys.back();
}

void request_router::assign_key(const block_key& key, size_t worker) {
  auto it = keys_.find(key);
  if (it != keys_.end()) {
    --workers_[it->second.worker].num_keys;
    it->second.worker = worker;
    keys_lru_.splice(keys_lru_.begin(), keys_lru_, it->second.lru);
  } else {
    if (keys_.size() >= config_.max_keys && !keys_lru_.empty()) {
      const auto old = keys_.find(keys_lru_.back());
      --workers_[old->second.worker].num_keys;
      keys_.erase(old);
      keys_lru_.pop_back();
    }
    keys_lru_.push_front(key);
    keys_.emplace(key, key_entry{worker, keys_lru_.begin()});
  }
  ++workers_[worker].num_keys;
}

std::optional<route_decision> request_router::route(std::span<const int32_t> prompt, std::string_view salt, int32_t max_tokens,
                                                    std::span<const size_t> exclude) {
  route_decision d;
  d.bucket_pool = bucket_of(max_tokens);
  std::vector<size_t> among;
  for (size_t p : pool_order(d.bucket_pool)) {
    among = candidates(p, exclude);
    if (!among.empty()) {
      d.pool = p;
      break;
    }
  }
  if (among.empty()) return std::nullopt;

  switch (config_.policy) {
    case routing_policy::round_robin:
      d.worker = round_robin(among, d.pool);
      d.reason = route_reason::round_robin;
      break;
    case routing_policy::least_loaded:
      d.worker = least_loaded(among, d.pool);
      d.reason = route_reason::least_loaded;
      break;
    case routing_policy::prefix_affinity: {
      const std::optional<block_key> key = key_of(prompt, salt);
      if (!key) {
        d.worker = least_loaded(among, d.pool);
        d.reason = route_reason::least_loaded;
        break;
      }
      std::vector<size_t> bounded;
      for (size_t w : among)
        if (within_bound(w, among)) bounded.push_back(w);  // never empty: not every worker is above the mean
      const auto it = keys_.find(*key);
      const bool home_here = it != keys_.end() && std::find(among.begin(), among.end(), it->second.worker) != among.end();
      if (home_here) {
        const size_t home = it->second.worker;
        keys_lru_.splice(keys_lru_.begin(), keys_lru_, it->second.lru);
        if (std::find(bounded.begin(), bounded.end(), home) != bounded.end()) {
          d.worker = home;
          d.reason = route_reason::affinity;
          ++workers_[home].counts.num_affinity_hits;
          break;
        }
        ++workers_[home].counts.num_affinity_overflows;
        d.worker = least_loaded(bounded, d.pool);  // bounded holds another worker: the least loaded is within it
        d.reason = route_reason::affinity_overflow;
        break;
      }
      // A new key (or its worker is gone, or in another pool): the worker within the bound holding the fewest
      // keys, the least loaded of those.
      size_t fewest = SIZE_MAX;
      for (size_t w : bounded) fewest = std::min(fewest, workers_[w].num_keys);
      std::vector<size_t> emptiest;
      for (size_t w : bounded)
        if (workers_[w].num_keys == fewest) emptiest.push_back(w);
      d.worker = least_loaded(emptiest, d.pool);
      d.reason = route_reason::new_key;
      assign_key(*key, d.worker);
      break;
    }
  }
  ++workers_[d.worker].in_flight;
  ++workers_[d.worker].counts.num_routed;
  return d;
}

void request_router::release(size_t worker) {
  if (workers_[worker].in_flight > 0) --workers_[worker].in_flight;
}

void request_router::set_healthy(size_t worker, bool healthy) { workers_[worker].healthy = healthy; }
void request_router::set_load(size_t worker, const worker_load& load) { workers_[worker].load = load; }

size_t request_router::num_healthy(size_t pool) const {
  size_t n = 0;
  for (size_t w : pool_workers_[pool]) n += workers_[w].healthy;
  return n;
}

bool request_router::every_pool_served() const {
  for (size_t p = 0; p < config_.pools.size(); ++p)
    if (num_healthy(p) == 0) return false;
  return true;
}

} // namespace troupe
