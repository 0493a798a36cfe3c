#include "kernels/cpu/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace troupe {

namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();

uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void check_shape(std::span<const float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  if (vocab <= 0 || logits.size() != reqs.size() * static_cast<size_t>(vocab))
    throw std::invalid_argument("sampler: logits hold " + std::to_string(logits.size()) + " values, expected " +
                                std::to_string(reqs.size()) + " rows of " + std::to_string(vocab));
  for (const auto& r : reqs)
    if (r.params == nullptr) throw std::invalid_argument("sampler: a sample_request has no params");
}

std::span<float> row_of(std::span<float> logits, int32_t vocab, size_t i) {
  return logits.subspan(i * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
}

bool in_vocab(int32_t id, int32_t vocab) { return id >= 0 && id < vocab; }

// Token ids sorted by descending logit, lower id first among equals: the one order every masking
// step uses, so ties resolve the same way everywhere.
bool ranks_before(std::span<const float> row, int32_t a, int32_t b) {
  return row[a] > row[b] || (row[a] == row[b] && a < b);
}

} // namespace

double sampling_uniform(uint64_t seed, uint64_t index) {
  return static_cast<double>(mix(mix(seed) ^ index) >> 11) * 0x1.0p-53;
}

int32_t argmax_lowest_id(std::span<const float> row) {
  int32_t best = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    if (std::isnan(row[i])) continue;
    // Strictly greater keeps the lowest id among equal maxima.
    if (best < 0 || row[i] > row[best]) best = static_cast<int32_t>(i);
  }
  return best < 0 ? 0 : best;
}

int32_t inverse_cdf_draw(std::span<const float> row, double u) {
  float m = neg_inf;
  for (float x : row)
    if (x > m) m = x;
  if (m == neg_inf) return argmax_lowest_id(row);
  double total = 0.0;
  for (float x : row) total += std::exp(static_cast<double>(x - m));
  if (!(total > 0.0) || !std::isfinite(total)) return argmax_lowest_id(row);

  double target = u * total;
  double cum = 0.0;
  int32_t last_positive = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    double w = std::exp(static_cast<double>(row[i] - m));
    if (!(w > 0.0)) continue;
    last_positive = static_cast<int32_t>(i);
    cum += w;
    if (cum > target) return last_positive;
  }
  return last_positive;  // u * total rounded above the last partial sum
}

bool any_token_allowed(std::span<const uint32_t> words, int32_t vocab) {
  const size_t full = static_cast<size_t>(vocab / 32);
  for (size_t w = 0; w < std::min(full, words.size()); ++w)
    if (words[w] != 0) return true;
  // The last word's bits past the vocabulary do not count.
  if (vocab % 32 != 0 && full < words.size() && (words[full] & ((1u << (vocab % 32)) - 1u)) != 0) return true;
  return false;
}

void effective_bitmask(std::span<const uint32_t> words, int32_t vocab, std::span<const int32_t> end_ids,
                       std::span<uint32_t> out) {
  const size_t n = static_cast<size_t>(bitmask_words(vocab));
  if (words.size() != n || out.size() != n)
    throw std::invalid_argument("sampler: a bitmask of " + std::to_string(words.size()) + " words for a vocabulary of " +
                                std::to_string(vocab) + " (" + std::to_string(n) + " words)");
  if (any_token_allowed(words, vocab)) {
    std::copy(words.begin(), words.end(), out.begin());
    return;
  }
  std::fill(out.begin(), out.end(), 0u);
  for (int32_t id : end_ids)
    if (in_vocab(id, vocab)) out[static_cast<size_t>(id) / 32] |= 1u << (id % 32);
}

void apply_allowed_tokens_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  std::vector<uint32_t> words(static_cast<size_t>(bitmask_words(vocab)));
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    if (r.allowed_tokens.empty()) continue;
    effective_bitmask(r.allowed_tokens, vocab, r.eos_token_ids, words);
    auto row = row_of(logits, vocab, i);
    for (int32_t t = 0; t < vocab; ++t)
      if (!(words[static_cast<size_t>(t) / 32] >> (t % 32) & 1u)) row[t] = neg_inf;
  }
}

bool min_tokens_applies(const sample_request& r, int32_t vocab) {
  if (static_cast<int64_t>(r.output_ids.size()) >= r.params->min_tokens) return false;
  if (r.allowed_tokens.empty()) return true;
  std::vector<uint32_t> words(static_cast<size_t>(bitmask_words(vocab)));
  effective_bitmask(r.allowed_tokens, vocab, r.eos_token_ids, words);
  auto clear = [&](int32_t id) {
    if (in_vocab(id, vocab)) words[static_cast<size_t>(id) / 32] &= ~(1u << (id % 32));
  };
  for (int32_t id : r.eos_token_ids) clear(id);
  for (int32_t id : r.params->stop_token_ids) clear(id);
  return any_token_allowed(words, vocab);
}

void apply_min_tokens_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    if (!min_tokens_applies(r, vocab)) continue;
    auto row = row_of(logits, vocab, i);
    for (int32_t id : r.eos_token_ids)
      if (in_vocab(id, vocab)) row[id] = neg_inf;
    for (int32_t id : r.params->stop_token_ids)
      if (in_vocab(id, vocab)) row[id] = neg_inf;
  }
}

void apply_logit_bias_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto row = row_of(logits, vocab, i);
    for (const auto& [id, bias] : reqs[i].params->logit_bias) {
      if (!in_vocab(id, vocab)) continue;
      // fmax drops a NaN bias to -100, which is what vLLM's min(100, max(-100, b)) gives too.
      row[id] += std::fmin(max_logit_bias, std::fmax(-max_logit_bias, bias));
    }
  }
}

void apply_penalties_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  std::vector<int32_t> output_count;
  std::vector<uint8_t> seen;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    const auto& p = *r.params;
    bool repetition = p.repetition_penalty != 1.0f;
    if (!repetition && p.frequency_penalty == 0.0f && p.presence_penalty == 0.0f) continue;
    auto row = row_of(logits, vocab, i);

    output_count.assign(static_cast<size_t>(vocab), 0);
    for (int32_t id : r.output_ids)
      if (in_vocab(id, vocab)) ++output_count[id];

    if (repetition) {
      seen.assign(static_cast<size_t>(vocab), 0);
      for (int32_t id : r.prompt_ids)
        if (in_vocab(id, vocab)) seen[id] = 1;
      for (int32_t id : r.output_ids)
        if (in_vocab(id, vocab)) seen[id] = 1;
      for (int32_t t = 0; t < vocab; ++t) {
        if (!seen[t]) continue;
        // Dividing a positive logit and multiplying a negative one both make the token less likely.
        row[t] = row[t] > 0.0f ? row[t] / p.repetition_penalty : row[t] * p.repetition_penalty;
      }
    }
    for (int32_t t = 0; t < vocab; ++t) {
      if (output_count[t] == 0) continue;
      row[t] -= p.frequency_penalty * static_cast<float>(output_count[t]);
      row[t] -= p.presence_penalty;
    }
  }
}

void apply_temperature_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& p = *reqs[i].params;
    if (p.greedy()) continue;
    float t = std::max(p.temperature, min_positive_temperature);
    if (t == 1.0f) continue;
    for (float& x : row_of(logits, vocab, i)) x /= t;
  }
}

void apply_min_p_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& p = *reqs[i].params;
    if (p.greedy() || !(p.min_p > 0.0f)) continue;
    auto row = row_of(logits, vocab, i);
    float m = *std::max_element(row.begin(), row.end());
    if (m == neg_inf) continue;
    // p_t / p_max = exp(logit_t - m): the softmax normalizer cancels, so no softmax is needed.
    for (float& x : row)
      if (std::exp(static_cast<double>(x - m)) < static_cast<double>(p.min_p)) x = neg_inf;
  }
}

void apply_top_k_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& p = *reqs[i].params;
    if (p.greedy() || p.top_k <= 0 || p.top_k >= vocab) continue;
    auto row = row_of(logits, vocab, i);
    ids.resize(static_cast<size_t>(vocab));
    std::iota(ids.begin(), ids.end(), 0);
    std::nth_element(ids.begin(), ids.begin() + p.top_k, ids.end(),
                     [&](int32_t a, int32_t b) { return ranks_before(row, a, b); });
    for (auto it = ids.begin() + p.top_k; it != ids.end(); ++it) row[*it] = neg_inf;
  }
}

void apply_top_p_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& p = *reqs[i].params;
    if (p.greedy() || !(p.top_p < 1.0f)) continue;
    auto row = row_of(logits, vocab, i);
    float m = *std::max_element(row.begin(), row.end());
    if (m == neg_inf) continue;
    double total = 0.0;
    for (float x : row) total += std::exp(static_cast<double>(x - m));

    // Only unmasked tokens need ranking; after top_k that is k of them, not the whole vocabulary.
    ids.clear();
    for (int32_t t = 0; t < vocab; ++t)
      if (row[t] != neg_inf) ids.push_back(t);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return ranks_before(row, a, b); });
    // A token stays when the mass ranked strictly before it is still short of top_p; this keeps the
    // smallest prefix whose mass reaches top_p, and always the first token.
    double before = 0.0;
    size_t kept = 0;
    while (kept < ids.size() && before < static_cast<double>(p.top_p) * total) {
      before += std::exp(static_cast<double>(row[ids[kept]] - m));
      ++kept;
    }
    for (size_t j = std::max<size_t>(kept, 1); j < ids.size(); ++j) row[ids[j]] = neg_inf;
  }
}

std::vector<int32_t> draw_cpu(std::span<const float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  check_shape(logits, vocab, reqs);
  std::vector<int32_t> out(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = reqs[i];
    auto row = logits.subspan(i * static_cast<size_t>(vocab), static_cast<size_t>(vocab));
    out[i] = r.params->greedy() ? argmax_lowest_id(row)
                                : inverse_cdf_draw(row, sampling_uniform(r.seed, r.output_ids.size()));
  }
  return out;
}

void apply_processors_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  apply_allowed_tokens_cpu(logits, vocab, reqs);
  apply_min_tokens_cpu(logits, vocab, reqs);
  apply_logit_bias_cpu(logits, vocab, reqs);
  apply_penalties_cpu(logits, vocab, reqs);
  // The remaining steps leave greedy rows alone, so greedy rows take the argmax of the penalized logits.
  apply_temperature_cpu(logits, vocab, reqs);
  apply_min_p_cpu(logits, vocab, reqs);
  apply_top_k_cpu(logits, vocab, reqs);
  apply_top_p_cpu(logits, vocab, reqs);
}

std::vector<int32_t> sample_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs) {
  apply_processors_cpu(logits, vocab, reqs);
  return draw_cpu(logits, vocab, reqs);
}

} // namespace troupe
