// The vLLM flag table and the check of a command line against it: each class of flag (works, no effect,
// refused) behaves as the table says, for every flag in it.

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "runtime/cli/command_line.hpp"
#include "runtime/cli/environment.hpp"
#include "runtime/cli/vllm_flags.hpp"
#include "runtime/error.hpp"

using namespace troupe;

namespace {

const std::vector<std::string> serve_flags = {"--model", "--port", "--max-num-seqs", "--client-port", "--served-model-name",
                                              "-q", "-h", "--help"};

checked_args check_serve(std::vector<std::string> args) { return check_flags(args, serve_flags, true, "troupe serve"); }

// The message of the user_error checking `args` throws, or "" when it throws none.
std::string refusal(std::vector<std::string> args, bool vllm = true) {
  try {
    check_flags(args, serve_flags, vllm, "troupe serve");
  } catch (const user_error& e) {
    return e.what();
  }
  return "";
}

// A value a flag of this arity takes on the command line.
std::vector<std::string> with_value(const vllm_flag& f, std::string value = "x") {
  std::vector<std::string> args{std::string(f.name)};
  if (f.arity != flag_arity::none) args.push_back(value);
  return args;
}

// An environment of its own, read as std::getenv reads the process's.
struct fake_env {
  std::map<std::string, std::string> vars;
  env_reader reader() {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

} // namespace

TEST(vllm_flags, every_flag_and_short_flag_is_listed_once) {
  std::set<std::string_view> names;
  for (const vllm_flag& f : vllm_serve_flags()) {
    EXPECT_TRUE(f.name.starts_with("--")) << f.name;
    EXPECT_TRUE(names.insert(f.name).second) << f.name;
    if (!f.short_name.empty()) {
      EXPECT_TRUE(names.insert(f.short_name).second) << f.short_name;
    }
    EXPECT_EQ(find_vllm_flag(f.name), &f);
    if (f.what != flag_class::works) {
      EXPECT_FALSE(f.why.empty()) << f.name << " must say why";
    }
  }
  EXPECT_GT(names.size(), 170u);
  EXPECT_EQ(find_vllm_flag("--no-such-flag"), nullptr);
}

TEST(vllm_flags, every_no_effect_flag_is_taken_out_with_its_values_and_one_note_saying_why) {
  int checked = 0;
  for (const vllm_flag& f : vllm_serve_flags()) {
    if (f.what != flag_class::no_effect) continue;
    std::vector<std::string> args = with_value(f, "4");
    args.insert(args.begin(), "/models/qwen");
    args.push_back("--port");
    args.push_back("9000");
    const checked_args c = check_serve(args);
    EXPECT_EQ(c.args, (std::vector<std::string>{"/models/qwen", "--port", "9000"})) << f.name;
    const std::string shown = std::string(f.name) + (f.arity == flag_arity::none ? "" : " 4");
    EXPECT_EQ(c.notes, std::vector<std::string>{shown + " has no effect: " + std::string(f.why)});
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

TEST(vllm_flags, every_refused_flag_is_an_error_naming_it_and_why) {
  int checked = 0;
  for (const vllm_flag& f : vllm_serve_flags()) {
    if (f.what != flag_class::refused) continue;
    const std::vector<std::string> args = with_value(f, "17");
    const std::string shown = std::string(f.name) + (f.arity == flag_arity::none ? "" : " 17");
    EXPECT_EQ(refusal(args), shown + " is not supported: " + std::string(f.why));
    ++checked;
  }
  EXPECT_GT(checked, 60);
}

TEST(vllm_flags, a_refused_flag_with_the_value_troupe_has_anyway_is_accepted_without_effect) {
  int checked = 0;
  for (const vllm_flag& f : vllm_serve_flags()) {
    std::string_view rest = f.harmless_values;
    while (!rest.empty()) {
      const std::string value(rest.substr(0, rest.find(',')));
      const checked_args c = check_serve({std::string(f.name) + "=" + value});
      EXPECT_TRUE(c.args.empty());
      EXPECT_EQ(c.notes, std::vector<std::string>{std::string(f.name) + " " + value + " has no effect: " + std::string(f.why)});
      rest.remove_prefix(std::min(rest.size(), value.size() + 1));
      ++checked;
    }
  }
  EXPECT_GE(checked, 20);
  EXPECT_EQ(refusal({"--pipeline-parallel-size", "2"}),
            "--pipeline-parallel-size 2 is not supported: troupe has no pipeline parallelism; split the model with "
            "--tensor-parallel-size");
}

TEST(vllm_flags, short_flags_take_their_value_apart_or_attached) {
  EXPECT_EQ(check_serve({"-O3"}).notes.at(0).substr(0, 22), "-O 3 has no effect: tr");
  EXPECT_EQ(check_serve({"-O", "3"}).notes.at(0).substr(0, 22), "-O 3 has no effect: tr");
  EXPECT_EQ(check_serve({"-pp", "1"}).notes.at(0).substr(0, 25), "-pp 1 has no effect: trou");
  EXPECT_EQ(refusal({"-dp", "2"}).substr(0, 25), "-dp 2 is not supported: t");
  EXPECT_EQ(check_serve({"-q", "awq"}).args, (std::vector<std::string>{"-q", "awq"}));  // the command's own
}

TEST(vllm_flags, the_xgrammar_or_auto_structured_outputs_backend_is_a_no_op_and_others_are_refused) {
  const std::string why =
      "troupe constrains decoding with its own grammar engine (JSON schema, regex, choice and EBNF grammars), which "
      "stands in for xgrammar; only the backend xgrammar or auto is accepted";
  EXPECT_EQ(check_serve({"--structured-outputs-config", R"({"backend": "xgrammar"})"}).notes,
            std::vector<std::string>{R"(--structured-outputs-config {"backend": "xgrammar"} has no effect: )" + why});
  EXPECT_EQ(check_serve({"--guided-decoding-backend", "auto"}).notes,
            std::vector<std::string>{"--guided-decoding-backend auto has no effect: " + why});
  EXPECT_EQ(refusal({"--guided-decoding-backend", "outlines"}), "--guided-decoding-backend outlines is not supported: " + why);
  EXPECT_EQ(refusal({"--structured-outputs-config", R"({"backend":"guidance"})"}),
            R"(--structured-outputs-config {"backend":"guidance"} is not supported: )" + why);
}

TEST(vllm_flags, the_no_form_of_a_switch_follows_its_plain_form_unless_listed_apart) {
  EXPECT_EQ(check_serve({"--no-trust-remote-code"}).notes,
            std::vector<std::string>{"--no-trust-remote-code has no effect: troupe runs no model code from the checkpoint; "
                                     "its architectures are built in"});
  EXPECT_EQ(check_serve({"--enable-chunked-prefill"}).notes.size(), 1u);
  EXPECT_TRUE(refusal({"--no-enable-chunked-prefill"}).starts_with("--no-enable-chunked-prefill is not supported: "));
}

TEST(command_line, an_unknown_flag_is_refused_by_name_with_the_closest_flag_of_the_command) {
  EXPECT_EQ(refusal({"--max-num-seq", "4"}),
            "unknown flag --max-num-seq for `troupe serve`; the closest troupe flag is --max-num-seqs "
            "(`troupe serve --help` lists them)");
  EXPECT_EQ(refusal({"--prot=8000"}),
            "unknown flag --prot for `troupe serve`; the closest troupe flag is --port (`troupe serve --help` lists them)");
  // Without the vLLM table (other commands) a vLLM flag is just unknown.
  EXPECT_EQ(refusal({"--swap-space", "4"}, false).substr(0, 44), "unknown flag --swap-space for `troupe serve`");
}

TEST(command_line, values_negative_numbers_and_everything_after_a_double_dash_pass) {
  const checked_args c = check_serve({"/m", "--client-port", "-1", "--served-model-name", "a", "b", "--", "--swap-space"});
  EXPECT_EQ(c.args, (std::vector<std::string>{"/m", "--client-port", "-1", "--served-model-name", "a", "b", "--", "--swap-space"}));
  EXPECT_TRUE(c.notes.empty());
}

TEST(command_line, a_flag_of_many_values_takes_them_up_to_the_next_flag) {
  const checked_args c = check_serve({"--cuda-graph-sizes", "1", "2", "4", "--port", "1"});
  EXPECT_EQ(c.args, (std::vector<std::string>{"--port", "1"}));
  EXPECT_EQ(c.notes.at(0).substr(0, 42), "--cuda-graph-sizes 1 2 4 has no effect: tr");
}

TEST(command_line, edit_distance_counts_insertions_deletions_and_substitutions) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("--port", "--port"), 0u);
  EXPECT_EQ(closest_flag("--hots", std::vector<std::string>{"--port", "--host"}), "--host");
  EXPECT_EQ(closest_flag("--x", std::vector<std::string>{}), "");
}

TEST(environment, the_api_key_comes_from_troupe_api_key_then_vllm_api_key) {
  fake_env e;
  auto& env = e.vars;
  const env_reader read = e.reader();
  EXPECT_FALSE(api_key_from_env(read));
  env["VLLM_API_KEY"] = "v";
  EXPECT_EQ(api_key_from_env(read)->value, "v");
  EXPECT_EQ(api_key_from_env(read)->name, "VLLM_API_KEY");
  env["TROUPE_API_KEY"] = "t";
  EXPECT_EQ(api_key_from_env(read)->value, "t");
  env["TROUPE_API_KEY"] = "";  // empty is unset
  EXPECT_EQ(api_key_from_env(read)->value, "v");
}

TEST(environment, log_levels_take_vllm_and_spdlog_spellings_and_refuse_others_by_name) {
  EXPECT_EQ(parse_log_level("DEBUG", "--log-level"), "debug");
  EXPECT_EQ(parse_log_level("warn", "--log-level"), "warning");
  EXPECT_EQ(parse_log_level(" Critical ", "--log-level"), "critical");
  fake_env e{{{"VLLM_LOGGING_LEVEL", "WARNING"}}};
  auto& env = e.vars;
  const env_reader read = e.reader();
  EXPECT_EQ(log_level_from_env(read), "warning");
  env["TROUPE_LOGGING_LEVEL"] = "verbose";
  try {
    log_level_from_env(read);
    FAIL();
  } catch (const user_error& e) {
    EXPECT_STREQ(e.what(), "TROUPE_LOGGING_LEVEL must be trace, debug, info, warning, error, critical or off, got 'verbose'");
  }
}

TEST(environment, boolean_variables_and_the_stats_interval_read_as_vllm_reads_them) {
  fake_env e{{{"A", "1"}, {"B", " True "}, {"C", "yes"}, {"VLLM_LOG_STATS_INTERVAL", "0.25"}}};
  auto& env = e.vars;
  const env_reader read = e.reader();
  EXPECT_TRUE(env_flag(read, "A"));
  EXPECT_TRUE(env_flag(read, "B"));
  EXPECT_FALSE(env_flag(read, "C"));
  EXPECT_FALSE(env_flag(read, "D"));
  EXPECT_EQ(stats_interval_from_env(read), 0.25);
  env["VLLM_LOG_STATS_INTERVAL"] = "0";
  EXPECT_THROW(stats_interval_from_env(read), user_error);
  env.erase("VLLM_LOG_STATS_INTERVAL");
  EXPECT_EQ(stats_interval_from_env(read), 10.0);
}

namespace {

// The markdown table of docs/vllm_flags.md, from the table in code.
std::string markdown_table() {
  std::map<flag_class, int> counts;
  for (const vllm_flag& f : vllm_serve_flags()) ++counts[f.what];
  std::string md = std::to_string(vllm_serve_flags().size()) + " flags: " + std::to_string(counts[flag_class::works]) +
                   " work, " + std::to_string(counts[flag_class::no_effect]) + " have no effect, " +
                   std::to_string(counts[flag_class::refused]) + " are refused.\n\n";
  md += "| vLLM flag | troupe | what troupe does, or why it does not |\n| --- | --- | --- |\n";
  for (const vllm_flag& f : vllm_serve_flags()) {
    std::string name = "`" + std::string(f.name) + "`";
    if (!f.short_name.empty()) name += ", `" + std::string(f.short_name) + "`";
    std::string what(to_string(f.what));
    if (!f.harmless_values.empty()) {
      std::string values;
      std::string_view rest = f.harmless_values;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        values += (values.empty() ? "`" : ", `") + std::string(rest.substr(0, comma)) + "`";
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      what += "; " + values + " accepted without effect";
    }
    std::string why(f.why);
    for (size_t at = why.find('|'); at != std::string::npos; at = why.find('|', at + 2)) why.replace(at, 1, "\\|");
    md += "| " + name + " | " + what + " | " + why + " |\n";
  }
  return md;
}

} // namespace

TEST(vllm_flags, docs_vllm_flags_md_shows_the_table_as_the_code_has_it) {
  const std::string path = std::string(TROUPE_TEST_DATA) + "/../../docs/vllm_flags.md";
  std::ifstream in(path);
  std::string doc((std::istreambuf_iterator<char>(in)), {});
  const std::string begin = "<!-- the table: tests/cli/command_line_test.cpp writes it from runtime/cli/vllm_flags.cpp "
                            "when run with TROUPE_UPDATE_DOCS=1 -->\n";
  const std::string end = "<!-- end of the table -->\n";
  const size_t b = doc.find(begin), e = doc.find(end);
  ASSERT_NE(b, std::string::npos) << path << " lacks the line " << begin;
  ASSERT_NE(e, std::string::npos) << path << " lacks the line " << end;
  const std::string table = markdown_table();
  if (std::getenv("TROUPE_UPDATE_DOCS")) {
    doc.replace(b + begin.size(), e - b - begin.size(), table);
    std::ofstream(path) << doc;
    return;
  }
  EXPECT_EQ(doc.substr(b + begin.size(), e - b - begin.size()), table)
      << "docs/vllm_flags.md differs from the table in runtime/cli/vllm_flags.cpp: run this test with TROUPE_UPDATE_DOCS=1";
}
