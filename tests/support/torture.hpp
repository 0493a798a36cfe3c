#pragma once
// The engine torture test's harness, shared by tests/engine_torture_test.cpp (null and CPU backends)
// and troupe_gpu_check (CUDA): seeded plans of traffic (arrivals, aborts, engine limits at their
// edges), driven through engine_core and model_runner step by step as the scheduler and shard actors
// chain them, with the engine's invariants checked after every step, and a shrinker that turns a
// failing plan into the shortest one that still fails.
//
// A run is a pure function of (backend, plan): the plan holds the engine's limits and a list of
// events at ticks (engine steps), so removing events or simplifying them replays deterministically.
//
// Checked after every step (run() returns the first violation):
//   - each request ends exactly once (finished, or aborted by abort()), or is refused at add with a
//     message; nothing arrives for it afterwards, and an abort after its end returns nothing;
//   - a plan stays within max_num_batched_tokens, max_num_seqs and the prefill chunk cap, schedules only
//     live requests, once each, with the tokens of their history and a block table equal to the KV
//     manager's; the shards are told to forget every sequence that ended or was preempted;
//   - the KV cache holds what each sequence reads: the harness keeps a shadow cache in which each slot
//     holds a hash of the tokens up to it (as real KV depends on them), written by each step through the
//     plan's block tables, and every position a step's sequence attends to must hold its own history's
//     hash (no stale, overwritten or foreign block; a cache_salt isolates);
//   - block reference counts equal the tables that hold them (kv_cache_manager::check_consistency), the
//     live requests' tables add up to the pool's counts, and every block is free again at the end;
//   - outputs: one token per sampled sequence, in the plan's order, the token the step sampled; finish
//     reasons that match the tokens (max_tokens, max_model_len, EOS, stop_token_ids, stop strings);
//   - structured outputs: each constrained request's tokens, replayed through a fresh grammar_matcher, are
//     each allowed by the grammar's bitmask at that point and accepted up to its termination, and one that
//     ends on EOS (not on a stop string, a stop token id or a length) left its grammar complete; the
//     sampling shard's constraint_table holds a matcher for exactly the constrained sequences the shards hold;
//   - greedy requests and sampled ones with a seed produce what the same request produces run alone
//     (exact backends: tokens, text and finish reason), or, on a backend whose arithmetic depends on the
//     batch (CUDA), each greedy token is the best of a CPU reference's logits for the same history within
//     a tolerance;
//   - every plan comes back the same from the wire codec that carries it to the other ranks;
//   - a step that fails on the shards fails exactly its requests, with an error, and the engine goes on;
//   - no exception escapes, and the engine never sits with work it does not schedule.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/sampling_params.hpp"
#include "runtime/engine/scheduler.hpp"
#include "runtime/engine/step_plan.hpp"

#include "runtime/model/dtype.hpp"
#include "runtime/model/model_config.hpp"

namespace troupe {
class model;
class ops;
class tokenizer;
} // namespace troupe

namespace troupe::torture {

// The engine's limits for one run; part of the plan.
struct engine_shape {
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
  int32_t max_model_len = 0;
  bool prefix_caching = true;
  scheduling_policy policy = scheduling_policy::fcfs;
  int32_t long_prefill_token_threshold = 0;
  int32_t long_request_threshold = 0;
  double long_max_fraction = 0.75;
  bool colliding_hash = false;  // a block hash with a handful of values: the prefix cache must confirm every hit
};

// One client request: n engine requests with the same prompt; copy c's seed is seed + c, as the gateway
// sets it.
struct arrival {
  std::vector<int32_t> prompt;
  sampling_params params;
  int32_t n = 1;
  int32_t priority = 0;
  std::string cache_salt;
};

enum class abort_point : uint8_t {
  at_tick,        // when the event's tick comes (before its first step, when added at the same tick)
  mid_prefill,    // after a step that computed part of its prompt (or of its recomputation) and sampled nothing
  after_outputs,  // once it has num_outputs tokens
};

enum class event_kind : uint8_t {
  add,         // an arrival
  abort,       // a client's abort
  step_error,  // the step of this tick (or the next to run) fails on the shards after computing: its
               // requests end with an error, as the scheduler actor fails them, and the engine goes on
};

struct event {
  event_kind kind = event_kind::add;
  int32_t tick = 0;        // engine steps since the start; idle ticks pass at once
  bool in_flight = false;  // applied while the tick's step runs (after schedule, before update), as a
                           // message that reaches the scheduler actor while the shards compute
  int32_t label = 0;       // the arrival's name; its requests' ids are label * 8 + copy
  arrival add;             // add
  int32_t copy = 0;        // abort: which of the arrival's requests
  abort_point point = abort_point::at_tick;
  int32_t num_outputs = 0;  // after_outputs
};

struct plan {
  uint64_t seed = 0;
  engine_shape shape;
  std::vector<event> events;  // in tick order
};

// Which model computes the steps, and what the plans may ask of it.
struct backend {
  std::string name;
  int32_t vocab_size = 0;
  int32_t max_model_len = 0;  // the model's context; plans use at most this
  std::vector<int32_t> eos_token_ids;
  const tokenizer* tok = nullptr;  // null: no stop strings
  std::vector<int32_t> block_sizes = {16};
  // What the models were built for; plans stay within.
  int32_t max_num_batched_tokens = 256;
  int32_t max_num_seqs = 64;
  int64_t max_kv_tokens = 4096;  // num_blocks * block_size
  // The model for a block size, built with the limits above; null everywhere: the null backend, whose
  // tokens the harness draws from the shadow cache (a token that depends on the history the step read,
  // the sequence's seed and its output index), so outputs still mean something.
  std::function<model*(int32_t block_size)> model_for;
  // Set instead of model_for: a model split over tensor-parallel shards, one model per shard. Each step then
  // runs on every shard at once (one runner and one thread each, as the shard actors do), and every shard
  // must sample what shard 0 samples.
  std::function<std::vector<model*>(int32_t block_size)> shards_for;
  // Set: greedy tokens are checked against this CPU model's logits (teacher-forced, within
  // argmax_tolerance times the row's largest magnitude) instead of against the request run alone. It
  // needs room for one sequence of max_model_len tokens in one step.
  std::function<model*(int32_t block_size)> reference_for;
  float argmax_tolerance = 0;
  int32_t max_arrivals = 24;  // per plan
  // Structured outputs: a spec's compiled grammar over this backend's vocabulary. The harness sets it for a
  // backend with a tokenizer (so plans then constrain a share of their requests), or leaves what is set.
  std::function<std::shared_ptr<const compiled_grammar>(const structured_output&)> compile_grammar;
  double structured_share = 0.3;  // of the requests, when compile_grammar is set
  // For the harness's own tests: changes what a step sampled, as a broken backend would.
  std::function<void(const step_plan& plan, step_result& result)> fault;
};

// What the models of a backend are built for; plans stay within it.
struct model_room {
  int32_t max_model_len = 256;
  int32_t max_num_batched_tokens = 256;
  int32_t max_num_seqs = 64;
  int64_t max_kv_tokens = 4096;  // num_blocks * block_size
  std::optional<dtype> kv_cache_type;  // --kv-cache-dtype: the model's dtype when unset, or an FP8 type
  std::string quantization;            // --quantization (fp8, rtn): the linear weights kept in that form
};

// One checkpoint's models on one compute backend: one per block size, made when a plan first asks for
// it (and warmed up, so a GPU records its decode graphs before the first plan's step).
class checkpoint_models {
public:
  checkpoint_models(ops& compute, std::filesystem::path dir, dtype type, model_room room);
  ~checkpoint_models();

  // The model with this block size. Throws what loading the checkpoint throws.
  model* get(int32_t block_size);
  // The model with this block size split over shard_ops.size() tensor-parallel shards (threads joined by
  // the thread communicator, each on its own backend), each loading only its slices.
  std::vector<model*> get_split(int32_t block_size, const std::vector<ops*>& shard_ops);
  // A torture backend over these models: the checkpoint's vocabulary, EOS ids (the tokenizer's too, as
  // the engine adds it) and tokenizer, the room's limits (max_model_len at most the checkpoint's).
  backend make_backend(std::string name, std::vector<int32_t> block_sizes);
  // The same over the model split over shard_ops.size() shards (get_split): a backend with shards_for.
  backend make_split_backend(std::string name, std::vector<int32_t> block_sizes, std::vector<ops*> shard_ops);
  const model_config& config() const { return config_; }

private:
  ops& compute_;
  std::filesystem::path dir_;
  dtype type_;
  model_room room_;
  model_config config_;
  std::unique_ptr<tokenizer> tok_;
  std::map<int32_t, std::unique_ptr<model>> models_;
  struct split;  // one block size's shards: their communicators, plans and models
  std::map<int32_t, std::unique_ptr<split>> splits_;
};

// A plan from a seed: limits at their edges, arrivals, aborts.
plan generate(const backend& b, uint64_t seed);

// The plan in a readable form, one event a line.
std::string describe(const plan& p);
// The parameters a request sets, in one line.
std::string describe(const sampling_params& p);

struct run_stats {
  int64_t num_steps = 0;
  int64_t num_requests = 0;
  int64_t num_refused = 0;
  int64_t num_aborted = 0;
  int64_t num_failed = 0;     // by a step that failed
  int64_t num_stopped = 0;    // finish reason stop
  int64_t num_preemptions = 0;
  int64_t num_cached_tokens = 0;
  int64_t num_compared = 0;   // requests checked against their run alone (or the reference's logits)
  int64_t num_constrained = 0;      // constrained requests whose outputs were replayed through their grammar
  int64_t num_grammar_complete = 0;  // of those, ended by their grammar (EOS once the grammar was complete)
  run_stats& operator+=(const run_stats& o);
};

struct run_result {
  std::string failure;  // "" when every invariant held
  run_stats stats;
};

// Runs plans on one backend; remembers the run-alone outputs it computes, so replays during shrinking
// are cheap.
class harness {
public:
  explicit harness(backend b);
  ~harness();

  run_result run(const plan& p);

  // Runs each plan in a child process, so that a crash (a signal) is a failure like any other, and
  // shrinks. NOTE: only for a process that has run no OpenMP region and no GPU work yet: neither libgomp's
  // threads nor a CUDA context survive fork(). The models are made in each child.
  void isolate_runs(bool on) { isolated_ = on; }
  // The share of each plan's requests that carry a structured output spec (backends with a tokenizer).
  void structured_share(double share) { backend_.structured_share = share; }

  // The smallest plan that fails the way `failing` does (the same kind of violation): events removed
  // in halves, then one by one, then simplified (shorter prompts, fewer tokens, no options), and the
  // limits relaxed, while it still fails. Stops after `budget`.
  plan shrink(const plan& failing, std::chrono::seconds budget, int* num_runs = nullptr);

  const backend& config() const { return backend_; }

  struct output;  // a request's tokens, text and finish, as run alone

private:
  // The request run alone: a roomy engine, nothing else in it.
  const output& alone(const engine_shape& shape, const arrival& a, uint64_t seed);
  run_result run_in_child(const plan& p);

  backend backend_;
  bool isolated_ = false;
  std::map<std::string, std::unique_ptr<output>> alone_;
};

struct soak_result {
  run_stats stats;
  int64_t num_plans = 0;
  std::string failure;  // the first failing seed, its violation and its shrunk plan; "" when none failed
};

// Runs the plans of seeds first_seed, first_seed + 1, ... until num_steps steps ran or max_time passed
// (only first_seed when only_one). The first failure is shrunk (for at most shrink_budget) and reported.
// A crash in this process prints the seed it was running, and how to shrink it (TORTURE_ISOLATE=1), on
// its way out.
soak_result soak(harness& h, uint64_t first_seed, int64_t num_steps, std::chrono::seconds max_time, bool only_one,
                 std::chrono::seconds shrink_budget = std::chrono::seconds(60));

} // namespace troupe::torture
