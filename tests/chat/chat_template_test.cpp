// troupe::chat_template against transformers' apply_chat_template: construct by construct with
// exact strings, and every (template, conversation) reference recorded on the GPU machine.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "runtime/chat/chat_template.hpp"
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


// --- construct by construct -----------------------------------------------------------------------

// Renders source with exactly the variables of context (a JSON object).
std::string render_with(const std::string& source, const std::string& context = "{}") {
  return chat_template::parse(source).render_context(context);
}

const std::string one_user_message = R"([{"role": "user", "content": "Hi"}])";

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const user_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(chat_template_whitespace, trim_blocks_drops_the_newline_after_a_block_tag) {
  EXPECT_EQ(render_with("{% if true %}\nyes\n{% endif %}\nend"), "yes\nend");
}

TEST(chat_template_whitespace, lstrip_blocks_drops_indentation_before_block_tags_only) {
  // The newline after endif goes to trim_blocks; the spaces before {{ stay.
  EXPECT_EQ(render_with("  {% if true %}x{% endif %}\n  {{ 'y' }}"), "x  y");
}

TEST(chat_template_whitespace, minus_strips_all_whitespace_on_its_side) {
  EXPECT_EQ(render_with("a  \n {%- if true -%}  \n b  {%- endif -%}  \n c"), "abc");
  EXPECT_EQ(render_with("  {{- 'x' -}}  \n y"), "xy");
}

TEST(chat_template_whitespace, plus_turns_lstrip_and_trim_off_for_one_tag) {
  EXPECT_EQ(render_with("x\n  {%+ if true %}y{% endif %}"), "x\n  y");
  EXPECT_EQ(render_with("{% if true +%}\nkeep{% endif %}"), "\nkeep");
}

TEST(chat_template_whitespace, comments_and_their_lines_vanish) {
  EXPECT_EQ(render_with("line\n    {# comment #}\nnext"), "line\nnext");
}

TEST(chat_template_whitespace, one_trailing_newline_of_the_template_is_dropped) {
  EXPECT_EQ(render_with("a\n\n"), "a\n");
  EXPECT_EQ(render_with("{{ 'a' }}\n{{ 'b' }}\n"), "a\nb");
}

TEST(chat_template_whitespace, raw_blocks_print_tags_as_text) {
  EXPECT_EQ(render_with("{% raw %}{{ x }} {% if %}{% endraw %}"), "{{ x }} {% if %}");
}

TEST(chat_template_whitespace, windows_newlines_become_plain_newlines) {
  EXPECT_EQ(render_with("a\r\nb\rc"), "a\nb\nc");
}

TEST(chat_template_expressions, print_python_style) {
  EXPECT_EQ(render_with("{{ true }} {{ none }} {{ 1.0 }} {{ 1/2 }} {{ 4/2 }} {{ 1e20 }} {{ 0.1 + 0.2 }}"),
            "True None 1.0 0.5 2.0 1e+20 0.30000000000000004");
  EXPECT_EQ(render_with("{{ [1, 'a', none, true, {'k': \"it's\"}] }} {{ ('a',) }}"),
            "[1, 'a', None, True, {'k': \"it's\"}] ('a',)");
}

TEST(chat_template_expressions, integer_division_and_modulo_follow_python) {
  EXPECT_EQ(render_with("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }}"), "3 -4 2 1024 64");
}

TEST(chat_template_expressions, and_or_return_their_operands) {
  EXPECT_EQ(render_with("{{ 0 or 'x' }} {{ 'a' and 'b' }} [{{ '' and 'b' }}] {{ not 0 }}"), "x b [] True");
}

TEST(chat_template_expressions, comparisons_chain_and_membership_works_on_strings_lists_and_dicts) {
  EXPECT_EQ(render_with("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} "
                        "{{ 'z' not in 'abc' }} {{ 1 == 1.0 }}"),
            "True False True True True True True");
}

TEST(chat_template_expressions, conditional_expression_without_else_is_undefined) {
  EXPECT_EQ(render_with("{{ 'y' if true else 'n' }}[{{ 'y' if false }}]"), "y[]");
}

TEST(chat_template_expressions, string_literals_take_python_escapes) {
  EXPECT_EQ(render_with(R"({{ 'a\tb\nc\x41\u00e9\\ \d' }})"), "a\tb\ncA\xC3\xA9\\ \\d");
}

TEST(chat_template_expressions, slices_and_indexes_count_code_points) {
  EXPECT_EQ(render_with("{{ 'h\xC3\xA9llo'[1] }} {{ 'hello'[::-1] }} {{ [1, 2, 3][-1] }} {{ [1, 2, 3, 4][1:3] }} "
                        "{{ messages[1:]|length }}",
                        R"({"messages": [1, 2, 3]})"),
            "\xC3\xA9 olleh 3 [2, 3] 2");
}

TEST(chat_template_expressions, attribute_access_falls_back_to_dict_keys_and_methods_come_first) {
  EXPECT_EQ(render_with("{{ m.role }} {{ m['role'] }} [{{ m.missing }}] {{ m.items()|list }}",
                        R"({"m": {"role": "user", "items": "shadowed"}})"),
            "user user [] [('role', 'user'), ('items', 'shadowed')]");
}

TEST(chat_template_filters, tojson_writes_what_python_json_dumps_writes) {
  EXPECT_EQ(render_with("{{ d|tojson }}", R"({"d": {"b": 1, "a": [1.0, null, true, "\u00e9\""]}})"),
            "{\"b\": 1, \"a\": [1.0, null, true, \"\xC3\xA9\\\"\"]}");
  EXPECT_EQ(render_with("{{ d|tojson(indent=2) }}", R"({"d": {"a": [1, {}]}})"),
            "{\n  \"a\": [\n    1,\n    {}\n  ]\n}");
  EXPECT_EQ(render_with("{{ '\xC3\xA9'|tojson(ensure_ascii=true) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} "
                        "{{ [1, 2]|tojson(separators=(',', ':')) }}"),
            "\"\\u00e9\" {\"a\": 2, \"b\": 1} [1,2]");
}

TEST(chat_template_filters, text_filters_match_jinja2) {
  EXPECT_EQ(render_with("[{{ '  hi  '|trim }}] {{ 'hello world-foo'|title }} {{ 'hELLO'|capitalize }} "
                        "{{ 'a-b'|replace('-', '+') }} {{ 'Ab'|upper }}{{ 'Ab'|lower }}"),
            "[hi] Hello World-Foo Hello a+b ABab");
  EXPECT_EQ(render_with("[{{ 'a\\nb\\n\\nc'|indent(2) }}] [{{ 'a\\nb'|indent(2, true) }}]"), "[a\n  b\n\n  c] [  a\n  b]");
}

TEST(chat_template_filters, default_replaces_undefined_and_with_boolean_anything_falsy) {
  EXPECT_EQ(render_with("{{ x|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ x|d('e') }}"),
            "d None d e");
}

TEST(chat_template_filters, selectattr_map_and_join_pick_from_lists_of_dicts) {
  const std::string users = R"({"users": [{"name": "Ann", "active": true}, {"name": "Bob", "active": false},
                                           {"name": "Cy", "role": "admin", "active": true}]})";
  EXPECT_EQ(render_with("{{ users|selectattr('active')|map(attribute='name')|join(', ') }}", users), "Ann, Cy");
  EXPECT_EQ(render_with("{{ users|rejectattr('active')|map(attribute='name')|list }}", users), "['Bob']");
  EXPECT_EQ(render_with("{{ users|selectattr('role', 'equalto', 'admin')|list|length }}", users), "1");
  EXPECT_EQ(render_with("{{ users|selectattr('role', 'defined')|map(attribute='name')|first }}", users), "Cy");
}

TEST(chat_template_filters, numbers_convert_and_round_like_python) {
  EXPECT_EQ(render_with("{{ '3'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int }} {{ 2.5|round }} {{ 3.5|round }} "
                        "{{ 2.567|round(2) }} {{ 5|round }} {{ -3|abs }} {{ '2.5'|float }}"),
            "4 3 0 2.0 4.0 2.57 5 3 2.5");
}

TEST(chat_template_filters, collections_sort_unique_reverse_and_dictsort) {
  EXPECT_EQ(render_with("{{ ['b', 'A', 'a']|sort }} {{ ['b', 'A', 'a']|unique|list }} {{ [1, 2, 3]|reverse|list }} "
                        "{{ d|dictsort }} {{ d|items|list }}",
                        R"({"d": {"b": 1, "a": 2}})"),
            "['A', 'a', 'b'] ['b', 'A'] [3, 2, 1] [('a', 2), ('b', 1)] [('b', 1), ('a', 2)]");
}

TEST(chat_template_filters, length_counts_code_points_items_and_keys) {
  EXPECT_EQ(render_with("{{ 'h\xC3\xA9\xF0\x9F\x8E\x89'|length }} {{ [1, 2]|count }} {{ {'a': 1}|length }} {{ x|length }}"),
            "3 2 1 0");
}

TEST(chat_template_tests, type_tests_follow_python_types) {
  EXPECT_EQ(render_with("{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} "
                        "{{ 'a' is iterable }} {{ 1 is iterable }} {{ true is number }} {{ true is integer }} "
                        "{{ 'a' is sequence }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 2 is in [1, 2] }}"),
            "False True True True True False True False True True True True");
}

TEST(chat_template_loops, loop_variables_count_from_both_ends) {
  EXPECT_EQ(render_with("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}"
                        "{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "103TrueFalse3;212FalseFalse3;321FalseTrue3;");
}

TEST(chat_template_loops, else_runs_for_an_empty_loop_and_a_filter_counts_only_kept_items) {
  EXPECT_EQ(render_with("{% for x in [] %}a{% else %}empty{% endfor %} "
                        "{% for x in [1, 2, 3, 4] if x is even %}{{ x }}/{{ loop.length }} {% endfor %}"),
            "empty 2/2 4/2 ");
}

TEST(chat_template_loops, break_and_continue_work) {
  EXPECT_EQ(render_with("{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %} "
                        "{% for x in [1, 2, 3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "13 1");
}

TEST(chat_template_loops, unpacking_targets_take_pairs_and_dict_items) {
  EXPECT_EQ(render_with("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", R"({"d": {"b": 1, "a": 2}})"),
            "b=1;a=2;");
}

TEST(chat_template_scoping, a_set_inside_a_loop_does_not_outlive_the_iteration) {
  EXPECT_EQ(render_with("{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %} {{ x }}"), "123 1");
}

TEST(chat_template_scoping, namespace_attributes_carry_values_out_of_loops) {
  EXPECT_EQ(render_with("{% set ns = namespace(total=0) %}{% for i in range(4) %}{% set ns.total = ns.total + i %}"
                        "{% endfor %}{{ ns.total }}"),
            "6");
}

TEST(chat_template_scoping, a_set_inside_if_is_visible_after_it) {
  EXPECT_EQ(render_with("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
}

TEST(chat_template_scoping, block_set_captures_rendered_text) {
  EXPECT_EQ(render_with("{% set s %}n={{ 1 + 1 }}{% endset %}[{{ s }}]"), "[n=2]");
}

TEST(chat_template_macros, take_positional_keyword_and_default_arguments) {
  EXPECT_EQ(render_with("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
                        "{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }}"),
            "Hello, Ann! Hi, Bob!");
}

TEST(chat_template_macros, may_call_themselves) {
  EXPECT_EQ(render_with("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}"
                        "{{ fact(5) }}"),
            "120");
}

TEST(chat_template_methods, python_string_methods_work_on_text) {
  EXPECT_EQ(render_with("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'xxaxx'.strip('x') }} "
                        "{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x', 'c')) }} {{ '-'.join(['a', 'b']) }} "
                        "{{ '{} and {}'.format('x', 'y') }} {{ 'a</think>b'.split('</think>')[-1] }}"),
            "['a', 'b', '', 'c'] ['a', 'b'] a True True a-b x and y b");
}

TEST(chat_template_methods, dict_get_keys_and_values_work) {
  EXPECT_EQ(render_with("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 5) }} {{ d.keys()|list }} {{ d.values()|list }}",
                        R"({"d": {"a": 1}})"),
            "1 None 5 ['a'] [1]");
}

TEST(chat_template_globals, range_namespace_and_dict_are_there) {
  EXPECT_EQ(render_with("{{ range(3)|list }} {{ range(1, 7, 2)|list }} {% set ns = namespace(a=1) %}{{ ns.a }} "
                        "{{ dict(k='v') }}"),
            "[0, 1, 2] [1, 3, 5] 1 {'k': 'v'}");
}

TEST(chat_template_globals, strftime_now_reads_the_given_clock) {
  chat_template_options o;
  o.now = std::chrono::system_clock::from_time_t(1721995200); // 26 Jul 2024, 12:00 UTC
  std::string year = chat_template::parse("{{ strftime_now('%Y') }}").render_context("{}", o);
  EXPECT_EQ(year, "2024");
}

// --- the render context ---------------------------------------------------------------------------

TEST(chat_template_render, passes_messages_tools_special_tokens_and_extra_variables) {
  chat_template t = chat_template::parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}|{{ tools|length }}|{{ enable_thinking }}|{{ eos_token }}");
  chat_template_options o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  o.tools_json = R"([{"type": "function", "function": {"name": "f"}}])";
  o.extra_context_json = R"({"enable_thinking": false})";
  EXPECT_EQ(t.render(one_user_message, o), "<s><user>Hi<assistant>|1|False|</s>");
}

TEST(chat_template_render, without_tools_the_template_sees_tools_none_and_an_empty_bos_token_undefined) {
  chat_template t = chat_template::parse("{{ tools is none }} {{ bos_token is defined }} {{ documents is none }}");
  EXPECT_EQ(t.render(one_user_message, {}), "True False True");
}

TEST(chat_template_render, passes_documents_for_retrieval_templates) {
  chat_template t = chat_template::parse("{% for d in documents %}[{{ d.title }}: {{ d.text }}]{% endfor %}");
  chat_template_options o;
  o.documents_json = R"([{"title": "A", "text": "one"}, {"title": "B", "text": "two"}])";
  EXPECT_EQ(t.render(one_user_message, o), "[A: one][B: two]");
  o.documents_json = R"(["just text"])";
  EXPECT_EQ(error_of([&] { t.render(one_user_message, o); }),
            "Documents should be a list of dicts with 'title' and 'text' keys!");
}

TEST(chat_template_render, keeps_the_key_order_of_the_json_it_is_given) {
  chat_template t = chat_template::parse("{{ tools[0]|tojson }}");
  chat_template_options o;
  o.tools_json = R"([{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}])";
  EXPECT_EQ(t.render(one_user_message, o), R"({"z": 1, "a": 2, "m": {"y": 1, "b": 2}})");
}

TEST(chat_template_render, continue_final_message_ends_the_prompt_inside_the_last_message) {
  chat_template t = chat_template::parse(
      "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}");
  chat_template_options o;
  o.add_generation_prompt = false;
  o.continue_final_message = true;
  EXPECT_EQ(t.render(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}])", o),
            "<user>Hi</user><assistant>Hel");
  o.add_generation_prompt = true;
  EXPECT_NE(error_of([&] { t.render(one_user_message, o); }).find("are not compatible"), std::string::npos);
}

TEST(chat_template_render, copies_render_concurrently) {
  chat_template t = chat_template::parse(read_text(test_data / "chat_templates" / "qwen3.jinja"));
  std::string expected = t.render(one_user_message, {});
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([t, &expected, &wrong] {
      for (int i = 0; i < 50; ++i)
        if (t.render(one_user_message, {}) != expected) ++wrong;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(expected, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

// --- errors ---------------------------------------------------------------------------------------

TEST(chat_template_errors, raise_exception_gives_exactly_its_message) {
  chat_template t = chat_template::parse("{{ raise_exception('Conversation roles must alternate user/assistant') }}");
  EXPECT_EQ(error_of([&] { t.render(one_user_message, {}); }), "Conversation roles must alternate user/assistant");
}

TEST(chat_template_errors, a_syntax_error_names_its_line) {
  EXPECT_EQ(error_of([] { chat_template::parse("line 1\n{% if x %}\nline 3"); }),
            "chat template error: Unexpected end of template. Jinja was looking for the following tags: 'elif' or "
            "'else' or 'endif'. The innermost block that needs to be closed is 'if' at line 3");
  EXPECT_EQ(error_of([] { chat_template::parse("{% foo %}"); }),
            "chat template error: Encountered unknown tag 'foo' at line 1");
  EXPECT_EQ(error_of([] { chat_template::parse("a\n{{ 1 + }}"); }),
            "chat template error: unexpected 'end of print statement' at line 2");
}

TEST(chat_template_errors, an_unknown_filter_is_named) {
  EXPECT_EQ(error_of([] { chat_template::parse("\n{{ x|nosuchfilter }}"); }),
            "chat template error: No filter named 'nosuchfilter' at line 2");
  EXPECT_EQ(error_of([] { chat_template::parse("{{ x is nosuchtest }}"); }),
            "chat template error: No test named 'nosuchtest' at line 1");
}

TEST(chat_template_errors, runtime_errors_carry_python_messages_and_the_line) {
  EXPECT_EQ(error_of([] { render_with("ok\n{{ x.y }}"); }), "chat template error: 'x' is undefined at line 2");
  EXPECT_EQ(error_of([] { render_with("{{ d.missing.z }}", R"({"d": {}})"); }),
            "chat template error: 'dict object' has no attribute 'missing' at line 1");
  EXPECT_EQ(error_of([] { render_with("{{ 'a' + 1 }}"); }),
            "chat template error: can only concatenate str (not \"int\") to str at line 1");
  EXPECT_EQ(error_of([] { render_with("{% for x in none %}{% endfor %}"); }),
            "chat template error: 'NoneType' object is not iterable at line 1");
  EXPECT_EQ(error_of([] { render_with("{% set x = [] %}{{ x.append(1) }}"); }),
            "chat template error: access to attribute 'append' of 'list' object is unsafe at line 1");
}

TEST(chat_template_errors, bad_json_arguments_are_named) {
  chat_template t = chat_template::parse("x");
  EXPECT_NE(error_of([&] { t.render("not json", {}); }).find("messages is not valid JSON"), std::string::npos);
  EXPECT_EQ(error_of([&] { t.render("{}", {}); }), "chat template: messages must be a JSON array");
  EXPECT_EQ(error_of([&] { t.render("[]", {}); }),
            "Cannot apply chat template to an empty conversation. Provide at least one message.");
  chat_template_options o;
  o.tools_json = "{\"a\": 1}";
  EXPECT_EQ(error_of([&] { t.render(one_user_message, o); }), "chat template: tools must be a JSON array");
}

// --- loading --------------------------------------------------------------------------------------

class chat_template_loading : public ::testing::Test {
protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("troupe_chat_template_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(chat_template_loading, reads_the_template_string_of_tokenizer_config) {
  auto config = write("tokenizer_config.json", R"({"chat_template": "{{ messages[0].content }}!", "bos_token": "<s>",
                                                   "eos_token": {"__type": "AddedToken", "content": "</s>"}})");
  auto t = chat_template::from_tokenizer_config(config, false);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->render(one_user_message, {}), "Hi!");
  chat_template_options o = chat_template_options_from_tokenizer_config(config);
  EXPECT_EQ(o.bos_token, "<s>");
  EXPECT_EQ(o.eos_token, "</s>");
}

TEST_F(chat_template_loading, picks_tool_use_when_tools_are_wanted_and_default_otherwise) {
  auto config = write("tokenizer_config.json", R"({"chat_template": [{"name": "default", "template": "plain"},
                                                                      {"name": "tool_use", "template": "tools"}]})");
  EXPECT_EQ(chat_template::from_tokenizer_config(config, false)->render(one_user_message, {}), "plain");
  EXPECT_EQ(chat_template::from_tokenizer_config(config, true)->render(one_user_message, {}), "tools");
}

TEST_F(chat_template_loading, falls_back_to_chat_template_jinja_beside_the_config) {
  auto config = write("tokenizer_config.json", R"({"bos_token": null})");
  EXPECT_FALSE(chat_template::from_tokenizer_config(config, false));
  write("chat_template.jinja", "from file\n");
  EXPECT_EQ(chat_template::from_tokenizer_config(config, false)->render(one_user_message, {}), "from file");
}

TEST_F(chat_template_loading, reports_a_bad_template_with_its_line) {
  auto config = write("tokenizer_config.json", R"({"chat_template": "ok\n{% endif %}"})");
  EXPECT_EQ(error_of([&] { chat_template::from_tokenizer_config(config, false); }),
            "chat template error: Encountered unknown tag 'endif' at line 2");
}

// --- against transformers -------------------------------------------------------------------------

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

// ---- --chat-template and the content format ------------------------------------------------------

TEST(chat_template_flag, names_a_file_when_one_opens_else_is_the_template_itself) {
  const fs::path file = fs::temp_directory_path() / ("troupe_flag_template_" + std::to_string(::getpid()) + ".jinja");
  std::ofstream(file) << "FILE{{ messages[0]['content'] }}";
  EXPECT_EQ(chat_template::from_flag(file.string()).render(one_user_message, {}), "FILEHi");
  fs::remove(file);
  EXPECT_EQ(chat_template::from_flag("INLINE{{ messages[0]['content'] }}").render(one_user_message, {}), "INLINEHi");
  // A newline alone makes it a template, as in vLLM.
  EXPECT_EQ(chat_template::from_flag("line one\nline two").render(one_user_message, {}), "line one\nline two");
}

TEST(chat_template_flag, a_value_without_braces_or_newlines_that_opens_no_file_is_refused_as_vllm_does) {
  EXPECT_EQ(error_of([] { chat_template::from_flag("/no/such/template.jinja"); }),
            "The supplied chat template (/no/such/template.jinja) looks like a file path, but it failed to be opened. "
            "Reason: [Errno 2] No such file or directory: '/no/such/template.jinja'");
  EXPECT_EQ(error_of([] { chat_template::from_flag("{{ unclosed"); }).rfind("chat template error: ", 0), 0u);
}

TEST(chat_template_flag, the_named_templates_of_a_tokenizer_config_are_listed_in_its_order) {
  const fs::path file = fs::temp_directory_path() / ("troupe_named_" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << R"({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]})";
  const auto named = chat_template::named_in_tokenizer_config(file);
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "default");
  EXPECT_EQ(named[1].first, "tool_use");
  EXPECT_EQ(named[1].second.render(one_user_message, {}), "T");
  std::ofstream(file) << R"({"chat_template": "one"})";
  EXPECT_TRUE(chat_template::named_in_tokenizer_config(file).empty());
  fs::remove(file);
}

TEST(chat_template_content_format, a_loop_over_a_messages_content_wants_parts_traced_through_sets_and_slices) {
  EXPECT_TRUE(chat_template::parse("{% for m in messages %}{% for p in m['content'] %}{{ p.text }}{% endfor %}{% endfor %}")
                  .loops_over_message_content());
  EXPECT_TRUE(chat_template::parse("{% set rest = messages[1:] %}{% for m in rest %}{% for p in m.content | list %}"
                                   "{% endfor %}{% endfor %}")
                  .loops_over_message_content());
  EXPECT_FALSE(chat_template::parse("{% for m in messages %}{{ m['content'] }}{% endfor %}").loops_over_message_content());
  // A loop over something else's content is not a message's.
  EXPECT_FALSE(chat_template::parse("{% for t in tools %}{% for p in t['content'] %}{% endfor %}{% endfor %}")
                   .loops_over_message_content());
  EXPECT_TRUE(chat_template::from_file(test_data / "chat_templates" / "gemma3.jinja").loops_over_message_content());
  EXPECT_FALSE(chat_template::from_file(test_data / "chat_templates" / "qwen3.jinja").loops_over_message_content());
  EXPECT_FALSE(chat_template::from_file(test_data / "chat_templates" / "llama3_1.jinja").loops_over_message_content());
}

} // namespace
} // namespace troupe
