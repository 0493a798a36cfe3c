// The native client protocol's frames (client/wire): what each side writes, the other reads back; and what
// the server refuses before it allocates or builds anything.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "actors/gateway_request.hpp"
#include "actors/wire_convert.hpp"
#include "client/wire.hpp"

using namespace troupe;

namespace {

std::span<const char> payload_of(const std::vector<char>& frame) {
  return std::span<const char>(frame).subspan(wire::frame_header_bytes);
}

std::string malformed_reason(const std::vector<char>& payload) {
  try {
    wire::parse_client_message(payload);
  } catch (const wire::malformed& e) {
    return e.what();
  }
  return "parsed";
}

// msgpack by hand: the array [kind, body].
std::vector<char> envelope(uint8_t kind, std::vector<char> body) {
  body.insert(body.begin(), {char(0x92), char(kind)});
  return body;
}

} // namespace

TEST(client_wire, a_job_written_by_the_client_reads_back_field_for_field) {
  wire::job j;
  j.tag = 7;
  j.prompt = "Hello";
  j.prompt_token_ids = {1, 2, 3};
  j.max_tokens = 9;
  j.temperature = 0.5f;
  j.has_seed = true;
  j.seed = 1234567890123ull;
  j.stop = {"a", "bc"};
  j.priority = -3;
  const auto frame = wire::frame(wire::client_message{j});
  ASSERT_EQ(wire::frame_length(std::span<const char, 4>(frame.data(), 4)).value_or(0), frame.size() - 4);
  const auto back = std::get<wire::job>(wire::parse_client_message(payload_of(frame)));
  EXPECT_EQ(back.tag, 7u);
  EXPECT_EQ(back.prompt, "Hello");
  EXPECT_EQ(back.prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(back.max_tokens, 9);
  EXPECT_EQ(back.temperature, 0.5f);
  EXPECT_EQ(back.seed, 1234567890123ull);
  EXPECT_EQ(back.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_EQ(back.priority, -3);
}

TEST(client_wire, outputs_written_by_the_server_read_back) {
  wire::outputs o;
  wire::output first;
  first.job_id = 42;
  first.token_ids = {5, 6};
  first.text = "hi";
  first.num_prompt_tokens = 3;
  wire::output last;
  last.job_id = 42;
  last.finished = true;
  last.finish_reason = "length";
  last.num_prompt_tokens = 3;
  last.num_cached_tokens = 1;
  o.list = {first, last};
  const auto back = std::get<wire::outputs>(wire::parse_server_message(payload_of(wire::frame(wire::server_message{o}))));
  ASSERT_EQ(back.list.size(), 2u);
  EXPECT_EQ(back.list[0].token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(back.list[0].text, "hi");
  EXPECT_TRUE(back.list[1].finished);
  EXPECT_EQ(back.list[1].finish_reason, "length");
  EXPECT_EQ(back.list[1].num_cached_tokens, 1);
}

TEST(client_wire, logprobs_logit_bias_salt_and_stop_reasons_cross_the_wire_for_the_router) {
  wire::job j;
  j.include_stop_str_in_output = true;
  j.logit_bias_ids = {7, 9};
  j.logit_bias_values = {-100.0f, 2.5f};
  j.num_logprobs = 3;
  j.cache_salt = "tenant-a";
  const auto job = std::get<wire::job>(wire::parse_client_message(payload_of(wire::frame(wire::client_message{j}))));
  EXPECT_TRUE(job.include_stop_str_in_output);
  EXPECT_EQ(job.logit_bias_ids, (std::vector<int32_t>{7, 9}));
  EXPECT_EQ(job.logit_bias_values, (std::vector<float>{-100.0f, 2.5f}));
  EXPECT_EQ(job.num_logprobs, 3);
  EXPECT_EQ(job.cache_salt, "tenant-a");
  EXPECT_EQ(wire::job{}.num_logprobs, -1);  // none unless asked

  wire::output out;
  out.finished = true;
  out.stop_string = "END";
  out.has_stop_token = true;
  out.stop_token = 11;
  out.has_logprobs = true;
  out.logprob = -0.25f;
  out.top_ids = {4, 5};
  out.top_logprobs = {-0.25f, -1.5f};
  const auto back = std::get<wire::outputs>(wire::parse_server_message(payload_of(wire::frame(wire::server_message{wire::outputs{{out}}}))));
  ASSERT_EQ(back.list.size(), 1u);
  EXPECT_EQ(back.list[0].stop_string, "END");
  EXPECT_TRUE(back.list[0].has_stop_token);
  EXPECT_EQ(back.list[0].stop_token, 11);
  EXPECT_TRUE(back.list[0].has_logprobs);
  EXPECT_EQ(back.list[0].logprob, -0.25f);
  EXPECT_EQ(back.list[0].top_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(back.list[0].top_logprobs, (std::vector<float>{-0.25f, -1.5f}));
}

TEST(client_wire, a_structured_output_spec_crosses_the_wire_and_becomes_the_jobs_sampling_params) {
  engine_request r;
  r.prompt_ids = {1, 2};
  r.params.structured = structured_output{structured_output::kind::regex, "[a-z]+"};
  const wire::job sent = job_of(r);  // what the router forwards to a worker
  EXPECT_EQ(sent.structured_kind, "regex");
  const auto job = std::get<wire::job>(wire::parse_client_message(payload_of(wire::frame(wire::client_message{sent}))));
  EXPECT_EQ(params_of(job).structured, r.params.structured);
  EXPECT_FALSE(params_of(wire::job{}).structured.has_value());
  wire::job unknown;
  unknown.structured_kind = "yaml";
  EXPECT_THROW(params_of(unknown), std::invalid_argument);
}

TEST(client_wire, a_frame_announcing_4_gb_or_nothing_is_refused_from_its_header) {
  const char huge[4] = {char(0xff), char(0xff), char(0xff), char(0xff)};
  const char empty[4] = {0, 0, 0, 0};
  const uint32_t cap = wire::max_frame_bytes;
  const char at_cap[4] = {char(cap >> 24), char(cap >> 16), char(cap >> 8), char(cap)};
  const char over_cap[4] = {char(cap >> 24), char(cap >> 16), char(cap >> 8), char(cap + 1)};
  EXPECT_FALSE(wire::frame_length(std::span<const char, 4>(huge, 4)));
  EXPECT_FALSE(wire::frame_length(std::span<const char, 4>(empty, 4)));
  EXPECT_EQ(wire::frame_length(std::span<const char, 4>(at_cap, 4)).value_or(0), cap);
  EXPECT_FALSE(wire::frame_length(std::span<const char, 4>(over_cap, 4)));
}

TEST(client_wire, an_array_announcing_4_billion_elements_in_5_bytes_is_refused_before_anything_is_built) {
  // [1, {"stop": array32 of 0xffffffff elements}] with no element present: building it first would ask for
  // 4G msgpack objects (64 GB).
  std::vector<char> body = {char(0x81), char(0xa4), 's', 't', 'o', 'p', char(0xdd), char(0xff), char(0xff), char(0xff), char(0xff)};
  EXPECT_EQ(malformed_reason(envelope(3, body)), "the message is not valid msgpack");
}

TEST(client_wire, nesting_deeper_than_any_message_is_refused) {
  std::vector<char> deep(100000, char(0x91));  // [[[[...
  deep.push_back(char(0xc0));
  EXPECT_EQ(malformed_reason(deep), "the message nests deeper than 5 levels");
}

TEST(client_wire, each_kind_of_malformed_message_is_named) {
  EXPECT_EQ(malformed_reason({char(0xc1)}), "the message is not valid msgpack");
  EXPECT_EQ(malformed_reason({char(0x92), 1, char(0x80), 0}), "the frame has bytes after its message");
  EXPECT_EQ(malformed_reason({char(0x91), 1}), "a message must be the array [kind, body]");
  EXPECT_EQ(malformed_reason({char(0x92), char(0xa1), 'x', char(0x80)}), "the message kind must be a small integer");
  EXPECT_EQ(malformed_reason(envelope(99, {char(0x80)})), "unknown message kind 99");
  EXPECT_EQ(malformed_reason(envelope(2, {char(0x80)})), "unknown message kind 2");  // a server's kind
  EXPECT_EQ(malformed_reason(envelope(3, {char(0x90)})), "a job must be a map");
  // {"max_tokens": "many"}
  std::vector<char> body = {char(0x81), char(0xaa)};
  for (char c : std::string("max_tokens")) body.push_back(c);
  body.insert(body.end(), {char(0xa4), 'm', 'a', 'n', 'y'});
  EXPECT_EQ(malformed_reason(envelope(3, body)), "field 'max_tokens' has the wrong type or is out of range");
  // {"max_tokens": 2^32}: out of int32's range
  body = {char(0x81), char(0xaa)};
  for (char c : std::string("max_tokens")) body.push_back(c);
  body.insert(body.end(), {char(0xcf), 0, 0, 0, 1, 0, 0, 0, 0});
  EXPECT_EQ(malformed_reason(envelope(3, body)), "field 'max_tokens' has the wrong type or is out of range");
}

TEST(client_wire, unknown_fields_are_skipped_and_missing_ones_keep_their_defaults) {
  // [3, {"future_field": 1}]
  std::vector<char> body = {char(0x81), char(0xac)};
  for (char c : std::string("future_field")) body.push_back(c);
  body.push_back(1);
  const auto j = std::get<wire::job>(wire::parse_client_message(envelope(3, body)));
  EXPECT_EQ(j.max_tokens, wire::job{}.max_tokens);
  EXPECT_TRUE(j.prompt.empty());
}
