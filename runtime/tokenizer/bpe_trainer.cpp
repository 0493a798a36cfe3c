#include "runtime/tokenizer/bpe_trainer.hpp"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

namespace troupe {
namespace {

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Splits like the Qwen2 regex does for plain prose: a word keeps its leading space.
std::vector<std::string> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) words.push_back(cur);
    cur.clear();
  };
  for (char ch : text) {
    const bool alnum = std::isalnum(static_cast<unsigned char>(ch)) || (static_cast<unsigned char>(ch) & 0x80);
    if (ch == ' ') {
      flush();
      cur = " ";
    } else if (alnum) {
      if (!cur.empty() && cur != " " && !std::isalnum(static_cast<unsigned char>(cur.back())) &&
          !(static_cast<unsigned char>(cur.back()) & 0x80))
        flush();
      cur += ch;
    } else {
      flush();
      cur += ch;
      flush();
    }
  }
  flush();
  return words;
}

} // namespace

std::string byte_to_unicode(uint8_t b) {
  // Printable Latin-1 bytes stand for themselves; the rest map to U+0100 upwards, in byte order.
  auto printable = [](int c) { return (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255); };
  if (printable(b)) return utf8(b);
  int n = 0;
  for (int c = 0; c < b; ++c)
    if (!printable(c)) ++n;
  return utf8(256 + n);
}

trained_bpe train_byte_level_bpe(std::string_view text, int num_merges, std::vector<std::string> special_tokens) {
  trained_bpe out;
  out.special_tokens = std::move(special_tokens);
  for (int b = 0; b < 256; ++b) out.vocab.push_back(byte_to_unicode(static_cast<uint8_t>(b)));

  std::map<std::vector<std::string>, int64_t> words;
  for (const std::string& w : split_words(text)) {
    std::vector<std::string> symbols;
    for (unsigned char c : w) symbols.push_back(byte_to_unicode(c));
    ++words[symbols];
  }
  for (int m = 0; m < num_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [symbols, count] : words)
      for (size_t i = 0; i + 1 < symbols.size(); ++i) pairs[{symbols[i], symbols[i + 1]}] += count;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;  // map order breaks ties by text
    if (best->second < 2) break;
    const auto [a, b] = best->first;
    out.merges.emplace_back(a, b);
    out.vocab.push_back(a + b);
    std::map<std::vector<std::string>, int64_t> next;
    for (const auto& [symbols, count] : words) {
      std::vector<std::string> merged;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == a && symbols[i + 1] == b) {
          merged.push_back(a + b);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      next[merged] += count;
    }
    words = std::move(next);
  }
  return out;
}

std::string byte_level_tokenizer_json(const trained_bpe& bpe) {
  using json = nlohmann::ordered_json;
  const char* qwen2_split =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  json vocab = json::object();
  for (size_t i = 0; i < bpe.vocab.size(); ++i) vocab[bpe.vocab[i]] = i;
  json merges = json::array();
  for (const auto& [a, b] : bpe.merges) merges.push_back(json::array({a, b}));
  json added = json::array();
  for (size_t i = 0; i < bpe.special_tokens.size(); ++i)
    added.push_back({{"id", bpe.vocab.size() + i}, {"content", bpe.special_tokens[i]}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"}, {"pattern", {{"Regex", qwen2_split}}}, {"behavior", "Isolated"}, {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}})}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges}}},
  };
  return j.dump(2);
}

std::string_view default_training_text() {
  return R"(The quick brown fox jumps over the lazy dog. A serving engine keeps the GPU busy: it batches the
requests that arrive, one step at a time, and streams every token back as soon as it is sampled. When a
prompt is long, the engine splits it into chunks and computes them beside the tokens of other requests.
The cache of keys and values is cut into blocks of sixteen tokens, and a block that two requests share is
computed once. The model reads the prompt, thinks about the question, and writes an answer; the answer is
short when the question is simple and longer when it is not. There are many ways to say the same thing,
and the people who read what we write should find it clear.
In the morning the weather was cold, and in the afternoon it was warm. We counted 1, 2, 3, 10, 42, 100,
256, 1024 and 65536 items, then wrote the total down. What is the time? It is half past three.
def generate(prompt, max_tokens=16):
    tokens = tokenizer.encode(prompt)
    for step in range(max_tokens):
        logits = model.forward(tokens)
        tokens.append(int(logits.argmax()))
    return tokenizer.decode(tokens)
int main(int argc, char** argv) { return argc > 1 ? 0 : 1; }
Hello, world! How are you today? I am fine, thank you. Please tell me a story about a small robot that
learns to read. Once upon a time there was a robot, and the robot wanted to read every book in the library.
It started with the first shelf and read the books one by one, from the top to the bottom, until the night
came and the lights of the library went out. The next day it came back and read the second shelf.
)";
}

} // namespace troupe
