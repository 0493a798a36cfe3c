// The reasoning parsers on Qwen3-style outputs: read whole as vLLM reads them, and streamed in every split,
// the pieces adding up to the same reasoning and content.

#include <gtest/gtest.h>

#include "runtime/tools/reasoning_parser.hpp"

namespace troupe {
namespace {

struct both {
  std::string reasoning, content;
};

both stream(reasoning_parser& p, const std::vector<std::string>& pieces) {
  both out;
  for (const auto& piece : pieces) {
    const message_delta d = p.push(piece);
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  const message_delta d = p.finish();
  out.reasoning += d.reasoning;
  out.content += d.content;
  return out;
}

// Every split of text streams to the whole reading.
void expect_every_split_reads_as_whole(const std::string& name, const std::string& prompt, const std::string& text) {
  const reasoning_extraction whole = make_reasoning_parser(name, prompt)->extract(text);
  for (size_t at = 0; at <= text.size(); ++at) {
    auto p = make_reasoning_parser(name, prompt);
    const both s = stream(*p, {text.substr(0, at), text.substr(at)});
    EXPECT_EQ(s.reasoning, whole.reasoning.value_or("")) << "split at " << at;
    EXPECT_EQ(s.content, whole.content.value_or("")) << "split at " << at;
  }
}

TEST(qwen3_reasoning_parser, splits_think_from_the_answer_whole_and_streamed) {
  const std::string text = "<think>\nThe user greets me.\n</think>\n\nHello!";
  const reasoning_extraction r = make_reasoning_parser("qwen3", "<|im_start|>assistant\n")->extract(text);
  EXPECT_EQ(r.reasoning, "\nThe user greets me.\n");
  EXPECT_EQ(r.content, "\n\nHello!");
  expect_every_split_reads_as_whole("qwen3", "<|im_start|>assistant\n", text);
}

TEST(qwen3_reasoning_parser, reads_reasoning_from_the_first_token_when_the_prompt_left_think_open) {
  const std::string prompt = "<|im_start|>assistant\n<think>\n";
  const std::string text = "Short thought.\n</think>\n\nAnswer.";
  const reasoning_extraction r = make_reasoning_parser("qwen3", prompt)->extract(text);
  EXPECT_EQ(r.reasoning, "Short thought.\n");
  EXPECT_EQ(r.content, "\n\nAnswer.");
  expect_every_split_reads_as_whole("qwen3", prompt, text);
}

TEST(qwen3_reasoning_parser, thinking_turned_off_by_the_template_leaves_everything_content) {
  // enable_thinking=false: Qwen3's template closes an empty <think></think> in the prompt.
  const std::string prompt = "<|im_start|>assistant\n<think>\n\n</think>\n\n";
  const reasoning_extraction r = make_reasoning_parser("qwen3", prompt)->extract("Hi there.");
  EXPECT_EQ(r.reasoning, std::nullopt);
  EXPECT_EQ(r.content, "Hi there.");
  expect_every_split_reads_as_whole("qwen3", prompt, "Hi there.");
}

TEST(qwen3_reasoning_parser, an_answer_that_ends_in_its_thinking_has_no_content) {
  const reasoning_extraction r = make_reasoning_parser("qwen3", "")->extract("<think>only thinking</think>");
  EXPECT_EQ(r.reasoning, "only thinking");
  EXPECT_EQ(r.content, std::nullopt);
}

TEST(deepseek_r1_reasoning_parser, takes_text_without_an_end_as_all_reasoning) {
  const reasoning_extraction r = make_reasoning_parser("deepseek_r1", "")->extract("still thinking");
  EXPECT_EQ(r.reasoning, "still thinking");
  EXPECT_EQ(r.content, std::nullopt);
  expect_every_split_reads_as_whole("deepseek_r1", "", "still thinking");
  expect_every_split_reads_as_whole("deepseek_r1", "", "<think>a</think>b");
}

TEST(reasoning_parser, a_partial_end_tag_is_held_until_it_is_decided) {
  auto p = make_reasoning_parser("deepseek_r1", "");
  EXPECT_EQ(p->push("x </thi").reasoning, "x ");
  const message_delta d = p->push("nk>y");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "y");
  EXPECT_EQ(make_reasoning_parser("nope", ""), nullptr);
}

} // namespace
} // namespace troupe
