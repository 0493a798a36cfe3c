#!/usr/bin/env python3
"""Writes tests/data/tokenizer_corpus.json: a few hundred strings that are hard to tokenize right.

Deterministic (fixed seed), so running it again gives the same file. The reference ids for these strings
come from scripts/gpu/make_tokenizer_refs.py, which needs the Hugging Face `tokenizers` library.
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "tokenizer_corpus.json")

corpus = []


def add(*items):
    for item in items:
        if item not in corpus:
            corpus.append(item)


# Plain text and contractions (the regexes special-case 's 't 're 've 'm 'll 'd, case-insensitively).
add("Hello, world!", "hello world", "Hello World", "HELLO WORLD", "The quick brown fox jumps over the lazy dog.",
    "I'm here.", "don't", "we're", "they've", "she'll", "he'd", "it's", "IT'S", "DON'T", "Y'ALL'RE", "WE'VE",
    "I'M", "HE'LL", "SHE'D", "rock'n'roll", "'s", "'S", "'t", "''", "'", "o'clock", "it\u2019s", "'\u017f",
    "'s's's", "a's b't c're", "John's book isn't Mary's.", "'ll've'd", " 's", "x's", "'sup", "''s",
    "Hello", " Hello", "  Hello", "Hello ", "Hello  ", "hello.world", "e-mail", "U.S.A.", "Mr. Smith",
    "state-of-the-art", "foo_bar_baz", "CamelCaseIdentifier", "snake_case_identifier", "SCREAMING_CASE",
    "A", "a", "I", "Z", "!", "?", ".", ",", "~", "`", "@", "#", "$", "%", "^", "&", "*", "(", ")", "-", "_",
    "=", "+", "[", "]", "{", "}", "|", "\\", ";", ":", "\"", "<", ">", "/")

# Whitespace of every kind, leading, trailing and in runs.
add("", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r", "\r\n", "\r\n\r\n", "\n\r",
    " \n", "\n ", " \n ", "  \n  ", "\t\n", "\n\t", "a b", "a  b", "a   b", "a    b", "a\tb", "a \tb", "a\t b",
    "a\nb", "a\n\nb", "a\r\nb", "a \n b", "a  \n  b", "  leading", "trailing  ", "  both  ", "line1\nline2\n",
    "line1\r\nline2\r\n", "para one.\n\npara two.", "x \n\n y", "end.\n", "end. \n", "end.  \n\n",
    "\u00a0", "a\u00a0b", "\u00a0\u00a0x", "\u3000", "\u3000\u4e2d\u6587\u3000", "a\u2003b", "\u2002\u2009\u200a",
    "a\u180eb", "\u180e", "a\u200bb", "\u200b", "\ufeffBOM", "a\u2028b", "a\u2029b", "a\u0085b", "\u000b\u000c",
    "a\u000bb", "a\u000cb", "x\u200dy", "\u200c\u200d", "\u2060", "tab\tseparated\tvalues\t",
    "spaces   before newline   \nafter", "\n\n\n\n\n\n\n\n", "                ", "\t\t\t\t    \t",
    " ! ", " ?", "?\n", "!\r\n\r\n", "a\n \nb", " \t \n \r\n ")

# Digits and numbers.
add("0", "7", "42", "123", "1234", "12345", "123456", "1234567890", "3.14159", "-2.5e10", "1,000,000",
    "2024-01-01", "12:34:56", "$100.00", "100%", "12345678901234567890", "0x1F", "0b1010", "1e-9",
    "\u0663\u0664\u0665", "\u0967\u0968\u0969", "\u2460\u2461\u2462", "\u216b", "\u00bd", "x\u00b2", "\uff11\uff12\uff13",
    "call 555-0199 now", "v1.2.3", "ISBN 978-3-16-148410-0", "9" * 300, "1 2 3 4 5", "a1b2c3", "1st 2nd 3rd",
    "3x4=12")

# Scripts.
add("\u4f60\u597d\uff0c\u4e16\u754c\uff01", "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5", "\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002", "\u3072\u3089\u304c\u306a", "\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.", "\uc548\ub155\ud558\uc138\uc694",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645", "\u0627\u0644\u0633\u0644\u0627\u0645 \u0639\u0644\u064a\u0643\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u092e\u0947\u0902 \u0932\u093f\u0916\u093e \u0939\u0941\u0906",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a", "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e44\u0e21\u0e48\u0e21\u0e35\u0e0a\u0e48\u0e2d\u0e07\u0e27\u0e48\u0e32\u0e07",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!", "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0444\u0440\u0430\u043d\u0446\u0443\u0437\u0441\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5", "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0", "\u0532\u0561\u0580\u0565\u0582", "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd",
    "\u09b9\u09cd\u09af\u09be\u09b2\u09cb", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u", "\u0130stanbul", "Stra\u00dfe", "\ufb01nance",
    "na\u00efve caf\u00e9 r\u00e9sum\u00e9", "\u00c5ngstr\u00f6m", "\u00e6\u00f8\u00e5 \u00c6\u00d8\u00c5", "Ma\u00f1ana",
    "\u1e31\u1e77\u1e53n", "\u2200x\u2208\u211d: x\u00b2 \u2265 0", "\u222b\u2080\u00b9 f(x) dx", "\u00a9 \u00ae \u2122",
    "\u2190 \u2192 \u2191 \u2193", "\u266a\u266b", "\u2603", "\u0100\u0101\u0102", "\u0250\u0251\u0252",
    "\ua000\ua001", "\U00010348", "\U0001d400\U0001d401", "\U00020000\U0002a6d6", "\u1100\u1161\u11a8")

# Emoji, with modifiers, ZWJ sequences, flags and keycaps.
add("\U0001f600", "\U0001f44d", "\U0001f44d\U0001f3fd", "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f1fa\U0001f1f8", "\U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5\U0001f1e9\U0001f1ea",
    "\u2764\ufe0f", "\U0001f9d1\U0001f3ff\u200d\U0001f4bb", "#\ufe0f\u20e3", "1\ufe0f\u20e3", "I \u2764\ufe0f NY",
    "\U0001f600\U0001f603\U0001f604\U0001f601", "Great job! \U0001f389\U0001f389", "\U0001f642" * 40,
    "\U0001f468\u200d\U0001f4bb is coding", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f")

# Code.
add("def foo(x):\n    return x * 2\n",
    "import numpy as np\n\nclass Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n",
    "for i in range(10):\n\tprint(f\"{i:>3}\")\n",
    "#include <iostream>\n\nint main() {\n    std::cout << \"Hello\\n\";\n    return 0;\n}\n",
    "template <typename T>\nauto add(T a, T b) -> T { return a + b; }",
    "function hello() {\n  console.log('hi');\n}\n",
    "const x = (a, b) => a ?? b ?. c;",
    "fn main() {\n    let v: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hello\")\n}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "{\"key\": [1, 2, {\"nested\": null}], \"b\": true}",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
    "if (a && b || !c) { x += 1; } else { x -= 1; }",
    "    indented four\n        indented eight\n",
    "\t\tdeep tab indent();",
    "x=1;y=2;z=x+y",
    "a->b::c<d>(e)[f]",
    "// comment\n/* block */\n# hash\n-- sql",
    "https://example.com/path?query=1&other=two#frag",
    "user@example.com",
    "C:\\Users\\name\\file.txt",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "**bold** _italic_ `code` [link](http://x.y)",
    "......", "!!!", "???", "---", "***", "===", "...\n", "?!?!", "a...b", "<<<>>>", "()[]{}")

# Special and added tokens inside text (each tokenizer knows some of them).
add("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text", " <|im_start|> ", "<|im_start|><|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>",
    "<|begin_of_text|>", "<|begin_of_text|>Hello", "<|end_of_text|>", "<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|reserved_special_token_5|>",
    "<s>", "</s>", "<s>Hello</s>", "<s> Hello </s>", "<unk>", "[INST] Hi [/INST]", "Hello<s>world", "a </s> b",
    "<|im_sta", "<|<|im_start|>", "<<s>>", "<|endoftext|><|endoftext|>", "<think>\n\n</think>\n\n", "<tool_call>",
    "  <|im_end|>  ", "\n<|im_start|>\n", "<|endoftext|>\u4f60\u597d", "<s>\u4f60\u597d</s>", "<|im_start|>\U0001f600")

# Added-token flags (tokenizer_variants.json adds <tag> lstrip/rstrip, single-word "word", normalized "hello").
add(" <tag> x", "a<tag>b", "a  <tag>  b", "<tag>", "<tag>x", "<tag> x", "word", "a word here", "swordfish word.", "word_word",
    "words", "(word)", "Hello hello HELLO", "\uff28\uff25\uff2c\uff2c\uff2f", "\uff21\uff22\uff23", "abc ABC",
    " \u4e2d\u6587", "x \u4e2d\u6587", "<tag><tag>", "\tword\n",
    "a <L> b", "a <R> b", "<L><R>", " <L>  <R> ", " x y z", "ax yb", "the theme, the end", "Hello the world, testing thing",
    "THE WORLD IS THERE", "hello world in english", "worlds hellos thing's")

# Combining characters and normalization variants.
add("e\u0301", "\u00e9", "A\u030a", "\u00c5", "\u212b", "cafe\u0301", "caf\u00e9", "\u1112\u1161\u11ab",
    "\ud55c", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u0342\u0341lgo",
    "\uff46\uff55\uff4c\uff4c\uff57\uff49\uff44\uff54\uff48", "\u2163", "\u3231", "\u1e9b\u0323", "o\u0308\u0304",
    "\u0301", "\u0301\u0301\u0301", " \u0301", "q\u0307\u0323", "\u0d15\u0d4d\u0d37", "\u0915\u094d\u200d\u0937")

# Control characters and oddities.
add("\x00", "a\x00b", "\x01\x02\x03", "\x7f", "\x1b[31mred\x1b[0m", "\ufffd", "a\ufffdb", "\ufff0", "\U0010ffff",
    "\ue000", "\u00ad", "soft\u00adhyphen")

# Long inputs.
add("a" * 1000, "ab" * 300, "supercalifragilisticexpialidocious" * 10, "antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis", " " * 200, "\n" * 100, "\t" * 50 + "x",
    "\u4e2d" * 200, "\u4e2d\u6587" * 50 + " " + "\u6587\u672c" * 50, "x" * 255, "y" * 256, "z" * 257,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore "
    "magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo "
    "consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur.",
    "".join(chr(c) for c in range(0x20, 0x7f)), "".join(chr(c) for c in range(0xa0, 0x180)),
    "https://" + "very-long-domain-name-" * 10 + ".com/" + "segment/" * 10)

# Mixed chat-like text.
add("User: What's 2+2?\nAssistant: It's 4.", "Q: Why?\nA: Because.\n\n", "Translate to French: 'I love you' -> 'Je t'aime'",
    "\u4f60\u597d! How are you? \u3053\u3093\u306b\u3061\u306f", "Price: \u20ac12.50 / \u00a310 / \u00a51000",
    "Temperature: 25\u00b0C (77\u00b0F)", "email me at a.b@c.de or call +1 (555) 010-0199",
    "The year 1999 and 2000s", "  - item one\n  - item two\n", "1. First\n2. Second\n",
    "> quoted text\n>> nested", "He said, \"Hello!\" and left.", "\u201cSmart quotes\u201d and \u2018single\u2019",
    "em\u2014dash and en\u2013dash", "ellipsis\u2026", "bullet \u2022 point")

# Random strings drawn from hard pools, fixed seed.
rng = random.Random(1234)
pools = [
    " \t\n\r\u00a0\u3000",
    "abcdefXYZ'sStTrRe",
    "0123456789",
    ".,;:!?-_()[]{}<>/\\|@#$%^&*+=~`\"",
    "\u4e2d\u6587\u5b57\u3042\u30a2\ud55c\uae00",
    "\u00e9\u00e8\u00fc\u00df\u00e7\u0301\u0308",
    "\u0645\u0631\u062d\u05e9\u0928\u0e2a\u0416\u03a9",
    "\U0001f600\U0001f44d\U0001f3fd\u200d\u2764\ufe0f\U0001f1fa\U0001f1f8",
    "\u200b\u200c\u200d\ufeff\u00ad\x00\x7f",
]
specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<s>", "</s>"]
for n in range(120):
    length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 80])
    chars = []
    for _ in range(length):
        if rng.random() < 0.03:
            chars.append(rng.choice(specials))
        else:
            chars.append(rng.choice(rng.choice(pools)))
    add("".join(chars))

with open(OUT, "w", encoding="utf-8") as f:
    json.dump(corpus, f, ensure_ascii=False, indent=0)
    f.write("\n")
print(f"{len(corpus)} strings, {sum(len(s.encode('utf-8')) for s in corpus)} bytes -> {os.path.normpath(OUT)}")
