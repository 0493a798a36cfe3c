#include "kernels/cpu/sampler.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace troupe {
namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

// Logits whose softmax is exactly the given (normalized) probabilities, up to float rounding.
std::vector<float> logits_for(std::initializer_list<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(p > 0 ? static_cast<float>(std::log(p)) : neg_inf);
  return out;
}

sample_request request_for(const sampling_params& p, uint64_t seed = 0, std::span<const int32_t> prompt = {},
                           std::span<const int32_t> output = {}, std::span<const int32_t> eos = {}) {
  return sample_request{&p, prompt, output, seed, eos, {}};
}

// Runs one step on a single-row batch and returns the row.
template <typename Step>
std::vector<float> run_step(Step step, std::vector<float> row, const sample_request& r) {
  step(std::span<float>(row), static_cast<int32_t>(row.size()), std::span<const sample_request>(&r, 1));
  return row;
}

int32_t sample_one(std::vector<float> row, const sample_request& r) {
  return sample_cpu(row, static_cast<int32_t>(row.size()), std::span<const sample_request>(&r, 1))[0];
}

// Empirical frequency of each token over `draws` requests seeded 1..draws, each drawing output token 0.
std::vector<double> frequencies(const std::vector<float>& row, const sampling_params& p, int draws = 20000) {
  std::vector<double> freq(row.size(), 0.0);
  for (int s = 1; s <= draws; ++s) ++freq[sample_one(row, request_for(p, static_cast<uint64_t>(s)))];
  for (double& f : freq) f /= draws;
  return freq;
}

// 20000 draws: a frequency's standard deviation is at most 0.0036, so 0.015 is over 4 sigma while
// every wrong implementation these tests guard against is off by 0.05 or more.
constexpr double freq_tolerance = 0.015;

std::vector<double> softmax(const std::vector<float>& row, double temperature = 1.0) {
  double m = -INFINITY;
  for (float x : row) m = std::max(m, static_cast<double>(x));
  std::vector<double> p;
  double total = 0;
  for (float x : row) total += std::exp((x - m) / temperature);
  for (float x : row) p.push_back(std::exp((x - m) / temperature) / total);
  return p;
}

// ---- randomness contract ----

TEST(sampler, uniform_matches_the_documented_splitmix_formula) {
  // Values computed independently from the formula in sampler.hpp; the GPU twin must match them.
  EXPECT_DOUBLE_EQ(sampling_uniform(0, 0), 0.6524484863740322);
  EXPECT_DOUBLE_EQ(sampling_uniform(42, 0), 0.34329192209867343);
  EXPECT_DOUBLE_EQ(sampling_uniform(42, 1), 0.9504380907279257);
  EXPECT_DOUBLE_EQ(sampling_uniform(UINT64_MAX, 123456789), 0.9414304189013815);
}

TEST(sampler, uniform_is_evenly_spread_over_indices_and_over_seeds) {
  const int n = 100000;
  std::vector<int> by_index(10, 0), by_seed(10, 0);
  for (int i = 0; i < n; ++i) {
    double a = sampling_uniform(7, static_cast<uint64_t>(i));
    double b = sampling_uniform(static_cast<uint64_t>(i), 0);
    ASSERT_GE(a, 0.0);
    ASSERT_LT(a, 1.0);
    ASSERT_GE(b, 0.0);
    ASSERT_LT(b, 1.0);
    ++by_index[static_cast<int>(a * 10)];
    ++by_seed[static_cast<int>(b * 10)];
  }
  for (int k = 0; k < 10; ++k) {
    EXPECT_NEAR(by_index[k] / double(n), 0.1, 0.005) << "bucket " << k;
    EXPECT_NEAR(by_seed[k] / double(n), 0.1, 0.005) << "bucket " << k;
  }
}

// ---- greedy ----

TEST(sampler, greedy_picks_the_argmax_and_the_lowest_id_among_ties) {
  sampling_params p;
  p.temperature = 0.0f;
  EXPECT_EQ(sample_one({0.5f, 2.0f, -1.0f, 1.0f}, request_for(p)), 1);
  EXPECT_EQ(sample_one({0.5f, 2.0f, -1.0f, 2.0f, 2.0f}, request_for(p)), 1);
  EXPECT_EQ(sample_one({3.0f, 3.0f}, request_for(p)), 0);
  EXPECT_EQ(argmax_lowest_id(std::vector<float>{neg_inf, neg_inf, neg_inf}), 0);
}

TEST(sampler, greedy_ignores_seed_top_k_top_p_and_min_p) {
  sampling_params p;
  p.temperature = 0.0f;
  p.top_k = 1;
  p.top_p = 0.1f;
  p.min_p = 0.9f;
  std::vector<float> row = {0.1f, 0.3f, 0.2f};
  for (uint64_t seed = 0; seed < 50; ++seed) EXPECT_EQ(sample_one(row, request_for(p, seed)), 1);
  // The masking steps leave a greedy row untouched.
  auto r = request_for(p);
  EXPECT_EQ(run_step(apply_top_k_cpu, row, r), row);
  EXPECT_EQ(run_step(apply_top_p_cpu, row, r), row);
  EXPECT_EQ(run_step(apply_min_p_cpu, row, r), row);
  EXPECT_EQ(run_step(apply_temperature_cpu, row, r), row);
}

TEST(sampler, greedy_still_applies_penalties_and_logit_bias) {
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  std::vector<int32_t> prompt = {1};
  // Token 1 leads, but it was in the prompt: 2.0 / 2 = 1.0 < 1.5.
  EXPECT_EQ(sample_one({1.5f, 2.0f, 0.0f}, request_for(p, 0, prompt)), 0);
  p.repetition_penalty = 1.0f;
  p.logit_bias = {{2, 5.0f}};
  EXPECT_EQ(sample_one({1.5f, 2.0f, 0.0f}, request_for(p)), 2);
}

// ---- each processing step, exactly ----

TEST(sampler, repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens) {
  sampling_params p;
  p.repetition_penalty = 2.0f;
  std::vector<int32_t> prompt = {0, 1, 1}, output = {1, 4};
  auto row = run_step(apply_penalties_cpu, {2.0f, -2.0f, 2.0f, -2.0f, 3.0f, 0.0f}, request_for(p, 0, prompt, output));
  // Seen tokens 0, 1, 4 each get it once, however often they occur; unseen 2, 3, 5 are untouched.
  EXPECT_EQ(row, (std::vector<float>{1.0f, -4.0f, 2.0f, -2.0f, 1.5f, 0.0f}));
}

TEST(sampler, repetition_penalty_below_one_favours_seen_tokens) {
  sampling_params p;
  p.repetition_penalty = 0.5f;
  std::vector<int32_t> output = {0, 1};
  auto row = run_step(apply_penalties_cpu, {2.0f, -2.0f, 2.0f}, request_for(p, 0, {}, output));
  EXPECT_EQ(row, (std::vector<float>{4.0f, -1.0f, 2.0f}));
}

TEST(sampler, frequency_penalty_subtracts_count_times_penalty_over_output_tokens_only) {
  sampling_params p;
  p.frequency_penalty = 0.5f;
  std::vector<int32_t> prompt = {0, 0, 3}, output = {2, 2, 2, 3};
  auto row = run_step(apply_penalties_cpu, {1.0f, 1.0f, 1.0f, 1.0f}, request_for(p, 0, prompt, output));
  EXPECT_EQ(row, (std::vector<float>{1.0f, 1.0f, -0.5f, 0.5f}));
}

TEST(sampler, presence_penalty_subtracts_once_per_token_present_in_the_output) {
  sampling_params p;
  p.presence_penalty = 0.75f;
  std::vector<int32_t> prompt = {0}, output = {2, 2, 2, 3};
  auto row = run_step(apply_penalties_cpu, {1.0f, 1.0f, 1.0f, 1.0f}, request_for(p, 0, prompt, output));
  EXPECT_EQ(row, (std::vector<float>{1.0f, 1.0f, 0.25f, 0.25f}));
}

TEST(sampler, negative_frequency_and_presence_penalties_raise_repeated_tokens) {
  sampling_params p;
  p.frequency_penalty = -1.0f;
  p.presence_penalty = -0.5f;
  std::vector<int32_t> output = {1, 1};
  auto row = run_step(apply_penalties_cpu, {0.0f, 0.0f}, request_for(p, 0, {}, output));
  EXPECT_EQ(row, (std::vector<float>{0.0f, 2.5f}));
}

TEST(sampler, repetition_then_frequency_then_presence_combine_as_in_vllm) {
  sampling_params p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  std::vector<int32_t> output = {0, 0};
  auto row = run_step(apply_penalties_cpu, {3.0f, 3.0f}, request_for(p, 0, {}, output));
  EXPECT_EQ(row, (std::vector<float>{3.0f / 2 - 0.5f * 2 - 0.25f, 3.0f}));
}

TEST(sampler, logit_bias_adds_to_the_named_tokens_clamped_to_a_hundred) {
  sampling_params p;
  p.logit_bias = {{0, 1.5f}, {2, -250.0f}, {3, 250.0f}, {7, 9.0f} /* out of vocab: skipped */};
  auto row = run_step(apply_logit_bias_cpu, {1.0f, 1.0f, 1.0f, 1.0f}, request_for(p));
  EXPECT_EQ(row, (std::vector<float>{2.5f, 1.0f, -99.0f, 101.0f}));
}

TEST(sampler, min_tokens_masks_eos_and_stop_token_ids_until_reached) {
  sampling_params p;
  p.min_tokens = 2;
  p.stop_token_ids = {3};
  std::vector<int32_t> eos = {1, 4}, one = {0}, two = {0, 0};
  std::vector<float> row = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  EXPECT_EQ(run_step(apply_min_tokens_cpu, row, request_for(p, 0, {}, one, eos)),
            (std::vector<float>{1.0f, neg_inf, 1.0f, neg_inf, neg_inf}));
  EXPECT_EQ(run_step(apply_min_tokens_cpu, row, request_for(p, 0, {}, two, eos)), row);
  // vLLM masks EOS under min_tokens even when ignore_eos is set.
  p.ignore_eos = true;
  EXPECT_EQ(run_step(apply_min_tokens_cpu, row, request_for(p, 0, {}, one, eos)),
            (std::vector<float>{1.0f, neg_inf, 1.0f, neg_inf, neg_inf}));
}

TEST(sampler, min_tokens_keeps_greedy_off_an_eos_it_would_otherwise_pick) {
  sampling_params p;
  p.temperature = 0.0f;
  p.min_tokens = 1;
  std::vector<int32_t> eos = {2};
  EXPECT_EQ(sample_one({0.0f, 1.0f, 9.0f}, request_for(p, 0, {}, {}, eos)), 1);
}

TEST(sampler, temperature_divides_logits_and_tiny_temperatures_are_raised_to_a_hundredth) {
  sampling_params p;
  p.temperature = 0.5f;
  EXPECT_EQ(run_step(apply_temperature_cpu, {1.0f, -3.0f}, request_for(p)), (std::vector<float>{2.0f, -6.0f}));
  p.temperature = 0.001f;
  EXPECT_EQ(run_step(apply_temperature_cpu, {1.0f, -3.0f}, request_for(p)),
            (std::vector<float>{1.0f / 0.01f, -3.0f / 0.01f}));
}

TEST(sampler, top_k_keeps_exactly_the_k_largest_logits) {
  sampling_params p;
  p.top_k = 3;
  auto row = run_step(apply_top_k_cpu, {0.1f, 0.5f, -1.0f, 0.4f, 0.2f, 0.45f}, request_for(p));
  EXPECT_EQ(row, (std::vector<float>{neg_inf, 0.5f, neg_inf, 0.4f, neg_inf, 0.45f}));
}

TEST(sampler, top_k_breaks_ties_toward_the_lower_id) {
  sampling_params p;
  p.top_k = 2;
  auto row = run_step(apply_top_k_cpu, {1.0f, 2.0f, 1.0f, 1.0f}, request_for(p));
  EXPECT_EQ(row, (std::vector<float>{1.0f, 2.0f, neg_inf, neg_inf}));
}

TEST(sampler, top_k_of_zero_minus_one_or_the_whole_vocabulary_keeps_everything) {
  std::vector<float> row = {0.1f, 0.2f, 0.3f};
  for (int32_t k : {0, -1, 3, 10}) {
    sampling_params p;
    p.top_k = k;
    EXPECT_EQ(run_step(apply_top_k_cpu, row, request_for(p)), row) << k;
  }
}

TEST(sampler, top_p_keeps_the_smallest_nucleus_reaching_the_mass) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 spread over ids out of order.
  std::vector<float> row = logits_for({0.15, 0.5, 0.05, 0.3});
  auto kept = [&](float top_p) {
    sampling_params p;
    p.top_p = top_p;
    auto out = run_step(apply_top_p_cpu, row, request_for(p));
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < 4; ++t) {
      if (out[t] != neg_inf) {
        EXPECT_EQ(out[t], row[t]);
        ids.push_back(t);
      }
    }
    return ids;
  };
  EXPECT_EQ(kept(0.45f), (std::vector<int32_t>{1}));
  EXPECT_EQ(kept(0.6f), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(kept(0.9f), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(kept(0.97f), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(kept(1.0f), (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(sampler, top_p_always_keeps_the_most_likely_token) {
  sampling_params p;
  p.top_p = 1e-6f;
  auto row = run_step(apply_top_p_cpu, {0.0f, 0.0f, 5.0f, 0.0f}, request_for(p));
  EXPECT_EQ(row, (std::vector<float>{neg_inf, neg_inf, 5.0f, neg_inf}));
}

TEST(sampler, min_p_masks_tokens_below_the_fraction_of_the_top_probability) {
  sampling_params p;
  p.min_p = 0.2f;  // threshold 0.2 * 0.5 = 0.1
  std::vector<float> row = logits_for({0.5, 0.05, 0.3, 0.15});
  auto out = run_step(apply_min_p_cpu, row, request_for(p));
  EXPECT_EQ(out, (std::vector<float>{row[0], neg_inf, row[2], row[3]}));
  p.min_p = 0.7f;  // threshold 0.35
  out = run_step(apply_min_p_cpu, row, request_for(p));
  EXPECT_EQ(out, (std::vector<float>{row[0], neg_inf, neg_inf, neg_inf}));
}

TEST(sampler, top_p_is_measured_over_the_tokens_top_k_kept) {
  // 0.4, 0.3, 0.2, 0.1: top_p 0.5 alone keeps two tokens; after top_k 2 the survivors renormalize to
  // 4/7 and 3/7, and 4/7 alone reaches 0.5.
  std::vector<float> row = logits_for({0.4, 0.3, 0.2, 0.1});
  sampling_params p;
  p.top_p = 0.5f;
  std::vector<float> only_p = row;
  auto r = request_for(p);
  apply_top_p_cpu(only_p, 4, std::span<const sample_request>(&r, 1));
  EXPECT_EQ(only_p, (std::vector<float>{row[0], row[1], neg_inf, neg_inf}));
  p.top_k = 2;
  std::vector<float> both = row;
  apply_top_k_cpu(both, 4, std::span<const sample_request>(&r, 1));
  apply_top_p_cpu(both, 4, std::span<const sample_request>(&r, 1));
  EXPECT_EQ(both, (std::vector<float>{row[0], neg_inf, neg_inf, neg_inf}));
}

TEST(sampler, inverse_cdf_draw_walks_token_ids_in_order_and_never_picks_a_masked_token) {
  // Weights 0.25, 0 (masked), 0.25, 0.5.
  std::vector<float> row = logits_for({0.25, 0.0, 0.25, 0.5});
  EXPECT_EQ(inverse_cdf_draw(row, 0.0), 0);
  EXPECT_EQ(inverse_cdf_draw(row, 0.1), 0);
  EXPECT_EQ(inverse_cdf_draw(row, 0.3), 2);
  EXPECT_EQ(inverse_cdf_draw(row, 0.49), 2);
  EXPECT_EQ(inverse_cdf_draw(row, 0.51), 3);
  EXPECT_EQ(inverse_cdf_draw(row, 0.999999), 3);
  std::vector<float> last_masked = logits_for({0.5, 0.5, 0.0});
  EXPECT_EQ(inverse_cdf_draw(last_masked, std::nextafter(1.0, 0.0)), 1);
}

TEST(sampler, inverse_cdf_draw_falls_back_to_argmax_when_every_token_is_masked) {
  EXPECT_EQ(inverse_cdf_draw(std::vector<float>{neg_inf, neg_inf}, 0.7), 0);
}

// ---- distributions, measured ----

TEST(sampler, sampled_frequencies_follow_the_softmax) {
  std::vector<float> row = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  sampling_params p;
  auto freq = frequencies(row, p);
  auto expected = softmax(row);
  for (size_t t = 0; t < row.size(); ++t) EXPECT_NEAR(freq[t], expected[t], freq_tolerance) << "token " << t;
}

TEST(sampler, successive_draws_of_one_seed_follow_the_softmax) {
  // Same seed, output index 0..19999: the per-index uniforms are as good as per-seed ones.
  std::vector<float> row = {1.0f, 0.0f, 2.0f};
  sampling_params p;
  std::vector<int32_t> history(20000, 0);
  std::vector<double> freq(3, 0.0);
  for (size_t i = 0; i < history.size(); ++i)
    ++freq[sample_one(row, request_for(p, 99, {}, std::span<const int32_t>(history).first(i)))];
  auto expected = softmax(row);
  for (size_t t = 0; t < 3; ++t) EXPECT_NEAR(freq[t] / history.size(), expected[t], freq_tolerance);
}

TEST(sampler, temperature_below_one_sharpens_and_above_one_flattens) {
  std::vector<float> row = {1.0f, 0.0f};  // p(0) = 0.731 at T = 1
  double previous = 1.0;
  for (float t : {0.5f, 1.0f, 2.0f}) {
    sampling_params p;
    p.temperature = t;
    auto freq = frequencies(row, p);
    double expected = 1.0 / (1.0 + std::exp(-1.0 / t));  // 0.881, 0.731, 0.622
    EXPECT_NEAR(freq[0], expected, freq_tolerance) << "T = " << t;
    EXPECT_LT(freq[0], previous - 0.05) << "T = " << t;
    previous = freq[0];
  }
}

TEST(sampler, top_k_sampling_draws_only_the_k_kept_tokens_in_renormalized_proportion) {
  std::vector<float> row = logits_for({0.1, 0.4, 0.05, 0.25, 0.2});
  sampling_params p;
  p.top_k = 2;
  auto freq = frequencies(row, p);
  EXPECT_EQ(freq[0] + freq[2] + freq[4], 0.0);
  EXPECT_NEAR(freq[1], 0.4 / 0.65, freq_tolerance);
  EXPECT_NEAR(freq[3], 0.25 / 0.65, freq_tolerance);
}

TEST(sampler, top_p_and_min_p_sampling_draw_only_kept_tokens_in_renormalized_proportion) {
  std::vector<float> row = logits_for({0.1, 0.4, 0.05, 0.25, 0.2});
  sampling_params p;
  p.top_p = 0.8f;  // keeps 0.4, 0.25, 0.2
  auto freq = frequencies(row, p);
  EXPECT_EQ(freq[0] + freq[2], 0.0);
  EXPECT_NEAR(freq[1], 0.4 / 0.85, freq_tolerance);
  EXPECT_NEAR(freq[3], 0.25 / 0.85, freq_tolerance);
  EXPECT_NEAR(freq[4], 0.2 / 0.85, freq_tolerance);

  sampling_params q;
  q.min_p = 0.3f;  // threshold 0.12: keeps 0.4, 0.25, 0.2
  EXPECT_EQ(frequencies(row, q), freq);
}

TEST(sampler, presence_penalty_shifts_the_measured_distribution_by_its_logit_change) {
  std::vector<float> row = {0.0f, 0.0f};
  sampling_params p;
  p.presence_penalty = 1.0f;
  std::vector<int32_t> output = {0};
  std::vector<double> freq(2, 0.0);
  const int draws = 20000;
  for (int s = 1; s <= draws; ++s) ++freq[sample_one(row, request_for(p, static_cast<uint64_t>(s), {}, output))];
  EXPECT_NEAR(freq[0] / draws, 1.0 / (1.0 + std::exp(1.0)), freq_tolerance);  // 0.269
}

// ---- reproducibility and batch independence ----

std::vector<int32_t> generate(uint64_t seed, int steps) {
  sampling_params p;
  p.temperature = 1.0f;
  p.top_p = 0.95f;
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    std::vector<float> row(100);
    for (int t = 0; t < 100; ++t) row[t] = std::sin(0.37f * t + 0.11f * i);  // different logits each step
    out.push_back(sample_one(row, request_for(p, seed, {}, out)));
  }
  return out;
}

TEST(sampler, the_same_seed_repeats_the_token_sequence_and_another_seed_differs) {
  auto a = generate(42, 64);
  EXPECT_EQ(a, generate(42, 64));
  auto b = generate(43, 64);
  int same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  EXPECT_LT(same, 16);  // two independent streams over ~100 tokens agree a few times at most
}

TEST(sampler, a_rows_token_does_not_depend_on_its_position_in_the_batch) {
  const int32_t vocab = 50;
  const int num = 6;
  std::vector<sampling_params> params(num);
  params[0].temperature = 0.7f;
  params[1].temperature = 0.0f;
  params[2].top_k = 5;
  params[3].top_p = 0.5f;
  params[3].repetition_penalty = 1.3f;
  params[4].min_p = 0.1f;
  params[4].presence_penalty = 0.5f;
  params[5].logit_bias = {{3, 2.0f}};
  params[5].min_tokens = 4;
  std::vector<std::vector<int32_t>> outputs(num);
  std::vector<std::vector<float>> rows(num);
  std::vector<int32_t> prompt = {1, 2, 3}, eos = {0};
  for (int i = 0; i < num; ++i) {
    for (int k = 0; k < i; ++k) outputs[i].push_back(k * 7 % vocab);
    for (int t = 0; t < vocab; ++t) rows[i].push_back(std::cos(0.3f * t * (i + 1)));
  }
  auto request = [&](int i) { return request_for(params[i], 1000 + i, prompt, outputs[i], eos); };

  std::vector<int32_t> alone(num);
  for (int i = 0; i < num; ++i) alone[i] = sample_one(rows[i], request(i));

  for (const auto& order : {std::vector<int>{0, 1, 2, 3, 4, 5}, {5, 3, 1, 0, 4, 2}, {2, 2, 4, 0}}) {
    std::vector<float> logits;
    std::vector<sample_request> reqs;
    for (int i : order) {
      logits.insert(logits.end(), rows[i].begin(), rows[i].end());
      reqs.push_back(request(i));
    }
    auto tokens = sample_cpu(logits, vocab, reqs);
    for (size_t j = 0; j < order.size(); ++j) EXPECT_EQ(tokens[j], alone[order[j]]) << "request " << order[j];
  }
}

// ---- order of steps and shapes ----

TEST(sampler, logit_bias_comes_before_the_repetition_penalty_as_in_vllm) {
  // Token 1: bias first gives (-0.5 + 1) / 2 = 0.25 > 0.1; penalty first would give -1 + 1 = 0 < 0.1.
  sampling_params p;
  p.temperature = 0.0f;
  p.repetition_penalty = 2.0f;
  p.logit_bias = {{1, 1.0f}};
  std::vector<int32_t> prompt = {1};
  EXPECT_EQ(sample_one({0.1f, -0.5f}, request_for(p, 0, prompt)), 1);
}

TEST(sampler, min_p_comes_before_top_p_as_in_vllm) {
  // 0.4, 0.3, 0.2, 0.1 with min_p 0.3 (threshold 0.12) and top_p 0.42. min_p first (vLLM V1) leaves
  // 0.444, 0.333, 0.222 after renormalizing, so the top token alone reaches 0.42. top_p first would
  // keep 0.4 and 0.3, and min_p after it would keep both.
  std::vector<float> row = logits_for({0.4, 0.3, 0.2, 0.1});
  sampling_params p;
  p.min_p = 0.3f;
  p.top_p = 0.42f;
  for (uint64_t seed = 0; seed < 200; ++seed) ASSERT_EQ(sample_one(row, request_for(p, seed)), 0) << seed;
}

TEST(sampler, a_bitmask_sets_every_disallowed_logit_to_minus_infinity_first) {
  sampling_params p;
  p.logit_bias = {{0, 100.0f}};  // logit_bias comes after the mask: a masked token stays masked
  std::vector<uint32_t> allowed = {0b0110u};  // ids 1 and 2
  sample_request r = request_for(p);
  r.allowed_tokens = allowed;
  EXPECT_EQ(run_step(apply_allowed_tokens_cpu, {5.0f, 1.0f, 2.0f, 9.0f}, r),
            (std::vector<float>{neg_inf, 1.0f, 2.0f, neg_inf}));
  EXPECT_EQ(run_step(apply_processors_cpu, {5.0f, 1.0f, 2.0f, 9.0f}, r),
            (std::vector<float>{neg_inf, 1.0f, 2.0f, neg_inf}));
  p.temperature = 0.0f;
  EXPECT_EQ(sample_one({5.0f, 1.0f, 2.0f, 9.0f}, r), 2);
}

TEST(sampler, min_tokens_does_not_mask_the_end_ids_a_finished_grammar_alone_allows) {
  sampling_params p;
  p.min_tokens = 5;
  p.stop_token_ids = {1};
  const std::vector<int32_t> eos = {3};
  std::vector<uint32_t> only_end = {1u << 3}, end_and_two = {(1u << 3) | (1u << 2)}, end_and_stop = {(1u << 3) | (1u << 1)};
  sample_request r = request_for(p, 7, {}, {}, eos);
  r.allowed_tokens = only_end;
  EXPECT_FALSE(min_tokens_applies(r, 5));
  EXPECT_EQ(sample_one({5.0f, 1.0f, 2.0f, 0.5f, 9.0f}, r), 3);
  r.allowed_tokens = end_and_stop;  // the stop id is masked by min_tokens too: still nothing else
  EXPECT_FALSE(min_tokens_applies(r, 5));
  r.allowed_tokens = end_and_two;   // id 2 remains: min_tokens masks the end id as usual
  EXPECT_TRUE(min_tokens_applies(r, 5));
  EXPECT_EQ(sample_one({5.0f, 1.0f, 2.0f, 0.5f, 9.0f}, r), 2);
  r.allowed_tokens = {};
  EXPECT_TRUE(min_tokens_applies(r, 5));
}

TEST(sampler, a_row_without_a_bitmask_is_untouched_by_the_mask_step) {
  sampling_params p;
  EXPECT_EQ(run_step(apply_allowed_tokens_cpu, {5.0f, 1.0f}, request_for(p)), (std::vector<float>{5.0f, 1.0f}));
}

TEST(sampler, a_bitmask_that_allows_nothing_in_the_vocabulary_allows_the_end_ids) {
  sampling_params p;
  const std::vector<int32_t> eos = {3};
  // Bit 5 is past a vocabulary of 5 ids: it does not count.
  std::vector<uint32_t> allowed = {1u << 5};
  sample_request r = request_for(p, 7, {}, {}, eos);
  r.allowed_tokens = allowed;
  EXPECT_EQ(run_step(apply_allowed_tokens_cpu, {5.0f, 1.0f, 2.0f, 0.5f, 9.0f}, r),
            (std::vector<float>{neg_inf, neg_inf, neg_inf, 0.5f, neg_inf}));
  EXPECT_EQ(sample_one({5.0f, 1.0f, 2.0f, 0.5f, 9.0f}, r), 3);
}

TEST(sampler, any_token_allowed_ignores_bits_past_the_vocabulary) {
  EXPECT_FALSE(any_token_allowed(std::vector<uint32_t>{0u}, 3));
  EXPECT_FALSE(any_token_allowed(std::vector<uint32_t>{0b1000u}, 3));
  EXPECT_TRUE(any_token_allowed(std::vector<uint32_t>{0b100u}, 3));
  EXPECT_TRUE(any_token_allowed(std::vector<uint32_t>{0u, 1u}, 33));
  EXPECT_FALSE(any_token_allowed(std::vector<uint32_t>{0u, 2u}, 33));
}

TEST(sampler, mismatched_shapes_are_rejected) {
  sampling_params p;
  auto r = request_for(p);
  std::vector<float> row(5);
  EXPECT_THROW(sample_cpu(row, 4, std::span<const sample_request>(&r, 1)), std::invalid_argument);
  sample_request no_params{};
  EXPECT_THROW(sample_cpu(row, 5, std::span<const sample_request>(&no_params, 1)), std::invalid_argument);
}

} // namespace
} // namespace troupe
