// Pre-tokenizers: split normalized text into the words BPE sees, as in HF tokenizers/pre_tokenizers.

#include <algorithm>
#include <functional>

#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_json.hpp"
#include "runtime/tokenizer/tokenizer_regex.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

// GPT-2's pre-tokenization regex, which ByteLevel applies when use_regex is set.
constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Marks for a regex: gaps and matches covering text, like HF's Pattern::find_matches for a regex.
std::vector<span_mark> regex_marks(const regex& pattern, std::string_view text) {
  std::vector<span_mark> marks;
  if (text.empty()) {
    marks.push_back({0, 0, false});
    return marks;
  }
  std::size_t previous = 0;
  for (const auto& [begin, end] : pattern.find_all(text)) {
    if (previous != begin) marks.push_back({previous, begin, false});
    marks.push_back({begin, end, true});
    previous = end;
  }
  if (previous != text.size()) marks.push_back({previous, text.size(), false});
  return marks;
}

// Marks for a character predicate: every matching character is its own match.
std::vector<span_mark> char_marks(std::string_view text, const std::function<bool(char32_t)>& matches) {
  std::vector<span_mark> marks;
  if (text.empty()) {
    marks.push_back({0, 0, false});
    return marks;
  }
  std::size_t last_offset = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    char32_t c;
    const std::size_t length = utf8::decode_at(text, pos, c);
    if (matches(c)) {
      if (last_offset < pos) marks.push_back({last_offset, pos, false});
      marks.push_back({pos, pos + length, true});
      last_offset = pos + length;
    }
    pos += length;
  }
  if (last_offset < text.size()) marks.push_back({last_offset, text.size(), false});
  return marks;
}

void invert(std::vector<span_mark>& marks) {
  for (auto& mark : marks) mark.is_match = !mark.is_match;
}

split_behavior parse_behavior(const json& section, std::string_view where) {
  const std::string name = required_string(section, "behavior", where);
  if (name == "Removed") return split_behavior::removed;
  if (name == "Isolated") return split_behavior::isolated;
  if (name == "MergedWithPrevious") return split_behavior::merged_with_previous;
  if (name == "MergedWithNext") return split_behavior::merged_with_next;
  if (name == "Contiguous") return split_behavior::contiguous;
  throw user_error(std::string(where) + ": behavior '" + name + "' is not one of Removed, Isolated, "
                   "MergedWithPrevious, MergedWithNext, Contiguous");
}

// Applies split to every piece, collecting the results in place.
template <typename Split>
void split_each(std::vector<piece>& pieces, Split&& split) {
  std::vector<piece> out;
  out.reserve(pieces.size());
  for (const piece& source : pieces) split(source, out);
  pieces = std::move(out);
}

class split_pre_tokenizer final : public pre_tokenizer {
public:
  split_pre_tokenizer(regex pattern, split_behavior behavior, bool inverted)
      : pattern_(std::move(pattern)), behavior_(behavior), inverted_(inverted) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    split_each(pieces, [&](const piece& source, std::vector<piece>& out) {
      auto marks = regex_marks(pattern_, source.text);
      if (inverted_) invert(marks);
      split_piece(source, marks, behavior_, out);
    });
  }

private:
  regex pattern_;
  split_behavior behavior_;
  bool inverted_;
};

class byte_level_pre_tokenizer final : public pre_tokenizer {
public:
  byte_level_pre_tokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex), pattern_(gpt2_pattern) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    split_each(pieces, [&](const piece& source, std::vector<piece>& out) {
      piece prefixed = source;
      if (add_prefix_space_ && (prefixed.text.empty() || prefixed.text[0] != ' ')) prefixed.text.insert(0, " ");
      if (use_regex_) {
        split_piece(prefixed, regex_marks(pattern_, prefixed.text), split_behavior::isolated, out);
      } else if (!prefixed.text.empty()) {
        out.push_back(std::move(prefixed));
      }
    });
    const auto& chars = byte_level_chars();
    for (piece& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (const char byte : p.text) mapped += chars[static_cast<unsigned char>(byte)];
      p.text = std::move(mapped);
    }
  }

private:
  bool add_prefix_space_;
  bool use_regex_;
  regex pattern_;
};

class metaspace_pre_tokenizer final : public pre_tokenizer {
public:
  metaspace_pre_tokenizer(char32_t replacement, prepend_scheme scheme, bool split)
      : replacement_(replacement), scheme_(scheme), split_(split) {
    utf8::append(replacement_text_, replacement);
  }
  void pre_tokenize(std::vector<piece>& pieces) const override {
    split_each(pieces, [&](const piece& source, std::vector<piece>& out) {
      piece replaced{std::string(), source.at_start};
      for (const char c : source.text) {
        if (c == ' ') {
          replaced.text += replacement_text_;
        } else {
          replaced.text += c;
        }
      }
      const bool starts_with_replacement = replaced.text.starts_with(replacement_text_);
      if (!starts_with_replacement &&
          (scheme_ == prepend_scheme::always || (scheme_ == prepend_scheme::first && source.at_start)))
        replaced.text.insert(0, replacement_text_);
      if (split_) {
        const char32_t replacement = replacement_;
        split_piece(replaced, char_marks(replaced.text, [replacement](char32_t c) { return c == replacement; }),
                    split_behavior::merged_with_next, out);
      } else if (!replaced.text.empty()) {
        out.push_back(std::move(replaced));
      }
    });
  }

private:
  char32_t replacement_;
  std::string replacement_text_;
  prepend_scheme scheme_;
  bool split_;
};

class char_class_pre_tokenizer final : public pre_tokenizer {
public:
  char_class_pre_tokenizer(std::function<bool(char32_t)> matches, split_behavior behavior)
      : matches_(std::move(matches)), behavior_(behavior) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    split_each(pieces, [&](const piece& source, std::vector<piece>& out) {
      split_piece(source, char_marks(source.text, matches_), behavior_, out);
    });
  }

private:
  std::function<bool(char32_t)> matches_;
  split_behavior behavior_;
};

class sequence_pre_tokenizer final : public pre_tokenizer {
public:
  explicit sequence_pre_tokenizer(std::vector<std::unique_ptr<pre_tokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<piece>& pieces) const override {
    for (const auto& step : steps_) step->pre_tokenize(pieces);
  }

private:
  std::vector<std::unique_ptr<pre_tokenizer>> steps_;
};

} // namespace

prepend_scheme parse_prepend_scheme(const json& section, std::string_view where) {
  // Files written before prepend_scheme existed say add_prefix_space instead.
  if (!section.contains("prepend_scheme"))
    return optional_bool(section, "add_prefix_space", true, where) ? prepend_scheme::always : prepend_scheme::never;
  const std::string name = required_string(section, "prepend_scheme", where);
  if (name == "always") return prepend_scheme::always;
  if (name == "first") return prepend_scheme::first;
  if (name == "never") return prepend_scheme::never;
  throw user_error(std::string(where) + ": prepend_scheme '" + name + "' is not one of always, first, never");
}

char32_t single_char(const json& section, std::string_view key, std::string_view where) {
  const std::string text = required_string(section, key, where);
  char32_t c = 0;
  if (text.empty() || utf8::decode_at(text, 0, c) != text.size())
    throw user_error(std::string(where) + ": field '" + std::string(key) + "' must be a single character");
  return c;
}

void split_piece(const piece& source, std::span<const span_mark> marks, split_behavior behavior,
                 std::vector<piece>& out) {
  // (begin, end, remove) ranges after applying the behaviour, as in NormalizedString::split.
  struct range {
    std::size_t begin, end;
    bool remove;
  };
  std::vector<range> ranges;
  ranges.reserve(marks.size());
  switch (behavior) {
  case split_behavior::isolated:
    for (const auto& m : marks) ranges.push_back({m.begin, m.end, false});
    break;
  case split_behavior::removed:
    for (const auto& m : marks) ranges.push_back({m.begin, m.end, m.is_match});
    break;
  case split_behavior::contiguous: {
    bool previous_match = false;
    for (const auto& m : marks) {
      if (m.is_match == previous_match && !ranges.empty()) {
        ranges.back().end = m.end;
      } else {
        ranges.push_back({m.begin, m.end, false});
      }
      previous_match = m.is_match;
    }
    break;
  }
  case split_behavior::merged_with_previous: {
    bool previous_match = false;
    for (const auto& m : marks) {
      if (m.is_match && !previous_match && !ranges.empty()) {
        ranges.back().end = m.end;
      } else {
        ranges.push_back({m.begin, m.end, false});
      }
      previous_match = m.is_match;
    }
    break;
  }
  case split_behavior::merged_with_next: {
    bool previous_match = false;
    for (auto it = marks.rbegin(); it != marks.rend(); ++it) {
      if (it->is_match && !previous_match && !ranges.empty()) {
        ranges.back().begin = it->begin;
      } else {
        ranges.push_back({it->begin, it->end, false});
      }
      previous_match = it->is_match;
    }
    std::reverse(ranges.begin(), ranges.end());
    break;
  }
  }
  for (const auto& r : ranges) {
    if (r.remove || r.begin == r.end) continue;
    out.push_back({source.text.substr(r.begin, r.end - r.begin), source.at_start && r.begin == 0});
  }
}

const std::vector<std::string>& byte_level_chars() {
  static const std::vector<std::string> chars = [] {
    std::vector<std::string> table(256);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8::append(table[b], printable ? static_cast<char32_t>(b) : next++);
    }
    return table;
  }();
  return chars;
}

int byte_level_byte(char32_t c) {
  static const std::vector<int> bytes = [] {
    std::vector<int> table(512, -1);
    const auto& chars = byte_level_chars();
    for (int b = 0; b < 256; ++b) {
      char32_t c = 0;
      utf8::decode_at(chars[b], 0, c);
      table[c] = b;
    }
    return table;
  }();
  return c < bytes.size() ? bytes[c] : -1;
}

std::unique_ptr<pre_tokenizer> make_pre_tokenizer(const json& section) {
  if (section.is_null()) return nullptr;
  const std::string type = type_of(section, "pre_tokenizer");
  if (type == "Split") {
    constexpr std::string_view where = "Split pre_tokenizer";
    return std::make_unique<split_pre_tokenizer>(make_pattern(required_field(section, "pattern", where), where),
                                                 parse_behavior(section, where),
                                                 optional_bool(section, "invert", false, where));
  }
  if (type == "ByteLevel") {
    constexpr std::string_view where = "ByteLevel pre_tokenizer";
    return std::make_unique<byte_level_pre_tokenizer>(optional_bool(section, "add_prefix_space", true, where),
                                                      optional_bool(section, "use_regex", true, where));
  }
  if (type == "Metaspace") {
    constexpr std::string_view where = "Metaspace pre_tokenizer";
    return std::make_unique<metaspace_pre_tokenizer>(single_char(section, "replacement", where),
                                                     parse_prepend_scheme(section, where),
                                                     optional_bool(section, "split", true, where));
  }
  if (type == "Digits") {
    const bool individual = optional_bool(section, "individual_digits", false, "Digits pre_tokenizer");
    return std::make_unique<char_class_pre_tokenizer>(
        utf8::is_numeric, individual ? split_behavior::isolated : split_behavior::contiguous);
  }
  if (type == "Punctuation") {
    const split_behavior behavior =
        section.contains("behavior") ? parse_behavior(section, "Punctuation pre_tokenizer") : split_behavior::isolated;
    return std::make_unique<char_class_pre_tokenizer>(utf8::is_punctuation, behavior);
  }
  if (type == "WhitespaceSplit")
    return std::make_unique<char_class_pre_tokenizer>(utf8::is_whitespace, split_behavior::removed);
  if (type == "Whitespace") {
    // HF uses \w+|[^\w\s]+ (inverted, removed): keep runs of word characters and runs of the rest.
    return std::make_unique<split_pre_tokenizer>(
        regex(R"([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\s]+)"), split_behavior::removed, true);
  }
  if (type == "Sequence") {
    const json& list = required_field(section, "pretokenizers", "Sequence pre_tokenizer");
    if (!list.is_array()) throw user_error("Sequence pre_tokenizer: field 'pretokenizers' must be a list");
    std::vector<std::unique_ptr<pre_tokenizer>> steps;
    for (const json& step : list) {
      if (auto made = make_pre_tokenizer(step)) steps.push_back(std::move(made));
    }
    return std::make_unique<sequence_pre_tokenizer>(std::move(steps));
  }
  throw user_error("pre_tokenizer type '" + type + "' is not supported (troupe supports Split, ByteLevel, "
                   "Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, Sequence)");
}

} // namespace troupe::tokenization
