// The bytes rank 0 broadcasts to the other ranks each step (runtime/engine/step_plan_codec): every field of a
// plan reads back as written, a stop order reads back as one, and anything else is refused with a message
// saying what is wrong, never a crash.

#include "runtime/engine/step_plan_codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe {
namespace {

using bytes = std::vector<std::byte>;

bytes of(std::initializer_list<int> values) {
  bytes out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// The message decode_rank_message refuses `b` with, or "decoded".
std::string refusal(std::span<const std::byte> b) {
  try {
    decode_rank_message(b);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "decoded";
}

scheduled_seq continuing(request_id id, int32_t start, std::vector<int32_t> tokens, std::vector<int32_t> blocks,
                         bool sample) {
  scheduled_seq s;
  s.id = id;
  s.start_position = start;
  s.token_ids = std::move(tokens);
  s.block_ids = std::move(blocks);
  s.sample = sample;
  return s;
}

// Every field set, none to its default.
sampling_params every_sampling_field() {
  sampling_params p;
  p.temperature = 0.7f;
  p.top_p = 0.9f;
  p.top_k = 40;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = -0.5f;
  p.frequency_penalty = 0.25f;
  p.seed = std::numeric_limits<uint64_t>::max();
  p.max_tokens = 300;
  p.min_tokens = 3;
  p.ignore_eos = true;
  p.stop = {"\n\n", "終わり", "🙂 done", ""};
  p.stop_token_ids = {2, 128001};
  p.include_stop_str_in_output = true;
  p.logit_bias = {{50256, -100.0f}, {7, 2.5f}, {0, -0.125f}};
  p.logprobs = 0;
  p.structured = structured_output{structured_output::kind::json_schema, R"({"type":"object","title":"終わり"})"};
  return p;
}

step_plan mixed_plan() {
  step_plan plan;
  plan.step = 12345678901ull;
  scheduled_seq fresh;
  fresh.id = 1ull << 40;
  fresh.is_new = true;
  fresh.start_position = 32;  // 32 tokens were a prefix cache hit
  fresh.token_ids = {10, 11, 12, -1};
  fresh.block_ids = {4, 0, 9};
  fresh.sample = true;
  for (int32_t t = 0; t < 36; ++t) fresh.all_token_ids.push_back(t * 1000);
  fresh.num_prompt_tokens = 35;
  fresh.params = every_sampling_field();
  fresh.seed = 0xdeadbeefcafeull;
  plan.seqs.push_back(fresh);
  scheduled_seq plain;  // new, with default sampling
  plain.id = 2;
  plain.is_new = true;
  plain.token_ids = {1, 2, 3};
  plain.block_ids = {1};
  plain.all_token_ids = {1, 2, 3};
  plain.num_prompt_tokens = 3;
  plan.seqs.push_back(plain);
  plan.seqs.push_back(continuing(3, 100, {42}, {17}, true));
  plan.seqs.push_back(continuing(4, 16, {5, 6, 7, 8}, {}, false));  // a prefill chunk that does not sample yet
  plan.released = {5, std::numeric_limits<uint64_t>::max()};
  return plan;
}

TEST(step_plan_codec, an_empty_plan_is_six_bytes_and_reads_back) {
  const bytes b = encode_step_plan(step_plan{});
  // [version 2, kind 0 (plan), step 0, seqs [], released []]
  EXPECT_EQ(b, of({0x95, 0x02, 0x00, 0x00, 0x90, 0x90}));
  EXPECT_EQ(decode_step_plan(b), step_plan{});
}

TEST(step_plan_codec, a_decode_step_of_one_seq_is_26_bytes) {
  step_plan plan;
  plan.step = 9;
  plan.seqs.push_back(continuing(5, 300, {1000}, {7}, true));
  plan.released = {4};
  // [1, 0, 9, [[5, false, 300, bin(e8 03 00 00), bin(07 00 00 00), true]], [4]]
  EXPECT_EQ(encode_step_plan(plan), of({0x95, 0x02, 0x00, 0x09, 0x91, 0x96, 0x05, 0xc2, 0xcd, 0x01, 0x2c, 0xc4, 0x04, 0xe8,
                                         0x03, 0x00, 0x00, 0xc4, 0x04, 0x07, 0x00, 0x00, 0x00, 0xc3, 0x91, 0x04}));
  EXPECT_EQ(decode_step_plan(encode_step_plan(plan)), plan);
}

TEST(step_plan_codec, new_and_continuing_seqs_released_ids_and_every_sampling_field_read_back) {
  const step_plan plan = mixed_plan();
  const step_plan back = decode_step_plan(encode_step_plan(plan));
  EXPECT_EQ(back, plan);
  // The fields == would pass for a default on both sides: check the unusual values arrived.
  ASSERT_EQ(back.seqs.size(), 4u);
  const sampling_params& p = back.seqs[0].params;
  EXPECT_EQ(p.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(p.stop[1], "終わり");
  EXPECT_EQ(p.stop[2], "🙂 done");
  EXPECT_EQ(p.logit_bias[0], (std::pair<int32_t, float>{50256, -100.0f}));
  EXPECT_EQ(p.logprobs, 0);
  EXPECT_FALSE(back.seqs[1].params.seed.has_value());
  EXPECT_FALSE(back.seqs[1].params.logprobs.has_value());
  ASSERT_TRUE(p.structured.has_value());
  EXPECT_EQ(p.structured->type, structured_output::kind::json_schema);
  EXPECT_EQ(p.structured->text, R"({"type":"object","title":"終わり"})");
  EXPECT_FALSE(back.seqs[1].params.structured.has_value());
  EXPECT_EQ(back.released[1], std::numeric_limits<uint64_t>::max());
}

TEST(step_plan_codec, a_plan_of_1000_seqs_reads_back) {
  step_plan plan;
  plan.step = 7;
  for (int32_t i = 0; i < 1000; ++i) {
    if (i % 10 == 0) {
      scheduled_seq s = continuing(static_cast<request_id>(i), 0, {i, i + 1}, {i, i + 1000}, true);
      s.is_new = true;
      s.all_token_ids = {i, i + 1};
      s.num_prompt_tokens = 2;
      s.params.temperature = 0.0f;
      s.params.max_tokens = i;
      s.seed = static_cast<uint64_t>(i) * 7919;
      plan.seqs.push_back(s);
    } else {
      plan.seqs.push_back(continuing(static_cast<request_id>(i), 100 + i, {i}, i % 16 == 0 ? std::vector<int32_t>{i} : std::vector<int32_t>{}, true));
    }
  }
  for (request_id id = 5000; id < 5100; ++id) plan.released.push_back(id);
  EXPECT_EQ(decode_step_plan(encode_step_plan(plan)), plan);
}

TEST(step_plan_codec, a_reused_buffer_holds_only_the_latest_plan) {
  bytes buffer;
  encode_step_plan(mixed_plan(), buffer);
  step_plan small;
  small.step = 3;
  small.seqs.push_back(continuing(9, 4, {1}, {}, true));
  encode_step_plan(small, buffer);
  EXPECT_EQ(buffer, encode_step_plan(small));
  EXPECT_EQ(decode_step_plan(buffer), small);
}

TEST(step_plan_codec, a_stop_order_reads_back_as_one_and_is_not_a_plan) {
  bytes b;
  encode_stop_order(b);
  EXPECT_EQ(b, of({0x92, 0x02, 0x01}));  // [version 2, kind 1 (stop)]
  EXPECT_EQ(decode_rank_message(b).what, rank_message::kind::stop);
  EXPECT_THROW(
      {
        try {
          decode_step_plan(b);
        } catch (const std::invalid_argument& e) {
          EXPECT_STREQ(e.what(), "expected a step plan message, got a stop order");
          throw;
        }
      },
      std::invalid_argument);
  rank_message plan{rank_message::kind::plan, mixed_plan()};
  encode_rank_message(plan, b);
  EXPECT_EQ(decode_rank_message(b), plan);
}

TEST(step_plan_codec, a_continuing_seq_carrying_sampling_fields_is_refused_when_encoding) {
  step_plan plan;
  plan.seqs.push_back(continuing(8, 4, {1}, {}, true));
  plan.seqs[0].params.temperature = 0.0f;
  EXPECT_THROW(encode_step_plan(plan), std::invalid_argument);
  plan.seqs[0].params = {};
  plan.seqs[0].all_token_ids = {1};
  EXPECT_THROW(encode_step_plan(plan), std::invalid_argument);
}

TEST(step_plan_codec, every_truncation_of_a_valid_encoding_is_refused) {
  const bytes b = encode_step_plan(mixed_plan());
  EXPECT_EQ(refusal(std::span(b).first(0)), "malformed step plan message: the message is empty");
  for (size_t n = 1; n < b.size(); ++n) {
    // Either the bytes end inside a value, or an array claims more elements than the bytes left could hold.
    const std::string why = refusal(std::span(b).first(n));
    EXPECT_EQ(why.rfind("malformed step plan message: the message is truncated: ", 0), 0u) << why;
  }
}

TEST(step_plan_codec, random_byte_flips_decode_to_a_plan_or_are_refused) {
  const bytes b = encode_step_plan(mixed_plan());
  std::mt19937 rng(11);
  int decoded = 0;
  int refused = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    bytes flipped = b;
    const int flips = 1 + trial % 3;
    for (int f = 0; f < flips; ++f)
      flipped[rng() % flipped.size()] ^= static_cast<std::byte>(1 + rng() % 255);
    try {
      const rank_message m = decode_rank_message(flipped);
      ++decoded;
      // What decodes is a message this build writes: it encodes, and reads back to the same bytes.
      bytes once;
      encode_rank_message(m, once);
      bytes twice;
      encode_rank_message(decode_rank_message(once), twice);
      ASSERT_EQ(once, twice) << "trial " << trial;
    } catch (const std::invalid_argument& e) {
      ++refused;
      ASSERT_EQ(std::string(e.what()).rfind("malformed step plan message: ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(decoded, 0);  // flips inside numbers and strings still decode
  EXPECT_GT(refused, 0);
}

TEST(step_plan_codec, another_format_version_is_refused_naming_both_versions) {
  bytes b = encode_step_plan(mixed_plan());
  ASSERT_EQ(b[1], std::byte{0x02});
  b[1] = std::byte{0x07};
  EXPECT_EQ(refusal(b), "malformed step plan message: the message is in step plan format version 7, but this "
                        "build reads version 2: every rank must run the same troupe build");
}

TEST(step_plan_codec, trailing_bytes_are_refused) {
  bytes b = encode_step_plan(step_plan{});
  b.push_back(std::byte{0xc0});
  EXPECT_EQ(refusal(b), "malformed step plan message: the message has 1 bytes after its end (at offset 6)");
}

TEST(step_plan_codec, a_message_decoded_into_a_used_one_replaces_all_of_it) {
  rank_message m;
  decode_rank_message(encode_step_plan(mixed_plan()), m);
  // The same ids, now all continuing with other tokens: nothing of the new seqs' sampling fields may stay.
  step_plan next;
  next.step = 2;
  next.seqs.push_back(continuing(1ull << 40, 36, {7}, {}, true));
  next.seqs.push_back(continuing(2, 3, {8}, {3}, true));
  decode_rank_message(encode_step_plan(next), m);
  EXPECT_EQ(m, (rank_message{rank_message::kind::plan, next}));
  bytes stop;
  encode_stop_order(stop);
  decode_rank_message(stop, m);
  EXPECT_EQ(m, (rank_message{rank_message::kind::stop, {}}));
  decode_rank_message(encode_step_plan(mixed_plan()), m);
  EXPECT_EQ(m.plan, mixed_plan());
}

TEST(step_plan_codec, lengths_claimed_beyond_the_bytes_are_refused_before_anything_is_built) {
  // seqs announced as an array32 of 2^32-1 elements, then nothing: reserving first would ask for 1 TB.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff})),
            "malformed step plan message: the message is truncated: seqs claims 4294967295 elements, but the whole "
            "message is 9 bytes");
  // Two sequences (at least 18 bytes) in a message of 13.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x00, 0x92, 0x96, 0x05, 0xc2, 0x00, 0x90, 0x90, 0xc3, 0x90})),
            "malformed step plan message: the message is truncated: seqs claims 2 elements, but the whole message is "
            "13 bytes");
  // A str32 of 2^32-1 bytes where the version should be.
  EXPECT_EQ(refusal(of({0x92, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61})),
            "malformed step plan message: the message is truncated: 7 bytes end inside it");
}

TEST(step_plan_codec, nesting_where_the_layout_has_no_array_is_refused_at_once) {
  bytes deep{std::byte{0x92}};
  deep.insert(deep.end(), 100000, std::byte{0x91});  // [[[[[...
  deep.push_back(std::byte{0xc0});
  EXPECT_EQ(refusal(deep), "malformed step plan message: the format version must be an unsigned integer, got an array of 1");
}

TEST(step_plan_codec, each_kind_of_malformed_message_is_named) {
  const std::string m = "malformed step plan message: ";
  EXPECT_EQ(refusal(of({0xc1})), m + "the message is not valid msgpack (a bad byte at offset 0)");
  EXPECT_EQ(refusal(of({0x92, 0x02, 0xc1})), m + "the message is not valid msgpack (a bad byte at offset 2)");
  EXPECT_EQ(refusal(of({0x91, 0x02})), m + "the message must be an array [version, kind, ...], got an array of 1");
  EXPECT_EQ(refusal(of({0x92, 0xa1, 'x', 0x00})), m + "the format version must be an unsigned integer, got a string");
  EXPECT_EQ(refusal(of({0x92, 0x02, 0x02})), m + "the message kind must be 0 (a step plan) or 1 (a stop order), got 2");
  EXPECT_EQ(refusal(of({0x93, 0x02, 0x01, 0xc0})), m + "a stop order must be an array of 2 (version, kind), got an array of 3");
  EXPECT_EQ(refusal(of({0x94, 0x02, 0x00, 0x00, 0x90})),
            m + "a step plan must be an array of 5 (version, kind, step, seqs, released), got an array of 4");
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0xff, 0x90, 0x90})), m + "step must be an unsigned 64-bit integer, got -1");
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x00, 0x80, 0x90})), m + "seqs must be an array, got a map");
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0xc4, 0x01, 0x00, 0x90, 0x90})),
            m + "step must be an unsigned 64-bit integer, got binary data of 1 bytes");
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x00, 0x90, 0x91, 0xc3})), m + "released[0] must be a request id, got true");
  // seqs[0] = [5, false, 0, [1], bin(), true]: token ids as an array rather than a bin of int32s.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x07, 0x91, 0x96, 0x05, 0xc2, 0x00, 0x91, 0x01, 0xc4, 0x00, 0xc3, 0x90})),
            m + "seqs[0].token_ids must be int32s (binary data of 4-byte little-endian values), got an array of 1");
  // A bin of 3 bytes: not a whole int32.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x07, 0x91, 0x96, 0x05, 0xc2, 0x00, 0xc4, 0x03, 0x01, 0x02, 0x03, 0xc4, 0x00,
                        0xc3, 0x90})),
            m + "seqs[0].token_ids must be int32s (binary data of 4-byte little-endian values), got binary data of 3 bytes");
  // A start position of 2^31: out of int32 range.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x07, 0x91, 0x96, 0x05, 0xc2, 0xce, 0x80, 0x00, 0x00, 0x00, 0xc4, 0x00, 0xc4,
                        0x00, 0xc3, 0x90})),
            m + "seqs[0].start_position must be a 32-bit integer, got 2147483648");
  // A continuing seq of 10 fields.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x07, 0x91, 0x9a, 0x05, 0xc2, 0x00, 0x90, 0x90, 0xc3, 0x90, 0x00, 0x90, 0x00,
                        0x90})),
            m + "seqs[0].is_new is false, so the sequence must have 6 fields, got 10");
  // A seq of 7 fields.
  EXPECT_EQ(refusal(of({0x95, 0x02, 0x00, 0x07, 0x91, 0x97, 0x05, 0xc2, 0x00, 0x90, 0x90, 0xc3, 0xc0, 0x90})),
            m + "seqs[0] must be an array of 6 (continuing) or 10 (new) fields, got an array of 7");
}

TEST(step_plan_codec, a_bad_sampling_field_is_named_with_its_seq) {
  step_plan plan;
  scheduled_seq s;
  s.is_new = true;
  s.params.temperature = 0.5f;  // encodes as ca 3f 00 00 00: the only float32 0.5 in the message
  plan.seqs.push_back(s);
  bytes b = encode_step_plan(plan);
  const bytes half = of({0xca, 0x3f, 0x00, 0x00, 0x00});
  auto at = std::search(b.begin(), b.end(), half.begin(), half.end());
  ASSERT_NE(at, b.end());
  // temperature becomes true.
  *at = std::byte{0xc3};
  b.erase(at + 1, at + 5);
  EXPECT_EQ(refusal(b), "malformed step plan message: seqs[0].params.temperature must be a float32, got true");
}

TEST(step_plan_codec, every_structured_output_kind_reads_back_and_an_unknown_kind_is_refused) {
  for (auto kind : {structured_output::kind::json_object, structured_output::kind::json_schema,
                    structured_output::kind::regex, structured_output::kind::choice, structured_output::kind::grammar}) {
    step_plan plan;
    scheduled_seq s;
    s.is_new = true;
    s.params.structured = structured_output{kind, kind == structured_output::kind::json_object ? "" : "[a-z]+"};
    plan.seqs.push_back(s);
    EXPECT_EQ(decode_step_plan(encode_step_plan(plan)), plan);
  }
  step_plan plan;
  scheduled_seq s;
  s.is_new = true;
  s.params.structured = structured_output{structured_output::kind::grammar, "root ::= \"x\""};
  plan.seqs.push_back(s);
  bytes b = encode_step_plan(plan);
  // [kind 4, "root ..."]: the kind becomes 5, which no build knows.
  const bytes spec = of({0x92, 0x04, 0xac});
  auto at = std::search(b.begin(), b.end(), spec.begin(), spec.end());
  ASSERT_NE(at, b.end());
  at[1] = std::byte{0x05};
  EXPECT_EQ(refusal(b), "malformed step plan message: seqs[0].params.structured[0] must be a structured output kind "
                        "(0 to 4), got 5");
}

} // namespace
} // namespace troupe
