// The sampling shard's bookkeeping of constrained sequences (runtime/engine/constraint_table.hpp), driven by
// hand-made step plans with a test-only constraint: every token sampled under a mask is allowed, chunked
// prefill rows get no mask and do not advance, preemption and resume replay the outputs once, and released
// (finished, aborted or preempted) sequences are forgotten.

#include "runtime/engine/constraint_table.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tests/support/choice_constraint.hpp"

namespace troupe {
namespace {

using testing::choice_constraint;

constexpr int32_t vocab = 40;
constexpr int32_t eos = 2;

structured_output choice(std::string text) { return structured_output{structured_output::kind::choice, std::move(text)}; }

scheduled_seq fresh(request_id id, std::vector<int32_t> prompt, std::vector<int32_t> outputs, bool sample,
                    std::optional<structured_output> spec) {
  scheduled_seq s;
  s.id = id;
  s.is_new = true;
  s.num_prompt_tokens = static_cast<int32_t>(prompt.size());
  s.all_token_ids = prompt;
  s.all_token_ids.insert(s.all_token_ids.end(), outputs.begin(), outputs.end());
  s.token_ids = s.all_token_ids;
  s.sample = sample;
  s.params.structured = std::move(spec);
  return s;
}

scheduled_seq continuing(request_id id, bool sample) {
  scheduled_seq s;
  s.id = id;
  s.token_ids = {1};
  s.sample = sample;
  return s;
}

std::vector<int32_t> allowed_ids(std::span<const uint32_t> mask) {
  std::vector<int32_t> ids;
  for (int32_t t = 0; t < vocab; ++t)
    if (mask[static_cast<size_t>(t) / 32] >> (t % 32) & 1u) ids.push_back(t);
  return ids;
}

TEST(constraint_table, masks_only_sampled_constrained_rows_and_advances_them_on_accept) {
  constraint_table table(choice_constraint::factory({eos}), vocab);
  step_plan plan;
  plan.seqs.push_back(fresh(1, {9, 9}, {}, true, choice("5 7|6")));
  plan.seqs.push_back(fresh(2, {9}, {}, true, std::nullopt));          // unconstrained
  plan.seqs.push_back(fresh(3, {9, 9, 9}, {}, false, choice("8")));    // a prefill chunk short of its end
  table.begin_step(plan);
  ASSERT_TRUE(table.any_masks());
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{5, 6}));
  EXPECT_TRUE(table.mask_of_row(1).empty());
  EXPECT_TRUE(table.mask_of_row(2).empty());  // only two rows sample
  table.accept(std::vector<int32_t>{5, 33});

  step_plan next;
  next.seqs = {continuing(1, true), continuing(2, true), continuing(3, true)};
  table.begin_step(next);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{7}));
  EXPECT_TRUE(table.mask_of_row(1).empty());
  EXPECT_EQ(allowed_ids(table.mask_of_row(2)), (std::vector<int32_t>{8}));  // its chunk did not advance it
  table.accept(std::vector<int32_t>{7, 1, 8});

  table.begin_step(next);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{eos}));
  table.accept(std::vector<int32_t>{eos, 1, eos});
  EXPECT_TRUE(table.terminated(1));
  EXPECT_TRUE(table.terminated(3));
  EXPECT_EQ(table.num_refused(), 0);
}

TEST(constraint_table, a_resumed_sequence_replays_its_outputs_once) {
  constraint_table table(choice_constraint::factory({eos}), vocab);
  step_plan first;
  first.seqs.push_back(fresh(1, {9}, {}, true, choice("5 5 6")));
  table.begin_step(first);
  table.fill_masks();
  table.accept(std::vector<int32_t>{5});
  // Preempted, then recomputed with its one output: the constraint is at "5 _", not "5 5 _".
  step_plan preempt;
  preempt.released = {1};
  table.begin_step(preempt);
  EXPECT_FALSE(table.holds(1));
  step_plan resume;
  resume.seqs.push_back(fresh(1, {9}, {5}, true, choice("5 5 6")));
  table.begin_step(resume);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{5}));
  // is_new without a release (the shard drops what it held): the same.
  table.begin_step(resume);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{5}));
  EXPECT_EQ(table.num_refused(), 0);
}

TEST(constraint_table, a_refused_token_leaves_the_constraint_where_it_was_and_is_counted) {
  constraint_table table(choice_constraint::factory({eos}), vocab);
  step_plan plan;
  plan.seqs.push_back(fresh(1, {9}, {}, true, choice("5 6")));
  table.begin_step(plan);
  table.fill_masks();
  table.accept(std::vector<int32_t>{7});
  EXPECT_EQ(table.num_refused(), 1);
  step_plan next;
  next.seqs = {continuing(1, true)};
  table.begin_step(next);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{5}));
}

// ignore_eos kept the sequence going past its end id: as vLLM fills a terminated grammar's row with the full
// mask, the row is unconstrained from then on, and a resumed sequence replays its outputs up to the end only.
TEST(constraint_table, past_its_end_id_a_row_is_unconstrained_and_a_resume_replays_up_to_the_end) {
  constraint_table table(choice_constraint::factory({eos}), vocab);
  step_plan plan;
  plan.seqs.push_back(fresh(1, {9}, {}, true, choice("5")));
  table.begin_step(plan);
  table.fill_masks();
  table.accept(std::vector<int32_t>{5});
  step_plan next;
  next.seqs = {continuing(1, true)};
  table.begin_step(next);
  table.fill_masks();
  EXPECT_EQ(allowed_ids(table.mask_of_row(0)), (std::vector<int32_t>{eos}));
  table.accept(std::vector<int32_t>{eos});
  EXPECT_TRUE(table.terminated(1));
  table.begin_step(next);
  EXPECT_FALSE(table.any_masks());
  EXPECT_TRUE(table.mask_of_row(0).empty());
  table.accept(std::vector<int32_t>{33});
  EXPECT_TRUE(table.holds(1));  // until the sequence is released
  step_plan resume;
  resume.seqs.push_back(fresh(1, {9}, {5, eos, 33, 34}, true, choice("5")));
  table.begin_step(resume);
  EXPECT_TRUE(table.mask_of_row(0).empty());
  EXPECT_EQ(table.num_refused(), 0);
}

TEST(constraint_table, a_spec_the_factory_refuses_fails_the_step_with_its_message) {
  constraint_table table(choice_constraint::factory({eos}), vocab);
  step_plan plan;
  plan.seqs.push_back(fresh(1, {9}, {}, true, choice("")));
  EXPECT_THROW(table.begin_step(plan), std::invalid_argument);
}

// Random plans over 64 sequences, half constrained: prefill in chunks, decode, preemption with resume,
// aborts. Every token sampled under a mask is allowed by it, and each constrained output is a prefix of
// one of its choices (then the end id).
TEST(constraint_table, under_a_random_mix_every_sampled_token_of_a_constrained_row_is_allowed) {
  std::mt19937 rng(17);
  const std::vector<std::string> specs = {"5 7 9 11|5 8", "3 3 3 3 3 3", "12|13|14 15 16 17 18 19 20", "30 31"};
  struct seq {
    std::vector<int32_t> prompt, outputs;
    std::optional<structured_output> spec;
    int32_t computed = 0;  // prompt tokens in the (imaginary) KV cache
    bool held = false;     // the shard holds it (scheduled since its last release)
    bool done = false;
  };
  std::map<request_id, seq> seqs;
  for (request_id id = 1; id <= 64; ++id) {
    seq s;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 9); i < n; ++i) s.prompt.push_back(static_cast<int32_t>(rng() % vocab));
    if (id % 2) s.spec = choice(specs[rng() % specs.size()]);
    seqs[id] = s;
  }
  constraint_table table(choice_constraint::factory({eos}), vocab);
  int64_t masked_draws = 0, finished_by_grammar = 0;
  for (int step = 0; step < 400; ++step) {
    step_plan plan;
    std::vector<request_id> sampled;
    for (auto& [id, s] : seqs) {
      if (s.done) continue;
      const uint32_t roll = rng() % 100;
      if (s.held && roll >= 1 && roll < 4) {  // preempted: recomputed from scratch later
        plan.released.push_back(id);
        s.held = false;
        s.computed = 0;
        continue;
      }
      if (roll < 1) {  // aborted
        if (s.held) plan.released.push_back(id);
        s.done = true;
        continue;
      }
      if (roll > 70) continue;  // not scheduled this step
      const int32_t total = static_cast<int32_t>(s.prompt.size() + s.outputs.size());
      const int32_t chunk = std::min<int32_t>(total - s.computed, 1 + static_cast<int32_t>(rng() % 4));
      const bool sample = s.computed + chunk == total;
      if (!s.held) {
        plan.seqs.push_back(fresh(id, s.prompt, s.outputs, sample, s.spec));
        s.held = true;
      } else {
        plan.seqs.push_back(continuing(id, sample));
      }
      s.computed += chunk;
      if (sample) sampled.push_back(id);
    }
    table.begin_step(plan);
    table.fill_masks();
    std::vector<int32_t> tokens;
    for (size_t r = 0; r < sampled.size(); ++r) {
      const auto mask = table.mask_of_row(r);
      seq& s = seqs[sampled[r]];
      ASSERT_EQ(mask.empty(), !s.spec.has_value()) << "row of request " << sampled[r];
      int32_t t = static_cast<int32_t>(rng() % vocab);
      if (!mask.empty()) {
        const auto ids = allowed_ids(mask);
        ASSERT_FALSE(ids.empty()) << "request " << sampled[r] << " has nothing allowed";
        t = ids[rng() % ids.size()];
        ++masked_draws;
      }
      tokens.push_back(t);
    }
    table.accept(tokens);
    for (size_t r = 0; r < sampled.size(); ++r) {
      seq& s = seqs[sampled[r]];
      if (tokens[r] == eos && s.spec) {  // the grammar ended it (an unconstrained row ignores eos here)
        EXPECT_TRUE(table.terminated(sampled[r]));
        s.done = true;
        step_plan finish;
        finish.released = {sampled[r]};
        table.begin_step(finish);  // the scheduler releases a finished sequence in the next plan
        ++finished_by_grammar;
        continue;
      }
      s.outputs.push_back(tokens[r]);  // the next step computes it
    }
    for (const auto& [id, s] : seqs) {
      if (!s.held || s.done) {
        EXPECT_FALSE(table.holds(id)) << "request " << id << " at step " << step;
      }
    }
  }
  EXPECT_EQ(table.num_refused(), 0);
  EXPECT_GT(masked_draws, 100);
  EXPECT_GT(finished_by_grammar, 10);
  for (const auto& [id, s] : seqs) {
    if (!s.spec) continue;
    const auto choices = choice_constraint::parse(s.spec->text);
    bool prefix = false;
    for (const auto& c : choices)
      prefix |= c.size() >= s.outputs.size() && std::equal(s.outputs.begin(), s.outputs.end(), c.begin());
    EXPECT_TRUE(prefix) << "request " << id << " left its choices";
  }
}

} // namespace
} // namespace troupe
