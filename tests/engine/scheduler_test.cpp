// The scheduling policy step by step: each test tables the exact plan of every step.

#include <gtest/gtest.h>

#include <numeric>

#include "runtime/engine/scheduler.hpp"

using namespace troupe;

namespace {

// A compact, exact picture of one scheduled sequence: id, new or continuing, first position, number of
// tokens, the block ids it brings, and whether it samples.
struct seq_row {
  request_id id;
  bool is_new;
  int32_t start;
  int32_t num_tokens;
  std::vector<int32_t> blocks;
  bool sample;
  bool operator==(const seq_row&) const = default;
};

std::ostream& operator<<(std::ostream& os, const seq_row& r) {
  os << "{" << r.id << (r.is_new ? " new" : "") << " @" << r.start << " x" << r.num_tokens << " blocks[";
  for (int32_t b : r.blocks) os << b << " ";
  return os << "]" << (r.sample ? " sample" : "") << "}";
}

std::vector<seq_row> rows(const step_plan& plan) {
  std::vector<seq_row> out;
  for (const auto& s : plan.seqs)
    out.push_back({s.id, s.is_new, s.start_position, static_cast<int32_t>(s.token_ids.size()), s.block_ids, s.sample});
  return out;
}

request make_request(request_id id, int32_t num_prompt_tokens, int64_t priority = 0, int32_t first_token = 100) {
  request r;
  r.id = id;
  r.tokens.resize(num_prompt_tokens);
  std::iota(r.tokens.begin(), r.tokens.end(), first_token);
  r.num_prompt_tokens = num_prompt_tokens;
  r.priority = priority;
  r.arrival = id;
  return r;
}

// Pretends the shard ran the plan: every sampling sequence gets token 7.
step_result sampled(const step_plan& plan) {
  step_result r;
  for (const auto& s : plan.seqs)
    if (s.sample) {
      r.ids.push_back(s.id);
      r.tokens.push_back(7);
    }
  return r;
}

struct fixture {
  explicit fixture(scheduler_config sc, kv_cache_config kc) : kv(kc), sched(sc, kv) {}
  step_plan step() {
    step_plan plan = sched.schedule();
    sched.update(plan, sampled(plan));
    return plan;
  }
  kv_cache_manager kv;
  scheduler sched;
};

scheduler_config limits(int32_t max_seqs, int32_t budget, int32_t max_len = 64) {
  scheduler_config c;
  c.max_num_seqs = max_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = max_len;
  return c;
}

kv_cache_config blocks(int32_t num_blocks, int32_t block_size = 4) {
  kv_cache_config c;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  c.enable_prefix_caching = false;
  return c;
}

} // namespace

TEST(scheduler, prefills_a_long_prompt_in_chunks_beside_running_decodes) {
  fixture f(limits(4, 8), blocks(32));
  f.sched.add(make_request(1, 3));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, true, 0, 3, {0}, true}}));
  f.sched.add(make_request(2, 10));
  // Budget 8: the decode of 1 first, then 7 tokens of 2's prompt.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 3, 1, {}, true}, {2, true, 0, 7, {1, 2}, false}}));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 4, 1, {3}, true}, {2, false, 7, 3, {4}, true}}));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 5, 1, {}, true}, {2, false, 10, 1, {}, true}}));
  EXPECT_EQ(f.sched.find(2)->num_tokens(), 12);
}

TEST(scheduler, stops_admitting_at_the_token_budget_and_at_max_num_seqs) {
  fixture f(limits(2, 6), blocks(32));
  f.sched.add(make_request(1, 4));
  f.sched.add(make_request(2, 4));
  f.sched.add(make_request(3, 2));
  // 4 + 2 of 2's 4 tokens fill the budget of 6; 3 waits.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, true, 0, 4, {0}, true}, {2, true, 0, 2, {1}, false}}));
  // Two sequences run: 3 waits for a seat although budget is left.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 4, 1, {2}, true}, {2, false, 2, 2, {}, true}}));
  EXPECT_EQ(f.sched.num_waiting(), 1);
  EXPECT_TRUE(f.sched.finish(1, request_status::finished_stopped));
  // Freed blocks join the tail of the free queue: 3 gets the never-used block 4 first.
  const step_plan p = f.step();
  EXPECT_EQ(rows(p), (std::vector<seq_row>{{2, false, 4, 1, {3}, true}, {3, true, 0, 2, {4}, true}}));
  EXPECT_EQ(p.released, std::vector<request_id>{1});
}

TEST(scheduler, preempts_the_newest_running_sequence_when_blocks_run_out_and_recomputes_it_later) {
  fixture f(limits(4, 16), blocks(4, 2));
  f.sched.add(make_request(1, 3));
  f.sched.add(make_request(2, 3));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, true, 0, 3, {0, 1}, true}, {2, true, 0, 3, {2, 3}, true}}));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 3, 1, {}, true}, {2, false, 3, 1, {}, true}}));
  // 1 needs a fifth block: 2 (the newest) is preempted and its blocks go to 1.
  step_plan p = f.step();
  EXPECT_EQ(rows(p), (std::vector<seq_row>{{1, false, 4, 1, {3}, true}}));
  EXPECT_EQ(p.released, std::vector<request_id>{2});
  EXPECT_EQ(f.sched.stats().num_preemptions, 1);
  EXPECT_EQ(f.sched.find(2)->status, request_status::preempted);
  // 2 cannot come back while 1 holds 3 of the 4 blocks and 2 needs 3 for its 5 tokens.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 5, 1, {}, true}}));
  EXPECT_TRUE(f.sched.finish(1, request_status::finished_length));
  // Recomputed from the start: its prompt and the 2 tokens it had sampled. Blocks come back in the
  // order they were freed: 2's own (tail first: 3 went to 1), then 1's, tail first.
  p = f.step();
  EXPECT_EQ(rows(p), (std::vector<seq_row>{{2, true, 0, 5, {2, 3, 1}, true}}));
  EXPECT_EQ(p.seqs[0].all_token_ids, (std::vector<int32_t>{100, 101, 102, 7, 7}));
}

TEST(scheduler, priority_policy_preempts_the_lowest_priority_even_if_it_is_older) {
  scheduler_config c = limits(4, 16);
  c.policy = scheduling_policy::priority;
  fixture f(c, blocks(4, 2));
  f.sched.add(make_request(1, 3, /*priority=*/5));
  f.sched.add(make_request(2, 3, /*priority=*/0));
  // Priority order admits 2 first.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{2, true, 0, 3, {0, 1}, true}, {1, true, 0, 3, {2, 3}, true}}));
  f.step();
  const step_plan p = f.step();
  EXPECT_EQ(rows(p), (std::vector<seq_row>{{2, false, 4, 1, {3}, true}}));
  EXPECT_EQ(p.released, std::vector<request_id>{1});
}

TEST(scheduler, a_priority_past_int32_still_runs_after_a_smaller_one) {
  scheduler_config c = limits(1, 16);
  c.policy = scheduling_policy::priority;
  fixture f(c, blocks(4, 2));
  f.sched.add(make_request(1, 3, /*priority=*/int64_t{1} << 31));  // 2^31: negative if cut to int32
  f.sched.add(make_request(2, 3, /*priority=*/5));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{2, true, 0, 3, {0, 1}, true}}));
}

TEST(scheduler, a_preempted_sequence_already_planned_this_step_gives_its_budget_back) {
  scheduler_config c = limits(4, 16);
  c.policy = scheduling_policy::priority;
  fixture f(c, blocks(5, 2));
  f.sched.add(make_request(1, 3, /*priority=*/5));  // admitted first (lower priority but alone)
  f.step();
  f.sched.add(make_request(2, 4, /*priority=*/0));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 3, 1, {}, true}, {2, true, 0, 4, {2, 3}, true}}));
  // Both need a block, one is free: 1 takes it, then 2 needs one, and 1 (lower priority, already
  // planned) is preempted and its share of the step withdrawn.
  const step_plan p = f.step();
  EXPECT_EQ(rows(p), (std::vector<seq_row>{{2, false, 4, 1, {4}, true}}));
  EXPECT_EQ(p.released, std::vector<request_id>{1});
}

TEST(scheduler, a_prefix_cache_hit_skips_the_cached_tokens) {
  kv_cache_config kc = blocks(16);
  kc.enable_prefix_caching = true;
  fixture f(limits(4, 32), kc);
  f.sched.add(make_request(1, 10));
  f.step();
  f.sched.add(make_request(2, 10));
  // Two full blocks (8 tokens) of 2's prompt are 1's; only 2 tokens are computed.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 10, 1, {}, true}, {2, true, 8, 2, {0, 1, 3}, true}}));
  EXPECT_EQ(f.sched.stats().num_cached_prompt_tokens, 8);
  EXPECT_EQ(f.sched.stats().num_computed_prompt_tokens, 12);
}

TEST(scheduler, finishing_or_aborting_frees_every_block) {
  fixture f(limits(4, 32), blocks(16));
  f.sched.add(make_request(1, 9));
  f.sched.add(make_request(2, 5));
  f.step();
  f.step();
  EXPECT_LT(f.kv.num_free_blocks(), 16);
  EXPECT_TRUE(f.sched.finish(1, request_status::finished_aborted));
  EXPECT_TRUE(f.sched.finish(2, request_status::finished_stopped));
  EXPECT_FALSE(f.sched.finish(2, request_status::finished_stopped));
  EXPECT_EQ(f.kv.num_free_blocks(), 16);
  EXPECT_FALSE(f.sched.has_work());
  // An empty plan is never sent to the shards, so the releases wait for the next plan that runs something.
  EXPECT_TRUE(f.sched.schedule().released.empty());
  f.sched.add(make_request(3, 2));
  const step_plan p = f.sched.schedule();
  EXPECT_EQ(p.seqs.size(), 1u);
  EXPECT_EQ(p.released, (std::vector<request_id>{1, 2}));
}

TEST(scheduler, tokens_sampled_for_a_request_aborted_meanwhile_are_dropped) {
  fixture f(limits(4, 32), blocks(16));
  f.sched.add(make_request(1, 3));
  const step_plan plan = f.sched.schedule();
  f.sched.finish(1, request_status::finished_aborted);
  EXPECT_TRUE(f.sched.update(plan, sampled(plan)).empty());
}

namespace {

request with_max_tokens(request r, int32_t max_tokens) {
  r.params.max_tokens = max_tokens;
  return r;
}

} // namespace

TEST(scheduler, short_requests_jump_the_long_backlog_and_keep_their_reserved_seats) {
  scheduler_config c = limits(4, 64);
  c.long_request_threshold = 100;  // max_tokens above 100 is long
  c.long_max_fraction = 0.5;       // long requests hold at most 2 of the 4 seats
  fixture f(c, blocks(64));
  for (request_id id = 1; id <= 3; ++id) f.sched.add(with_max_tokens(make_request(id, 4), 1000));
  f.sched.add(with_max_tokens(make_request(4, 4), 20));
  // The short request arrived last but is admitted first; only two long ones get seats.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{4, true, 0, 4, {0}, true}, {1, true, 0, 4, {1}, true}, {2, true, 0, 4, {2}, true}}));
  EXPECT_EQ(f.sched.num_waiting(), 1);
  // A seat is free, but not for a long request.
  f.sched.add(with_max_tokens(make_request(5, 4), 20));
  const auto plan = f.step();
  ASSERT_EQ(plan.seqs.size(), 4u);
  EXPECT_EQ(plan.seqs.back().id, 5u);
  EXPECT_EQ(f.sched.num_waiting(), 1);
  // When a long request finishes, the waiting long one takes its seat.
  f.sched.finish(1, request_status::finished_length);
  f.sched.finish(5, request_status::finished_length);
  const auto next = f.step();
  EXPECT_EQ(next.seqs.back().id, 3u);
  EXPECT_TRUE(next.seqs.back().is_new);
}

TEST(scheduler, long_prefill_token_threshold_caps_one_prompts_chunk) {
  scheduler_config c = limits(4, 64);
  c.long_prefill_token_threshold = 16;
  fixture f(c, blocks(64));
  f.sched.add(make_request(1, 40));
  f.sched.add(make_request(2, 4));
  // 1's prompt goes 16 tokens a step; 2 is admitted beside it at once.
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, true, 0, 16, {0, 1, 2, 3}, false}, {2, true, 0, 4, {4}, true}}));
  EXPECT_EQ(rows(f.step()), (std::vector<seq_row>{{1, false, 16, 16, {5, 6, 7, 8}, false}, {2, false, 4, 1, {9}, true}}));
}
