// The pushdown run: closure over rule calls and completions, then one byte at a time.

#include "runtime/structured/pushdown_parser.hpp"

#include <algorithm>
#include <cstring>

namespace troupe::structured {

stack_pool::stack_pool(uint32_t max_depth) : recent_(std::size_t{1} << recent_bits, 0), max_depth_(max_depth) {
  frames_.push_back({0, 0, 0});
}

uint32_t stack_pool::push(uint32_t parent, uint32_t ret) {
  const uint32_t depth = frames_[parent].depth + 1;
  if (depth > max_depth_) return too_deep;
  const uint64_t key = (uint64_t{parent} << 32) | ret;
  // A direct-mapped memo in front of the hash map: the same few frames are pushed at almost every byte.
  uint32_t& memo = recent_[(key * 0x9E3779B97F4A7C15ull) >> (64 - recent_bits)];
  if (memo < frames_.size() && frames_[memo].parent == parent && frames_[memo].ret == ret) return memo;
  const auto [it, fresh] = index_.try_emplace(key, static_cast<uint32_t>(frames_.size()));
  if (fresh) frames_.push_back({parent, ret, depth});
  memo = it->second;
  return it->second;
}

void stack_pool::rollback(std::size_t mark) {
  while (frames_.size() > mark) {
    const frame& f = frames_.back();
    index_.erase((uint64_t{f.parent} << 32) | f.ret);
    frames_.pop_back();
  }
}

pushdown_parser::pushdown_parser(const grammar_automaton& a, uint32_t max_depth) : a_(&a), pool_(max_depth) {}

parse_state pushdown_parser::initial() {
  parse_state state;
  steps_left_ = max_closure_steps;
  add_closure(a_->rule_start[a_->root_rule], stack_pool::empty, state);
  finish(state);
  return state;
}

void pushdown_parser::finish(parse_state& out) {
  if (out.configs.size() > 1) {
    std::sort(out.configs.begin(), out.configs.end());
    out.configs.erase(std::unique(out.configs.begin(), out.configs.end()), out.configs.end());
  }
  if (out.configs.size() > max_configs) {
    out.configs.resize(max_configs);
    out.cut = true;
  }
}

bool pushdown_parser::first_visit(const parse_config& c) {
  constexpr std::size_t linear = 32;
  const uint64_t key = (uint64_t{c.node} << 32) | c.stack;
  if (seen_.size() < linear) {
    if (std::find(seen_.begin(), seen_.end(), c) != seen_.end()) return false;
    seen_.push_back(c);
    if (seen_.size() == linear) {
      seen_set_.clear();
      for (const parse_config& s : seen_) seen_set_.insert((uint64_t{s.node} << 32) | s.stack);
    }
    return true;
  }
  return seen_set_.insert(key).second;
}

void pushdown_parser::add_closure(uint32_t node, uint32_t stack, parse_state& out) {
  const auto& nodes = a_->nodes;
  if (nodes[node].simple) {
    out.configs.push_back({node, stack});
    return;
  }
  work_.clear();
  seen_.clear();
  work_.push_back({node, stack});
  while (!work_.empty()) {
    const parse_config c = work_.back();
    work_.pop_back();
    if (!first_visit(c)) continue;
    if (steps_left_ == 0) {
      out.cut = true;
      return;
    }
    --steps_left_;
    const auto& nd = nodes[c.node];
    if (nd.byte_begin != nd.byte_end) out.configs.push_back(c);
    for (uint32_t k = nd.call_begin; k < nd.call_end; ++k) {
      const auto& call = a_->calls[k];
      const uint32_t pushed = pool_.push(c.stack, call.ret);
      if (pushed != stack_pool::too_deep) work_.push_back({a_->rule_start[call.rule], pushed});
    }
    if (nd.final) {
      if (c.stack == stack_pool::empty) {
        out.complete = true;
      } else {
        work_.push_back({pool_.top(c.stack), pool_.parent(c.stack)});
      }
    }
  }
}

bool pushdown_parser::advance(const parse_state& in, uint8_t byte, parse_state& out) {
  out.configs.clear();
  out.complete = false;
  out.cut = false;
  steps_left_ = max_closure_steps;
  const auto& nodes = a_->nodes;
  const auto* edges = a_->byte_edges.data();
  for (const parse_config& c : in.configs) {
    const auto& nd = nodes[c.node];
    for (uint32_t k = nd.byte_begin; k < nd.byte_end; ++k) {
      if (byte >= edges[k].lo && byte <= edges[k].hi) add_closure(edges[k].to, c.stack, out);
    }
  }
  finish(out);
  return !out.dead();
}

void pushdown_parser::key(const parse_state& state, std::string& out) const {
  std::vector<std::string> parts;
  parts.reserve(state.configs.size());
  for (const parse_config& c : state.configs) {
    std::string part;
    const auto append = [&part](uint32_t v) { part.append(reinterpret_cast<const char*>(&v), sizeof v); };
    append(c.node);
    for (uint32_t s = c.stack; s != stack_pool::empty; s = pool_.parent(s)) append(pool_.top(s));
    append(UINT32_MAX);
    parts.push_back(std::move(part));
  }
  std::sort(parts.begin(), parts.end());
  out.assign(state.complete ? "C" : "c");
  for (const auto& part : parts) out += part;
}

} // namespace troupe::structured
