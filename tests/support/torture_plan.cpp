// The torture plans: the generator, their readable form, the shrinker and the soak loop
// (tests/support/torture.hpp).

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>

#include <unistd.h>

#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/support/torture.hpp"

namespace troupe::torture {
namespace {

// Draws from a seed with this file's own arithmetic (not std:: distributions, whose results the
// standard leaves to each library), so a seed is the same plan on every machine.
class draw {
public:
  explicit draw(uint64_t seed) : g_(seed) {}
  uint64_t bits() { return g_(); }
  double unit() { return static_cast<double>(g_() >> 11) * 0x1.0p-53; }
  bool chance(double p) { return unit() < p; }
  // Uniform in [lo, hi]; lo when hi < lo.
  int32_t between(int32_t lo, int32_t hi) {
    if (hi <= lo) return lo;
    return lo + static_cast<int32_t>(g_() % static_cast<uint64_t>(hi - lo + 1));
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(between(0, static_cast<int32_t>(v.size()) - 1))];
  }

private:
  std::mt19937_64 g_;
};

std::vector<int32_t> random_tokens(draw& d, int32_t n, int32_t vocab) {
  // Now and then a tiny alphabet, so prompts repeat tokens and blocks repeat content.
  const int32_t top = d.chance(0.1) ? std::min(vocab, 4) : vocab;
  std::vector<int32_t> t(static_cast<size_t>(std::max(n, 0)));
  for (auto& x : t) x = d.between(0, top - 1);
  return t;
}

// A structured output spec as clients send them: a few choices (prefixes of each other, empty, non-ASCII), a
// regex, a small bounded JSON schema, any JSON object, or an EBNF grammar. The texts come from small pools,
// so plans share compiled grammars as a server's requests do.
structured_output random_spec(draw& d) {
  using kind = structured_output::kind;
  const double u = d.unit();
  if (u < 0.3) {
    static const std::vector<std::string> words = {"a", "ab", "abc", "yes", "no", "x y", "{}", "\\u00e9t\\u00e9", "12", ""};
    std::string text = "[";
    for (int i = d.between(1, 3); i > 0; --i) text += "\"" + d.pick(words) + "\"" + (i > 1 ? "," : "");
    return {kind::choice, text + "]"};
  }
  if (u < 0.55) {
    static const std::vector<std::string> patterns = {"[a-c]{1,5}(x|yz)", "(ab|cd)*e", "[0-9]{2,4}", "a+", "(x|y){0,3}z",
                                                      "[a-z]{3}"};
    return {kind::regex, d.pick(patterns)};
  }
  if (u < 0.8) {
    static const std::vector<std::string> schemas = {
        R"({"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":99},"b":{"type":"boolean"}},"required":["a","b"]})",
        R"({"type":"object","properties":{"name":{"type":"string","maxLength":4}},"required":["name"]})",
        R"({"enum":["red","green",3,null]})",
        R"({"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"maxItems":3})",
        R"({"type":"boolean"})"};
    return {kind::json_schema, d.pick(schemas)};
  }
  if (u < 0.92) return {kind::json_object, ""};
  return {kind::grammar, R"(root ::= ("ab" | "c")+ ".")"};
}

sampling_params random_params(draw& d, const backend& b, const engine_shape& s) {
  sampling_params p;
  const double u = d.unit();
  p.max_tokens = u < 0.1    ? 1
                 : u < 0.5  ? d.between(2, 8)
                 : u < 0.85 ? d.between(9, 40)
                 : u < 0.99 ? d.between(1, s.max_model_len)
                            : std::numeric_limits<int32_t>::max();  // the context ends it
  if (d.chance(0.55)) {
    p.temperature = 0;
  } else {
    p.temperature = static_cast<float>(d.between(3, 15)) / 10.0f;
    if (d.chance(0.2)) p.top_k = d.between(1, 50);
    if (d.chance(0.2)) p.top_p = static_cast<float>(d.between(1, 10)) / 10.0f;
    if (d.chance(0.1)) p.min_p = static_cast<float>(d.between(1, 5)) / 10.0f;
    if (d.chance(0.85)) p.seed = d.bits() >> 1;
  }
  if (d.chance(0.1)) p.repetition_penalty = static_cast<float>(d.between(8, 15)) / 10.0f;
  if (d.chance(0.05)) p.presence_penalty = static_cast<float>(d.between(-10, 10)) / 10.0f;
  if (d.chance(0.05)) p.frequency_penalty = static_cast<float>(d.between(-10, 10)) / 10.0f;
  if (d.chance(0.05))
    for (int i = d.between(1, 3); i > 0; --i) {
      const int32_t id = d.between(0, b.vocab_size - 1);
      if (std::none_of(p.logit_bias.begin(), p.logit_bias.end(), [&](const auto& e) { return e.first == id; }))
        p.logit_bias.emplace_back(id, static_cast<float>(d.between(-100, 100)));
    }
  if (d.chance(0.05)) p.logprobs = d.between(0, 3);
  if (d.chance(0.3))
    for (int i = d.between(1, 3); i > 0; --i) p.stop_token_ids.push_back(d.chance(0.6) ? d.between(0, 7) : d.between(0, b.vocab_size - 1));
  p.ignore_eos = d.chance(0.5);
  if (d.chance(0.15)) p.min_tokens = d.between(1, std::min(p.max_tokens, s.max_model_len));
  if (b.tok && d.chance(0.3)) {
    // Pieces of the vocabulary's own text, so they turn up in outputs now and then.
    for (int i = d.between(1, 2); i > 0; --i) {
      std::vector<int32_t> ids;
      for (int j = d.between(1, 2); j > 0; --j) ids.push_back(d.between(0, b.tok->vocab_size() - 1));
      std::string s = d.chance(0.3) ? std::string(1, "e a.\n"[d.between(0, 4)]) : b.tok->decode(ids, true);
      if (!s.empty()) p.stop.push_back(s);
    }
    p.include_stop_str_in_output = d.chance(0.3);
  }
  if (b.compile_grammar && d.chance(b.structured_share)) {
    p.structured = random_spec(d);
    // Any JSON object goes on for as long as it is let: a small max_tokens, as clients set one.
    if (p.structured->type == structured_output::kind::json_object && d.chance(0.8)) p.max_tokens = d.between(1, 16);
  }
  return p;
}

// Makes an arrival the engine must refuse, in one of the ways a client can get it wrong.
void spoil(draw& d, const backend& b, const engine_shape& s, arrival& a) {
  if (b.compile_grammar && d.chance(0.2)) {
    a.params.structured = structured_output{structured_output::kind::regex, "(ab"};  // the gateway would refuse it
    return;
  }
  switch (d.between(0, b.tok ? 4 : 5)) {
    case 0: a.prompt.clear(); break;
    case 1: a.prompt = random_tokens(d, s.max_model_len + d.between(0, 3), b.vocab_size); break;
    case 2: a.prompt.back() = b.vocab_size; break;
    case 3: a.params.temperature = -1; break;
    case 4: a.params.max_tokens = 0; break;
    default: a.params.stop = {"x"}; break;  // stop strings need a tokenizer
  }
}

std::string join(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (const char c : s) {
    if (c == '\n') q += "\\n";
    else if (c == '"' || c == '\\') q += std::string("\\") + c;
    else if (static_cast<unsigned char>(c) < 0x20) q += "\\x" + std::to_string(static_cast<int>(c));
    else q += c;
  }
  return q + "\"";
}

} // namespace

std::string describe(const sampling_params& p) {
  std::ostringstream o;
  o << "max_tokens " << p.max_tokens;
  if (p.greedy()) o << ", greedy";
  else o << ", temperature " << p.temperature;
  if (p.seed) o << ", seed " << *p.seed;
  if (p.top_k > 0) o << ", top_k " << p.top_k;
  if (p.top_p < 1) o << ", top_p " << p.top_p;
  if (p.min_p > 0) o << ", min_p " << p.min_p;
  if (p.repetition_penalty != 1) o << ", repetition_penalty " << p.repetition_penalty;
  if (p.presence_penalty != 0) o << ", presence_penalty " << p.presence_penalty;
  if (p.frequency_penalty != 0) o << ", frequency_penalty " << p.frequency_penalty;
  if (p.min_tokens > 0) o << ", min_tokens " << p.min_tokens;
  if (p.ignore_eos) o << ", ignore_eos";
  if (!p.stop_token_ids.empty()) o << ", stop_token_ids " << join(p.stop_token_ids);
  if (!p.stop.empty()) {
    o << ", stop [";
    for (size_t i = 0; i < p.stop.size(); ++i) o << (i ? " " : "") << quoted(p.stop[i]);
    o << "]";
  }
  if (p.include_stop_str_in_output) o << ", include_stop_str_in_output";
  for (const auto& [id, bias] : p.logit_bias) o << ", logit_bias " << id << ":" << bias;
  if (p.logprobs) o << ", logprobs " << *p.logprobs;
  if (p.structured) {
    static const char* const kinds[] = {"json_object", "json_schema", "regex", "choice", "grammar"};
    o << ", structured " << kinds[static_cast<size_t>(p.structured->type)];
    if (!p.structured->text.empty()) o << " " << quoted(p.structured->text);
  }
  return o.str();
}

plan generate(const backend& b, uint64_t seed) {
  draw d(seed * 0x9e3779b97f4a7c15ULL + 1);
  plan p;
  p.seed = seed;
  engine_shape& s = p.shape;
  s.block_size = d.pick(b.block_sizes);
  const int32_t max_blocks = static_cast<int32_t>(b.max_kv_tokens / s.block_size);
  const double ul = d.unit();
  int32_t len = ul < 0.5 ? b.max_model_len : ul < 0.9 ? d.between(8, b.max_model_len) : d.between(2, 8);
  s.max_model_len = std::max(2, std::min({len, b.max_model_len, max_blocks * s.block_size}));
  const int32_t limit = b.max_num_batched_tokens;
  double u = d.unit();
  s.max_num_batched_tokens = std::clamp(u < 0.08   ? 1
                                        : u < 0.25 ? d.between(2, 8)
                                        : u < 0.55 ? d.between(9, 64)
                                        : u < 0.8  ? d.between(1, limit)
                                                   : s.max_model_len,
                                        1, limit);
  u = d.unit();
  s.max_num_seqs = std::min(u < 0.1 ? 1 : u < 0.25 ? d.between(2, 3) : u < 0.6 ? d.between(4, 16) : b.max_num_seqs, b.max_num_seqs);
  // Room for one sequence of max_model_len, or a little more: the engine's smallest legal cache.
  const int32_t need = (s.max_model_len + s.block_size - 1) / s.block_size;
  u = d.unit();
  const int32_t extra = u < 0.25 ? 0 : u < 0.4 ? 1 : u < 0.5 ? 2 : u < 0.75 ? d.between(0, need) : d.between(0, max_blocks - need);
  s.num_blocks = std::min(need + extra, max_blocks);
  s.prefix_caching = d.chance(0.8);
  s.policy = d.chance(0.4) ? scheduling_policy::priority : scheduling_policy::fcfs;
  if (d.chance(0.15)) s.long_prefill_token_threshold = d.between(1, s.max_num_batched_tokens);
  if (d.chance(0.1)) {
    s.long_request_threshold = d.between(1, 32);
    s.long_max_fraction = d.between(1, 4) / 4.0;
  }
  s.colliding_hash = s.prefix_caching && d.chance(0.15);

  const int32_t budget = s.max_num_batched_tokens;
  const int32_t longest = std::max(1, std::min(4 * budget, s.max_model_len - 1));
  std::vector<int32_t> edges;
  for (int32_t e : {1, budget - 1, budget, budget + 1, 4 * budget, s.max_model_len - 1, s.max_model_len - 2})
    if (e >= 1 && e <= s.max_model_len - 1) edges.push_back(e);
  std::vector<std::vector<int32_t>> prefixes;
  for (int i = 0; i < 3; ++i) prefixes.push_back(random_tokens(d, s.max_model_len - 1, b.vocab_size));
  std::vector<std::vector<int32_t>> earlier;

  const int32_t num_arrivals = d.between(1, b.max_arrivals);
  int32_t tick = 0;
  for (int32_t label = 0; label < num_arrivals; ++label) {
    if (!d.chance(0.4)) tick += d.between(0, 8);
    event add;
    add.tick = tick;
    add.in_flight = d.chance(0.3);
    add.label = label;
    arrival& a = add.add;
    const int32_t n = d.chance(0.6) ? d.between(1, longest) : d.pick(edges);
    if (!earlier.empty() && d.chance(0.1)) {
      a.prompt = d.pick(earlier);  // the same prompt again: a whole-prompt cache hit
    } else if (d.chance(0.35)) {
      a.prompt = d.pick(prefixes);  // a shared prefix, then its own tokens
      a.prompt.resize(static_cast<size_t>(d.between(0, n)));
      const auto rest = random_tokens(d, n - static_cast<int32_t>(a.prompt.size()), b.vocab_size);
      a.prompt.insert(a.prompt.end(), rest.begin(), rest.end());
    } else {
      a.prompt = random_tokens(d, n, b.vocab_size);
    }
    earlier.push_back(a.prompt);
    a.params = random_params(d, b, s);
    a.n = d.chance(0.8) ? 1 : d.between(2, 4);
    a.priority = d.chance(0.02) ? (d.chance(0.5) ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max())
                                : d.between(-2, 2);
    if (d.chance(0.1)) a.cache_salt = d.chance(0.5) ? "a" : "b";
    if (d.chance(0.03)) spoil(d, b, s, a);
    p.events.push_back(add);

    if (d.chance(0.25)) {
      event abort;
      abort.kind = event_kind::abort;
      abort.label = label;
      abort.copy = d.between(0, a.n - 1);
      abort.in_flight = d.chance(0.4);
      abort.tick = tick;
      u = d.unit();
      if (u < 0.4) {
        abort.point = abort_point::at_tick;
        if (d.chance(0.5)) abort.tick += d.between(0, 10);
      } else if (u < 0.65) {
        abort.point = abort_point::mid_prefill;
      } else {
        abort.point = abort_point::after_outputs;
        abort.num_outputs = d.between(1, std::max(1, std::min(a.params.max_tokens, s.max_model_len)));
      }
      p.events.push_back(abort);
    }
    if (d.chance(0.02)) {
      event error;
      error.kind = event_kind::step_error;
      error.tick = tick + d.between(0, 10);
      p.events.push_back(error);
    }
  }
  std::stable_sort(p.events.begin(), p.events.end(), [](const event& x, const event& y) { return x.tick < y.tick; });
  return p;
}

std::string describe(const plan& p) {
  const engine_shape& s = p.shape;
  std::ostringstream o;
  o << "seed " << p.seed << ": block_size " << s.block_size << ", num_blocks " << s.num_blocks << ", max_num_seqs "
    << s.max_num_seqs << ", max_num_batched_tokens " << s.max_num_batched_tokens << ", max_model_len " << s.max_model_len
    << ", prefix caching " << (s.prefix_caching ? "on" : "off") << ", policy "
    << (s.policy == scheduling_policy::priority ? "priority" : "fcfs");
  if (s.long_prefill_token_threshold > 0) o << ", long_prefill_token_threshold " << s.long_prefill_token_threshold;
  if (s.long_request_threshold > 0)
    o << ", long_request_threshold " << s.long_request_threshold << ", long_max_fraction " << s.long_max_fraction;
  if (s.colliding_hash) o << ", a block hash that collides";
  o << "\n";
  for (const event& e : p.events) {
    o << "  tick " << e.tick << (e.in_flight ? " (in flight)" : "") << ": ";
    if (e.kind == event_kind::step_error) {
      o << "the step fails on the shards";
    } else if (e.kind == event_kind::abort) {
      o << "abort #" << e.label << "." << e.copy;
      if (e.point == abort_point::mid_prefill) o << " mid-prefill";
      if (e.point == abort_point::after_outputs) o << " after " << e.num_outputs << " outputs";
    } else {
      const arrival& a = e.add;
      o << "add #" << e.label;
      if (a.n > 1) o << " n " << a.n;
      o << " prompt (" << a.prompt.size() << ") " << join(a.prompt) << ", " << describe(a.params);
      if (a.priority != 0) o << ", priority " << a.priority;
      if (!a.cache_salt.empty()) o << ", cache_salt " << quoted(a.cache_salt);
    }
    o << "\n";
  }
  return o.str();
}

run_stats& run_stats::operator+=(const run_stats& o) {
  num_steps += o.num_steps;
  num_requests += o.num_requests;
  num_refused += o.num_refused;
  num_aborted += o.num_aborted;
  num_failed += o.num_failed;
  num_stopped += o.num_stopped;
  num_preemptions += o.num_preemptions;
  num_cached_tokens += o.num_cached_tokens;
  num_compared += o.num_compared;
  num_constrained += o.num_constrained;
  num_grammar_complete += o.num_grammar_complete;
  return *this;
}

namespace {

// The kind of violation: the failure text up to its first colon.
std::string kind_of(const std::string& failure) { return failure.substr(0, failure.find(':')); }

// Smaller versions of one event, simplest first.
std::vector<event> simpler(const event& e, const std::vector<event>& events, size_t index) {
  std::vector<event> out;
  auto with = [&](auto change) {
    event c = e;
    change(c);
    out.push_back(c);
  };
  if (e.in_flight) with([](event& c) { c.in_flight = false; });
  if (e.tick > 0) with([](event& c) { c.tick = 0; });
  if (index > 0 && events[index - 1].tick < e.tick) with([&](event& c) { c.tick = events[index - 1].tick; });
  if (e.tick > 0) with([](event& c) { --c.tick; });
  if (e.kind == event_kind::step_error) return out;
  if (e.kind == event_kind::abort) {
    if (e.point != abort_point::at_tick) with([](event& c) { c.point = abort_point::at_tick; });
    if (e.point == abort_point::after_outputs && e.num_outputs > 1) with([](event& c) { c.num_outputs /= 2; });
    return out;
  }
  const arrival& a = e.add;
  const sampling_params& p = a.params;
  if (a.n > 1) with([](event& c) { c.add.n = 1; });
  if (a.n > 2) with([](event& c) { --c.add.n; });
  if (a.prompt.size() > 1) {
    with([](event& c) { c.add.prompt.resize(c.add.prompt.size() / 2); });
    with([](event& c) { c.add.prompt.erase(c.add.prompt.begin(), c.add.prompt.begin() + c.add.prompt.size() / 2); });
    with([](event& c) { c.add.prompt.pop_back(); });
  }
  if (p.max_tokens > 1) {
    with([](event& c) { c.add.params.max_tokens = 1; });
    with([](event& c) { c.add.params.max_tokens /= 2; });
    with([](event& c) { --c.add.params.max_tokens; });
  }
  if (!p.greedy()) with([](event& c) { c.add.params.temperature = 0; });
  if (p.top_k > 0 || p.top_p < 1 || p.min_p > 0)
    with([](event& c) { c.add.params.top_k = 0, c.add.params.top_p = 1, c.add.params.min_p = 0; });
  if (p.repetition_penalty != 1 || p.presence_penalty != 0 || p.frequency_penalty != 0 || !p.logit_bias.empty() || p.logprobs)
    with([](event& c) {
      auto& q = c.add.params;
      q.repetition_penalty = 1, q.presence_penalty = 0, q.frequency_penalty = 0, q.logit_bias.clear(), q.logprobs.reset();
    });
  if (!p.stop.empty()) with([](event& c) { c.add.params.stop.clear(), c.add.params.include_stop_str_in_output = false; });
  if (!p.stop_token_ids.empty()) with([](event& c) { c.add.params.stop_token_ids.clear(); });
  if (p.min_tokens > 0) with([](event& c) { c.add.params.min_tokens = 0; });
  if (p.structured) with([](event& c) { c.add.params.structured.reset(); });
  if (!p.ignore_eos) with([](event& c) { c.add.params.ignore_eos = true; });
  if (a.priority != 0) with([](event& c) { c.add.priority = 0; });
  if (!a.cache_salt.empty()) with([](event& c) { c.add.cache_salt.clear(); });
  return out;
}

// Simpler versions of the limits: features off, then each limit moved one way only (so shrinking ends):
// caps that stop mattering (more sequences, a budget of a whole context), a cache and a context no
// larger than the plan needs.
std::vector<engine_shape> simpler(const engine_shape& s, const backend& b, const std::vector<event>& events) {
  std::vector<engine_shape> out;
  auto with = [&](auto change) {
    engine_shape c = s;
    change(c);
    out.push_back(c);
  };
  if (s.prefix_caching) with([](engine_shape& c) { c.prefix_caching = false, c.colliding_hash = false; });
  if (s.colliding_hash) with([](engine_shape& c) { c.colliding_hash = false; });
  if (s.policy != scheduling_policy::fcfs) with([](engine_shape& c) { c.policy = scheduling_policy::fcfs; });
  if (s.long_prefill_token_threshold) with([](engine_shape& c) { c.long_prefill_token_threshold = 0; });
  if (s.long_request_threshold) with([](engine_shape& c) { c.long_request_threshold = 0; });
  if (s.max_num_seqs < b.max_num_seqs) with([&](engine_shape& c) { c.max_num_seqs = b.max_num_seqs; });
  const int32_t roomy_budget = std::min(b.max_num_batched_tokens, s.max_model_len);
  if (s.max_num_batched_tokens < roomy_budget) with([&](engine_shape& c) { c.max_num_batched_tokens = roomy_budget; });
  int32_t longest = 1;
  for (const event& e : events)
    if (e.kind == event_kind::add) longest = std::max(longest, static_cast<int32_t>(e.add.prompt.size()));
  const auto need = [&](int32_t len) { return (len + s.block_size - 1) / s.block_size; };
  if (s.max_model_len > longest + 1)
    with([&](engine_shape& c) {
      c.max_model_len = longest + 1;
      c.max_num_batched_tokens = std::min(c.max_num_batched_tokens, c.max_model_len);
    });
  if (s.num_blocks > need(s.max_model_len)) {
    with([&](engine_shape& c) { c.num_blocks = need(s.max_model_len); });
    with([&](engine_shape& c) { c.num_blocks = (s.num_blocks + need(s.max_model_len)) / 2; });
  }
  return out;
}

} // namespace

plan harness::shrink(const plan& failing, std::chrono::seconds budget, int* num_runs) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  const std::string kind = kind_of(run(failing).failure);
  int runs = 1;
  plan best = failing;
  auto fails = [&](const plan& candidate) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    ++runs;
    const std::string f = run(candidate).failure;
    return !f.empty() && kind_of(f) == kind;
  };
  for (bool changed = true; changed && std::chrono::steady_clock::now() < deadline;) {
    changed = false;
    // Whole events: halves, quarters, ... then one at a time.
    for (size_t chunk = std::max<size_t>(best.events.size() / 2, 1); chunk >= 1; chunk /= 2) {
      for (size_t i = 0; i < best.events.size();) {
        plan c = best;
        c.events.erase(c.events.begin() + static_cast<std::ptrdiff_t>(i),
                       c.events.begin() + static_cast<std::ptrdiff_t>(std::min(i + chunk, c.events.size())));
        if (fails(c)) {
          best = std::move(c);
          changed = true;
        } else {
          i += chunk;
        }
      }
      if (chunk == 1) break;
    }
    // Each event made simpler, as long as it still fails.
    for (size_t i = 0; i < best.events.size(); ++i)
      for (bool again = true; again;) {
        again = false;
        for (const event& e : simpler(best.events[i], best.events, i)) {
          plan c = best;
          c.events[i] = e;
          if (fails(c)) {
            best = std::move(c);
            changed = again = true;
            break;
          }
        }
      }
    for (const engine_shape& s : simpler(best.shape, config(), best.events)) {
      plan c = best;
      c.shape = s;
      if (fails(c)) {
        best = std::move(c);
        changed = true;
      }
    }
  }
  if (num_runs) *num_runs = runs;
  return best;
}

namespace {

// What a crash prints on its way out: the seed that was running.
char crash_note[512];
size_t crash_note_size = 0;

void on_crash(int sig) {
  [[maybe_unused]] const auto written = ::write(2, crash_note, crash_note_size);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

constexpr int crash_signals[] = {SIGFPE, SIGSEGV, SIGBUS, SIGILL, SIGABRT};

// Reports crashes with crash_note while it lives, then puts the handlers it found back.
class crash_reporter {
public:
  crash_reporter() {
    for (size_t i = 0; i < std::size(crash_signals); ++i) previous_[i] = std::signal(crash_signals[i], on_crash);
  }
  ~crash_reporter() {
    for (size_t i = 0; i < std::size(crash_signals); ++i) std::signal(crash_signals[i], previous_[i]);
  }
  crash_reporter(const crash_reporter&) = delete;
  crash_reporter& operator=(const crash_reporter&) = delete;

  void running(const std::string& backend, uint64_t seed) {
    const unsigned long long s = seed;
    const int n = std::snprintf(crash_note, sizeof crash_note,
                                "\nengine torture on %s: crashed while running seed %llu. Replay it with TORTURE_SEED=%llu, "
                                "and shrink it with TORTURE_SEED=%llu TORTURE_ISOLATE=1 (each run in a child process).\n",
                                backend.c_str(), s, s, s);
    crash_note_size = n > 0 ? std::min(static_cast<size_t>(n), sizeof crash_note - 1) : 0;
  }

private:
  void (*previous_[std::size(crash_signals)])(int);
};

} // namespace

soak_result soak(harness& h, uint64_t first_seed, int64_t num_steps, std::chrono::seconds max_time, bool only_one,
                 std::chrono::seconds shrink_budget) {
  soak_result out;
  crash_reporter crashes;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t seed = first_seed;; ++seed) {
    const plan p = generate(h.config(), seed);
    crashes.running(h.config().name, seed);
    const run_result r = h.run(p);
    out.stats += r.stats;
    ++out.num_plans;
    if (!r.failure.empty()) {
      int runs = 0;
      const plan small = h.shrink(p, shrink_budget, &runs);
      const std::string small_failure = h.run(small).failure;
      std::ostringstream o;
      o << "engine torture on " << h.config().name << ": seed " << seed << " fails: " << r.failure << "\n"
        << "The smallest plan found that fails the same way (" << small.events.size() << " of " << p.events.size()
        << " events, " << runs << " runs to shrink):\n"
        << describe(small) << "It fails with: " << small_failure << "\n"
        << "Replay the seed with TORTURE_SEED=" << seed << ".";
      out.failure = o.str();
      return out;
    }
    if (only_one || out.stats.num_steps >= num_steps || std::chrono::steady_clock::now() - start >= max_time) return out;
  }
}

} // namespace troupe::torture
