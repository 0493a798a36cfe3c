// Thompson construction per rule, then epsilon elimination, then the checks a pushdown run needs: no rule
// may reach itself without consuming a byte (the run would push forever).

#include "runtime/structured/grammar_automaton.hpp"
#include "runtime/structured/grammar_limits.hpp"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <stdexcept>

namespace troupe::structured {
namespace {


struct thompson {
  struct tnode {
    std::vector<uint32_t> eps;
    std::vector<grammar_automaton::byte_edge> bytes;
    std::vector<grammar_automaton::call_edge> calls;
  };
  const grammar& g;
  std::string_view what;
  std::vector<tnode> nodes;
  std::vector<uint8_t> inline_rule;  // by rule: compiled into its callers instead of called

  // NOTE: expanded_states() bounded the count before the first node was made.
  uint32_t make() {
    nodes.emplace_back();
    return static_cast<uint32_t>(nodes.size() - 1);
  }

  // Compiles expression id from node start; returns the node where it ends.
  uint32_t emit(int32_t id, uint32_t start) {
    const grammar_expr& e = g.expr(id);
    switch (e.type) {
    case grammar_expr::kind::empty: return start;
    case grammar_expr::kind::literal: {
      uint32_t cur = start;
      for (const char c : e.text) {
        const uint32_t next = make();
        const auto b = static_cast<uint8_t>(c);
        nodes[cur].bytes.push_back({b, b, next});
        cur = next;
      }
      return cur;
    }
    case grammar_expr::kind::byte_class: {
      const uint32_t end = make();
      for (int b = 0; b < 256;) {
        if (!e.bytes.test(b)) {
          ++b;
          continue;
        }
        int hi = b;
        while (hi + 1 < 256 && e.bytes.test(hi + 1)) ++hi;
        nodes[start].bytes.push_back({static_cast<uint8_t>(b), static_cast<uint8_t>(hi), end});
        b = hi + 1;
      }
      return end;
    }
    case grammar_expr::kind::sequence: {
      uint32_t cur = start;
      for (const int32_t item : e.items) cur = emit(item, cur);
      return cur;
    }
    case grammar_expr::kind::choice: {
      const uint32_t end = make();
      for (const int32_t item : e.items) {
        const uint32_t s = make();
        nodes[start].eps.push_back(s);
        const uint32_t f = emit(item, s);
        nodes[f].eps.push_back(end);
      }
      return end;
    }
    case grammar_expr::kind::repeat: {
      uint32_t cur = start;
      for (int32_t i = 0; i < e.min; ++i) cur = emit(e.items[0], cur);
      if (e.max == unbounded) {
        const uint32_t loop = make();
        nodes[cur].eps.push_back(loop);
        const uint32_t f = emit(e.items[0], loop);
        nodes[f].eps.push_back(loop);
        return loop;
      }
      const uint32_t end = make();
      nodes[cur].eps.push_back(end);
      for (int32_t i = e.min; i < e.max; ++i) {
        cur = emit(e.items[0], cur);
        nodes[cur].eps.push_back(end);
      }
      return end;
    }
    case grammar_expr::kind::rule_ref: {
      if (!g.has_body(e.rule))
        throw std::invalid_argument(std::string(what) + ": rule '" + g.rule_name(e.rule) + "' is used but not defined");
      if (inline_rule[e.rule]) return emit(g.rule_body(e.rule), start);
      const uint32_t end = make();
      nodes[start].calls.push_back({static_cast<uint32_t>(e.rule), end});
      return end;
    }
    }
    return start;
  }
};

// The epsilon closure of n (n included), in a reused buffer.
void closure_of(const std::vector<thompson::tnode>& nodes, uint32_t n, std::vector<uint32_t>& out,
                std::vector<uint32_t>& mark, uint32_t stamp) {
  out.clear();
  out.push_back(n);
  mark[n] = stamp;
  for (std::size_t i = 0; i < out.size(); ++i) {
    for (const uint32_t next : nodes[out[i]].eps) {
      if (mark[next] == stamp) continue;
      mark[next] = stamp;
      out.push_back(next);
    }
  }
}

// order: the rules callees first (order_rules), so that nullability settles in about one pass.
void check_left_recursion(const grammar_automaton& a, const std::vector<int32_t>& order, std::string_view what) {
  const std::size_t num_rules = a.rule_start.size();
  // Nodes reachable from a rule's start without consuming, through calls to nullable rules.
  const auto walk = [&](uint32_t rule, const std::vector<uint8_t>& nullable, auto&& on_call) {
    std::vector<uint32_t> todo{a.rule_start[rule]};
    std::vector<uint32_t> seen{a.rule_start[rule]};
    bool reaches_final = false;
    while (!todo.empty()) {
      const uint32_t n = todo.back();
      todo.pop_back();
      const auto& nd = a.nodes[n];
      reaches_final |= nd.final;
      for (uint32_t c = nd.call_begin; c < nd.call_end; ++c) {
        on_call(a.calls[c].rule);
        if (nullable[a.calls[c].rule] && std::find(seen.begin(), seen.end(), a.calls[c].ret) == seen.end()) {
          seen.push_back(a.calls[c].ret);
          todo.push_back(a.calls[c].ret);
        }
      }
    }
    return reaches_final;
  };
  std::vector<uint8_t> nullable(num_rules, 0);
  for (bool changed = true; changed;) {
    changed = false;
    for (const int32_t rule : order) {
      const auto r = static_cast<uint32_t>(rule);
      if (!nullable[r] && walk(r, nullable, [](uint32_t) {})) {
        nullable[r] = 1;
        changed = true;
      }
    }
  }
  std::vector<std::vector<uint32_t>> left_calls(num_rules);
  for (uint32_t r = 0; r < num_rules; ++r) walk(r, nullable, [&](uint32_t callee) { left_calls[r].push_back(callee); });
  // Depth-first search for a cycle: 0 unvisited, 1 on the path, 2 done.
  std::vector<uint8_t> color(num_rules, 0);
  const auto visit = [&](auto&& self, uint32_t r) -> void {
    color[r] = 1;
    for (const uint32_t callee : left_calls[r]) {
      if (color[callee] == 1)
        throw std::invalid_argument(std::string(what) + ": rule '" + a.rule_names[callee] +
                                    "' is left-recursive (it can reach itself without consuming input); "
                                    "write the repetition with * or + instead");
      if (color[callee] == 0) self(self, callee);
    }
    color[r] = 2;
  };
  for (uint32_t r = 0; r < num_rules; ++r) {
    if (color[r] == 0) visit(visit, r);
  }
}

// The rules in an order where each comes after the rules it calls (but for calls within a cycle), and which
// of them are recursive: Tarjan's strongly connected components, without recursion, so that a chain of
// thousands of rules (an object's properties, a generated EBNF) costs linear time and no deep stack.
struct rule_graph {
  std::vector<int32_t> callees_first;
  std::vector<uint8_t> recursive;
};

rule_graph order_rules(const grammar& g) {
  const auto n = static_cast<std::size_t>(g.num_rules());
  std::vector<std::vector<int32_t>> callees(n);
  std::vector<uint32_t> mark(static_cast<std::size_t>(g.num_exprs()), 0);  // expressions may be shared
  std::vector<int32_t> todo;
  for (std::size_t r = 0; r < n; ++r) {
    if (!g.has_body(static_cast<int32_t>(r))) continue;
    todo.assign(1, g.rule_body(static_cast<int32_t>(r)));
    while (!todo.empty()) {
      const int32_t id = todo.back();
      todo.pop_back();
      if (mark[id] == r + 1) continue;
      mark[id] = static_cast<uint32_t>(r + 1);
      const grammar_expr& e = g.expr(id);
      if (e.type == grammar_expr::kind::rule_ref) callees[r].push_back(e.rule);
      for (const int32_t item : e.items) todo.push_back(item);
    }
  }
  rule_graph out;
  out.recursive.assign(n, 0);
  std::vector<int32_t> index(n, -1), low(n, 0), stack;
  std::vector<uint8_t> on_stack(n, 0);
  std::vector<std::pair<int32_t, std::size_t>> calls;  // the depth-first path: rule, next callee to visit
  int32_t next_index = 0;
  const auto enter = [&](int32_t v) {
    index[v] = low[v] = next_index++;
    stack.push_back(v);
    on_stack[v] = 1;
    calls.emplace_back(v, 0);
  };
  for (std::size_t root = 0; root < n; ++root) {
    if (index[root] >= 0) continue;
    enter(static_cast<int32_t>(root));
    while (!calls.empty()) {
      const int32_t v = calls.back().first;
      if (calls.back().second < callees[v].size()) {
        const int32_t w = callees[v][calls.back().second++];
        if (w == v) out.recursive[v] = 1;
        if (index[w] < 0) {
          enter(w);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
        continue;
      }
      if (low[v] == index[v]) {  // v roots a component: pop it
        const std::size_t begin = out.callees_first.size();
        int32_t w;
        do {
          w = stack.back();
          stack.pop_back();
          on_stack[w] = 0;
          out.callees_first.push_back(w);
        } while (w != v);
        if (out.callees_first.size() - begin > 1)
          for (std::size_t i = begin; i < out.callees_first.size(); ++i) out.recursive[out.callees_first[i]] = 1;
      }
      calls.pop_back();
      if (!calls.empty()) low[calls.back().first] = std::min(low[calls.back().first], low[v]);
    }
  }
  return out;
}

// Rules small enough and not recursive are compiled into their callers: a call costs a stack frame and a
// closure step at every byte that enters or leaves it (a JSON string's characters, whitespace).
constexpr std::size_t max_inline_size = 160;

std::vector<uint8_t> rules_to_inline(const grammar& g, const rule_graph& graph) {
  const auto n = static_cast<std::size_t>(g.num_rules());
  constexpr std::size_t too_big = SIZE_MAX / 4;
  std::vector<std::size_t> size(n, 0);
  std::vector<uint8_t> inline_rule(n, 0);
  // Within one rule's body; a callee's size is known (it comes first) or it is not inlined.
  const auto expr_size = [&](auto&& self, int32_t id) -> std::size_t {
    const grammar_expr& e = g.expr(id);
    switch (e.type) {
    case grammar_expr::kind::empty: return 0;
    case grammar_expr::kind::literal: return e.text.size();
    case grammar_expr::kind::byte_class: return 1;
    case grammar_expr::kind::sequence:
    case grammar_expr::kind::choice: {
      std::size_t total = 2;
      for (const int32_t item : e.items) total = std::min(too_big, total + self(self, item));
      return total;
    }
    case grammar_expr::kind::repeat: {
      const std::size_t copies = e.max == unbounded ? static_cast<std::size_t>(e.min) + 1 : static_cast<std::size_t>(e.max);
      return std::min(too_big, self(self, e.items[0]) * std::max<std::size_t>(copies, 1) + 1);
    }
    case grammar_expr::kind::rule_ref: return inline_rule[e.rule] ? size[e.rule] : 1;
    }
    return 1;
  };
  for (const int32_t r : graph.callees_first) {
    if (!g.has_body(r) || graph.recursive[r]) continue;
    size[r] = expr_size(expr_size, g.rule_body(r));
    inline_rule[r] = size[r] <= max_inline_size ? 1 : 0;
  }
  return inline_rule;
}

// The Thompson states emit() will make for each expression, bounded repeats expanded, counted without making
// them, so that (a{1000}){1000} is refused in microseconds instead of after a million nodes.
class expansion {
public:
  expansion(const grammar& g, const std::vector<uint8_t>& inline_rule)
      : g_(g), inline_rule_(inline_rule), memo_(static_cast<std::size_t>(g.num_exprs()), unknown) {}

  // Throws std::invalid_argument naming the repeat that passes limits::max_automaton_states.
  void check(std::string_view what) {
    std::size_t total = 0;
    for (int32_t r = 0; r < g_.num_rules(); ++r) {
      total = add(total, 1 + (g_.has_body(r) ? states(g_.rule_body(r)) : 0));
      if (total > limits::max_automaton_states) fail(what);
    }
  }

private:
  static constexpr std::size_t unknown = SIZE_MAX;
  static constexpr std::size_t saturated = SIZE_MAX / 2;
  static std::size_t add(std::size_t a, std::size_t b) { return std::min(saturated, a + b); }
  static std::size_t times(std::size_t a, std::size_t n) { return n != 0 && a > saturated / n ? saturated : a * n; }

  [[noreturn]] void fail(std::string_view what) const {
    std::string message = std::string(what) + ": the spec expands to more than " +
                          std::to_string(limits::max_automaton_states) + " automaton states (limit)";
    if (first_too_big_) {
      const grammar_expr& e = *first_too_big_;
      message += "; use a smaller bound than {" + std::to_string(e.min) +
                 (e.max == e.min ? std::string() : "," + (e.max == unbounded ? std::string() : std::to_string(e.max))) +
                 "} (nested repetition counts multiply)";
    }
    throw std::invalid_argument(message);
  }

  std::size_t states(int32_t id) {
    auto& memo = memo_[static_cast<std::size_t>(id)];
    if (memo != unknown) return memo;
    const grammar_expr& e = g_.expr(id);
    std::size_t n = 0;
    switch (e.type) {
    case grammar_expr::kind::empty: break;
    case grammar_expr::kind::literal: n = e.text.size(); break;
    case grammar_expr::kind::byte_class: n = 1; break;
    case grammar_expr::kind::sequence:
      for (const int32_t item : e.items) n = add(n, states(item));
      break;
    case grammar_expr::kind::choice:
      n = 1;
      for (const int32_t item : e.items) n = add(n, 1 + states(item));
      break;
    case grammar_expr::kind::repeat: {
      const std::size_t item = states(e.items[0]);
      const std::size_t copies = e.max == unbounded ? static_cast<std::size_t>(e.min) + 1 : static_cast<std::size_t>(e.max);
      n = add(times(item, copies), 2);
      if (n > limits::max_automaton_states && !first_too_big_) first_too_big_ = &e;
      break;
    }
    case grammar_expr::kind::rule_ref:
      // An inlined rule is not recursive (rules_to_inline), so this ends.
      n = g_.has_body(e.rule) && inline_rule_[e.rule] ? states(g_.rule_body(e.rule)) : 1;
      break;
    }
    return memo = n;
  }

  const grammar& g_;
  const std::vector<uint8_t>& inline_rule_;
  std::vector<std::size_t> memo_;
  const grammar_expr* first_too_big_ = nullptr;  // the innermost repeat past the limit
};

// Nodes with the same finality and the same edges (to the same nodes) match the same bytes, so they become
// one; repeated, so chains of equal nodes fold from their ends. Fewer nodes, and parses that were equal but
// for a node id become equal: more mask cache hits, and more subtrees allowed whole.
grammar_automaton merge_equivalent_nodes(grammar_automaton a) {
  using edge = grammar_automaton::byte_edge;
  using call = grammar_automaton::call_edge;
  const auto n = static_cast<uint32_t>(a.nodes.size());
  // Union-find over nodes; a worklist rechecks a node when one of its successors was merged away.
  std::vector<uint32_t> rep(n);
  for (uint32_t i = 0; i < n; ++i) rep[i] = i;
  const auto find = [&](uint32_t i) {
    while (rep[i] != i) i = rep[i] = rep[rep[i]];
    return i;
  };
  std::vector<std::vector<uint32_t>> preds(n);
  for (uint32_t i = 0; i < n; ++i) {
    const auto& nd = a.nodes[i];
    for (uint32_t k = nd.byte_begin; k < nd.byte_end; ++k) preds[a.byte_edges[k].to].push_back(i);
    for (uint32_t k = nd.call_begin; k < nd.call_end; ++k) preds[a.calls[k].ret].push_back(i);
  }
  std::unordered_map<std::string, uint32_t> table;
  std::vector<uint32_t> work(n);
  std::vector<uint8_t> queued(n, 1);
  for (uint32_t i = 0; i < n; ++i) work[i] = n - 1 - i;
  std::string sig;
  std::vector<edge> edges;
  std::vector<call> calls;
  while (!work.empty()) {
    const uint32_t i = work.back();
    work.pop_back();
    queued[i] = 0;
    if (find(i) != i) continue;
    const auto& nd = a.nodes[i];
    edges.assign(a.byte_edges.begin() + nd.byte_begin, a.byte_edges.begin() + nd.byte_end);
    for (auto& e : edges) e.to = find(e.to);
    std::sort(edges.begin(), edges.end());
    edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
    calls.assign(a.calls.begin() + nd.call_begin, a.calls.begin() + nd.call_end);
    for (auto& c : calls) c.ret = find(c.ret);
    std::sort(calls.begin(), calls.end());
    calls.erase(std::unique(calls.begin(), calls.end()), calls.end());
    sig.assign(1, nd.final ? 'F' : 'f');
    for (const auto& e : edges) {
      sig.append(reinterpret_cast<const char*>(&e.lo), 1).append(reinterpret_cast<const char*>(&e.hi), 1);
      sig.append(reinterpret_cast<const char*>(&e.to), sizeof e.to);
    }
    sig += '|';
    for (const auto& c : calls) {
      sig.append(reinterpret_cast<const char*>(&c.rule), sizeof c.rule).append(reinterpret_cast<const char*>(&c.ret), sizeof c.ret);
    }
    // NOTE: an entry may outlive a change of its node's edges; a merge through it is still sound, since
    // every merge joins nodes that match the same bytes.
    auto [it, fresh] = table.try_emplace(sig, i);
    if (fresh) continue;
    const uint32_t into = find(it->second);
    if (into == i) continue;
    it->second = into;
    rep[i] = into;
    for (const uint32_t p : preds[i]) {
      if (!queued[p]) {
        queued[p] = 1;
        work.push_back(p);
      }
    }
    preds[into].insert(preds[into].end(), preds[i].begin(), preds[i].end());
  }
  for (uint32_t i = 0; i < n; ++i) rep[i] = find(i);
  // Renumber the representatives and rebuild.
  std::vector<uint32_t> id(n, UINT32_MAX);
  grammar_automaton out;
  for (uint32_t i = 0; i < n; ++i) {
    if (rep[i] != i) continue;
    id[i] = static_cast<uint32_t>(out.nodes.size());
    out.nodes.push_back(a.nodes[i]);
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (rep[i] != i) continue;
    auto& nd = out.nodes[id[i]];
    const auto& old = a.nodes[i];
    nd.byte_begin = static_cast<uint32_t>(out.byte_edges.size());
    for (uint32_t k = old.byte_begin; k < old.byte_end; ++k) {
      edge e = a.byte_edges[k];
      e.to = id[rep[e.to]];
      if (std::find_if(out.byte_edges.begin() + nd.byte_begin, out.byte_edges.end(), [&](const edge& x) {
            return x.lo == e.lo && x.hi == e.hi && x.to == e.to;
          }) == out.byte_edges.end())
        out.byte_edges.push_back(e);
    }
    nd.byte_end = static_cast<uint32_t>(out.byte_edges.size());
    nd.call_begin = static_cast<uint32_t>(out.calls.size());
    for (uint32_t k = old.call_begin; k < old.call_end; ++k) {
      call c = a.calls[k];
      c.ret = id[rep[c.ret]];
      if (std::find_if(out.calls.begin() + nd.call_begin, out.calls.end(), [&](const call& x) {
            return x.rule == c.rule && x.ret == c.ret;
          }) == out.calls.end())
        out.calls.push_back(c);
    }
    nd.call_end = static_cast<uint32_t>(out.calls.size());
  }
  for (const uint32_t start : a.rule_start) out.rule_start.push_back(id[rep[start]]);
  out.rule_names = std::move(a.rule_names);
  out.root_rule = a.root_rule;
  return out;
}

} // namespace

grammar_automaton compile_automaton(const grammar& g, std::string_view what) {
  if (g.root < 0 || !g.has_body(g.root)) throw std::invalid_argument(std::string(what) + ": the grammar has no root rule");
  if (g.num_rules() > limits::max_rules)
    throw std::invalid_argument(std::string(what) + ": the spec makes more than " + std::to_string(limits::max_rules) +
                                " grammar rules (limit); use fewer rules, properties or '$ref' targets");
  const rule_graph graph = order_rules(g);
  thompson t{g, what, {}, rules_to_inline(g, graph)};
  expansion(g, t.inline_rule).check(what);
  std::vector<uint32_t> start(g.num_rules()), accept(g.num_rules()), first_node(g.num_rules() + 1);
  for (int32_t r = 0; r < g.num_rules(); ++r) {
    first_node[r] = static_cast<uint32_t>(t.nodes.size());
    start[r] = t.make();
    accept[r] = g.has_body(r) ? t.emit(g.rule_body(r), start[r]) : start[r];
  }
  first_node[g.num_rules()] = static_cast<uint32_t>(t.nodes.size());

  // Keep the starts and every node an edge enters; each inherits the edges of its epsilon closure.
  const std::size_t n = t.nodes.size();
  std::vector<uint32_t> kept(n, UINT32_MAX);
  std::vector<uint32_t> order;
  const auto keep = [&](uint32_t node) {
    if (kept[node] != UINT32_MAX) return;
    kept[node] = static_cast<uint32_t>(order.size());
    order.push_back(node);
  };
  for (int32_t r = 0; r < g.num_rules(); ++r) keep(start[r]);
  for (const auto& node : t.nodes) {
    for (const auto& e : node.bytes) keep(e.to);
    for (const auto& c : node.calls) keep(c.ret);
  }
  grammar_automaton a;
  a.nodes.resize(order.size());
  std::vector<uint32_t> closure, mark(n, 0);
  uint32_t stamp = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    const uint32_t old = order[i];
    const auto rule = static_cast<std::size_t>(std::upper_bound(first_node.begin(), first_node.end(), old) - first_node.begin() - 1);
    closure_of(t.nodes, old, closure, mark, ++stamp);
    auto& nd = a.nodes[i];
    nd.byte_begin = static_cast<uint32_t>(a.byte_edges.size());
    nd.call_begin = static_cast<uint32_t>(a.calls.size());
    std::vector<grammar_automaton::byte_edge> edges;
    for (const uint32_t c : closure) {
      for (const auto& e : t.nodes[c].bytes) edges.push_back({e.lo, e.hi, kept[e.to]});
      for (const auto& call : t.nodes[c].calls) {
        const grammar_automaton::call_edge mapped{call.rule, kept[call.ret]};
        bool dup = false;
        for (uint32_t k = nd.call_begin; k < a.calls.size(); ++k) dup |= a.calls[k].rule == mapped.rule && a.calls[k].ret == mapped.ret;
        if (!dup) a.calls.push_back(mapped);
      }
      nd.final |= c == accept[rule];
    }
    std::sort(edges.begin(), edges.end(), [](const auto& x, const auto& y) {
      return x.to != y.to ? x.to < y.to : x.lo < y.lo;
    });
    for (const auto& e : edges) {  // merge touching ranges that go to one node
      auto& out = a.byte_edges;
      if (out.size() > nd.byte_begin && out.back().to == e.to && e.lo <= out.back().hi + 1) {
        out.back().hi = std::max(out.back().hi, e.hi);
      } else {
        out.push_back(e);
      }
    }
    nd.byte_end = static_cast<uint32_t>(a.byte_edges.size());
    nd.call_end = static_cast<uint32_t>(a.calls.size());
    if (a.byte_edges.size() + a.calls.size() > limits::max_automaton_edges)
      throw std::invalid_argument(std::string(what) + ": the spec's automaton has more than " +
                                  std::to_string(limits::max_automaton_edges) +
                                  " edges (limit); an optional part repeated many times, as (a?){1000}, costs the "
                                  "square of the count: write a{0,1000} instead");
    nd.simple = !nd.final && nd.call_begin == nd.call_end;
  }
  for (int32_t r = 0; r < g.num_rules(); ++r) {
    a.rule_start.push_back(kept[start[r]]);
    a.rule_names.push_back(g.rule_name(r));
  }
  a.root_rule = static_cast<uint32_t>(g.root);
  check_left_recursion(a, graph.callees_first, what);
  return merge_equivalent_nodes(std::move(a));
}

} // namespace troupe::structured
