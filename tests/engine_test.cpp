// troupe::engine, the actors included: offline batch generation like vLLM's LLM.generate.

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

#include "actors/engine.hpp"
#include "actors/engine_impl.hpp"
#include "runtime/error.hpp"

using namespace troupe;

namespace {

std::string reference_dir(const std::string& name) { return std::string(TROUPE_TEST_DATA) + "/reference/" + name; }

engine_options options_for(const std::string& name) {
  engine_options o;
  o.model = reference_dir(name);
  o.max_num_batched_tokens = 128;
  o.max_num_seqs = 32;
  o.kv_cache_memory = 16 << 20;
  return o;
}

sampling_params greedy(int32_t max_tokens) {
  sampling_params p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

} // namespace

TEST(engine, batched_generation_reproduces_the_transformers_greedy_continuations) {
  std::ifstream in(reference_dir("qwen2_sharded_bf16") + "/reference.json");
  const auto ref = nlohmann::json::parse(in);
  engine e(options_for("qwen2_sharded_bf16"));
  std::vector<prompt_input> prompts;
  for (const auto& p : ref["prompts"]) prompts.push_back({"", p.get<std::vector<int32_t>>()});
  // The same prompts several times over, so sequences join and leave the batch at different steps.
  const size_t n = prompts.size();
  for (int copy = 0; copy < 7; ++copy)
    for (size_t i = 0; i < n; ++i) prompts.push_back(prompts[i]);
  std::atomic<int> finished = 0;
  const auto results = e.generate(prompts, greedy(32), [&] { ++finished; });
  EXPECT_EQ(finished.load(), static_cast<int>(prompts.size()));
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(results[i].token_ids, ref["greedy"][i % n].get<std::vector<int32_t>>()) << "prompt " << i;
    EXPECT_EQ(results[i].finish_reason, "length");
    EXPECT_EQ(results[i].prompt_token_ids, prompts[i].token_ids);
  }
  const engine_stats s = e.stats();
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_free_blocks, s.num_blocks);
  // Repeated prompts share their cached prefix blocks.
  EXPECT_GT(s.sched.num_cached_prompt_tokens, 0);
}

TEST(engine, a_refused_prompt_gets_its_error_and_the_others_complete) {
  engine e(options_for("llama_f32"));
  std::vector<prompt_input> prompts = {{"", {1, 2, 3}}, {"", std::vector<int32_t>(300, 5)}, {"", {4, 5}}};
  const auto results = e.generate(prompts, greedy(4));
  EXPECT_EQ(results[0].token_ids.size(), 4u);
  EXPECT_EQ(results[1].finish_reason, "error");
  EXPECT_EQ(results[1].error,
            "The prompt (total length 300) is too long to fit into the model (context length 256). Make sure that "
            "`max_model_len` is no smaller than the number of text tokens.");
  EXPECT_EQ(results[2].token_ids.size(), 4u);
}

TEST(engine, a_kv_cache_smaller_than_the_context_is_refused_at_start) {
  engine_options o = options_for("llama_f32");
  o.kv_cache_memory = 1024;
  try {
    engine e(o);
    FAIL() << "no error";
  } catch (const user_error& err) {
    EXPECT_EQ(std::string(err.what()),
              "the KV cache holds 0 tokens, fewer than the maximum context length 256; raise --kv-cache-memory or "
              "lower --max-model-len");
  }
}

TEST(engine, the_null_backend_runs_the_whole_loop_without_arithmetic) {
  engine_options o = options_for("llama_f32");
  o.backend = "null";
  engine e(o);
  std::vector<prompt_input> prompts(50, prompt_input{"", {1, 2, 3, 4, 5}});
  const auto results = e.generate(prompts, greedy(10));
  for (const auto& r : results) EXPECT_EQ(r.token_ids, std::vector<int32_t>(10, 0));
}

// One shard in the process: the scheduler runs its steps itself, no shard actor (spawn_scheduler says why). A batch's
// requests each get what they get alone.
TEST(engine, a_lone_shard_runs_in_the_schedulers_thread_and_a_batch_gets_what_each_request_gets_alone) {
  engine e(options_for("llama_f32"));
  EXPECT_TRUE(e.internals().shards.empty());
  std::vector<prompt_input> prompts(8, prompt_input{"", {1, 2, 3, 4, 5}});
  for (size_t i = 0; i < prompts.size(); ++i) prompts[i].token_ids.push_back(static_cast<int32_t>(i + 6));
  const auto together = e.generate(prompts, greedy(12));
  ASSERT_EQ(together.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto alone = e.generate({prompts[i]}, greedy(12));
    EXPECT_EQ(together[i].token_ids, alone[0].token_ids) << "prompt " << i;
    EXPECT_EQ(together[i].token_ids.size(), 12u);
  }
  EXPECT_EQ(e.stats().num_step_errors, 0);
}

// The scheduler's thread runs a lone shard's steps, so a submit waits for the step in progress. generate sends every
// prompt before awaiting any reply: all are admitted together, and the batch takes about as many steps as one request
// (32 prompts of 6 tokens, 128 tokens a step: 2 prefill steps, then one a token). Awaiting each reply in turn had
// admitted one prompt a step (W1 on an H100: 512 steps where 264 do).
TEST(engine, generate_admits_a_whole_batch_at_once_and_takes_about_the_steps_of_one_request) {
  engine e(options_for("llama_f32"));
  std::vector<prompt_input> prompts(32, prompt_input{"", {1, 2, 3, 4, 5}});
  for (size_t i = 0; i < prompts.size(); ++i) prompts[i].token_ids.push_back(static_cast<int32_t>(i + 6));
  const engine_stats before = e.stats();
  const auto results = e.generate(prompts, greedy(12));
  const engine_stats after = e.stats();
  const int64_t steps = after.sched.num_steps - before.sched.num_steps;
  for (const auto& r : results) EXPECT_EQ(r.token_ids.size(), 12u);
  EXPECT_GE(steps, 12);
  EXPECT_LE(steps, 12 + 4) << "the prompts were not admitted together";
  // 192 prompt tokens in steps of 128: at least two steps carry prompt tokens (more where the first step began before
  // every submit was in), and after the last prompt's step its 11 more tokens take a decode step each.
  const int64_t decode_steps = after.num_decode_steps - before.num_decode_steps;
  EXPECT_GE(decode_steps, 11);
  EXPECT_LE(decode_steps, steps - 2);
  EXPECT_GT(after.decode_step_ns - before.decode_step_ns, 0);
  EXPECT_LT(after.decode_step_ns - before.decode_step_ns, after.step_ns - before.step_ns);
}

// Which thread runs a lone shard's steps decides whether a submit is answered while a step runs. The first step is
// held (engine_options::before_step) while 8 more requests are submitted one by one, each reply awaited as the native
// client's submit awaits it: with a shard actor (steps_in_scheduler false, as `serve` runs) all 8 are answered during
// the held step; with the steps in the scheduler's thread the first of them is not answered until the step ends.
TEST(engine, a_shard_actor_answers_each_submit_while_a_step_runs_and_steps_in_the_scheduler_do_not) {
  for (const bool in_scheduler : {false, true}) {
    SCOPED_TRACE(in_scheduler ? "steps in the scheduler" : "a shard actor");
    std::mutex m;
    std::condition_variable cv;
    bool held = false, release = false;
    engine_options o = options_for("llama_f32");
    o.steps_in_scheduler = in_scheduler;
    o.before_step = [&](uint64_t) {
      std::unique_lock lock(m);
      if (held) return;  // only the first step is held
      held = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    };
    engine e(o);
    EXPECT_EQ(e.internals().shards.size(), in_scheduler ? 0u : 1u);
    auto& sys = e.internals().system;
    int finished = 0;  // under m
    auto sink = sys.spawn([&](output_sink::pointer) -> output_sink::behavior_type {
      return {[&](output_atom, output_batch& outs) {
        std::lock_guard lock(m);
        for (const auto& out : outs) finished += out.finished ? 1 : 0;
        cv.notify_all();
      }};
    });
    caf::scoped_actor self{sys};
    auto submit = [&](int i, std::chrono::milliseconds wait) {
      engine_request req;
      req.prompt_ids = {1, 2, 3, 4, 5, 6 + i};
      req.params = greedy(4);
      bool answered = false;
      self->request(e.internals().scheduler, wait, submit_atom::value, std::move(req), sink)
          .receive([&](submit_reply& r) { answered = r.error.empty(); }, [](caf::error&) {});
      return answered;
    };
    ASSERT_TRUE(submit(0, std::chrono::milliseconds(10000)));
    {
      std::unique_lock lock(m);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return held; }));
    }
    int answered_while_held = 0;
    for (int i = 1; i <= 8; ++i) {
      if (!submit(i, std::chrono::milliseconds(in_scheduler ? 300 : 10000))) break;
      ++answered_while_held;
    }
    EXPECT_EQ(answered_while_held, in_scheduler ? 0 : 8);
    {
      std::lock_guard lock(m);
      release = true;
    }
    cv.notify_all();
    // The requests whose reply timed out were still taken (the scheduler handles the message after the step).
    const int expected = in_scheduler ? 1 + 1 : 9;
    {
      std::unique_lock lock(m);
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return finished >= expected; });
      EXPECT_EQ(finished, expected);
    }
    EXPECT_EQ(e.stats().num_running, 0);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  }
}

// Shard actors (two tensor-parallel shards in this process): a shard that dies takes the engine's health with it. Both
// go, while idle: a survivor would wait in its next collective for good (across processes the stall watch ends that).
TEST(engine, reports_unhealthy_once_a_shard_is_gone_and_fails_requests_instead_of_hanging) {
  engine_options o = options_for("llama_f32");
  o.tensor_parallel_size = 2;
  engine e(o);
  ASSERT_EQ(e.internals().shards.size(), 2u);
  EXPECT_TRUE(e.healthy());
  for (const auto& shard : e.internals().shards) caf::anon_send_exit(shard, caf::exit_reason::kill);
  {
    caf::scoped_actor self{e.internals().system};
    self->wait_for(e.internals().shards);  // both gone before any step is planned
  }
  for (int i = 0; i < 500 && e.healthy(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(e.healthy());
  const auto results = e.generate({{"", {1, 2, 3}}}, greedy(4));
  EXPECT_EQ(results[0].finish_reason, "error");
  EXPECT_NE(results[0].error.find("shard failed"), std::string::npos) << results[0].error;
}

TEST(engine, step_size_defaults_follow_vllm_by_device_memory_and_usage) {
  constexpr int64_t GiB = int64_t{1} << 30;
  const auto h100 = default_batch_limits("cuda", 80 * GiB, usage_context::offline);
  EXPECT_EQ(h100.max_num_seqs, 1024);
  EXPECT_EQ(h100.max_num_batched_tokens, 16384);
  EXPECT_EQ(default_batch_limits("cuda", 80 * GiB, usage_context::server).max_num_batched_tokens, 8192);
  const auto small = default_batch_limits("cuda", 24 * GiB, usage_context::server);
  EXPECT_EQ(small.max_num_seqs, 256);
  EXPECT_EQ(small.max_num_batched_tokens, 2048);
  EXPECT_EQ(default_batch_limits("cuda", 24 * GiB, usage_context::offline).max_num_batched_tokens, 8192);
  const auto cpu = default_batch_limits("cpu", 0, usage_context::offline);
  EXPECT_EQ(cpu.max_num_seqs, 256);
  EXPECT_EQ(cpu.max_num_batched_tokens, 2048);
}

TEST(engine, limits_left_at_zero_take_the_defaults_and_given_ones_stay) {
  engine_options o = options_for("llama_f32");
  o.max_num_seqs = 0;
  o.max_num_batched_tokens = 0;
  engine e(o);
  EXPECT_EQ(e.limits().max_num_seqs, 256);
  EXPECT_EQ(e.limits().max_num_batched_tokens, 2048);
  engine given(options_for("llama_f32"));
  EXPECT_EQ(given.limits().max_num_seqs, 32);
  EXPECT_EQ(given.limits().max_num_batched_tokens, 128);
}

// A prompt longer than the step's token budget is prefilled in chunks; while it is the only request,
// every step but the last samples nothing. Greedy and seeded outputs equal the unchunked run.
TEST(engine, prompts_longer_than_the_step_budget_give_the_unchunked_outputs) {
  engine_options o = options_for("llama_f32");
  engine whole(o);
  o.max_num_batched_tokens = 16;
  o.max_num_seqs = 4;
  engine chunked(o);
  sampling_params sampled = greedy(6);
  sampled.temperature = 0.9f;
  sampled.seed = 7;
  for (const int len : {15, 16, 17, 32, 33, 200}) {  // under, exactly, one over, twice, many times the budget
    std::vector<int32_t> ids(static_cast<size_t>(len));
    for (int i = 0; i < len; ++i) ids[i] = (i * 37 + 11) % 200;
    for (const sampling_params& p : {greedy(6), sampled}) {
      const auto expected = whole.generate({{"", ids}}, p);
      const auto got = chunked.generate({{"", ids}}, p);
      ASSERT_EQ(expected[0].token_ids.size(), 6u) << expected[0].error;
      EXPECT_EQ(got[0].token_ids, expected[0].token_ids) << "prompt of " << len << ", temperature " << p.temperature;
      EXPECT_EQ(got[0].finish_reason, "length") << got[0].error;
    }
  }
  EXPECT_TRUE(chunked.healthy());
  EXPECT_EQ(chunked.stats().num_free_blocks, chunked.stats().num_blocks);
}

TEST(engine, an_fp8_kv_cache_holds_four_times_the_f32_blocks_in_the_same_memory) {
  engine_options o = options_for("llama_f32");
  const int64_t f32_blocks = engine(o).stats().num_blocks;
  for (const std::string kv : {"fp8", "fp8_e4m3", "fp8_e5m2"}) {
    o.kv_cache_dtype = kv;
    EXPECT_EQ(engine(o).stats().num_blocks, 4 * f32_blocks) << kv;
  }
}

TEST(engine, an_fp8_kv_cache_gives_the_same_tokens_chunked_or_not_and_from_cached_prefixes) {
  for (const std::string kv : {"fp8_e4m3", "fp8_e5m2"}) {
    engine_options o = options_for("llama_f32");
    o.kv_cache_dtype = kv;
    engine whole(o);
    o.max_num_batched_tokens = 16;
    o.max_num_seqs = 4;
    engine chunked(o);
    std::vector<int32_t> ids(40);
    for (int i = 0; i < 40; ++i) ids[static_cast<size_t>(i)] = (i * 37 + 11) % 200;
    const auto expected = whole.generate({{"", ids}}, greedy(6));
    ASSERT_EQ(expected[0].token_ids.size(), 6u) << expected[0].error;
    const auto got = chunked.generate({{"", ids}}, greedy(6));
    EXPECT_EQ(got[0].token_ids, expected[0].token_ids) << kv;
    const auto again = chunked.generate({{"", ids}}, greedy(6));  // the prompt's full blocks come from the cache
    EXPECT_EQ(again[0].num_cached_tokens, 32) << kv;
    EXPECT_EQ(again[0].token_ids, expected[0].token_ids) << kv;
    EXPECT_EQ(chunked.stats().num_free_blocks, chunked.stats().num_blocks);
  }
}

TEST(engine, an_unknown_kv_cache_dtype_is_refused_naming_the_accepted_ones) {
  engine_options o = options_for("llama_f32");
  o.kv_cache_dtype = "int8";
  try {
    engine e(o);
    FAIL() << "no error";
  } catch (const user_error& err) {
    EXPECT_STREQ(err.what(), "--kv-cache-dtype must be auto, fp8, fp8_e4m3 or fp8_e5m2, got 'int8'");
  }
}
