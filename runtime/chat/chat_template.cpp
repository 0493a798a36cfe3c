// The chat template's public face: the render context transformers builds (messages, tools,
// add_generation_prompt, special tokens, extra keyword arguments and its three globals), loading from
// a model folder, and errors turned into messages a user can act on.

#include "runtime/chat/chat_template.hpp"

#include "runtime/error.hpp"
#include "runtime/chat/jinja_interpreter.hpp"
#include "runtime/chat/jinja_json.hpp"
#include "runtime/chat/jinja_parser.hpp"
#include "runtime/chat/jinja_text.hpp"

#include <nlohmann/json.hpp>

#include <ctime>
#include <fstream>
#include <sstream>

namespace troupe {
namespace {

using jinja::call_args;
using jinja::interpreter;
using jinja::value;

// jinja2's sandbox refuses ranges longer than this (MAX_RANGE).
constexpr int64_t max_range = 100000;

std::string located(std::string message, int line) {
  if (!message.empty() && message.back() == '.') message.pop_back();
  return "chat template error: " + message + " at line " + std::to_string(line);
}

std::string read_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw user_error("cannot read " + std::string(what) + " " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t integer_argument(const value& v) {
  if (v.is_int() || v.is_bool()) return v.as_integer();
  throw jinja::template_error("'" + jinja::type_name(v) + "' object cannot be interpreted as an integer");
}

value range_function(interpreter&, call_args& args) {
  if (!args.keyword.empty()) throw jinja::template_error("range() takes no keyword arguments");
  const auto& a = args.positional;
  if (a.empty() || a.size() > 3) throw jinja::template_error("range expected at most 3 arguments, got " + std::to_string(a.size()));
  int64_t start = 0, stop, step = 1;
  if (a.size() == 1) {
    stop = integer_argument(a[0]);
  } else {
    start = integer_argument(a[0]);
    stop = integer_argument(a[1]);
    if (a.size() == 3) step = integer_argument(a[2]);
  }
  if (step == 0) throw jinja::template_error("range() arg 3 must not be zero");
  int64_t count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                           : (start > stop ? (start - stop - step - 1) / -step : 0);
  if (count > max_range)
    throw jinja::template_error("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  std::vector<value> items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t k = 0; k < count; ++k) items.emplace_back(start + k * step);
  return value::list(std::move(items));
}

value namespace_function(interpreter&, call_args& args) {
  auto ns = std::make_shared<jinja::namespace_object>();
  if (args.positional.size() > 1) throw jinja::template_error("namespace expected at most 1 argument");
  if (!args.positional.empty()) {
    if (!args.positional[0].is_dict()) throw jinja::template_error("namespace() argument must be a mapping");
    ns->attrs = args.positional[0].as_dict();
  }
  for (auto& [k, v] : args.keyword) ns->attrs.set(value(k), v);
  return value(std::move(ns));
}

value dict_function(interpreter&, call_args& args) {
  value d = value::dict();
  if (args.positional.size() > 1) throw jinja::template_error("dict expected at most 1 argument");
  if (!args.positional.empty()) {
    if (!args.positional[0].is_dict()) throw jinja::template_error("dict() argument must be a mapping");
    d.as_dict() = args.positional[0].as_dict();
  }
  for (auto& [k, v] : args.keyword) d.as_dict().set(value(k), v);
  return d;
}

value raise_exception_function(interpreter&, call_args& args) {
  auto a = jinja::bind_args("raise_exception", args, {{"message", value(), true}});
  throw jinja::raised_exception(jinja::to_str(a[0]));
}

std::string format_time(const std::string& format, std::chrono::system_clock::time_point when) {
  std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm local{};
  localtime_r(&t, &local);
  if (format.empty()) return "";
  std::string buffer(format.size() * 4 + 64, '\0');
  while (true) {
    size_t n = std::strftime(buffer.data(), buffer.size(), format.c_str(), &local);
    if (n > 0 || buffer.size() > 65536) {
      buffer.resize(n);
      return buffer;
    }
    buffer.resize(buffer.size() * 2);
  }
}

value parse_argument(std::string_view json_text, std::string_view what) {
  try {
    return jinja::parse_json(json_text);
  } catch (const jinja::template_error& e) {
    throw user_error("chat template: " + std::string(what) + " is not valid JSON: " + e.what());
  }
}

std::string token_content(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::string text = read_file(path, "tokenizer config");
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw user_error(path.string() + " is not valid JSON: " + e.what());
  }
}

} // namespace

chat_template::chat_template(std::shared_ptr<const jinja::template_program> program,
                             std::shared_ptr<const std::string> source)
    : program_(std::move(program)), source_(std::move(source)) {}

chat_template chat_template::parse(std::string_view source) {
  try {
    return chat_template(jinja::parse_template(source), std::make_shared<const std::string>(source));
  } catch (const jinja::syntax_error& e) {
    throw user_error(located(e.what(), e.line));
  }
}

chat_template chat_template::from_file(const std::filesystem::path& path) {
  return parse(read_file(path, "chat template"));
}

chat_template chat_template::from_flag(std::string_view value) {
  const std::filesystem::path path{std::string(value)};
  std::error_code ec;
  if (!value.empty() && std::filesystem::is_regular_file(path, ec)) return from_file(path);
  // vLLM takes a value that cannot be opened as the template itself only when it looks like one.
  if (value.find_first_of("{}\n") == std::string_view::npos)
    throw user_error("The supplied chat template (" + std::string(value) +
                     ") looks like a file path, but it failed to be opened. Reason: [Errno 2] No such file or "
                     "directory: '" + std::string(value) + "'");
  return parse(value);
}

std::vector<std::pair<std::string, chat_template>> chat_template::named_in_tokenizer_config(
    const std::filesystem::path& tokenizer_config_json) {
  const nlohmann::json config = read_json_file(tokenizer_config_json);
  std::vector<std::pair<std::string, chat_template>> named;
  const auto it = config.find("chat_template");
  if (it == config.end() || !it->is_array()) return named;
  for (const auto& entry : *it)
    if (entry.is_object() && entry.contains("name") && entry["name"].is_string() && entry.contains("template") &&
        entry["template"].is_string())
      named.emplace_back(entry["name"].get<std::string>(), parse(entry["template"].get<std::string>()));
  return named;
}

std::optional<chat_template> chat_template::from_tokenizer_config(const std::filesystem::path& tokenizer_config_json,
                                                                  bool want_tool_use) {
  std::filesystem::path dir = tokenizer_config_json.parent_path();
  nlohmann::json config = read_json_file(tokenizer_config_json);
  const auto it = config.find("chat_template");
  if (it != config.end() && it->is_string()) return parse(it->get<std::string>());
  if (it != config.end() && it->is_array()) {
    std::optional<std::string> chosen, fallback;
    std::string names;
    for (const auto& entry : *it) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template")) continue;
      std::string name = entry["name"].is_string() ? entry["name"].get<std::string>() : "";
      names += (names.empty() ? "" : ", ") + name;
      if (!entry["template"].is_string()) continue;
      if (name == "tool_use" && want_tool_use) chosen = entry["template"].get<std::string>();
      if (name == "default") fallback = entry["template"].get<std::string>();
    }
    if (chosen) return parse(*chosen);
    if (fallback) return parse(*fallback);
    throw user_error(tokenizer_config_json.string() + " has several chat templates (" + names +
                     ") and none named \"default\"; pass --chat-template");
  }
  if (it != config.end() && !it->is_null()) {
    throw user_error(tokenizer_config_json.string() + ": \"chat_template\" must be a string or a list of {name, template}");
  }
  if (std::filesystem::exists(dir / "chat_template.jinja")) return from_file(dir / "chat_template.jinja");
  if (std::filesystem::exists(dir / "chat_template.json")) {
    nlohmann::json j = read_json_file(dir / "chat_template.json");
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
      return parse(j["chat_template"].get<std::string>());
  }
  return std::nullopt;
}

namespace {

// transformers marks the end of the message to continue with this tag, renders, and cuts there.
constexpr std::string_view continue_tag = "CONTINUE_FINAL_MESSAGE_TAG ";

std::string strip_whitespace(std::string_view s) { return jinja::text::strip(s, std::nullopt, true, true); }

// Appends the tag to the final message's content (its last text block for a list of blocks) and
// returns that content as it was.
std::string mark_final_message(value& messages, const std::string& source) {
  auto& items = messages.as_list().items;
  const jinja::value* content = nullptr;
  if (!items.empty() && items.back().is_dict()) content = items.back().as_dict().find_name("content");
  if (!content || content->is_none())
    throw user_error("continue_final_message is set but the final message has no \"content\" to continue!");
  if (source.find("content") == std::string::npos) {
    throw user_error("continue_final_message is set to \"content\" but this is not an accepted field in the "
                     "chat_template");
  }
  value& slot = *items.back().as_dict().find(value("content"));
  if (slot.is_list()) {
    auto& blocks = slot.as_list().items;
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
      if (!it->is_dict()) continue;
      value* text = it->as_dict().find(value("text"));
      if (!text) continue;
      std::string original = jinja::to_str(*text);
      *text = value(original + std::string(continue_tag));
      return original;
    }
    throw user_error("continue_final_message is set but we could not find any text to continue in the final message!");
  }
  std::string original = jinja::to_str(slot);
  slot = value(original + std::string(continue_tag));
  return original;
}

// Cuts the rendered prompt right after the continued message, as transformers does.
std::string cut_at_final_message(const std::string& rendered, const std::string& final_message) {
  std::string tag = strip_whitespace(continue_tag);
  std::string final_stripped = strip_whitespace(final_message);
  if (rendered.find(final_stripped) == std::string::npos || rendered.find(tag) == std::string::npos) {
    throw user_error("continue_final_message is set but the final message does not appear in the chat after applying "
                     "the chat template! This can happen if the chat template deletes portions of the final message. "
                     "Please verify the chat template and final message in your chat to ensure they are compatible."
                     "Final message to continue: " + final_stripped + "\nRendered chat:\n" + rendered);
  }
  size_t at = rendered.rfind(tag);
  if (rendered.compare(at, continue_tag.size(), continue_tag) == 0) return rendered.substr(0, at);
  return jinja::text::strip(std::string_view(rendered).substr(0, at), std::nullopt, false, true);
}

} // namespace

namespace {

// jinja2's globals and the two transformers adds.
value global_context(const chat_template_options& options) {
  value context = value::dict();
  auto& vars = context.as_dict();
  vars.set(value("range"), value::function("range", range_function));
  vars.set(value("namespace"), value::function("namespace", namespace_function));
  vars.set(value("dict"), value::function("dict", dict_function));
  vars.set(value("raise_exception"), value::function("raise_exception", raise_exception_function));
  auto now = options.now;
  vars.set(value("strftime_now"), value::function("strftime_now", [now](interpreter&, call_args& args) {
             auto a = jinja::bind_args("strftime_now", args, {{"format", value(), true}});
             return value(format_time(jinja::to_str(a[0]), now.value_or(std::chrono::system_clock::now())));
           }));
  return context;
}

std::string run(const jinja::template_program& program, value context) {
  try {
    return interpreter(program, std::move(context)).render();
  } catch (const jinja::raised_exception& e) {
    throw user_error(e.what());
  } catch (const jinja::render_error& e) {
    throw user_error(located(e.what(), e.line));
  }
}

} // namespace

std::string chat_template::render(std::string_view messages_json, const chat_template_options& options) const {
  value messages = parse_argument(messages_json, "messages");
  if (!messages.is_list()) throw user_error("chat template: messages must be a JSON array");
  if (messages.as_list().items.empty())
    throw user_error("Cannot apply chat template to an empty conversation. Provide at least one message.");
  std::optional<std::string> final_message;
  if (options.continue_final_message) {
    if (options.add_generation_prompt) {
      throw user_error("continue_final_message and add_generation_prompt are not compatible. Use "
                       "continue_final_message when you want the model to continue the final message, and "
                       "add_generation_prompt when you want to add a header that will prompt it to start a new "
                       "assistant message instead.");
    }
    final_message = mark_final_message(messages, *source_);
  }
  value context = global_context(options);
  auto& vars = context.as_dict();
  vars.set(value("messages"), messages);
  if (options.tools_json.empty()) {
    vars.set(value("tools"), value(nullptr));
  } else {
    value tools = parse_argument(options.tools_json, "tools");
    if (!tools.is_list()) throw user_error("chat template: tools must be a JSON array");
    vars.set(value("tools"), tools);
  }
  if (options.documents_json.empty()) {
    vars.set(value("documents"), value(nullptr));
  } else {
    value documents = parse_argument(options.documents_json, "documents");
    if (!documents.is_list()) throw user_error("chat template: documents must be a JSON array");
    for (const value& d : documents.as_list().items)
      if (!d.is_dict()) throw user_error("Documents should be a list of dicts with 'title' and 'text' keys!");
    vars.set(value("documents"), documents);
  }
  vars.set(value("add_generation_prompt"), value(options.add_generation_prompt));
  if (!options.bos_token.empty()) vars.set(value("bos_token"), value(options.bos_token));
  if (!options.eos_token.empty()) vars.set(value("eos_token"), value(options.eos_token));
  if (!options.extra_context_json.empty()) {
    value extra = parse_argument(options.extra_context_json, "the extra template context");
    if (!extra.is_dict()) throw user_error("chat template: the extra template context must be a JSON object");
    for (auto& [k, v] : extra.as_dict().entries) {
      const std::string& name = k.as_string();
      if (name == "messages" || name == "tools" || name == "documents" || name == "add_generation_prompt")
        throw user_error("chat template: the extra template context cannot set '" + name + "'");
      vars.set(k, v); // like transformers' kwargs, these override the special tokens
    }
  }
  std::string rendered = run(*program_, std::move(context));
  return final_message ? cut_at_final_message(rendered, *final_message) : rendered;
}

std::string chat_template::render_context(std::string_view context_json, const chat_template_options& options) const {
  value given = parse_argument(context_json, "the template context");
  if (!given.is_dict()) throw user_error("chat template: the template context must be a JSON object");
  value context = global_context(options);
  for (auto& [k, v] : given.as_dict().entries) context.as_dict().set(k, v);
  return run(*program_, std::move(context));
}

chat_template_options chat_template_options_from_tokenizer_config(const std::filesystem::path& tokenizer_config_json) {
  nlohmann::json config = read_json_file(tokenizer_config_json);
  chat_template_options options;
  if (config.contains("bos_token")) options.bos_token = token_content(config["bos_token"]);
  if (config.contains("eos_token")) options.eos_token = token_content(config["eos_token"]);
  return options;
}

} // namespace troupe
