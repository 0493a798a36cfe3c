// The engine under seeded, random traffic (tests/support/torture.hpp): arrivals with prompts up to 4x
// the step budget, n > 1, greedy and seeded sampling, stop strings and stop tokens, aborts before,
// during and after prefill, shared prefixes, priorities, a KV cache that forces preemption, and limits
// at their edges, and (with a tokenizer) structured outputs: choices, regexes, JSON schemas and objects, EBNF;
// every invariant checked after every step.
//
//   TORTURE_STEPS=N   each test runs plans until N steps ran (default: the counts below)
//   TORTURE_SEED=S    each test runs the plan of seed S alone
//   TORTURE_STRUCTURED=F the share of requests constrained by a structured output spec, on backends with
//                     a tokenizer (default 0.3; 1: every request)
//   TORTURE_ISOLATE=1 each plan runs in a child process, so a crash shrinks like any other failure
//                     (with TORTURE_SEED, in a process that runs one test: --gtest_filter)
// A failing seed prints the smallest plan found that still fails, and the seed to replay; a crash prints
// the seed it was running.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include <unistd.h>

#include "kernels/cpu/cpu_ops.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/random_model.hpp"
#include "runtime/tokenizer/tokenizer.hpp"
#include "tests/support/scoped_value.hpp"
#include "tests/support/torture.hpp"

using namespace troupe;
using namespace troupe::torture;
namespace fs = std::filesystem;

namespace {

fs::path reference_dir(const std::string& name) { return fs::path(TROUPE_TEST_DATA) / "reference" / name; }

// A model as small as the built-in default model's kind gets (random weights, a trained byte-level BPE
// tokenizer, so stop strings have text to stop on), in f32, made once per test program.
const fs::path& tiny_model_with_tokenizer() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("troupe-torture-model-" + std::to_string(::getpid()));
    make_model_options o;
    o.hidden_size = 32;
    o.num_layers = 2;
    o.num_heads = 2;
    o.num_kv_heads = 1;
    o.intermediate_size = 64;
    o.max_position_embeddings = 256;
    o.dtype = "float32";
    o.seed = 7;
    write_random_model(o, d);
    return d;
  }();
  return dir;
}

struct cleanup_tiny_model : ::testing::Environment {
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("troupe-torture-model-" + std::to_string(::getpid())), ec);
  }
};
const auto* const cleanup = ::testing::AddGlobalTestEnvironment(new cleanup_tiny_model);

// The steps each test runs: TORTURE_STEPS, else its default.
int64_t steps_or(int64_t default_steps) {
  if (const char* s = std::getenv("TORTURE_STEPS"); s && *s) return std::stoll(s);
  return default_steps;
}

// Runs plans on `h` until `default_steps` steps ran (or TORTURE_STEPS, or only TORTURE_SEED's plan).
soak_result run_torture(harness& h, int64_t default_steps, uint64_t first_seed) {
  const int64_t steps = steps_or(default_steps);
  if (const char* s = std::getenv("TORTURE_STRUCTURED"); s && *s) h.structured_share(std::stod(s));
  if (const char* s = std::getenv("TORTURE_ISOLATE"); s && *s && *s != '0') h.isolate_runs(true);
  bool only_one = false;
  if (const char* s = std::getenv("TORTURE_SEED"); s && *s) {
    first_seed = std::stoull(s);
    only_one = true;
  }
  soak_result r = soak(h, first_seed, steps, std::chrono::hours(24), only_one);
  if (!r.failure.empty()) {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    r.failure += " This test alone: --gtest_filter=" + std::string(test->test_suite_name()) + "." + test->name();
  }
  const run_stats& s = r.stats;
  std::printf("%s: %lld plans, %lld steps, %lld requests (%lld refused, %lld aborted, %lld failed by a step, %lld "
              "stopped), %lld compared, %lld preemptions, %lld prompt tokens from the prefix cache, %lld constrained (%lld ended "
              "by their grammar)\n",
              h.config().name.c_str(), static_cast<long long>(r.num_plans), static_cast<long long>(s.num_steps),
              static_cast<long long>(s.num_requests), static_cast<long long>(s.num_refused),
              static_cast<long long>(s.num_aborted), static_cast<long long>(s.num_failed), static_cast<long long>(s.num_stopped),
              static_cast<long long>(s.num_compared), static_cast<long long>(s.num_preemptions),
              static_cast<long long>(s.num_cached_tokens), static_cast<long long>(s.num_constrained),
              static_cast<long long>(s.num_grammar_complete));
  return r;
}

backend null_backend(std::string name, int32_t vocab_size, std::vector<int32_t> eos, const tokenizer* tok) {
  backend b;
  b.name = std::move(name);
  b.vocab_size = vocab_size;
  b.max_model_len = 512;
  b.eos_token_ids = std::move(eos);
  b.tok = tok;
  b.block_sizes = {1, 2, 4, 16, 16, 16, 32};
  b.max_num_batched_tokens = 512;
  b.max_num_seqs = 256;
  b.max_kv_tokens = 8192;
  b.max_arrivals = 40;
  return b;
}

} // namespace

TEST(engine_torture, the_null_backend_keeps_every_invariant_over_thousands_of_steps) {
  harness h(null_backend("null backend", 384, {2}, nullptr));
  const soak_result r = run_torture(h, 40000, 1);
  EXPECT_EQ(r.failure, "");
  if (!std::getenv("TORTURE_SEED")) {
    EXPECT_GE(r.stats.num_steps, steps_or(40000));
    // The traffic reaches what it is meant to reach.
    EXPECT_GT(r.stats.num_preemptions, 0);
    EXPECT_GT(r.stats.num_aborted, 0);
    EXPECT_GT(r.stats.num_refused, 0);
    EXPECT_GT(r.stats.num_failed, 0);
    EXPECT_GT(r.stats.num_cached_tokens, 0);
  }
}

TEST(engine_torture, the_null_backend_with_a_tokenizer_ends_requests_on_stop_strings_as_they_end_alone) {
  const tokenizer tok = tokenizer::from_file(tiny_model_with_tokenizer() / "tokenizer.json");
  const model_config config = model_config::from_dir(tiny_model_with_tokenizer());
  harness h(null_backend("null backend with a tokenizer", static_cast<int32_t>(config.vocab_size), config.eos_token_ids, &tok));
  const soak_result r = run_torture(h, 15000, 1001);
  EXPECT_EQ(r.failure, "");
  if (!std::getenv("TORTURE_SEED")) {
    EXPECT_GT(r.stats.num_stopped, 0);
    // With a tokenizer, a share of the requests is constrained; the null backend samples inside their masks.
    EXPECT_GT(r.stats.num_constrained, 0);
    EXPECT_GT(r.stats.num_grammar_complete, 0);
  }
}

TEST(engine_torture, the_cpu_model_gives_each_request_its_output_alone_under_any_traffic) {
  cpu_ops cpu;
  checkpoint_models models(cpu, reference_dir("llama_f32"), dtype::f32, model_room{});
  harness h(models.make_backend("cpu llama_f32", {16, 16, 8, 32}));
  const soak_result r = run_torture(h, 25000, 2001);
  EXPECT_EQ(r.failure, "");
  if (!std::getenv("TORTURE_SEED")) {
    EXPECT_GE(r.stats.num_steps, steps_or(25000));
    EXPECT_GT(r.stats.num_compared, 0);
    EXPECT_GT(r.stats.num_preemptions, 0);
  }
}

// The same traffic over the 8-bit and 4-bit forms the engine serves (--kv-cache-dtype fp8_e4m3 / fp8_e5m2,
// --quantization fp8 and rtn, and rtn in its FP8 form at every step): K and V stored as codes and read back through
// prefix sharing, preemption and recompute, activations quantized per token. Every form computes each row alone, so each request must still get
// its output alone, and a code written twice (recompute after preemption, a shared prefix) must be the same code.
TEST(engine_torture, fp8_and_4_bit_models_give_each_request_its_output_alone_under_any_traffic) {
  struct variant {
    const char* name;
    std::optional<dtype> kv;
    const char* quantization;
    int64_t int4_fp8_rows = 0;  // the 4-bit weights' FP8 form (int4_fp8_rows()) from this many rows; 1: every step
  };
  for (const variant& v : {variant{"kv fp8_e4m3", dtype::f8_e4m3, ""}, variant{"kv fp8_e5m2", dtype::f8_e5m2, ""},
                           variant{"fp8 weights + kv fp8_e4m3", dtype::f8_e4m3, "fp8"}, variant{"rtn", std::nullopt, "rtn"},
                           variant{"rtn in the FP8 form", std::nullopt, "rtn", 1}}) {
    const troupe::testing::scoped_value<int64_t> form(int4_fp8_rows(), v.int4_fp8_rows);
    cpu_ops cpu;
    model_room room;
    room.kv_cache_type = v.kv;
    room.quantization = v.quantization;
    checkpoint_models models(cpu, reference_dir("llama_f32"), dtype::f32, room);
    harness h(models.make_backend(std::string("cpu llama_f32 ") + v.name, {16, 8}));
    const soak_result r = run_torture(h, 2500, 2101);
    EXPECT_EQ(r.failure, "") << v.name;
    if (!std::getenv("TORTURE_SEED")) {
      EXPECT_GE(r.stats.num_steps, steps_or(2500)) << v.name;
      EXPECT_GT(r.stats.num_compared, 0) << v.name;
      EXPECT_GT(r.stats.num_preemptions, 0) << v.name;
    }
  }
}

// The model split over tensor-parallel shards (threads, as `-tp N` runs them on the CPU), under the same
// traffic: every shard samples what shard 0 samples at every step, and each request still gets its output
// alone. Two shards split llama_f32's two KV heads; four replicate llama3's one (and its q/k/v/o biases).
TEST(engine_torture, a_model_split_over_shards_keeps_every_invariant_and_the_shards_agree) {
  for (const auto& [checkpoint, tp] : {std::pair<std::string, int>{"llama_f32", 2}, {"llama3_rope_bf16", 4}}) {
    std::vector<cpu_ops> shard_backends(static_cast<size_t>(tp));
    std::vector<ops*> shard_ops;
    for (auto& b : shard_backends) shard_ops.push_back(&b);
    checkpoint_models models(shard_backends[0], reference_dir(checkpoint), dtype::f32, model_room{});
    harness h(models.make_split_backend("cpu " + checkpoint + " over " + std::to_string(tp) + " shards", {16, 8}, shard_ops));
    const soak_result r = run_torture(h, 3000, 3001);
    EXPECT_EQ(r.failure, "") << checkpoint;
    if (!std::getenv("TORTURE_SEED")) {
      EXPECT_GE(r.stats.num_steps, steps_or(3000));
      EXPECT_GT(r.stats.num_compared, 0);
    }
  }
}

// What the GPU check does on CUDA (tools/gpu_check_torture.cpp), where batches change rounding: each greedy
// token is checked against a reference model's logits for its history. On the CPU nothing rounds
// differently, so the tolerance is 0.
TEST(engine_torture, greedy_tokens_are_the_best_of_a_reference_models_logits_for_their_history) {
  cpu_ops cpu;
  checkpoint_models models(cpu, reference_dir("llama_f32"), dtype::f32, model_room{});
  model_room one_sequence;
  one_sequence.max_num_batched_tokens = 256;
  one_sequence.max_num_seqs = 1;
  one_sequence.max_kv_tokens = 256 + 64;
  checkpoint_models reference(cpu, reference_dir("llama_f32"), dtype::f32, one_sequence);
  backend b = models.make_backend("cpu llama_f32 against a reference", {16, 32});
  b.reference_for = [&](int32_t block_size) { return reference.get(block_size); };
  harness h(b);
  const soak_result r = run_torture(h, 10000, 4001);
  EXPECT_EQ(r.failure, "");
  if (!std::getenv("TORTURE_SEED")) {
    EXPECT_GT(r.stats.num_compared, 0);
  }
}

TEST(engine_torture, the_cpu_model_with_a_tokenizer_stops_on_strings_as_it_would_alone) {
  cpu_ops cpu;
  checkpoint_models models(cpu, tiny_model_with_tokenizer(), dtype::f32, model_room{});
  harness h(models.make_backend("cpu tiny model with a tokenizer", {16}));
  const soak_result r = run_torture(h, 20000, 3001);
  EXPECT_EQ(r.failure, "");
  if (!std::getenv("TORTURE_SEED")) {
    // Constrained requests (choices, regexes, JSON schemas and objects, EBNF) among the others: each token
    // inside its grammar, each one run alone the same.
    EXPECT_GT(r.stats.num_constrained, 0);
    EXPECT_GT(r.stats.num_grammar_complete, 0);
    EXPECT_GT(r.stats.num_compared, 0);
  }
}

// The grammar invariant can fail: a backend that bends a constrained row's token after sampling (on the steps
// that carry its params) is caught as a token outside its grammar, and shrinks to one constrained request.
TEST(engine_torture, a_token_outside_its_grammar_fails_the_run_and_shrinks_to_one_constrained_request) {
  const tokenizer tok = tokenizer::from_file(tiny_model_with_tokenizer() / "tokenizer.json");
  const model_config config = model_config::from_dir(tiny_model_with_tokenizer());
  const auto vocab = static_cast<int32_t>(config.vocab_size);
  backend b = null_backend("null backend that bends a constrained token", vocab, config.eos_token_ids, &tok);
  b.fault = [vocab](const step_plan& plan, step_result& result) {
    size_t row = 0;
    for (const scheduled_seq& s : plan.seqs) {
      if (!s.sample) continue;
      if (s.params.structured) result.tokens[row] = (result.tokens[row] + 1) % vocab;
      ++row;
    }
  };
  harness h(b);
  uint64_t seed = 1;
  run_result first;
  while ((first = h.run(generate(h.config(), seed))).failure.empty()) ++seed;
  // The run alone of the constrained request is the first to see it.
  EXPECT_NE(first.failure.find("grammar: "), std::string::npos) << first.failure;
  EXPECT_NE(first.failure.find("is not allowed by its grammar there"), std::string::npos) << first.failure;
  const plan small = h.shrink(generate(h.config(), seed), std::chrono::seconds(60));
  int32_t requests = 0;
  for (const event& e : small.events)
    if (e.kind == event_kind::add) {
      requests += e.add.n;
      EXPECT_TRUE(e.add.params.structured.has_value()) << describe(small);
    }
  EXPECT_EQ(requests, 1) << describe(small);
  EXPECT_NE(h.run(small).failure.find("grammar: "), std::string::npos);
}

TEST(engine_torture, a_failing_plan_shrinks_to_the_events_that_make_it_fail_and_prints_its_seed) {
  // A backend that breaks only when two sequences sample in one step: a request run alone never sees it.
  backend b = null_backend("null backend that breaks with company", 384, {2}, nullptr);
  b.fault = [](const step_plan&, step_result& result) {
    if (result.tokens.size() >= 2) result.tokens[1] = (result.tokens[1] + 1) % 384;
  };
  harness h(b);
  uint64_t seed = 1;
  while (h.run(generate(b, seed)).failure.empty()) ++seed;
  const soak_result r = soak(h, seed, 1, std::chrono::seconds(60), true);
  ASSERT_NE(r.failure, "");
  EXPECT_NE(r.failure.find("seed " + std::to_string(seed) + " fails: alone:"), std::string::npos) << r.failure;
  EXPECT_NE(r.failure.find("Replay the seed with TORTURE_SEED=" + std::to_string(seed)), std::string::npos) << r.failure;
  // Two requests must share a step: two adds (or one with n 2), nothing else.
  const plan small = h.shrink(generate(b, seed), std::chrono::seconds(60));
  int32_t requests = 0;
  for (const event& e : small.events) requests += e.kind == event_kind::add ? e.add.n : 0;
  EXPECT_EQ(requests, 2) << describe(small);
  EXPECT_NE(h.run(small).failure, "");
}
