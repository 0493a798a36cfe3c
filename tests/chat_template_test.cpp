// troupe::chat_template against transformers' apply_chat_template: construct by construct with
// exact strings, and every (template, conversation) reference recorded on the GPU machine.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/chat_template.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const fs::path test_data = TROUPE_TEST_DATA;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const ordered_json& references() {
  static const ordered_json refs = ordered_json::parse(read_text(test_data / "chat_template_refs.json"));
  return refs;
}

struct outcome {
  bool ok = false;
  std::string text; // the output, or the error message
};

outcome render_outcome(const std::string& source, const std::string& messages, const chat_template_options& o) {
  try {
    return {true, chat_template::parse(source).render(messages, o)};
  } catch (const user_error& e) {
    return {false, e.what()};
  }
}

// Our error for a reference error: raise_exception's message exactly, otherwise Python's message
// (without a final period) inside "chat template error: ... at line L".
bool error_matches(const ordered_json& expected, const std::string& ours) {
  std::string type = expected["type"], message = expected["message"];
  if (type == "TemplateError" || type == "ValueError") return ours == message;
  if (!message.empty() && message.back() == '.') message.pop_back();
  if (ours.rfind("chat template error: ", 0) != 0) return false;
  if (ours.find(message) == std::string::npos) return false;
  if (expected.contains("line") && ours.find("at line " + std::to_string(expected["line"].get<int>())) == std::string::npos)
    return false;
  return true;
}

TEST(chat_template_refs, renders_every_construct_as_transformers_does) {
  int checked = 0, failed = 0;
  for (const auto& c : references()["constructs"]) {
    outcome got;
    try {
      got = {true, chat_template::parse(c["template"].get<std::string>()).render_context(c["context"].dump())};
    } catch (const user_error& e) {
      got = {false, e.what()};
    }
    ++checked;
    bool good = c.contains("output") ? (got.ok && got.text == c["output"].get<std::string>())
                                     : (!got.ok && error_matches(c["error"], got.text));
    if (!good) {
      ++failed;
      ADD_FAILURE() << "construct " << c["name"].get<std::string>() << "\n  template: " << c["template"].dump()
                    << "\n  expected: " << (c.contains("output") ? c["output"].dump() : c["error"].dump())
                    << "\n  got:      " << (got.ok ? "" : "error ") << ordered_json(got.text).dump();
    }
  }
  std::cout << checked - failed << " of " << checked << " constructs match\n";
}

TEST(chat_template_refs, renders_every_model_conversation_as_transformers_does) {
  const auto& refs = references();
  std::map<std::string, std::string> sources;
  int checked = 0, failed = 0;
  for (const auto& c : refs["cases"]) {
    std::string name = c["template"];
    if (!sources.count(name)) sources[name] = read_text(test_data / "chat_templates" / (name + ".jinja"));
    const auto& conv = refs["conversations"][c["conversation"].get<std::string>()];
    const auto& tokens = refs["special_tokens"][name];
    chat_template_options o;
    o.add_generation_prompt = c["add_generation_prompt"];
    if (tokens["bos_token"].is_string()) o.bos_token = tokens["bos_token"];
    if (tokens["eos_token"].is_string()) o.eos_token = tokens["eos_token"];
    if (!conv["tools"].is_null()) o.tools_json = conv["tools"].dump();
    if (c.contains("extra")) o.extra_context_json = c["extra"].dump();
    o.continue_final_message = c.value("continue_final_message", false);
    outcome got = render_outcome(sources[name], conv["messages"].dump(), o);
    ++checked;
    bool good = c.contains("output") ? (got.ok && got.text == c["output"].get<std::string>())
                                     : (!got.ok && error_matches(c["error"], got.text));
    if (!good) {
      ++failed;
      ADD_FAILURE() << name << " / " << c["conversation"].get<std::string>()
                    << (c.contains("label") ? " / " + c["label"].get<std::string>() : "")
                    << " / add_generation_prompt=" << c["add_generation_prompt"].dump()
                    << "\n  expected: " << (c.contains("output") ? c["output"].dump() : c["error"].dump())
                    << "\n  got:      " << (got.ok ? "" : "error ") << ordered_json(got.text).dump();
    }
  }
  std::cout << checked - failed << " of " << checked << " model cases match\n";
}

} // namespace
} // namespace troupe
