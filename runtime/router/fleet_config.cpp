#include "runtime/router/fleet_config.hpp"

#include <charconv>
#include <fstream>
#include <set>

#include "runtime/error.hpp"

namespace troupe {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A decimal number in [lo, hi]; false for anything else.
template <class T> bool parse_number(std::string_view s, T lo, T hi, T& out) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return false;
  out = static_cast<T>(v);
  return true;
}

// "HOST:PORT" or "[V6]:PORT"; false when malformed.
bool split_host_port(std::string_view s, std::string& host, uint16_t& port) {
  size_t colon;
  if (s.starts_with("[")) {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = std::string(s.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) return false;
    host = std::string(s.substr(0, colon));
  }
  return !host.empty() && parse_number<uint16_t>(s.substr(colon + 1), 1, 65535, port);
}

} // namespace

worker_address parse_worker_spec(std::string_view spec, std::string_view where) {
  const std::string context = std::string(where) + " '" + std::string(spec) + "'";
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t comma = spec.find(',', start);
    parts.push_back(trim(spec.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  worker_address w;
  std::string_view url = parts[0];
  if (!url.starts_with("http://"))
    throw user_error(context + ": a worker is http://HOST:PORT[,pool=NAME][,native=[HOST:]PORT] (its HTTP API; "
                               "put a TLS-terminating proxy in front for https)");
  if (url.ends_with("/")) url.remove_suffix(1);
  if (!split_host_port(url.substr(7), w.host, w.http_port))
    throw user_error(context + ": the URL must be http://HOST:PORT with a port from 1 to 65535, and no path");
  w.url = std::string(url);
  w.native_host = w.host;
  if (w.http_port == 65535) throw user_error(context + ": give native=PORT (the default is the HTTP port + 1)");
  w.native_port = static_cast<uint16_t>(w.http_port + 1);
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string_view p = parts[i];
    if (p.starts_with("pool=") && p.size() > 5) {
      w.pool = std::string(p.substr(5));
    } else if (p.starts_with("native=")) {
      const std::string_view v = p.substr(7);
      const bool bare = v.find(':') == std::string_view::npos;
      const bool ok = bare ? parse_number<uint16_t>(v, 1, 65535, w.native_port) : split_host_port(v, w.native_host, w.native_port);
      if (!ok) throw user_error(context + ": native= takes PORT or HOST:PORT (the worker's --client-port)");
    } else {
      throw user_error(context + ": unknown part '" + std::string(p) + "' (a worker takes pool=NAME and native=[HOST:]PORT)");
    }
  }
  return w;
}

std::vector<worker_address> read_workers_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw user_error("--workers-file " + path.string() + ": cannot be read");
  std::vector<worker_address> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string_view l = trim(line);
    if (l.empty() || l.starts_with("#")) continue;
    out.push_back(parse_worker_spec(l, path.string() + ":" + std::to_string(n)));
  }
  return out;
}

pool_config parse_pool_spec(std::string_view spec) {
  pool_config p;
  const size_t colon = spec.find(':');
  p.name = std::string(trim(spec.substr(0, colon)));
  if (p.name.empty()) throw user_error("--pool '" + std::string(spec) + "': a pool is NAME[:MAX_TOKENS]");
  if (colon != std::string_view::npos && !parse_number<int32_t>(trim(spec.substr(colon + 1)), 1, INT32_MAX, p.max_tokens))
    throw user_error("--pool '" + std::string(spec) + "': MAX_TOKENS must be a positive number (the most tokens a "
                     "request of this pool asks for)");
  return p;
}

void check_pool_buckets(const std::vector<pool_config>& pools) {
  std::set<std::string> names;
  for (size_t i = 0; i < pools.size(); ++i) {
    const pool_config& p = pools[i];
    if (!names.insert(p.name).second) throw user_error("--pool " + p.name + " is given twice");
    const bool last = i + 1 == pools.size();
    if (last && p.max_tokens != 0)
      throw user_error("--pool " + p.name + ":" + std::to_string(p.max_tokens) +
                       ": the last pool takes every longer request; give it no MAX_TOKENS");
    if (!last && p.max_tokens == 0)
      throw user_error("--pool " + p.name + ": every pool but the last needs MAX_TOKENS (NAME:MAX_TOKENS)");
    if (i > 0 && !last && p.max_tokens <= pools[i - 1].max_tokens)
      throw user_error("--pool " + p.name + ":" + std::to_string(p.max_tokens) + ": pools go in ascending order of MAX_TOKENS");
  }
}

fleet_config make_fleet_config(std::vector<pool_config> pools, std::vector<worker_address> workers) {
  if (workers.empty()) throw user_error("no workers: give --worker URL (repeatable) or --workers-file FILE");
  std::set<std::string> urls;
  for (const auto& w : workers)
    if (!urls.insert(w.url).second) throw user_error("the worker " + w.url + " is given twice");
  if (pools.empty()) {
    std::set<std::string> named;
    for (const auto& w : workers) named.insert(w.pool);
    named.erase("");
    if (named.size() > 1)
      throw user_error("the workers name " + std::to_string(named.size()) +
                       " pools: declare them in bucket order with --pool NAME:MAX_TOKENS (the last without MAX_TOKENS)");
    pools.push_back({named.empty() ? "default" : *named.begin(), 0});
    for (auto& w : workers) w.pool = pools[0].name;
    return {std::move(pools), std::move(workers)};
  }
  check_pool_buckets(pools);
  std::set<std::string> names;
  for (const auto& p : pools) names.insert(p.name);
  std::set<std::string> used;
  for (auto& w : workers) {
    if (w.pool.empty()) {
      if (pools.size() > 1) throw user_error("the worker " + w.url + " names no pool: give it pool=NAME");
      w.pool = pools[0].name;
    }
    if (!names.count(w.pool)) throw user_error("the worker " + w.url + " is in pool " + w.pool + ", which no --pool declares");
    used.insert(w.pool);
  }
  for (const auto& p : pools)
    if (!used.count(p.name)) throw user_error("--pool " + p.name + " has no worker (give one with pool=" + p.name + ")");
  return {std::move(pools), std::move(workers)};
}

} // namespace troupe
