#pragma once
// The CPU reference sampler: batched, stateless, fp32 logits in, one token id per row out.
// A CUDA twin will take the same arguments and must pick the same tokens.
//
// Steps, in vLLM V1's order (Sampler.forward), each exposed so tests and the twin can check it:
//   0. apply_allowed_tokens_cpu  tokens outside a constrained row's bitmask -> -inf (structured outputs;
//                             vLLM applies the grammar bitmask to the logits before its sampler runs)
//   1. apply_min_tokens_cpu   EOS ids and stop_token_ids -> -inf while fewer than min_tokens outputs
//   2. apply_logit_bias_cpu   logit += clamp(bias, -100, 100)
//   3. apply_penalties_cpu    repetition (prompt + output), then frequency, then presence (output only)
//   -- a greedy row (temperature < 1e-5) now takes argmax_lowest_id and skips steps 4-7 --
//   4. apply_temperature_cpu  logit /= max(temperature, 0.01)
//   5. apply_min_p_cpu        drop p < min_p * p_max
//   6. apply_top_k_cpu        keep exactly the k largest (ties: lower id first)
//   7. apply_top_p_cpu        keep the smallest prefix of the descending order whose mass >= top_p
//   8. draw_cpu               softmax, then inverse CDF with the row's counter-based uniform
// Masked logits are set to -inf. vLLM applies min_p before top-k/top-p (V1); we follow it.
//
// Randomness contract (the GPU twin must reproduce it bit for bit):
//   mix(z)        = splitmix64 finalizer: z += 0x9e3779b97f4a7c15;
//                   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9; z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
//                   return z ^ (z >> 31)                                    (all uint64, wrapping)
//   u(seed, i)    = (mix(mix(seed) ^ i) >> 11) * 2^-53, a double in [0, 1)
//   where i = output_ids.size(), the index of the output token being drawn. So the draw depends only on
//   (seed, i, the row's logits): never on the batch, the row's position in it, or earlier draws, and a
//   preempted request that is recomputed draws the same tokens.
//   Draw: m = max logit; w_t = exp(double(logit_t - m)) (0 for -inf); W = sum of w_t in id order;
//   the token is the lowest id t with (w_0 + ... + w_t) > u * W, accumulated in double in id order
//   (no sort). If rounding leaves no such t, the highest id with w_t > 0. If W is 0 or not finite
//   (every logit masked), the row falls back to argmax_lowest_id.
// Same seed and same logits => same token sequence.

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/sampling_params.hpp"

namespace troupe {

struct sample_request {
  const sampling_params* params = nullptr;
  std::span<const int32_t> prompt_ids;
  std::span<const int32_t> output_ids;  // generated so far; this draw is output token output_ids.size()
  uint64_t seed = 0;                     // effective seed: params->seed, or one the engine drew
  // The model's EOS ids (generation_config may list several). Masked with params->stop_token_ids
  // while output_ids.size() < min_tokens, even under ignore_eos, as vLLM does.
  std::span<const int32_t> eos_token_ids;
  // Structured outputs: the tokens this draw may take, bit (id % 32) of word (id / 32), ceil(vocab / 32)
  // words (grammar_matcher::fill_next_token_bitmask). Empty: every token.
  std::span<const uint32_t> allowed_tokens;
};

// Words of an allowed-token bitmask over `vocab` ids.
inline int32_t bitmask_words(int32_t vocab) { return (vocab + 31) / 32; }

// True when the bitmask allows some id in [0, vocab).
bool any_token_allowed(std::span<const uint32_t> words, int32_t vocab);

// The bitmask a row is sampled with: `words` as given, or, when it allows no id inside [0, vocab), the end
// ids alone, so a grammar that admits nothing ends the sequence rather than emitting a disallowed token.
// Writes into `out` (bitmask_words(vocab) words).
void effective_bitmask(std::span<const uint32_t> words, int32_t vocab, std::span<const int32_t> end_ids,
                       std::span<uint32_t> out);

// The uniform in [0, 1) for output token `index` of a request seeded with `seed`; pure function.
double sampling_uniform(uint64_t seed, uint64_t index);

// Index of the largest value, the lowest index among equals; 0 for an empty or all-NaN row.
int32_t argmax_lowest_id(std::span<const float> row);

// Picks a token from one row of processed logits with uniform u in [0, 1) by the inverse CDF in id
// order (see the contract above); falls back to argmax_lowest_id when every logit is masked.
int32_t inverse_cdf_draw(std::span<const float> row, double u);

// logits: [num_seqs, vocab], modified in place by each apply_* step; reqs: [num_seqs].
// Ids outside [0, vocab) are skipped: validate() has already told the user about bad logit_bias ids,
// and a stop or EOS id outside the vocabulary can never be sampled anyway.

// Whether step 1 masks the row's EOS and stop ids: it has fewer than min_tokens outputs, and, for a
// constrained row, its bitmask allows some other token (when a finished grammar allows only end ids, masking
// them would leave nothing that may be drawn, so the grammar wins).
bool min_tokens_applies(const sample_request& r, int32_t vocab);

// Sets the logits of tokens outside each constrained row's allowed_tokens to -inf (effective_bitmask:
// a mask that allows nothing allows the row's EOS ids). Rows without a bitmask are left as they are.
void apply_allowed_tokens_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Masks EOS ids and stop_token_ids of rows that have fewer than min_tokens outputs (min_tokens_applies).
void apply_min_tokens_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Adds each row's logit_bias, clamped to [-100, 100].
void apply_logit_bias_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Repetition penalty over prompt + output tokens (positive logits divided, others multiplied), then
// logit -= frequency_penalty * count and presence_penalty * (count > 0) over output tokens.
void apply_penalties_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Divides non-greedy rows by max(temperature, 0.01); greedy rows are left as they are.
void apply_temperature_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Masks tokens whose probability is below min_p times the top probability (non-greedy rows).
void apply_min_p_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Keeps exactly top_k tokens, the largest logits, lower id first among equals (non-greedy rows).
// NOTE: vLLM keeps every token tied with the k-th; exactly k gives the twin one right answer.
void apply_top_k_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// Keeps the smallest set, taken in descending order (lower id first among equals), whose
// probability mass >= top_p; always at least one token (non-greedy rows).
void apply_top_p_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);
// One token per row: argmax_lowest_id for greedy rows, else
// inverse_cdf_draw(row, sampling_uniform(seed, output_ids.size())).
std::vector<int32_t> draw_cpu(std::span<const float> logits, int32_t vocab, std::span<const sample_request> reqs);

// Runs steps 0-7 in order (every step but the draw). logits: [num_seqs, vocab] fp32, modified in place.
void apply_processors_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);

// Runs every step above in order. logits: [num_seqs, vocab] fp32, modified in place.
// Returns the chosen token per row. Throws std::invalid_argument when the sizes disagree.
std::vector<int32_t> sample_cpu(std::span<float> logits, int32_t vocab, std::span<const sample_request> reqs);

} // namespace troupe
