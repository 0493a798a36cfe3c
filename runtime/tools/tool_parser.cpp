#include "runtime/tools/tool_parser.hpp"

#include <algorithm>
#include <array>
#include <random>

#include "runtime/tools/reasoning_parser.hpp"

namespace troupe {

// Defined with each parser.
std::unique_ptr<tool_parser> make_qwen_tool_parser(bool json_calls, bool xml_calls, const tool_parser_request& request);
std::unique_ptr<tool_parser> make_llama3_json_tool_parser();
std::unique_ptr<tool_parser> make_mistral_tool_parser();

namespace {
constexpr std::array<std::string_view, 5> names = {"hermes", "llama3_json", "mistral", "qwen3", "qwen3_coder"};
} // namespace

std::span<const std::string_view> tool_parser_names() { return names; }

std::unique_ptr<tool_parser> make_tool_parser(std::string_view name, const tool_parser_request& request) {
  if (name == "hermes") return make_qwen_tool_parser(true, false, request);
  if (name == "qwen3") return make_qwen_tool_parser(true, true, request);
  if (name == "qwen3_coder") return make_qwen_tool_parser(false, true, request);
  if (name == "llama3_json") return make_llama3_json_tool_parser();
  if (name == "mistral") return make_mistral_tool_parser();
  return nullptr;
}

std::string check_parser_flags(bool enable_auto_tool_choice, std::string_view tool_call_parser,
                               std::string_view reasoning_parser) {
  auto listed = [](std::span<const std::string_view> all) {
    std::string out;
    for (std::string_view n : all) out += (out.empty() ? "" : ",") + std::string(n);
    return "{ " + out + " }";
  };
  auto known = [](std::span<const std::string_view> all, std::string_view name) {
    return std::find(all.begin(), all.end(), name) != all.end();
  };
  if (enable_auto_tool_choice && tool_call_parser.empty()) return "--enable-auto-tool-choice requires --tool-call-parser";
  if (!tool_call_parser.empty() && !known(tool_parser_names(), tool_call_parser))
    return "invalid tool call parser: " + std::string(tool_call_parser) + " (chose from " + listed(tool_parser_names()) + ")";
  if (!reasoning_parser.empty() && !known(reasoning_parser_names(), reasoning_parser))
    return "invalid reasoning parser: " + std::string(reasoning_parser) + " (chose from " + listed(reasoning_parser_names()) + ")";
  return "";
}

bool tool_parser_keeps_special_tokens(std::string_view name) {
  return name == "hermes" || name == "qwen3" || name == "qwen3_coder" || name == "mistral";
}

std::string make_tool_call_id(bool mistral) {
  if (mistral) {
    static constexpr char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::string id(9, 'a');
    for (char& c : id) c = alnum[rng() % (sizeof(alnum) - 1)];
    return id;
  }
  return "chatcmpl-tool-" + random_uuid_hex();
}

} // namespace troupe
