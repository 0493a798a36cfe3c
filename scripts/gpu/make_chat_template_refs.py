#!/usr/bin/env python3
"""Records what Hugging Face transformers renders for troupe's chat template tests.

Two kinds of cases, written to one JSON file (tests/data/chat_template_refs.json):

* model cases: every template in tests/data/chat_templates/*.jinja with a set of conversations (system,
  multi-turn, tools, tool calls and results, reasoning, unicode, content parts, role errors), rendered
  with tokenizer.apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False,
  **extra) on a tokenizer that carries the model's bos/eos tokens, some with continue_final_message;
* construct cases: small templates, one Jinja construct each, rendered by transformers' own compiled
  Jinja environment (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, its tojson,
  raise_exception and strftime_now).

A case that raises records the exception's type and message instead of the output.

Runs where transformers is installed (the GPU machine here):
  python3 make_chat_template_refs.py --templates tests/data/chat_templates --out chat_template_refs.json
Without transformers (--allow-replica) it renders with a replica of transformers' Jinja environment, for
checking the script itself; the file then says so in "generator".
"""
import argparse
import copy
import json
import os
import sys
from datetime import datetime

# bos/eos as the models' tokenizer_config.json files set them (None: the model has none).
SPECIAL_TOKENS = {
    "context_probe": ("<s>", "</s>"),
    "qwen2_5": (None, "<|im_end|>"),
    "qwen3": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral_v0_3": ("<s>", "</s>"),
    "mistral_nemo": ("<s>", "</s>"),
    "mixtral": ("<s>", "</s>"),
    "gemma3": ("<bos>", "<eos>"),
    "deepseek_v3": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "S\u00f6k p\u00e5 webben \u2014 returns the top results (max 10)",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "threshold": {"type": "number", "default": 0.5},
                "safe": {"type": "boolean", "default": True},
            },
            "required": ["query"],
        },
        "return": {"type": "array"},
    },
}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
ASK_WEATHER = {"role": "user", "content": "What's the weather like in Paris?"}
WEATHER_CALL = tool_call("call12345", "get_current_weather", {"location": "Paris, France", "unit": "celsius"})
WEATHER_RESULT = {"role": "tool", "tool_call_id": "call12345", "name": "get_current_weather",
                  "content": "{\"temperature\": 21.5, \"condition\": \"sunny\"}"}
WEATHER_ANSWER = {"role": "assistant", "content": "It is 21.5 \u00b0C and sunny in Paris."}

# name -> (messages, tools or None)
CONVERSATIONS = {
    "user_only": ([{"role": "user", "content": "Hello!"}], None),
    "system_user": ([SYSTEM, {"role": "user", "content": "What is 2+2?"}], None),
    "multi_turn": ([
        SYSTEM,
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ], None),
    "multi_turn_no_system": ([
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ], None),
    "assistant_last": ([
        {"role": "user", "content": "Say something."},
        {"role": "assistant", "content": "Something."},
    ], None),
    "empty_system": ([{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}], None),
    "system_only": ([SYSTEM], None),
    "unicode": ([
        {"role": "user", "content": "Gr\u00fc\u00dfe aus K\u00f6ln! \u4f60\u597d\uff0c\u4e16\u754c \U0001f389 "
                                    "\u00abquotes\u00bb \"double\" 'single' back\\slash\ttab"},
        {"role": "assistant", "content": "  Leading and trailing spaces  \n\n"},
        {"role": "user", "content": "Line one\nLine two\r\nLine three {{ not_a_template }} {% raw %}"},
    ], None),
    "tools_question": ([SYSTEM, ASK_WEATHER], TOOLS),
    "tools_no_system": ([ASK_WEATHER], TOOLS),
    "tool_call_dict_args": ([
        ASK_WEATHER,
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
        WEATHER_ANSWER,
    ], TOOLS),
    "tool_call_null_content": ([
        ASK_WEATHER,
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
    ], TOOLS),
    "tool_call_string_args": ([
        ASK_WEATHER,
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            tool_call("call12345", "get_current_weather", "{\"location\": \"Paris, France\"}")]},
        WEATHER_RESULT,
    ], TOOLS),
    "parallel_tool_calls": ([
        SYSTEM,
        {"role": "user", "content": "Weather in Paris and Oslo?"},
        {"role": "assistant", "content": "", "tool_calls": [
            WEATHER_CALL, tool_call("call67890", "get_current_weather", {"location": "Oslo, Norway"})]},
        WEATHER_RESULT,
        {"role": "tool", "tool_call_id": "call67890", "name": "get_current_weather", "content": "-3 degrees"},
        {"role": "assistant", "content": "Paris: 21.5 \u00b0C. Oslo: -3 \u00b0C."},
    ], TOOLS),
    "tool_result_dict": ([
        ASK_WEATHER,
        {"role": "assistant", "content": "", "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_current_weather",
         "content": {"temperature": 21.5, "ok": True, "note": None, "list": [1, "a", 2.0]}},
    ], TOOLS),
    "argument_numbers": ([
        {"role": "user", "content": "Numbers."},
        {"role": "assistant", "content": "", "tool_calls": [tool_call("call00001", "search_web", {
            "a": 1, "b": -2.5, "c": 1e-07, "d": 1e20, "e": 100.0, "f": True, "g": None,
            "h": [1, [2, {"x": "y\u00e9\u00a0\u2028"}]], "i": {}, "j": [], "k": "quote\" back\\ nl\n"})]},
    ], TOOLS),
    "reasoning_content": ([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "2+2 is 4."},
        {"role": "user", "content": "And 3+3?"},
    ], None),
    "reasoning_last": ([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "\n2+2 is 4.\n"},
    ], None),
    "think_in_content": ([
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nLet me think.\n</think>\n\nIt is 4."},
        {"role": "user", "content": "Thanks."},
    ], None),
    "reasoning_tool_loop": ([
        ASK_WEATHER,
        {"role": "assistant", "content": "", "reasoning_content": "I should call the tool.",
         "tool_calls": [WEATHER_CALL]},
        WEATHER_RESULT,
        {"role": "assistant", "content": "<think>Got it.</think>It is sunny."},
    ], TOOLS),
    "content_parts": ([
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "text", "text": "this."}]},
    ], None),
    "roles_not_alternating": ([
        {"role": "user", "content": "One."},
        {"role": "user", "content": "Two."},
    ], None),
    "assistant_first": ([
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Fine."},
    ], None),
    "assistant_prefix": ([
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Autumn leaves  "},
    ], None),
    "assistant_prefix_parts": ([
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": [{"type": "text", "text": "Autumn"}, {"type": "text", "text": " leaves"}]},
    ], None),
    "bad_tool_call_id": ([
        ASK_WEATHER,
        {"role": "assistant", "content": "", "tool_calls": [tool_call("abc", "get_current_weather", {"location": "Rome"})]},
    ], TOOLS),
}

# Conversations rendered a second time with add_generation_prompt=False.
WITHOUT_GENERATION_PROMPT = {"multi_turn", "assistant_last", "tool_call_dict_args", "reasoning_last"}

# Rendered with continue_final_message=True (add_generation_prompt False, and once True: an error).
CONTINUE_FINAL_MESSAGE = ["assistant_last", "assistant_prefix", "assistant_prefix_parts"]

# Extra keyword arguments to apply_chat_template, by template: (label, kwargs, conversations).
EXTRA_CASES = {
    "qwen3": [
        ("enable_thinking_false", {"enable_thinking": False},
         ["user_only", "multi_turn", "tools_question", "reasoning_content"]),
        ("enable_thinking_true", {"enable_thinking": True}, ["user_only"]),
    ],
    "llama3_1": [
        ("tools_in_system", {"tools_in_user_message": False}, ["tools_question", "tool_call_dict_args"]),
        ("builtin_tools", {"builtin_tools": ["brave_search", "wolfram_alpha"]}, ["user_only", "tools_question"]),
        ("date_string", {"date_string": "01 Jan 2025"}, ["system_user"]),
    ],
}
# Templates that look the date up with strftime_now unless date_string is given: always given here.
ALWAYS_EXTRA = {"llama3_2": {"date_string": "26 Jul 2024"}}

USERS = [
    {"name": "Ann", "active": True, "role": "admin", "age": 30},
    {"name": "Bob", "active": False, "role": "user"},
    {"name": "Cy", "active": True, "role": "admin", "age": 25},
]
D = {"b": 1, "a": 2, "C": 3}

# (name, template, context): one construct each. The context is JSON; "messages" in it goes to messages.
CONSTRUCTS = [
    # whitespace control and the environment's trim_blocks / lstrip_blocks
    ("trim_blocks_and_lstrip_blocks", "{% if true %}\n  yes\n{% endif %}\nend\n", {}),
    ("lstrip_only_before_block_tags", "  {% if true %}x{% endif %}  \n  {{ 'y' }}\n", {}),
    ("minus_strips_all_whitespace", "a  \n {%- if true -%}  \n b  {%- endif -%}  \n c", {}),
    ("variables_keep_following_newline", "{{ 'a' }}\n{{ 'b' }}\n", {}),
    ("comment_lines_vanish", "line\n    {# comment #}\nnext\n  {#- c -#}  \n x", {}),
    ("plus_disables_lstrip", "x\n  {%+ if true %}y{% endif %}", {}),
    ("plus_disables_trim", "{% if true +%}\nkeep{% endif %}", {}),
    ("newlines_are_normalized", "a\r\nb\rc\n{{ 'd\r\ne' }}", {}),
    ("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}", {}),
    ("minus_on_variables", "  {{- 'x' -}}  \n y", {}),
    ("loop_lines", "{%- for x in [1, 2] %}\n  - {{ x }}\n{%- endfor %}\n", {}),
    ("one_trailing_newline_dropped", "a\n\n", {}),
    ("tag_at_line_start_after_text", "a {% if true %}\n b{% endif %}", {}),
    ("comment_after_trimmed_tag", "{% if true %}\n    {# note #}\n    text\n{% endif %}", {}),
    ("whitespace_inside_tags", "{%   if   true   %}ok{%endif%}{{1}}{{-2-}}", {}),
    # literals and printing
    ("division_and_modulo", "{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7//2 }} {{ 7%3 }} {{ -7%3 }} {{ 2**10 }} "
                            "{{ 2**-1 }} {{ 7.5//2 }} {{ -7.5 % 2 }} {{ 2 * 3 + 4 }} {{ -2 ** 2 }}", {}),
    ("float_printing", "{{ 1e20 }} {{ 1e16 }} {{ 1e15 }} {{ 0.1 + 0.2 }} {{ 1.0 }} {{ 0.0001 }} {{ 0.00001 }} "
                       "{{ -0.0 }} {{ 3.14 }} {{ 123456789.123 }} {{ 1.5e-10 }} {{ 2.0 ** 70 }} {{ x }}",
     {"x": 2.5e-08}),
    ("list_and_dict_repr", "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }} {{ {'a': 1, 'b': [false]} }} {{ d }}",
     {"d": D}),
    ("tuple_repr", "{{ ('a',) }} {{ (1, 2) }} {{ () }} {{ (1, (2, 3)) }}", {}),
    ("string_repr_quoting", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'tab\\there', 'nl\\n', '\u00fc', "
                            "'\\x00', '\\u200b', '\\\\', '\\x7f', '\u00a0'] }}", {}),
    ("tilde_concatenates_strings", "{{ 'a' ~ 1 ~ none ~ true ~ undefined_var ~ 1.5 }}", {}),
    ("plus_and_times", "{{ 'abc' + 'def' }} {{ [1] + [2] }} {{ 'ab' * 3 }} {{ [0] * 2 }} {{ 1 + 2.5 }} {{ true + 1 }}", {}),
    ("comparisons", "{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ {'a': 1} == {'a': 1} }} "
                    "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ none == none }} {{ x == none }} {{ 'a' != 'b' }} "
                    "{{ [1, 2] < [1, 3] }} {{ 2 >= 2.0 }}", {}),
    ("membership", "{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} "
                   "{{ 'x' in undefined_var }} {{ '' in 'abc' }}", {}),
    ("and_or_return_operands", "{{ true and 'x' }} {{ false or 'y' }} [{{ 0 or '' }}] {{ not 0 }} {{ none or 0 }} "
                               "{{ 1 and 2 and 3 }}", {}),
    ("conditional_expression", "{{ 'y' if true else 'n' }} [{{ 'y' if false }}] {{ 'a' if 0 else 'b' if 1 else 'c' }}", {}),
    ("string_escapes", "{{ 'a\\tb\\nc\\x41\\u00e9\\\\ \\d \\'' }} {{ \"q\\\"q\" }} {{ 'multi' 'part' }}", {}),
    ("slices_and_indexes", "{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1, 2, 3, 4, 5][::2] }} {{ [1, 2, 3][-1] }} "
                           "{{ 'h\u00e9llo'[1] }} [{{ [1, 2, 3][5] }}] {{ [1, 2, 3][-2:] }} {{ [1, 2, 3][:-1] }} "
                           "{{ 'abcdef'[4:1:-1] }} {{ [1, 2, 3][1:] }} {{ x.0 }} {{ x[1] }}", {"x": [7, 8]}),
    ("attribute_and_item_access", "{{ d.a }} {{ d['b'] }} [{{ d.zz }}] {{ u.name }} {{ users[1].name }} "
                                  "{{ users[0]['role'] }}", {"d": D, "u": USERS[0], "users": USERS}),
    ("integers", "{{ 0x1F }} {{ 1_000 }} {{ 0 }} {{ 12345678901234 * 1000 }} {{ -(3) }} {{ +4 }}", {}),
    ("booleans_and_none", "{{ true }} {{ True }} {{ false }} {{ none }} {{ None }} {{ [true, none] }}", {}),
    ("unicode_length_and_iteration", "{{ 'h\u00e9llo \U0001f389'|length }} {% for c in 'h\u00e9\U0001f389' %}[{{ c }}]{% endfor %}", {}),
    # filters
    ("text_filters", "[{{ '  hi  '|trim }}] [{{ 'xxhixx'|trim('x') }}] {{ 'hello world-foo(bar baz_qux'|title }} "
                     "{{ 'hELLO wORLD'|capitalize }} {{ 'Hello'|upper }}{{ 'Hello'|lower }} [{{ '\\n\\t x \\u3000'|trim }}]",
     {}),
    ("replace_filter", "{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'ab'|replace('', '.') }}", {}),
    ("join_filter", "{{ [1, 2, 3]|join(', ') }} {{ [1, 2, 3]|join }} {{ users|join(', ', attribute='name') }}",
     {"users": USERS}),
    ("default_filter", "{{ x|default('d') }} {{ none|default('d') }} {{ ''|default('d', true) }} {{ x|d('e') }} "
                       "[{{ ''|default('d') }}] {{ 0|default('z', boolean=true) }}", {}),
    ("first_last", "{{ [3, 1, 2]|first }} {{ [3, 1, 2]|last }} {{ 'abc'|first }} [{{ []|first }}] {{ {'k': 1, 'j': 2}|first }}",
     {}),
    ("list_filter", "{{ 'abc'|list }} {{ {'a': 1}|list }} {{ (1, 2)|list }}", {}),
    ("select_and_map", "{{ users|selectattr('active')|map(attribute='name')|list }} "
                       "{{ users|rejectattr('active')|map(attribute='name')|join(',') }} "
                       "{{ users|selectattr('role', 'equalto', 'admin')|list|length }} "
                       "{{ users|selectattr('age', 'defined')|map(attribute='name')|list }} "
                       "{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} "
                       "{{ ['a', 'B']|map('upper')|list }} {{ users|map(attribute='age', default=0)|sum }} "
                       "{{ users|selectattr('age', 'gt', 26)|map(attribute='name')|first }} "
                       "{{ [none, 0, 'x']|select|list }} {{ users|map(attribute='name')|map('lower')|join('/') }}",
     {"users": USERS}),
    ("numeric_filters", "{{ '3'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int }} {{ 3.9|int }} {{ '2.5'|float }} {{ 'x'|float }} "
                        "{{ -3|abs }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.5|round(0, 'floor') }} "
                        "{{ 2.1|round(0, 'ceil') }} {{ 5|round }} {{ '0x1A'|int(0, 16) }} {{ ' 42 '|int }} {{ true|int }} "
                        "{{ -2.5|abs }} {{ 1|float }}", {}),
    ("indent_filter", "[{{ 'a\\nb\\n\\nc'|indent(2) }}] [{{ 'a\\nb'|indent(2, true) }}] [{{ 'a\\n\\nb'|indent(2, blank=true) }}] "
                      "[{{ 'x\\ny'|indent('> ') }}] [{{ 'a\\nb\\n'|indent }}]", {}),
    ("sort_unique_reverse", "{{ ['b', 'A', 'a', 'c']|unique|list }} {{ ['b', 'A', 'a', 'c']|sort }} "
                            "{{ [3, 1, 2]|sort(reverse=true) }} {{ users|sort(attribute='name', reverse=true)|map(attribute='name')|list }} "
                            "{{ [1, 2, 3]|reverse|list }} {{ 'abc'|reverse }} {{ ['b', 'A', 'a']|sort(case_sensitive=true) }} "
                            "{{ ['a', 'A', 'a']|unique(case_sensitive=true)|list }}", {"users": USERS}),
    ("length_and_count", "{{ [1, 2]|count }} {{ {'a': 1}|length }} {{ x|length }} {{ 'abc'|count }}", {}),
    ("string_filter", "{{ 5|string ~ 'x' }} {{ none|string }} {{ [1, 'a']|string }} {{ 1.0|string }}", {}),
    ("sum_min_max", "{{ [1, 2, 3]|sum }} {{ [1, 2, 3]|max }} {{ [1, 2, 3]|min }} {{ ['b', 'A', 'c']|max }} "
                    "{{ (users|selectattr('age', 'defined')|min(attribute='age')).name }} {{ []|max }}|"
                    "{{ [1.5, 2]|sum(start=10) }}", {"users": USERS}),
    ("center_wordcount_format", "[{{ 'Hello'|center(11) }}] {{ 'a b  c'|wordcount }} {{ '%s-%d'|format('a', 3) }} "
                                "{{ '%s!'|format('x') }}", {}),
    ("escape_filters", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ '<b>'|escape }} {{ '<i>'|safe }} {{ '<p>'|forceescape }}", {}),
    ("dictsort_and_items", "{{ d|dictsort }} {{ d|dictsort(reverse=true) }} {{ d|dictsort(true) }} "
                           "{{ d|dictsort(by='value') }} {{ d|items|list }} {% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}",
     {"d": D}),
    ("tojson_defaults", "{{ d|tojson }} {{ 'q\"b\\\\n\\n\\t\\x01\u00e9\U0001f600\u2028'|tojson }} {{ [1.0, 1e20, 1e-07, none, true, (1, 2)]|tojson }} "
                        "{{ {'k': {'n': [1, {'m': []}]}}|tojson }} {{ 3|tojson }}", {"d": D}),
    ("tojson_indent", "{{ d|tojson(indent=2) }}\n{{ [[], {}, [1], {'a': {'b': 1}}]|tojson(indent=4) }}\n"
                      "{{ [1, 2]|tojson(indent=0) }}\n{{ {'a': 1}|tojson(indent='\\t') }}", {"d": D}),
    ("tojson_options", "{{ d|tojson(separators=(',', ':')) }} {{ d|tojson(sort_keys=true) }} "
                       "{{ '\u00e9\U0001f600'|tojson(ensure_ascii=true) }} {{ {1: 'a', none: 'b', 1.5: 'c', false: 'd'}|tojson }} "
                       "{{ d|tojson(indent=2, separators=(', ', ' = ')) }}", {"d": D}),
    ("tojson_of_messages", "{{ messages|tojson }}", {"messages": [
        {"role": "user", "content": "x", "n": 1.25, "ok": False, "parts": [{"type": "text"}]}]}),
    # tests
    ("tests", "{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ [] is sequence }} "
              "{{ 'a' is sequence }} {{ {} is sequence }} {{ 1 is number }} {{ true is number }} {{ true is boolean }} "
              "{{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ x is iterable }} {{ 'a' is iterable }} "
              "{{ 1 is iterable }} {{ none is iterable }} {{ true is true }} {{ 1 is true }} {{ 0 is false }} {{ 3 is odd }} "
              "{{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 2 is in [1, 2] }} {{ 'a' is eq 'a' }} {{ 1 is lt 2 }} "
              "{{ 'abc' is lower }} {{ 'ABC' is upper }} {{ range is callable }} {{ x is undefined }} {{ 1 is not string }} "
              "{{ x is sequence }} {{ none is sameas none }} {{ 2 is ge 2 }} {{ 'a' is ne 'b' }} {{ d is mapping }} "
              "{{ 'upper' is filter }} {{ 'odd' is test }} {{ 'nope' is filter }}", {"d": D}),
    # Python string, dict and list methods
    ("string_methods", "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} "
                       "{{ 'a,b,c'.rsplit(',', 1) }} {{ 'xxaxx'.strip('x') }} [{{ '  a '.lstrip() }}] [{{ ' a  '.rstrip() }}] "
                       "{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'Hello World'.lower() }} "
                       "{{ 'a'.upper() }} {{ 'aXa'.replace('a', 'b') }} {{ 'hello wORLD'.title() }} {{ 'hELLO'.capitalize() }} "
                       "{{ 'abcabc'.find('c') }} {{ 'abc'.find('z') }} {{ 'abcabc'.rfind('b') }} {{ 'abcabc'.count('b') }} "
                       "{{ '-'.join(['a', 'b']) }} {{ '12'.isdigit() }} {{ 'a\\nb\\r\\nc'.splitlines() }} "
                       "{{ 'abc'.removeprefix('a') }} {{ 'abc'.removesuffix('c') }} {{ 'h\u00e9llo'.find('l') }} "
                       "{{ 'a b'.partition(' ') }} {{ 'ab'.zfill(4) }} {{ 'x'.ljust(3) }}| {{ 'x'.rjust(3) }} "
                       "{{ '  '.isspace() }} {{ 'Ab1'.isalnum() }} {{ 'ab'.isalpha() }} {{ 'abc'.index('c') }} "
                       "{{ ' '.join('abc') }} {{ 'x'.startswith('') }} {{ 'a\\tb'.expandtabs(4) }}", {}),
    ("string_format_method", "{{ '{} and {}'.format('x', 'y') }} {{ '{0}{name}{0}'.format(1, name='n') }} "
                             "{{ '{{literal}} {}'.format(none) }} {{ '{:>4}|{:<3}|{:^5}|{:03d}|{:.2f}'.format('a', 'b', 'c', 7, 3.14159) }}",
     {}),
    ("dict_methods", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d.keys()|list }} "
                     "{{ d.values()|list }} {{ d.items()|list }} {{ d.copy() }} {% for k in d.keys() %}{{ k }}{% endfor %}",
     {"d": D}),
    ("list_methods", "{{ [1, 2, 3].index(2) }} {{ [1, 1, 2].count(1) }} {{ x.copy() }}", {"x": [1, 2]}),
    # loops
    ("loop_variables", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                       "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}"
                       "{{ loop.nextitem }}{{ loop.depth }};{% endfor %}", {}),
    ("for_else", "{% for x in [] %}a{% else %}empty{% endfor %} {% for x in [1] %}{{ x }}{% else %}no{% endfor %}", {}),
    ("for_with_filter", "{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.index }}{{ loop.length }} {% endfor %}", {}),
    ("break_and_continue", "{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %} "
                           "{% for x in [1, 2, 3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("nested_loops", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}",
     {}),
    ("unpacking_in_for", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
     {"d": D}),
    ("range_loops", "{% for x in range(3) %}{{ x }}{% endfor %} {% for x in range(1, 10, 3) %}{{ x }}{% endfor %} "
                    "{% for x in range(3, 0, -1) %}{{ x }}{% endfor %} {{ range(2)|list }}", {}),
    ("loop_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}", {}),
    ("loop_over_dict_and_reversed", "{% for k in d %}{{ k }}{% endfor %} {% for x in [1, 2, 3]|reverse %}{{ x }}{% endfor %} "
                                    "{% for m in messages[::-1] %}{{ m.role }}{% endfor %}",
     {"d": D, "messages": [{"role": "a"}, {"role": "b"}]}),
    # scoping
    ("set_in_loop_does_not_leak", "{% set x = 1 %}{% for i in range(3) %}{% set x = x + i %}{{ x }}{% endfor %} {{ x }}", {}),
    ("namespace_carries_out_of_loops", "{% set ns = namespace(total=0, s='') %}{% for i in range(4) %}{% set ns.total = ns.total + i %}"
                                       "{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.total }} {{ ns.s }}", {}),
    ("set_in_if_is_visible", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("tuple_assignment", "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c = 1, 2 %}{{ c }}", {}),
    ("block_set", "{% set s %}block {{ 1 + 1 }}{% endset %}[{{ s }}] {% set t | upper %}up{% endset %}{{ t }}", {}),
    ("namespace_attributes", "{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}[{{ ns.c }}] {% set ns.c = [1] %}{{ ns.c }}", {}),
    ("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", {}),
    ("loop_variable_gone_after_loop", "{% for i in range(2) %}{% set inner = i %}{% endfor %}[{{ inner }}][{{ i }}]", {}),
    ("messages_can_be_reassigned", "{% set messages = messages[1:] %}{{ messages|length }} {{ messages[0].role }}",
     {"messages": [{"role": "system"}, {"role": "user"}]}),
    ("loop_sees_outer_updates_via_namespace", "{% set ns = namespace(found=false) %}{% for m in messages %}"
                                              "{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
     {"messages": [{"role": "system"}, {"role": "user"}]}),
    # macros
    ("macro_calls", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
                    "{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet('C', 'Yo') }}", {}),
    ("macro_result_is_a_string", "{% macro m(x) %}[{{ x }}]{% endmacro %}{% set r = m(1) %}{{ r ~ r }} {{ m(2)|length }}", {}),
    ("recursive_macro", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}",
     {}),
    ("macro_reads_template_variables", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ bos_token }}{% endmacro %}{{ m() }}",
     {"bos_token": "<s>"}),
    ("macro_missing_argument", "{% macro m(a, b) %}{{ a }}-{{ b }}|{% endmacro %}{{ m(1) }}", {}),
    ("macro_with_trim", "{%- macro render(x) -%}\n  <{{ x }}>\n{%- endmacro -%}\n{{ render(1) }}{{ render('a') }}", {}),
    # other statements
    ("filter_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}),
    ("generation_block", "a{% generation %}gen {{ 1 }}{% endgeneration %}b", {}),
    ("strftime_now_year", "{{ strftime_now('%Y')|length }} {{ strftime_now is defined }}", {}),
    ("raise_exception_absent_when_not_called", "{% if false %}{{ raise_exception('no') }}{% endif %}fine", {}),
    # more corners
    ("unknown_filter_in_untaken_if_is_fine", "{% if false %}{{ x|nosuchfilter }}{% endif %}ok {{ 1 if true else x|nosuch }}", {}),
    ("error_unknown_filter_in_taken_if", "{% if true %}{{ x|nosuchfilter }}{% endif %}", {}),
    ("error_unknown_filter_in_loop_inside_if", "{% if false %}{% for a in [] %}{{ a|nosuchfilter }}{% endfor %}{% endif %}", {}),
    ("error_slicing_none", "{{ nn[1:] }}", {"nn": None}),
    ("error_slicing_dict", "{{ d[1:] }}", {"d": D}),
    ("lazy_generators", "{{ users|selectattr('age', 'gt', 26)|map(attribute='name')|first }} "
                        "{{ [1, 'a']|map('string')|first }} {% set g = [1, 2]|select %}{{ g|list }}{{ g|list }} "
                        "{{ x|select|list }} {{ [3, 1]|reverse|list }}", {"users": USERS}),
    ("raw_with_whitespace_control", "a {%- raw %} x {% endraw -%} b\n  {% raw -%}  y  {%- endraw %}\nc", {}),
    ("pow_is_left_associative", "{{ 2 ** 3 ** 2 }} {{ not true == false }} {{ 10 // 3 * 3 + 10 % 3 }} {{ -2 ** 2 }}", {}),
    ("duplicate_dict_keys", "{{ {'a': 1, 'b': 2, 'a': 3} }} {{ {1: 'x', 1.0: 'y'} }}", {}),
    ("content_string_methods", "{{ messages[0].content.split('\\n')[0] }}|{{ messages[0]['content'].strip().upper() }}|"
                               "{{ messages[0].content is string }}",
     {"messages": [{"role": "user", "content": "  first line\nsecond  "}]}),
    ("list_accumulation", "{% set x = [] %}{% for i in range(3) %}{% set x = x + [i] %}{{ x }}{% endfor %} {{ x }}", {}),
    ("strings_compare_by_code_point", "{{ 'Z' < 'a' }} {{ 'é' > 'z' }} {{ ['b', 'é', 'A']|sort }} {{ 'abc' < 'abd' }}", {}),
    ("undefined_through_filters", "[{{ u|string }}|{{ u|length }}|{{ u|list }}|{{ u|join }}|{{ u|trim }}|{{ u|upper }}|"
                                  "{{ u|first }}|{{ u|default('d') }}|{{ u|sum }}|{{ u|sort }}|{{ u|e }}|{{ u|reverse|list }}]", {}),
    ("error_int_of_undefined", "{{ u|int }}", {}),
    ("error_macro_too_many_arguments", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),
    ("error_namespace_attribute_on_undefined", "{% set ns.x = 1 %}", {}),
    ("error_indent_of_a_number", "{{ 5|indent }}", {}),
    ("error_test_with_extra_argument", "{{ 1 is odd(2) }}", {}),
    ("filters_batch_and_slice", "{{ [1, 2, 3, 4, 5]|batch(2)|list }} {{ [1, 2, 3, 4, 5]|batch(2, 'x')|list }} "
                                "{{ [1, 2, 3, 4, 5]|slice(2)|list }} {{ [1, 2, 3, 4, 5]|slice(3, 0)|list }}", {}),
    ("unicode_case", "{{ '\u00e9COLE \u00c6\u00d8\u00c5'|lower }} {{ 'stra\u00dfe'|upper }} {{ 'stra\u00dfe'.upper() }} "
                     "{{ '\u00e9cole \u00e0 paris'|title }} {{ '\u00e9COLE'|capitalize }} {{ '\u00ef\u00c7'.swapcase() }}", {}),
    ("percent_formatting", "{{ '%(a)s-%(b)d'|format(a='x', b=2) }} {{ '%5.1f|%-4s|%04d|%x|%r' % (3.14159, 'ab', 7, 255, 'q') }} "
                           "{{ '%s' % [1, 2] }} {{ '%d%%' % 50 }}", {}),
    ("items_of_non_mapping_is_lazy", "{% set g = 5|items %}ok", {}),
    ("namespace_and_dict_globals", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }} {{ dict(a=1, b='x') }} "
                                   "{{ dict({'k': 1}, z=2) }}", {}),
    ("sort_and_map_with_arguments", "{{ users|sort(attribute='name')|map(attribute='name')|join(',') }} "
                                    "{{ [[2, 'b'], [1, 'a']]|sort(attribute='0')|map(attribute='1')|join }} "
                                    "{{ ['a', 'b']|map('replace', 'a', 'z')|join }} {{ [1.234, 2.345]|map('round', 1)|list }}",
     {"users": USERS}),
    ("string_methods_count_code_points", "{{ 'h\u00e9llo w\u00f6rld'.split('\u00f6') }} {{ '\u00f1a\u00f1a'.count('\u00f1') }} "
                                         "{{ 'a\u00f1b'.index('b') }} {{ '\u00c0B'.lower() }} {{ 'x\u00e9y'[1:] }}", {}),
    ("truthiness", "{{ [] or 'e' }} {{ {} or 'e' }} {{ 0.0 or 'z' }} {{ '0' or 'n' }} {{ [0] and 'y' }} {{ none or none }}", {}),
    ("tojson_numbers", "{{ [0.1, 1e16, 1e-5, 123456789012345678, -0.0, 1.5e300, 3.0]|tojson }}", {}),
    ("none_comparisons", "{{ none in [none] }} {{ none == 0 }} {{ [none] == [none] }} {{ none != false }}", {}),
    ("block_set_with_trim", "{% set x -%}\n  a\n{%- endset %}[{{ x }}] {% set y %}\n  b\n{% endset %}[{{ y }}]", {}),
    # errors
    ("error_raise_exception", "{{ raise_exception('Boom: custom message') }}", {}),
    ("error_attribute_of_undefined", "{{ x.y }}", {}),
    ("error_attribute_of_missing_key", "{{ d.missing.z }}", {"d": D}),
    ("error_str_plus_int", "{{ 'a' + 1 }}", {}),
    ("error_int_plus_str", "{{ 1 + 'a' }}", {}),
    ("error_undefined_plus_str", "{{ undefined_var + 'a' }}", {}),
    ("error_iterate_none", "{% for x in none %}{% endfor %}", {}),
    ("error_in_none", "{{ 'x' in none }}", {}),
    ("error_unknown_filter", "{{ x|nosuchfilter }}", {}),
    ("error_unknown_test", "{{ x is nosuchtest }}", {}),
    ("error_unclosed_if", "{% if x %}\nabc", {}),
    ("error_missing_expression", "line1\n{{ 1 + }}", {}),
    ("error_unknown_tag", "{% foo %}", {}),
    ("error_division_by_zero", "{{ 1 / 0 }}", {}),
    ("error_index_of_empty_list", "{{ messages[0]['role'] }}", {"messages": []}),
    ("attribute_of_none_is_undefined", "[{{ x.y.z }}]", {"x": {"y": None}}),
    ("error_attribute_of_none", "{{ x.y.z.w }}", {"x": {"y": None}}),
    ("error_unknown_method", "{{ 'abc'.nosuchmethod() }}", {}),
    ("error_ordering_mixed_types", "{{ 1 < 'a' }}", {}),
    ("error_length_of_none", "{{ none|length }}", {}),
    ("error_range_too_big", "{{ range(200000)|length }}", {}),
    ("error_call_undefined", "{{ foo() }}", {}),
    ("error_list_append_is_unsafe", "{% set x = [] %}{{ x.append(1) }}", {}),
    ("error_tojson_undefined", "{{ x|tojson }}", {}),
    ("error_endfor_without_for", "{% endfor %}", {}),
    ("error_unexpected_char", "{{ a ! b }}", {}),
    ("error_set_attribute_on_non_namespace", "{% set d = {} %}{% set d.x = 1 %}", {}),
    ("error_str_join_of_ints", "{{ ','.join([1, 2]) }}", {}),
]


def compile_template(source, compiler):
    return compiler(source)


def replica_compiler():
    """transformers' environment, rebuilt: for running this script where transformers is missing."""
    import jinja2
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class AssistantTracker(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

        def _generation_support(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string


def transformers_compiler():
    from transformers.utils import chat_template_utils as ctu
    if hasattr(ctu, "_compile_jinja_template"):
        return ctu._compile_jinja_template
    raise ImportError("transformers.utils.chat_template_utils has no _compile_jinja_template")


def error_record(e):
    rec = {"type": type(e).__name__, "message": str(e)}
    lineno = getattr(e, "lineno", None)
    if isinstance(lineno, int):
        rec["line"] = lineno
    return rec


def render_construct(compiler, template, context):
    ctx = copy.deepcopy(context)
    try:
        return {"output": compiler(template).render(**ctx)}
    except Exception as e:  # noqa: BLE001 - every failure is a reference too
        return {"error": error_record(e)}


def make_tokenizer(bos, eos):
    """A tiny fast tokenizer that carries bos/eos: apply_chat_template only needs its special tokens."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0}
    for t in (bos, eos):
        if t is not None and t not in vocab:
            vocab[t] = len(vocab)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>")))
    # Only the tokens the model has: a template sees an undefined bos_token when the model has none.
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    tok.add_special_tokens(kwargs)
    return tok


TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def replica_mark_final(chat, template, add_generation_prompt):
    """transformers' continue_final_message preparation (render_jinja_template), for the replica."""
    if add_generation_prompt:
        raise ValueError("continue_final_message and add_generation_prompt are not compatible. Use continue_final_message "
                         "when you want the model to continue the final message, and add_generation_prompt when you want "
                         "to add a header that will prompt it to start a new assistant message instead.")
    if (final_message := chat[-1].get("content")) is None:
        raise ValueError('continue_final_message is set but the final message has no "content" to continue!')
    if "content" not in template:
        raise ValueError('continue_final_message is set to "content" but this is not an accepted field in the chat_template')
    if isinstance(final_message, (list, tuple)):
        for block in reversed(final_message):
            if "text" in block:
                final_message = block["text"]
                block["text"] = block["text"] + TAG
                break
        else:
            raise ValueError("continue_final_message is set but we could not find any text to continue in the final message!")
    else:
        chat[-1]["content"] = chat[-1]["content"] + TAG
    return final_message


def replica_cut(rendered, final_message):
    if final_message.strip() not in rendered or TAG.strip() not in rendered:
        raise ValueError("continue_final_message is set but the final message does not appear in the chat after "
                         "applying the chat template! This can happen if the chat template deletes portions of "
                         "the final message. Please verify the chat template and final message in your chat to "
                         "ensure they are compatible."
                         f"Final message to continue: {final_message.strip()}\nRendered chat:\n{rendered}")
    loc = rendered.rindex(TAG.strip())
    if rendered[loc:loc + len(TAG)] == TAG:
        return rendered[:loc]
    return rendered[:loc].rstrip()


def render_model_case(tok, compiler, template, bos, eos, messages, tools, add_generation_prompt, extra,
                      continue_final_message=False):
    msgs = copy.deepcopy(messages)
    kwargs = copy.deepcopy(extra)
    if continue_final_message:
        kwargs["continue_final_message"] = True
    try:
        if tok is not None:
            out = tok.apply_chat_template(msgs, tools=copy.deepcopy(tools), add_generation_prompt=add_generation_prompt,
                                          tokenize=False, chat_template=template, **kwargs)
        else:
            ctx = dict(kwargs)
            ctx.pop("continue_final_message", None)
            if bos is not None:
                ctx["bos_token"] = bos
            if eos is not None:
                ctx["eos_token"] = eos
            final = replica_mark_final(msgs, template, add_generation_prompt) if continue_final_message else None
            out = compiler(template).render(messages=msgs, tools=copy.deepcopy(tools), documents=None,
                                            add_generation_prompt=add_generation_prompt, **ctx)
            if continue_final_message:
                out = replica_cut(out, final)
        return {"output": out}
    except Exception as e:  # noqa: BLE001
        return {"error": error_record(e)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", required=True, help="folder of <name>.jinja files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--allow-replica", action="store_true",
                    help="without transformers, render with a replica of its Jinja environment")
    args = ap.parse_args()

    generator = {}
    try:
        import jinja2
        generator["jinja2"] = jinja2.__version__
    except ImportError:
        pass
    try:
        import transformers
        compiler = transformers_compiler()
        generator["transformers"] = transformers.__version__
        use_tokenizer = True
    except ImportError as e:
        if not args.allow_replica:
            raise
        print(f"transformers missing ({e}); using the replica environment", file=sys.stderr)
        compiler = replica_compiler()
        generator["replica"] = True
        use_tokenizer = False

    names = sorted(f[:-6] for f in os.listdir(args.templates) if f.endswith(".jinja"))
    templates = {}
    for n in names:
        with open(os.path.join(args.templates, n + ".jinja"), encoding="utf-8", newline="") as f:
            templates[n] = f.read()

    cases = []
    for name in names:
        bos, eos = SPECIAL_TOKENS[name]
        tok = None
        if use_tokenizer:
            try:
                tok = make_tokenizer(bos, eos)
                generator["model_cases"] = "apply_chat_template"
            except Exception as e:  # noqa: BLE001 - fall back to the environment apply_chat_template uses
                print(f"no tokenizer for {name} ({e}); rendering with the compiled template", file=sys.stderr)
                generator["model_cases"] = "compiled template"
        runs = []
        always = ALWAYS_EXTRA.get(name, {})
        for conv in CONVERSATIONS:
            runs.append(("", always, conv, True))
            if conv in WITHOUT_GENERATION_PROMPT:
                runs.append(("", always, conv, False))
        for label, extra, convs in EXTRA_CASES.get(name, []):
            for conv in convs:
                runs.append((label, {**always, **extra}, conv, True))
        if True:
            for conv in CONTINUE_FINAL_MESSAGE:
                runs.append(("continue_final_message", always, conv, False))
            runs.append(("continue_final_message", always, "assistant_prefix", True))
        for label, extra, conv, agp in runs:
            messages, tools = CONVERSATIONS[conv]
            cont = label == "continue_final_message"
            result = render_model_case(tok, compiler, templates[name], bos, eos, messages, tools, agp, extra, cont)
            case = {"template": name, "conversation": conv, "add_generation_prompt": agp}
            if cont:
                case["continue_final_message"] = True
            if extra:
                case["extra"] = extra
            if label:
                case["label"] = label
            case.update(result)
            cases.append(case)

    constructs = []
    for cname, template, context in CONSTRUCTS:
        rec = {"name": cname, "template": template, "context": context}
        rec.update(render_construct(compiler, template, context))
        constructs.append(rec)

    out = {
        "generator": generator,
        "special_tokens": {k: {"bos_token": v[0], "eos_token": v[1]} for k, v in SPECIAL_TOKENS.items()},
        "conversations": {k: {"messages": m, "tools": t} for k, (m, t) in CONVERSATIONS.items()},
        "cases": cases,
        "constructs": constructs,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"{len(cases)} model cases ({n_err} errors), {len(constructs)} constructs -> {args.out}")


if __name__ == "__main__":
    main()
