// vLLM's --chat-template (a file or the template itself), --chat-template-content-format,
// --trust-request-chat-template, --generation-config and --override-generation-config, against a real
// `troupe serve` on the CPU backend and the built-in small model.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "runtime/model/random_model.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/server_process.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;
using troupe::testing::http_request;
using troupe::testing::raw_connection;
using troupe::testing::raw_response;
using troupe::testing::server_process;

namespace {

raw_response post(const server_process& s, const std::string& path, const json& body) {
  raw_connection c(s.http_port());
  c.send(http_request("POST", path, body.dump()));
  auto r = c.read_response(false);
  if (!r) throw std::runtime_error("no response to POST " + path);
  return *r;
}

json ok(const raw_response& r) {
  if (r.status != 200) throw std::runtime_error(std::to_string(r.status) + " " + r.body);
  return json::parse(r.body);
}

const json hello = json::array({{{"role", "user"}, {"content", "Hello"}}});

// The tokens of `text` as it is, no special tokens added: what a chat prompt renders to.
json tokens_of(const server_process& s, const std::string& text) {
  return ok(post(s, "/tokenize", {{"prompt", text}, {"add_special_tokens", false}}))["tokens"];
}

json chat_tokens(const server_process& s, json body) {
  body["messages"] = hello;
  return ok(post(s, "/tokenize", body))["tokens"];
}

// A copy of the built-in model whose generation_config.json and tokenizer_config.json also hold what
// `generation` and `tokenizer` give; removed at the end.
class model_copy {
public:
  explicit model_copy(const json& generation, const json& tokenizer = json::object())
      : dir_(fs::temp_directory_path() / ("troupe_gen_model_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    fs::copy(troupe::default_model_dir(), dir_, fs::copy_options::recursive);
    for (const auto& [file, extra] : {std::pair{"generation_config.json", generation}, {"tokenizer_config.json", tokenizer}}) {
      json j = json::parse(std::ifstream(dir_ / file));
      j.update(extra);
      std::ofstream(dir_ / file) << j.dump();
    }
  }
  ~model_copy() { fs::remove_all(dir_); }
  std::string path() const { return dir_.string(); }

private:
  static inline int counter_ = 0;
  fs::path dir_;
};

// The usage of a chat completion that asks for no max_tokens and ignores EOS: it generates the default's
// cap, or the context's room.
json usage_without_max_tokens(const server_process& s) {
  return ok(post(s, "/v1/chat/completions", {{"messages", hello}, {"ignore_eos", true}, {"temperature", 0}}))["usage"];
}

int64_t generated_without_max_tokens(const server_process& s) { return usage_without_max_tokens(s)["completion_tokens"]; }

} // namespace

TEST(serve_chat_template, an_inline_chat_template_renders_chat_prompts_and_trusted_requests_bring_their_own) {
  server_process s("--chat-template '<<{% for m in messages %}{{ m.content }}{% endfor %}>>' "
                   "--trust-request-chat-template --client-port -1");
  const json expected = tokens_of(s, "<<Hello>>");
  EXPECT_EQ(chat_tokens(s, json::object()), expected);
  // The prompt a chat completion runs is the template's.
  const json usage = ok(post(s, "/v1/chat/completions", {{"messages", hello}, {"max_tokens", 1}}))["usage"];
  EXPECT_EQ(usage["prompt_tokens"], expected.size());
  // A request's own template wins, trusted by the flag.
  EXPECT_EQ(chat_tokens(s, {{"chat_template", "[{{ messages[0].content }}]"}}), tokens_of(s, "[Hello]"));
  // A template that loops over a message's content gets it as parts (auto content format).
  EXPECT_EQ(chat_tokens(s, {{"chat_template", "{% for m in messages %}{% for p in m.content %}{{ p.text }}|{% endfor %}{% endfor %}"}}),
            tokens_of(s, "Hello|"));
}

TEST(serve_chat_template, a_template_file_and_a_forced_string_content_format) {
  const fs::path file = fs::temp_directory_path() / ("troupe_serve_template_" + std::to_string(::getpid()) + ".jinja");
  std::ofstream(file) << "{% for m in messages %}{% for p in m.content %}{{ p }}.{% endfor %}{% endfor %}";
  server_process s("--chat-template " + file.string() + " --chat-template-content-format string --client-port -1");
  fs::remove(file);
  // As a string the content loops character by character.
  EXPECT_EQ(chat_tokens(s, json::object()), tokens_of(s, "H.e.l.l.o."));
  // Without --trust-request-chat-template a request's template is refused, as vLLM's.
  const raw_response refused = post(s, "/v1/chat/completions", {{"messages", hello}, {"chat_template", "x"}});
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("--trust-request-chat-template is not set"), std::string::npos) << refused.body;
}

TEST(serve_chat_template, a_request_may_name_one_of_the_tokenizers_templates_as_transformers_resolves_it) {
  model_copy model(json::object(), {{"chat_template", json::array({{{"name", "default"}, {"template", "D{{ messages[0].content }}"}},
                                                                   {{"name", "shout"}, {"template", "S{{ messages[0].content | upper }}"}}})}});
  server_process s(model.path() + " --trust-request-chat-template --client-port -1");
  EXPECT_EQ(chat_tokens(s, json::object()), tokens_of(s, "DHello"));
  EXPECT_EQ(chat_tokens(s, {{"chat_template", "shout"}}), tokens_of(s, "SHELLO"));
  EXPECT_EQ(chat_tokens(s, {{"chat_template", "whisper"}}), tokens_of(s, "whisper"));  // no such name: a template
}

TEST(serve_chat_template, a_chat_template_that_names_no_file_is_refused_at_start_as_vllm_refuses_it) {
  const auto r = troupe::testing::run_command(std::string(TROUPE_BINARY) +
                                              " serve --port 0 --client-port -1 --chat-template /no/such.jinja </dev/null");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("The supplied chat template (/no/such.jinja) looks like a file path, but it failed to be opened."),
            std::string::npos)
      << r.err;
}

TEST(serve_generation_config, auto_takes_max_new_tokens_from_the_model_and_the_override_goes_on_top) {
  model_copy model(json{{"max_new_tokens", 3}});
  {
    server_process s(model.path() + " --client-port -1");
    EXPECT_EQ(generated_without_max_tokens(s), 3);
    // A request's own max_tokens is capped by the default, as vLLM's get_max_tokens.
    EXPECT_EQ(ok(post(s, "/v1/chat/completions", {{"messages", hello}, {"ignore_eos", true}, {"max_tokens", 5}}))
                  ["usage"]["completion_tokens"],
              3);
  }
  const fs::path log = fs::temp_directory_path() / ("troupe_gen_log_" + std::to_string(::getpid()));
  server_process overridden(model.path() + R"( --override-generation-config '{"max_new_tokens": 2, "temperature": 0.5}')"
                                           " --client-port -1",
                            "exec 2>" + log.string() + "; ");
  EXPECT_EQ(generated_without_max_tokens(overridden), 2);
  // The log names the defaults in force (the server logs them before it says it listens).
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  fs::remove(log);
  EXPECT_NE(text.find("[info] default sampling parameters of API requests, from the generation config: "
                      "temperature=0.5, max_tokens=2"),
            std::string::npos)
      << text;
}

TEST(serve_generation_config, vllm_ignores_the_models_file_and_a_folder_supplies_another) {
  model_copy model(json{{"max_new_tokens", 3}});
  server_process ignored(model.path() + " --generation-config vllm --max-model-len 24 --client-port -1");
  const json usage = usage_without_max_tokens(ignored);
  EXPECT_EQ(usage["completion_tokens"], 24 - usage["prompt_tokens"].get<int64_t>());
  server_process folder("--generation-config " + model.path() + " --client-port -1");  // the built-in model
  EXPECT_EQ(generated_without_max_tokens(folder), 3);
  const auto missing = troupe::testing::run_command(std::string(TROUPE_BINARY) +
                                                    " serve --port 0 --client-port -1 --generation-config /no/such </dev/null");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("--generation-config /no/such: no such folder"), std::string::npos) << missing.err;
}
