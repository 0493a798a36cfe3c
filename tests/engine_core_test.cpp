// The engine's bookkeeping driving the real CPU model: continuous batching must not change any
// request's output, the prefix cache must save exactly the shared blocks, preemption must not change
// what a request produces.

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "kernels/model_runner.hpp"
#include "runtime/engine/engine_core.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/choice_constraint.hpp"

using namespace troupe;

namespace {

struct setup {
  int32_t max_num_seqs = 64;
  int32_t max_num_batched_tokens = 256;
  int32_t num_blocks = 256;
  bool prefix_caching = false;
  int32_t long_request_threshold = 0;
};

class engine_fixture {
public:
  explicit engine_fixture(const setup& s) {
    const auto dir = std::filesystem::path(TROUPE_TEST_DATA) / "reference" / "llama_f32";
    config_ = model_config::from_dir(dir);
    const checkpoint ckpt = checkpoint::open(dir);
    model_limits limits;
    limits.max_num_tokens = s.max_num_batched_tokens;
    limits.max_num_seqs = s.max_num_seqs;
    limits.max_model_len = config_.max_position_embeddings;
    limits.block_size = 16;
    limits.num_blocks = s.num_blocks;
    model_ = std::make_unique<model>(config_, ops_, load_model_weights(config_, ops_, dtype::f32, checkpoint_weight_source(ckpt, config_)),
                                     dtype::f32, limits);
    runner_ = std::make_unique<model_runner>(model_.get(), 16, config_.vocab_size, config_.eos_token_ids);
    engine_config ec;
    ec.sched.max_num_seqs = s.max_num_seqs;
    ec.sched.max_num_batched_tokens = s.max_num_batched_tokens;
    ec.sched.max_model_len = static_cast<int32_t>(config_.max_position_embeddings);
    ec.kv.num_blocks = s.num_blocks;
    ec.kv.block_size = 16;
    ec.kv.enable_prefix_caching = s.prefix_caching;
    ec.sched.long_request_threshold = s.long_request_threshold;
    ec.vocab_size = static_cast<int32_t>(config_.vocab_size);
    ec.eos_token_ids = config_.eos_token_ids;
    // The test-only choice constraint's parser stands for the grammar compiler.
    ec.compile_structured = [](const structured_output& spec) { troupe::testing::choice_constraint::parse(spec.text); };
    core_ = std::make_unique<engine_core>(ec, nullptr, 1);
  }

  void add(request_id id, std::vector<int32_t> prompt, sampling_params p) {
    ASSERT_EQ(core_->add({id, std::move(prompt), std::move(p), 0, {}}), "");
  }

  // Runs one step; records outputs.
  void step() {
    const step_plan plan = core_->schedule();
    for (const auto& out : core_->update(plan, runner_->execute(plan))) {
      auto& tokens = outputs_[out.id];
      tokens.insert(tokens.end(), out.new_token_ids.begin(), out.new_token_ids.end());
      if (out.finished) finished_[out.id] = out;
    }
  }
  void run() {
    while (core_->has_work()) step();
  }

  engine_core& core() { return *core_; }
  // Structured outputs with the test-only choice constraint (tests/support/choice_constraint.hpp).
  void constrain() { runner_->enable_constraints(troupe::testing::choice_constraint::factory(config_.eos_token_ids)); }
  const model_runner& runner() const { return *runner_; }
  std::map<request_id, std::vector<int32_t>> outputs_;
  std::map<request_id, request_output> finished_;

private:
  model_config config_;
  cpu_ops ops_;
  std::unique_ptr<model> model_;
  std::unique_ptr<model_runner> runner_;
  std::unique_ptr<engine_core> core_;
};

std::vector<int32_t> random_prompt(std::mt19937& rng, int32_t n) {
  std::vector<int32_t> p(n);
  for (auto& t : p) t = static_cast<int32_t>(rng() % 384);
  return p;
}

sampling_params greedy(int32_t max_tokens) {
  sampling_params p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

} // namespace

TEST(engine_core, sixty_four_concurrent_requests_each_produce_their_output_alone) {
  std::mt19937 rng(5);
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> max_tokens;
  for (int i = 0; i < 64; ++i) {
    prompts.push_back(random_prompt(rng, 3 + static_cast<int32_t>(rng() % 150)));
    max_tokens.push_back(1 + static_cast<int32_t>(rng() % 24));
  }
  engine_fixture batched(setup{});
  for (int i = 0; i < 64; ++i) batched.add(i, prompts[i], greedy(max_tokens[i]));
  batched.run();
  for (int i = 0; i < 64; ++i) {
    engine_fixture alone(setup{});
    alone.add(i, prompts[i], greedy(max_tokens[i]));
    alone.run();
    ASSERT_EQ(batched.outputs_[i], alone.outputs_[i]) << "request " << i;
    EXPECT_EQ(batched.finished_[i].reason, finish_reason::length);
    EXPECT_EQ(batched.outputs_[i].size(), static_cast<size_t>(max_tokens[i]));
  }
  EXPECT_EQ(batched.core().kv().num_free_blocks(), 256);
}

TEST(engine_core, a_shared_200_token_prefix_is_computed_once) {
  std::mt19937 rng(9);
  const std::vector<int32_t> prefix = random_prompt(rng, 200);
  setup s;
  s.prefix_caching = true;
  engine_fixture cached(s);
  constexpr int n = 16;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i) {
    auto p = prefix;
    const auto suffix = random_prompt(rng, 10 + i);
    p.insert(p.end(), suffix.begin(), suffix.end());
    prompts.push_back(p);
  }
  // The first request's prefix must be computed (and its blocks cached) before the others arrive.
  cached.add(0, prompts[0], greedy(4));
  cached.step();
  for (int i = 1; i < n; ++i) cached.add(i, prompts[i], greedy(4));
  cached.run();

  int64_t all_prompt_tokens = 0;
  for (const auto& p : prompts) all_prompt_tokens += static_cast<int64_t>(p.size());
  const int64_t shared_full_blocks = 200 / 16;  // 12 blocks, 192 tokens
  EXPECT_EQ(cached.core().stats().num_computed_prompt_tokens, all_prompt_tokens - (n - 1) * shared_full_blocks * 16);
  EXPECT_EQ(cached.core().stats().num_cached_prompt_tokens, (n - 1) * shared_full_blocks * 16);
  EXPECT_EQ(cached.finished_[5].num_cached_tokens, 192);

  engine_fixture uncached(setup{});
  for (int i = 0; i < n; ++i) uncached.add(i, prompts[i], greedy(4));
  uncached.run();
  EXPECT_EQ(uncached.core().stats().num_computed_prompt_tokens, all_prompt_tokens);
  for (int i = 0; i < n; ++i) EXPECT_EQ(cached.outputs_[i], uncached.outputs_[i]) << "request " << i;
}

TEST(engine_core, a_preempted_request_resumes_to_the_output_it_would_have_produced_alone) {
  std::mt19937 rng(3);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(random_prompt(rng, 20 + 5 * i));
  auto params = [](int i) {
    sampling_params p;
    p.temperature = 0.9f;  // sampled, seeded: resuming must not change the random draws either
    p.seed = 100 + i;
    p.max_tokens = 40;
    p.ignore_eos = true;
    return p;
  };
  setup tight;
  tight.num_blocks = 16;  // 256 tokens for 8 requests that grow to 415: they cannot all stay
  engine_fixture squeezed(tight);
  for (int i = 0; i < 8; ++i) squeezed.add(i, prompts[i], params(i));
  squeezed.run();
  EXPECT_GT(squeezed.core().stats().num_preemptions, 0);
  for (int i = 0; i < 8; ++i) {
    engine_fixture alone(setup{});
    alone.add(i, prompts[i], params(i));
    alone.run();
    EXPECT_EQ(squeezed.outputs_[i], alone.outputs_[i]) << "request " << i;
  }
  EXPECT_EQ(squeezed.core().kv().num_free_blocks(), 16);
}

TEST(engine_core, sampling_on_the_backend_draws_the_tokens_the_host_sampler_draws) {
  // With logprobs the shard downloads the logits and runs sample_cpu (the path every sampled step took
  // before the backend sampled); without, the backend's sample op runs. Same seeds, same tokens.
  std::mt19937 rng(21);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back(random_prompt(rng, 5 + 7 * i));
  auto params = [](int i, bool logprobs) {
    sampling_params p;
    p.temperature = i % 4 == 0 ? 0.0f : 0.6f + 0.1f * static_cast<float>(i % 5);
    p.top_k = i % 3 == 1 ? 20 : 0;
    p.top_p = i % 3 == 2 ? 0.8f : 1.0f;
    p.min_p = i % 5 == 3 ? 0.05f : 0.0f;
    p.repetition_penalty = i % 2 ? 1.3f : 1.0f;
    p.frequency_penalty = i % 6 == 5 ? 0.4f : 0.0f;
    p.presence_penalty = i % 7 == 6 ? 0.3f : 0.0f;
    if (i % 4 == 2) p.logit_bias = {{static_cast<int32_t>(10 + i), 3.0f}};
    p.min_tokens = i % 3 == 0 ? 5 : 0;
    p.seed = 700 + i;
    p.max_tokens = 24;
    if (logprobs) p.logprobs = 0;
    return p;
  };
  engine_fixture host(setup{}), backend(setup{});
  for (int i = 0; i < 12; ++i) {
    host.add(i, prompts[i], params(i, true));
    backend.add(i, prompts[i], params(i, false));
  }
  host.run();
  backend.run();
  for (int i = 0; i < 12; ++i) {
    EXPECT_FALSE(backend.outputs_[i].empty());
    EXPECT_EQ(backend.outputs_[i], host.outputs_[i]) << "request " << i;
  }
}

// Structured outputs through the whole engine on the CPU model: constrained and unconstrained requests in
// one batch, prompts prefilled in chunks, preemption and recompute, one abort. Each constrained request emits
// exactly one of its choices and stops on the end id ("stop"), and draws the tokens it draws alone.
TEST(engine_core, constrained_requests_emit_one_of_their_choices_through_chunked_prefill_and_preemption) {
  std::mt19937 rng(9);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(random_prompt(rng, 20 + 5 * i));
  // Long choices, so the batch outgrows 16 blocks; they share prefixes, so the draws decide.
  std::vector<std::string> specs;
  for (int i = 0; i < 4; ++i) {
    std::string a, b;
    for (int t = 0; t < 30; ++t) {
      a += std::to_string(100 + t + i) + " ";
      b += std::to_string(t < 10 ? 100 + t + i : 200 + t) + " ";
    }
    specs.push_back(a + "|" + b + "|" + std::to_string(300 + i));
  }
  auto params = [&](int i) {
    sampling_params p;
    p.temperature = 1.0f;
    p.seed = 40 + i;
    p.max_tokens = 40;
    if (i % 2 == 0) p.structured = structured_output{structured_output::kind::choice, specs[static_cast<size_t>(i / 2)]};
    else p.ignore_eos = true;
    return p;
  };
  setup tight;
  tight.num_blocks = 16;
  tight.max_num_batched_tokens = 24;  // prompts of 20-55 tokens prefill over several steps
  engine_fixture squeezed(tight);
  squeezed.constrain();
  for (int i = 0; i < 8; ++i) squeezed.add(i, prompts[i], params(i));
  squeezed.add(8, prompts[0], params(0));
  for (int s = 0; s < 3; ++s) squeezed.step();
  ASSERT_TRUE(squeezed.core().abort(8).has_value());
  squeezed.run();
  EXPECT_GT(squeezed.core().stats().num_preemptions, 0);
  EXPECT_EQ(squeezed.runner().constraints()->num_refused(), 0);
  EXPECT_EQ(squeezed.runner().constraints()->num_constraints(), 0u);  // finished and aborted ones forgotten
  for (int i = 0; i < 8; i += 2) {
    const auto choices = troupe::testing::choice_constraint::parse(specs[static_cast<size_t>(i / 2)]);
    std::vector<int32_t> out = squeezed.outputs_[i];
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back(), 2) << "request " << i << " ends on the end id";
    out.pop_back();
    EXPECT_NE(std::find(choices.begin(), choices.end(), out), choices.end()) << "request " << i;
    EXPECT_EQ(squeezed.finished_[i].reason, finish_reason::stop);
    engine_fixture alone(setup{});
    alone.constrain();
    alone.add(i, prompts[i], params(i));
    alone.run();
    EXPECT_EQ(squeezed.outputs_[i], alone.outputs_[i]) << "request " << i;
  }
  for (int i = 1; i < 8; i += 2) EXPECT_EQ(squeezed.outputs_[i].size(), 40u);
}

// ignore_eos past a completed grammar, as vLLM runs it: its scheduler never stops a request for its grammar,
// and a grammar that accepted its end id gets the full mask. The end id comes once, then the output runs on
// unconstrained to max_tokens: the model's own greedy continuation of choice and end id.
TEST(engine_core, under_ignore_eos_a_completed_grammar_lets_the_output_run_on_unconstrained_to_max_tokens) {
  engine_fixture constrained(setup{});
  constrained.constrain();
  sampling_params p = greedy(12);
  p.structured = structured_output{structured_output::kind::choice, "5 7 9"};
  constrained.add(1, {1, 2, 3}, p);
  constrained.run();
  const std::vector<int32_t>& out = constrained.outputs_[1];
  ASSERT_EQ(out.size(), 12u);
  EXPECT_EQ(std::vector<int32_t>(out.begin(), out.begin() + 4), (std::vector<int32_t>{5, 7, 9, 2}));
  EXPECT_EQ(constrained.finished_[1].reason, finish_reason::length);
  EXPECT_EQ(constrained.runner().constraints()->num_refused(), 0);
  engine_fixture free(setup{});
  free.add(1, {1, 2, 3, 5, 7, 9, 2}, greedy(8));
  free.run();
  EXPECT_EQ(std::vector<int32_t>(out.begin() + 4, out.end()), free.outputs_[1]);
}

TEST(engine_core, refuses_invalid_requests_with_a_message) {
  engine_fixture e(setup{});
  EXPECT_EQ(e.core().add({1, {}, greedy(4), 0, {}}), "The prompt cannot be empty");
  EXPECT_EQ(e.core().add({1, {1, 999}, greedy(4), 0, {}}), "Token id 999 is out of vocabulary (vocabulary size 384)");
  EXPECT_EQ(e.core().add({1, std::vector<int32_t>(256, 1), greedy(4), 0, {}}),
            "The prompt (total length 256) is too long to fit into the model (context length 256). Make sure that "
            "`max_model_len` is no smaller than the number of text tokens.");
  sampling_params bad_spec = greedy(4);
  bad_spec.structured = structured_output{structured_output::kind::choice, ""};
  EXPECT_EQ(e.core().add({1, {1, 2}, bad_spec, 0, {}}), "Invalid structured output spec: choice: no choices in ''");
  EXPECT_FALSE(e.core().has_work());
}

TEST(engine_core, without_a_grammar_engine_a_structured_request_is_refused_not_run_unconstrained) {
  engine_config ec;
  ec.sched.max_model_len = 64;
  ec.kv.num_blocks = 8;
  ec.kv.block_size = 16;
  ec.vocab_size = 100;
  engine_core core(ec, nullptr, 1);
  sampling_params p = greedy(4);
  p.structured = structured_output{structured_output::kind::regex, "a+"};
  EXPECT_EQ(core.add({1, {1, 2}, p, 0, {}}),
            "Structured outputs (response_format, guided_*) are not supported by this server: it has no grammar engine");
}

// The null backend (`--backend null`) does no arithmetic, but a constrained row still samples inside its
// bitmask and its matcher advances: each constrained request ends on one of its choices and the end id, while
// an unconstrained one gets the null token.
TEST(engine_core, the_null_backend_keeps_constrained_requests_inside_their_choices) {
  engine_config ec;
  ec.sched.max_model_len = 64;
  ec.sched.max_num_batched_tokens = 64;
  ec.kv.num_blocks = 16;
  ec.kv.block_size = 16;
  ec.vocab_size = 384;
  ec.eos_token_ids = {2};
  ec.compile_structured = [](const structured_output& spec) { troupe::testing::choice_constraint::parse(spec.text); };
  engine_core core(ec, nullptr, 1);
  model_runner runner(nullptr, 16, 384, {2});
  runner.enable_constraints(troupe::testing::choice_constraint::factory({2}));
  const std::string spec = "5 7 9|5 8|300";
  for (request_id id = 0; id < 4; ++id) {
    sampling_params p = greedy(10);
    p.ignore_eos = false;
    if (id > 0) p.temperature = 1.0f, p.seed = id;
    p.structured = structured_output{structured_output::kind::choice, spec};
    ASSERT_EQ(core.add({id, {1, 2, 3}, p, 0, {}}), "");
  }
  ASSERT_EQ(core.add({4, {1, 2, 3}, greedy(3), 0, {}}), "");
  std::map<request_id, std::vector<int32_t>> outputs;
  std::map<request_id, finish_reason> reasons;
  while (core.has_work()) {
    const step_plan plan = core.schedule();
    for (const auto& out : core.update(plan, runner.execute(plan))) {
      outputs[out.id].insert(outputs[out.id].end(), out.new_token_ids.begin(), out.new_token_ids.end());
      if (out.finished) reasons[out.id] = out.reason;
    }
  }
  const auto choices = troupe::testing::choice_constraint::parse(spec);
  for (request_id id = 0; id < 4; ++id) {
    std::vector<int32_t> out = outputs[id];
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back(), 2) << "request " << id << " ends on the end id";
    out.pop_back();
    EXPECT_NE(std::find(choices.begin(), choices.end(), out), choices.end()) << "request " << id;
    EXPECT_EQ(reasons[id], finish_reason::stop);
  }
  EXPECT_EQ(outputs[4], (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(runner.constraints()->num_refused(), 0);
}

namespace {

// Steps from a short chat's arrival to its first token, behind a burst of long generations.
int steps_to_first_token_behind_long_burst(int32_t long_request_threshold) {
  setup s;
  s.max_num_seqs = 8;
  s.long_request_threshold = long_request_threshold;
  engine_fixture e(s);
  std::mt19937 rng(1);
  for (request_id id = 0; id < 24; ++id) e.add(id, random_prompt(rng, 16), greedy(60));
  e.step();
  e.step();
  e.add(100, random_prompt(rng, 8), greedy(8));
  for (int steps = 1; steps < 1000; ++steps) {
    e.step();
    if (!e.outputs_[100].empty()) return steps;
  }
  return 1000;
}

} // namespace

TEST(engine_core, with_pools_a_burst_of_long_generations_does_not_delay_a_short_chats_first_token) {
  // One pool: the short chat queues behind 16 waiting long requests and gets a seat only when one of the
  // running long ones ends (60 tokens each).
  EXPECT_GE(steps_to_first_token_behind_long_burst(0), 50);
  // Pools (long = max_tokens above 32, at most 6 of the 8 seats): it starts at once.
  EXPECT_EQ(steps_to_first_token_behind_long_burst(32), 1);
}

// Shutdown: every request still open, waiting or mid-step, ends once, aborted with the reason; a step
// already planned for them applies nothing; every block comes back.
TEST(engine_core, fail_all_ends_every_open_request_once_with_the_reason_and_frees_its_blocks) {
  setup s;
  s.max_num_seqs = 2;
  engine_fixture f(s);
  std::mt19937 rng(3);
  for (request_id id = 1; id <= 4; ++id) f.add(id, random_prompt(rng, 40), greedy(50));
  f.step();
  const step_plan in_flight = f.core().schedule();
  const std::vector<request_output> ended = f.core().fail_all("shutting down");
  ASSERT_EQ(ended.size(), 4u);
  for (size_t i = 0; i < ended.size(); ++i) {
    EXPECT_EQ(ended[i].id, static_cast<request_id>(i + 1));
    EXPECT_TRUE(ended[i].finished);
    EXPECT_TRUE(ended[i].aborted);
    EXPECT_EQ(ended[i].error, "shutting down");
  }
  step_result late;
  late.step = in_flight.step;
  for (const auto& seq : in_flight.seqs) {
    late.ids.push_back(seq.id);
    late.tokens.push_back(7);
  }
  EXPECT_TRUE(f.core().update(in_flight, late).empty());
  EXPECT_TRUE(f.core().fail_all("again").empty());
  EXPECT_FALSE(f.core().has_work());
  EXPECT_EQ(f.core().kv().num_free_blocks(), s.num_blocks);
}

// What the scheduler counts as a decode step (engine_stats::num_decode_steps): one token for every sequence.
TEST(step_plan, a_decode_step_has_one_token_for_every_sequence_and_no_prompt_chunk) {
  auto seq = [](request_id id, std::vector<int32_t> tokens) {
    scheduled_seq s;
    s.id = id;
    s.token_ids = std::move(tokens);
    return s;
  };
  step_plan plan;
  EXPECT_FALSE(plan.is_decode());  // nothing to run
  plan.seqs = {seq(1, {7}), seq(2, {8})};
  EXPECT_TRUE(plan.is_decode());
  plan.seqs.push_back(seq(3, {1, 2, 3}));  // a prompt chunk beside the decodes
  EXPECT_FALSE(plan.is_decode());
  plan.seqs = {seq(4, {1, 2})};
  EXPECT_FALSE(plan.is_decode());
}
