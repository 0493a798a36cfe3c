#pragma once
// The bytes that carry a step plan from rank 0's scheduler to the shards of the other processes
// (mpirun), and the stop order that ends them: one channel, one encoding (msgpack, kept inside the .cpp).
//
// Layout (positional msgpack arrays; an internal protocol between ranks of one job built from one binary,
// so no field names and no tolerance for what this build does not write):
//   message   [version, 0, step, [seq...], [released id...]]   a step plan
//             [version, 1]                                    a stop order: the engine shut down, ranks exit 0
//   seq       [id, false, start_position, token_ids, block_ids, sample]               continuing
//             [id, true,  start_position, token_ids, block_ids, sample,
//              all_token_ids, num_prompt_tokens, params, seed]                         new (or resumed)
//   params    [temperature, top_p, top_k, min_p, repetition_penalty, presence_penalty, frequency_penalty,
//              seed | nil, max_tokens, min_tokens, ignore_eos, [stop string...], stop_token_ids,
//              include_stop_str_in_output, [id, bias, id, bias...], logprobs | nil]
// Lists of int32 (token_ids, block_ids, all_token_ids, stop_token_ids) are one msgpack bin each, of
// little-endian int32s: a long prompt decodes as one copy. Floats are float32, other integers the smallest
// msgpack form. version is step_plan_format_version: change it whenever the layout changes.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/step_plan.hpp"

namespace troupe {

inline constexpr uint32_t step_plan_format_version = 2;  // 2: sampling params carry `structured`

// What rank 0 sends the other ranks each step.
struct rank_message {
  enum class kind : uint8_t { plan = 0, stop = 1 };
  kind what = kind::plan;
  step_plan plan;  // empty for a stop order
  bool operator==(const rank_message&) const = default;
};

// Makes `out` the encoding of `plan` (its old contents dropped, its capacity kept, so a sender that reuses
// one buffer allocates nothing in the steady state). Throws std::invalid_argument for a continuing seq
// (!is_new) that carries sampling fields: the layout sends them only with new seqs, and dropping them
// silently would make the shards disagree with the plan.
void encode_step_plan(const step_plan& plan, std::vector<std::byte>& out);
std::vector<std::byte> encode_step_plan(const step_plan& plan);

// Makes `out` the encoding of a stop order.
void encode_stop_order(std::vector<std::byte>& out);

// Encodes a plan or a stop order (a stop order's plan is ignored), as the two above.
void encode_rank_message(const rank_message& message, std::vector<std::byte>& out);

// Decodes a whole message: exactly one message, nothing after it. Throws std::invalid_argument saying what
// is wrong (truncated, not msgpack, a field of the wrong type or range, an array of the wrong length,
// trailing bytes, another format version) for anything this build's encoder would not write. Never reads
// outside `bytes`, and reserves no more than a valid message of bytes.size() would need, whatever lengths
// the bytes claim.
rank_message decode_rank_message(std::span<const std::byte> bytes);

// As above, into `out`, reusing its vectors (a receiver that decodes every step into one message allocates
// little in the steady state). On failure `out` holds part of the message.
void decode_rank_message(std::span<const std::byte> bytes, rank_message& out);

// As decode_rank_message, and also refuses a stop order (std::invalid_argument).
step_plan decode_step_plan(std::span<const std::byte> bytes);

} // namespace troupe
