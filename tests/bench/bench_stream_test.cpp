// What `troupe bench serve` reads from an event stream: SSE framing cut at any byte, and the TTFT, ITL,
// latency and token counts of one streamed completion.

#include "launch/bench/bench_sse.hpp"
#include "launch/bench/bench_stream.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<std::string> parse_in_pieces(std::string_view stream, const std::vector<size_t>& cuts) {
  sse_parser parser;
  std::vector<std::string> events;
  size_t from = 0;
  for (size_t cut : cuts) {
    for (auto& e : parser.feed(stream.substr(from, cut - from))) events.push_back(std::move(e));
    from = cut;
  }
  for (auto& e : parser.feed(stream.substr(from))) events.push_back(std::move(e));
  for (auto& e : parser.finish()) events.push_back(std::move(e));
  return events;
}

const std::string mixed_stream =
    "data: a\n\n"
    "data: b\r\n\r\n"
    ": a comment\n\n"
    "data: c\ndata: d\n\n"
    "event: x\nid: 7\ndata: e\r\r"
    "data:f\n\n"
    "data: [DONE]\n\n";
const std::vector<std::string> mixed_events = {"a", "b", "c\nd", "e", "f", "[DONE]"};

TEST(sse_parser, gives_each_events_data_with_any_line_ending) {
  EXPECT_EQ(parse_in_pieces(mixed_stream, {}), mixed_events);
}

TEST(sse_parser, gives_the_same_events_however_the_bytes_are_cut) {
  for (size_t cut = 0; cut <= mixed_stream.size(); ++cut) EXPECT_EQ(parse_in_pieces(mixed_stream, {cut}), mixed_events) << cut;
  for (size_t a = 0; a <= mixed_stream.size(); a += 3)
    for (size_t b = a; b <= mixed_stream.size(); b += 5) EXPECT_EQ(parse_in_pieces(mixed_stream, {a, b}), mixed_events);
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < mixed_stream.size(); ++i) every_byte.push_back(i);
  EXPECT_EQ(parse_in_pieces(mixed_stream, every_byte), mixed_events);
}

TEST(sse_parser, a_stream_closed_without_the_blank_line_still_gives_its_last_event) {
  EXPECT_EQ(parse_in_pieces("data: x\n\ndata: y", {}), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(parse_in_pieces(": only a comment\n", {}), std::vector<std::string>{});
}

std::string completion_chunk(const std::string& text, const std::string& finish = "") {
  return "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"" + text +
         "\",\"logprobs\":null,\"finish_reason\":" + (finish.empty() ? "null" : "\"" + finish + "\"") + "}],\"usage\":null}\n\n";
}
const std::string usage_chunk =
    "data: {\"id\":\"cmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":5,\"total_tokens\":21}}\n\n";

TEST(stream_recorder, measures_ttft_itl_and_latency_from_the_token_chunks) {
  // Sent at t = 1.0; token chunks at 1.1, 1.15, 1.2, 1.25 and 1.3 (one carried no text: still a step's
  // chunk, as vLLM's client counts it); usage at 1.31.
  stream_recorder r(1.0, 16);
  r.feed(completion_chunk("He"), 1.1);
  r.feed(completion_chunk("llo"), 1.15);
  r.feed(completion_chunk(""), 1.2);
  r.feed(completion_chunk(" wor"), 1.25);
  r.feed(completion_chunk("ld", "length"), 1.3);
  r.feed(usage_chunk, 1.31);
  r.feed("data: [DONE]\n\n", 1.31);
  EXPECT_TRUE(r.done());
  const request_outcome o = r.finish();
  ASSERT_TRUE(o.success) << o.error;
  EXPECT_DOUBLE_EQ(o.start_time, 1.0);
  EXPECT_NEAR(o.ttft, 0.1, 1e-12);
  ASSERT_EQ(o.itl.size(), 4u);
  for (double gap : o.itl) EXPECT_NEAR(gap, 0.05, 1e-12);
  EXPECT_NEAR(o.latency, 0.31, 1e-12);
  EXPECT_EQ(o.output_tokens, 5);  // from usage
  EXPECT_EQ(o.prompt_len, 16);
  EXPECT_EQ(o.generated_text, "Hello world");
}

TEST(stream_recorder, the_same_stream_cut_anywhere_gives_the_same_outcome) {
  const std::string stream = completion_chunk("a") + completion_chunk("b") + completion_chunk("c", "length") + usage_chunk + "data: [DONE]\n\n";
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    stream_recorder r(0, 16);
    r.feed(std::string_view(stream).substr(0, cut), 1.0);
    r.feed(std::string_view(stream).substr(cut), 2.0);
    const request_outcome o = r.finish();
    ASSERT_TRUE(o.success) << o.error;
    EXPECT_EQ(o.generated_text, "abc");
    EXPECT_EQ(o.output_tokens, 5);
    EXPECT_EQ(o.itl.size(), 2u);
  }
}

TEST(stream_recorder, chat_role_chunks_are_not_tokens_and_without_usage_chunks_are_counted) {
  stream_recorder r(0, 8);
  r.feed("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n", 0.5);
  r.feed("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n", 1.0);
  r.feed("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n", 1.5);
  r.feed("data: [DONE]\n\n", 1.5);
  const request_outcome o = r.finish();
  ASSERT_TRUE(o.success) << o.error;
  EXPECT_DOUBLE_EQ(o.ttft, 1.0);
  EXPECT_EQ(o.output_tokens, 2);
  EXPECT_EQ(o.prompt_len, 8);
  EXPECT_EQ(o.generated_text, "Hi there");
}

TEST(stream_recorder, a_finishing_chunk_is_a_token_even_without_text) {
  // 16 tokens that never made a whole UTF-8 character: one finishing chunk with no text, then usage.
  stream_recorder r(0, 8);
  r.feed(completion_chunk("", "length"), 0.3);
  r.feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":16,\"total_tokens\":24}}\n\n", 0.31);
  r.feed("data: [DONE]\n\n", 0.31);
  const request_outcome o = r.finish();
  ASSERT_TRUE(o.success) << o.error;
  EXPECT_DOUBLE_EQ(o.ttft, 0.3);
  EXPECT_EQ(o.output_tokens, 16);
  EXPECT_TRUE(o.itl.empty());
}

TEST(stream_recorder, completion_chunks_with_empty_text_are_tokens_as_in_vllms_client) {
  // A model without a tokenizer (or a step inside a UTF-8 character) streams chunks with empty text.
  stream_recorder r(0, 8);
  r.feed(completion_chunk(""), 0.2);
  r.feed(completion_chunk(""), 0.25);
  r.feed(completion_chunk("", "length"), 0.3);
  r.feed("data: [DONE]\n\n", 0.3);
  const request_outcome o = r.finish();
  ASSERT_TRUE(o.success) << o.error;
  EXPECT_DOUBLE_EQ(o.ttft, 0.2);
  ASSERT_EQ(o.itl.size(), 2u);
  EXPECT_NEAR(o.itl[0], 0.05, 1e-12);
  EXPECT_EQ(o.output_tokens, 3);
}

TEST(stream_recorder, an_error_event_fails_the_request_with_its_message) {
  stream_recorder r(0, 8);
  r.feed(completion_chunk("a"), 0.1);
  r.feed("data: {\"error\": {\"object\": \"error\", \"message\": \"The engine stopped\", \"type\": \"InternalServerError\", \"code\": 500}}\n\n", 0.2);
  EXPECT_TRUE(r.done());
  const request_outcome o = r.finish();
  EXPECT_FALSE(o.success);
  EXPECT_EQ(o.error, "the server sent an error in the stream: The engine stopped");
  EXPECT_EQ(o.output_tokens, 0);
}

TEST(stream_recorder, a_stream_without_tokens_fails_as_in_vllm) {
  stream_recorder r(0, 8);
  r.feed("data: [DONE]\n\n", 0.1);
  EXPECT_EQ(r.finish().error, "Never received a valid chunk to calculate TTFT. This response will be marked as failed!");
  stream_recorder not_sse(0, 8);
  not_sse.feed("{\"choices\": []}", 0.1);
  EXPECT_FALSE(not_sse.finish().success);
}

TEST(error_message_of, takes_the_openai_error_message_or_the_body) {
  EXPECT_EQ(error_message_of(R"({"error": {"message": "The model `x` does not exist.", "type": "NotFoundError"}})"),
            "The model `x` does not exist.");
  EXPECT_EQ(error_message_of(R"({"object": "error", "message": "old style"})"), "old style");
  EXPECT_EQ(error_message_of("Internal Server Error"), "Internal Server Error");
  EXPECT_EQ(error_message_of(std::string(400, 'x')), std::string(300, 'x') + "...");
}

} // namespace
} // namespace troupe
