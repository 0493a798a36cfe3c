// Tools and tool-call history from an OpenAI request reach the model's chat template as transformers renders
// them: the request (assistant tool_calls with arguments as JSON strings, tool results with tool_call_id,
// the tools list) goes through request parsing and render_messages_json, and the prompt must equal the
// reference rendering of the same conversation (tests/data/chat_template_refs.json) for the templates of
// the families the tool parsers serve: Qwen2.5 and Qwen3 (hermes, qwen3), Llama 3.1/3.2 (llama3_json),
// Mistral v0.3 (mistral).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "runtime/chat/chat_template.hpp"
#include "runtime/openai/openai_request.hpp"

namespace troupe {
namespace {

using ordered_json = nlohmann::ordered_json;
const std::string test_data = TROUPE_TEST_DATA;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The conversation as an OpenAI client sends it: tool-call arguments as JSON text.
ordered_json as_request_messages(ordered_json messages) {
  for (auto& m : messages)
    if (m.contains("tool_calls"))
      for (auto& call : m["tool_calls"])
        if (!call["function"]["arguments"].is_string()) call["function"]["arguments"] = call["function"]["arguments"].dump();
  return messages;
}

TEST(tool_templates, tool_calls_and_results_from_a_request_render_as_transformers_renders_them) {
  const ordered_json refs = ordered_json::parse(read_text(test_data + "/chat_template_refs.json"));
  openai_server_config server;
  server.served_model_names = {"m"};
  server.max_model_len = 4096;
  server.vocab_size = 1000;
  server.enable_auto_tool_choice = true;
  int compared = 0;
  for (const auto& c : refs["cases"]) {
    const std::string name = c["template"];
    const std::string conversation = c["conversation"];
    if (name != "qwen2_5" && name != "qwen3" && name != "llama3_1" && name != "llama3_2" && name != "mistral_v0_3") continue;
    // (tool_call_string_args is left out: its reference hands the template arguments as text, while vLLM,
    // and so troupe, decode a request's arguments into objects first.)
    if (conversation != "tool_call_dict_args" && conversation != "parallel_tool_calls" && conversation != "tools_question")
      continue;
    if (!c.contains("output") || c.contains("extra") || c.value("continue_final_message", false)) continue;
    const auto& conv = refs["conversations"][conversation];
    ordered_json body = {{"messages", as_request_messages(conv["messages"])},
                         {"add_generation_prompt", c["add_generation_prompt"]}};
    body["tools"] = conv["tools"];  // extra keys too: vLLM's models allow them and hand them on
    const checked<chat_request> r = parse_chat_request(body.dump(), server);
    ASSERT_TRUE(r) << r.error().message;
    const checked<std::string> messages = render_messages_json(r.value().messages, content_format::string);
    ASSERT_TRUE(messages) << messages.error().message;
    chat_template_options o;
    o.add_generation_prompt = r.value().add_generation_prompt;
    const auto& tokens = refs["special_tokens"][name];
    if (tokens["bos_token"].is_string()) o.bos_token = tokens["bos_token"];
    if (tokens["eos_token"].is_string()) o.eos_token = tokens["eos_token"];
    o.tools_json = r.value().tools_json;
    const std::string prompt = chat_template::parse(read_text(test_data + "/chat_templates/" + name + ".jinja")).render(messages.value(), o);
    const std::string expected = c["output"];
    EXPECT_EQ(prompt, expected) << name << " / " << conversation;
    ++compared;
  }
  EXPECT_EQ(compared, 15);  // five templates, three conversations, with and without the generation prompt where the refs have both
}

} // namespace
} // namespace troupe
