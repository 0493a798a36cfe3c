// The backend sampling op and its inputs: sampling_inputs turns sample_requests into the batch a
// backend reads, and the CPU backend's `sample` op must pick what sample_cpu picks. The CUDA twin is
// checked against sample_cpu on a GPU by troupe_gpu_check (scripts/gpu/check.sh).

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cpu/sampler.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "kernels/sampling_inputs.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_model.hpp"

using namespace troupe;

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// One request's parameters and token history, owned, so sample_requests can point into it.
struct request_data {
  sampling_params params;
  std::vector<int32_t> prompt, output, eos;
  uint64_t seed = 0;
  std::vector<uint32_t> allowed;  // structured outputs' bitmask; empty: every token
  sample_request request() const { return {&params, prompt, output, seed, eos, allowed}; }
};

std::vector<sample_request> requests_of(const std::vector<request_data>& data) {
  std::vector<sample_request> reqs;
  for (const auto& d : data) reqs.push_back(d.request());
  return reqs;
}

// Runs the CPU backend's sample op over `logits` with inputs built from `data`.
std::vector<int32_t> sample_op(std::vector<float> logits, int32_t vocab, const std::vector<request_data>& data) {
  const auto reqs = requests_of(data);
  sampling_inputs in;
  in.build(reqs, vocab);
  cpu_ops ops;
  device_buffer block = ops.alloc(dtype::i32, {static_cast<int64_t>(in.packed_bytes() / 4) + 1});
  in.pack(block.get().data);
  const int64_t rows = static_cast<int64_t>(data.size());
  device_buffer l = ops.alloc(dtype::f32, {rows, vocab});
  ops.upload(l, logits);
  device_buffer out = ops.alloc(dtype::i32, {rows});
  ops.sample(l, in.view(block.get().data), out);
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  ops.download_raw(ids.data(), out);
  return ids;
}

std::vector<int32_t> reference(std::vector<float> logits, int32_t vocab, const std::vector<request_data>& data) {
  return sample_cpu(logits, vocab, requests_of(data));
}

// A random mix: greedy and sampled rows, each processor on or off, histories with repeats.
request_data random_request(std::mt19937_64& rng, int32_t vocab) {
  auto pick = [&](auto... v) {
    const std::vector<std::common_type_t<decltype(v)...>> options{v...};
    return options[rng() % options.size()];
  };
  auto token = [&] { return static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)); };
  request_data d;
  sampling_params& p = d.params;
  p.temperature = pick(0.0f, 0.0f, 1.0f, 0.7f, 1.3f, 0.005f, 2.0f);
  p.top_k = pick(0, 0, -1, 1, 5, 50, vocab - 1, vocab, vocab + 3);
  p.top_p = pick(1.0f, 1.0f, 0.9f, 0.5f, 0.05f, 0.999f);
  p.min_p = pick(0.0f, 0.0f, 0.05f, 0.3f, 1.0f);
  p.repetition_penalty = pick(1.0f, 1.0f, 1.2f, 0.8f, 2.0f);
  p.frequency_penalty = pick(0.0f, 0.0f, 0.5f, -1.0f, 2.0f);
  p.presence_penalty = pick(0.0f, 0.0f, 0.7f, -2.0f);
  if (rng() % 3 == 0)
    for (int i = 0, n = 1 + static_cast<int>(rng() % 5); i < n; ++i)
      p.logit_bias.emplace_back(token() + static_cast<int32_t>(i * vocab), pick(5.0f, -100.0f, 250.0f, -0.5f, 30.0f));
  if (rng() % 3 == 0) {
    p.min_tokens = static_cast<int32_t>(rng() % 8);
    p.stop_token_ids = {token(), vocab + 7};
    d.eos = {token(), -1};
  }
  if (rng() % 3 == 0) {  // a constrained row: some tokens allowed, or none (the end-id fallback)
    d.allowed.assign(static_cast<size_t>(bitmask_words(vocab)), 0u);
    const uint64_t one_in = pick(uint64_t{2}, uint64_t{5}, uint64_t{1000});
    for (int32_t t = 0; t < vocab; ++t)
      if (rng() % one_in == 0) d.allowed[static_cast<size_t>(t) / 32] |= 1u << (t % 32);
    if (d.eos.empty()) d.eos = {token()};
  }
  for (int i = 0, n = static_cast<int>(rng() % 40); i < n; ++i) d.prompt.push_back(token());
  for (int i = 0, n = static_cast<int>(rng() % 12); i < n; ++i)
    d.output.push_back(rng() % 4 == 0 && !d.output.empty() ? d.output[rng() % d.output.size()] : token());
  d.seed = rng();
  return d;
}

std::vector<float> random_logits(std::mt19937_64& rng, size_t n, bool ties) {
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = ties ? std::round(normal(rng)) : normal(rng);
  return v;
}

} // namespace

TEST(sampling_inputs, takes_the_parameters_as_the_cpu_sampler_applies_them) {
  request_data greedy, tiny, off;
  greedy.params.temperature = 0.0f;
  tiny.params.temperature = 0.005f;  // raised to 0.01
  tiny.params.top_k = 10;
  tiny.params.top_p = 0.5f;
  tiny.params.min_p = 0.1f;
  off.params.top_k = 100;            // >= vocab: off
  off.output = {1, 2, 3};
  off.seed = 42;
  sampling_inputs in;
  in.build(requests_of({greedy, tiny, off}), 100);
  ASSERT_EQ(in.rows().size(), 3u);
  EXPECT_EQ(in.rows()[0].greedy, 1);
  EXPECT_EQ(in.rows()[1].greedy, 0);
  EXPECT_EQ(in.rows()[1].temperature, 0.01f);
  EXPECT_EQ(in.rows()[1].top_k, 10);
  EXPECT_EQ(in.rows()[1].top_p, 0.5f);
  EXPECT_EQ(in.rows()[1].min_p, 0.1f);
  EXPECT_EQ(in.rows()[2].top_k, 0);
  EXPECT_EQ(in.rows()[2].draw_index, 3u);
  EXPECT_EQ(in.rows()[2].seed, 42u);
  EXPECT_TRUE(in.masks().empty());
  EXPECT_TRUE(in.biases().empty());
  EXPECT_TRUE(in.penalties().empty());  // no penalty: the history is not needed
}

TEST(sampling_inputs, masks_eos_and_stop_ids_only_while_under_min_tokens) {
  request_data under, reached;
  for (request_data* d : {&under, &reached}) {
    d->params.min_tokens = 2;
    d->params.stop_token_ids = {7, 500};  // 500 is outside the vocabulary
    d->eos = {3};
  }
  under.output = {1};
  reached.output = {1, 2};
  sampling_inputs in;
  in.build(requests_of({under, reached}), 100);
  EXPECT_EQ(in.masks(), (std::vector<int32_t>{3, 7}));
  EXPECT_EQ(in.rows()[0].mask_begin, 0);
  EXPECT_EQ(in.rows()[0].mask_end, 2);
  EXPECT_EQ(in.rows()[1].mask_begin, 2);
  EXPECT_EQ(in.rows()[1].mask_end, 2);
}

TEST(sampling_inputs, clamps_logit_bias_and_drops_ids_outside_the_vocabulary) {
  request_data d;
  d.params.logit_bias = {{4, 250.0f}, {100, 1.0f}, {9, -0.5f}, {-1, 2.0f}, {2, -300.0f}};
  sampling_inputs in;
  in.build(requests_of({d}), 100);
  ASSERT_EQ(in.biases().size(), 3u);
  EXPECT_EQ(in.biases()[0].id, 4);
  EXPECT_EQ(in.biases()[0].bias, 100.0f);
  EXPECT_EQ(in.biases()[1].id, 9);
  EXPECT_EQ(in.biases()[1].bias, -0.5f);
  EXPECT_EQ(in.biases()[2].id, 2);
  EXPECT_EQ(in.biases()[2].bias, -100.0f);
}

TEST(sampling_inputs, lists_each_penalized_token_once_with_its_output_count) {
  request_data repetition, presence;
  repetition.params.repetition_penalty = 1.5f;
  presence.params.presence_penalty = 0.5f;
  for (request_data* d : {&repetition, &presence}) {
    d->prompt = {5, 6, 5};
    d->output = {6, 8, 8, 8, 200};
  }
  sampling_inputs in;
  in.build(requests_of({repetition, presence}), 100);
  auto entries = [&](size_t row) {
    std::vector<std::tuple<int32_t, int32_t, int32_t>> out;
    for (int32_t i = in.rows()[row].penalty_begin; i < in.rows()[row].penalty_end; ++i)
      out.emplace_back(in.penalties()[i].id, in.penalties()[i].output_count, in.penalties()[i].in_prompt);
    std::sort(out.begin(), out.end());
    return out;
  };
  // The repetition penalty covers the prompt too; frequency and presence only the output.
  EXPECT_EQ(entries(0), (std::vector<std::tuple<int32_t, int32_t, int32_t>>{{5, 0, 1}, {6, 1, 1}, {8, 3, 0}}));
  EXPECT_EQ(entries(1), (std::vector<std::tuple<int32_t, int32_t, int32_t>>{{6, 1, 0}, {8, 3, 0}}));
}

TEST(sampling_inputs, packs_into_one_block_that_views_back_the_same_lists) {
  std::mt19937_64 rng(3);
  std::vector<request_data> data;
  for (int i = 0; i < 9; ++i) data.push_back(random_request(rng, 64));
  sampling_inputs in;
  in.build(requests_of(data), 64);
  std::vector<uint64_t> block(in.packed_bytes() / 8 + 1, ~uint64_t{0});
  in.pack(block.data());
  const sampling_batch b = in.view(block.data());
  ASSERT_EQ(b.num_rows(), 9);
  EXPECT_EQ(b.masks.numel(), static_cast<int64_t>(in.masks().size()));
  EXPECT_EQ(b.biases.dim(0), static_cast<int64_t>(in.biases().size()));
  EXPECT_EQ(b.penalties.dim(0), static_cast<int64_t>(in.penalties().size()));
  for (size_t r = 0; r < 9; ++r) {
    EXPECT_EQ(b.rows.as<sampling_row>()[r].seed, in.rows()[r].seed);
    EXPECT_EQ(b.rows.as<sampling_row>()[r].penalty_end, in.rows()[r].penalty_end);
  }
  for (size_t i = 0; i < in.penalties().size(); ++i)
    EXPECT_EQ(b.penalties.as<penalty_entry>()[i].output_count, in.penalties()[i].output_count);
  for (size_t i = 0; i < in.masks().size(); ++i) EXPECT_EQ(b.masks.as<int32_t>()[i], in.masks()[i]);
  for (size_t i = 0; i < in.biases().size(); ++i) EXPECT_EQ(b.biases.as<logit_bias_entry>()[i].bias, in.biases()[i].bias);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.penalties.data) % 8, 0u);
}

TEST(sampling_inputs, copies_each_constrained_rows_bitmask_and_gives_a_mask_that_allows_nothing_the_end_ids) {
  request_data free_row, some, none;
  some.allowed = {0b1010u, 0u};  // ids 1 and 3 of 40
  none.allowed = {0u, 1u << 9};  // id 41: outside the vocabulary of 40, so nothing
  none.eos = {39, 2};
  sampling_inputs in;
  in.build(requests_of({free_row, some, none}), 40);
  EXPECT_EQ(in.rows()[0].bitmask_row, -1);
  EXPECT_EQ(in.rows()[1].bitmask_row, 0);
  EXPECT_EQ(in.rows()[2].bitmask_row, 1);
  EXPECT_EQ(in.bitmasks(), (std::vector<uint32_t>{0b1010u, 0u, 0b100u, 1u << 7}));
  std::vector<uint64_t> block(in.packed_bytes() / 8 + 1);
  in.pack(block.data());
  const sampling_batch b = in.view(block.data());
  ASSERT_EQ(b.bitmasks.dim(0), 2);
  ASSERT_EQ(b.bitmasks.row_elems(), 2);
  EXPECT_EQ(b.bitmasks.as<uint32_t>()[3], 1u << 7);
}

TEST(cpu_sample, a_constrained_row_only_ever_draws_an_allowed_token) {
  std::mt19937_64 rng(5);
  const int32_t vocab = 100;
  for (int trial = 0; trial < 200; ++trial) {
    request_data d;
    d.seed = rng();
    d.params.temperature = trial % 4 == 0 ? 0.0f : 1.5f;
    d.allowed.assign(4, 0u);
    const int32_t a = static_cast<int32_t>(rng() % vocab), b = static_cast<int32_t>(rng() % vocab);
    d.allowed[a / 32] |= 1u << (a % 32);
    d.allowed[b / 32] |= 1u << (b % 32);
    const auto logits = random_logits(rng, vocab, false);
    const int32_t got = sample_op(logits, vocab, {d})[0];
    EXPECT_TRUE(got == a || got == b) << "trial " << trial << ": drew " << got << ", allowed " << a << " and " << b;
    EXPECT_EQ(got, reference(logits, vocab, {d})[0]);
  }
}

TEST(cpu_sample, picks_what_sample_cpu_picks_over_random_parameter_mixes) {
  std::mt19937_64 rng(11);
  int sampled_rows = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int32_t vocab = static_cast<int32_t>(std::vector<int>{1, 2, 7, 64, 333}[trial % 5]);
    const int rows = 1 + static_cast<int>(rng() % 12);
    std::vector<request_data> data;
    for (int r = 0; r < rows; ++r) data.push_back(random_request(rng, vocab));
    const auto logits = random_logits(rng, static_cast<size_t>(rows) * vocab, trial % 2 == 1);
    ASSERT_EQ(sample_op(logits, vocab, data), reference(logits, vocab, data)) << "trial " << trial;
    for (const auto& d : data) sampled_rows += !d.params.greedy();
  }
  EXPECT_GT(sampled_rows, 1000);
}

TEST(cpu_sample, masked_rows_fall_back_to_the_argmax_as_sample_cpu_does) {
  request_data d;
  d.params.min_tokens = 5;
  d.params.stop_token_ids = {0, 1, 2};
  d.seed = 9;
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, neg_inf, neg_inf, neg_inf};
  d.params.temperature = 1.0f;
  EXPECT_EQ(sample_op(logits, 3, {d, d}), reference(logits, 3, {d, d}));
  EXPECT_EQ(sample_op(logits, 3, {d, d}), (std::vector<int32_t>{0, 0}));
}

TEST(model_forward_sample, draws_what_sample_cpu_draws_from_the_forward_logits) {
  cpu_ops ops;
  const auto model_ptr = troupe::testing::reference_model_on(ops);
  model& net = *model_ptr;
  const step_input in = troupe::testing::two_sequence_step();
  const int32_t vocab = static_cast<int32_t>(net.config().vocab_size);
  std::mt19937_64 rng(5);
  std::vector<float> logits;
  net.forward(in, logits);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<request_data> data{random_request(rng, vocab), random_request(rng, vocab)};
    // Many penalized tokens: the sampling block must grow past its first size.
    if (trial == 7)
      for (int i = 0; i < 5000; ++i) data[0].output.push_back(static_cast<int32_t>(rng() % vocab));
    data[0].params.repetition_penalty = trial == 7 ? 1.3f : data[0].params.repetition_penalty;
    sampling_inputs sampling;
    sampling.build(requests_of(data), vocab);
    std::vector<int32_t> tokens;
    net.forward_sample(in, sampling, tokens);
    EXPECT_EQ(tokens, reference(logits, vocab, data)) << "trial " << trial;
  }
  sampling_inputs one;
  one.build(requests_of({random_request(rng, vocab)}), vocab);
  std::vector<int32_t> tokens;
  EXPECT_THROW(net.forward_sample(in, one, tokens), std::invalid_argument);
}

namespace {

// The CPU ops, claiming graphs: the model then pads decode steps to a graph size, and (with no capture)
// runs the padded step eagerly, so the padding itself runs on the CPU.
class padding_cpu_ops : public cpu_ops {
public:
  bool graphs_available() const override { return true; }
};

} // namespace

TEST(model_decode_padding, a_decode_step_padded_to_a_graph_size_computes_what_the_unpadded_one_does) {
  cpu_ops plain;
  padding_cpu_ops padding;
  const auto a = troupe::testing::reference_model_on(plain);
  const auto b = troupe::testing::reference_model_on(padding);
  // Three sequences (graph sizes 1, 2, 4: three decode as four) with 5, 3 and 2 tokens of context.
  step_input prefill;
  prefill.token_ids = {5, 17, 99, 3, 250, 7, 8, 9, 40, 41};
  prefill.positions = {0, 1, 2, 3, 4, 0, 1, 2, 0, 1};
  prefill.slot_mapping = {0, 1, 2, 3, 4, 64, 65, 66, 128, 129};
  prefill.query_start = {0, 5, 8, 10};
  prefill.seq_lens = {5, 3, 2};
  prefill.max_blocks_per_seq = 1;
  prefill.block_tables = {0, 4, 8};
  prefill.logits_indices = {4, 7, 9};
  std::vector<int32_t> ta, tb;
  a->forward_greedy(prefill, ta);
  b->forward_greedy(prefill, tb);
  ASSERT_EQ(ta, tb);
  sampling_params sp;
  sp.temperature = 0.9f;
  for (int32_t step = 0; step < 6; ++step) {
    step_input d;
    d.token_ids = ta;
    d.positions = {5 + step, 3 + step, 2 + step};
    d.slot_mapping = {5 + step, 64 + 3 + step, 128 + 2 + step};
    d.query_start = {0, 1, 2, 3};
    d.seq_lens = {6 + step, 4 + step, 3 + step};
    d.max_blocks_per_seq = 1;
    d.block_tables = {0, 4, 8};
    d.logits_indices = {0, 1, 2};
    std::vector<float> la, lb;
    a->forward(d, la);
    b->forward(d, lb);
    ASSERT_EQ(la, lb) << "step " << step;  // bit for bit: the padding row changes nothing
    const std::vector<int32_t> none;
    const std::vector<sample_request> reqs(3, sample_request{&sp, none, none, 7u + static_cast<uint64_t>(step), {}, {}});
    sampling_inputs si;
    si.build(reqs, static_cast<int32_t>(a->config().vocab_size));
    a->forward_sample(d, si, ta);
    b->forward_sample(d, si, tb);
    ASSERT_EQ(ta, tb) << "step " << step;
    ASSERT_EQ(ta.size(), 3u);
  }
}
