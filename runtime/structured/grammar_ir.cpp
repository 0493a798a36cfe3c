// The grammar intermediate form and the UTF-8 range splitting that turns code point classes into bytes.

#include "runtime/structured/grammar_ir.hpp"
#include "runtime/structured/grammar_limits.hpp"

#include <algorithm>
#include <stdexcept>

namespace troupe::structured {

int32_t grammar::rule(std::string_view name) {
  const auto [it, fresh] = rule_ids_.try_emplace(std::string(name), static_cast<int32_t>(rules_.size()));
  if (fresh) rules_.push_back({std::string(name), -1});
  return it->second;
}

int32_t grammar::new_rule(std::string_view prefix) {
  // '#' is no name character in EBNF, so a made-up name never meets a written one.
  return rule(std::string(prefix) + "#" + std::to_string(rules_.size()));
}

void grammar::set_body(int32_t rule, int32_t expr) { rules_[rule].body = expr; }

int32_t grammar::add(grammar_expr e) {
  if (exprs_.size() >= limits::max_grammar_exprs)
    throw std::invalid_argument(what + ": the spec makes a grammar of more than " + std::to_string(limits::max_grammar_exprs) +
                                " parts (limit); make it smaller (long enums, choice lists, literals and alternations add "
                                "up, and an anyOf's branches each repeat the properties beside them)");
  exprs_.push_back(std::move(e));
  return static_cast<int32_t>(exprs_.size() - 1);
}

int32_t grammar::empty() { return add({}); }

int32_t grammar::literal(std::string_view bytes) {
  if (bytes.empty()) return empty();
  grammar_expr e;
  e.type = grammar_expr::kind::literal;
  e.text = std::string(bytes);
  return add(std::move(e));
}

int32_t grammar::bytes(const byte_set& set) {
  grammar_expr e;
  e.type = grammar_expr::kind::byte_class;
  e.bytes = set;
  return add(std::move(e));
}

int32_t grammar::byte_range(uint8_t lo, uint8_t hi) {
  byte_set set;
  for (int b = lo; b <= hi; ++b) set.set(b);
  return bytes(set);
}

int32_t grammar::codepoints(const codepoint_ranges& ranges) {
  // One byte class for the ASCII part, then one sequence per multi-byte UTF-8 range.
  byte_set ascii;
  std::vector<int32_t> options;
  for (const auto& [lo, hi] : ranges) {
    for (const auto& seq : utf8_sequences(lo, hi)) {
      if (seq.size() == 1) {
        for (int b = seq[0].first; b <= seq[0].second; ++b) ascii.set(b);
        continue;
      }
      std::vector<int32_t> parts;
      for (const auto& [a, b] : seq) parts.push_back(byte_range(a, b));
      options.push_back(sequence(std::move(parts)));
    }
  }
  if (ascii.any()) options.insert(options.begin(), bytes(ascii));
  if (options.empty()) return bytes(byte_set{}); // matches nothing
  return choice(std::move(options));
}

int32_t grammar::sequence(std::vector<int32_t> items) {
  if (items.size() == 1) return items[0];
  if (items.empty()) return empty();
  grammar_expr e;
  e.type = grammar_expr::kind::sequence;
  e.items = std::move(items);
  return add(std::move(e));
}

int32_t grammar::choice(std::vector<int32_t> items) {
  if (items.size() == 1) return items[0];
  grammar_expr e;
  e.type = grammar_expr::kind::choice;
  e.items = std::move(items);
  return add(std::move(e));
}

int32_t grammar::repeat(int32_t item, int32_t min, int32_t max) {
  if (min == 1 && max == 1) return item;
  grammar_expr e;
  e.type = grammar_expr::kind::repeat;
  e.items = {item};
  e.min = min;
  e.max = max;
  return add(std::move(e));
}

int32_t grammar::ref(int32_t rule) {
  grammar_expr e;
  e.type = grammar_expr::kind::rule_ref;
  e.rule = rule;
  return add(std::move(e));
}

int32_t grammar::literal_set(std::vector<std::string> texts) {
  std::sort(texts.begin(), texts.end());
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
  // texts[begin, end) share their first depth bytes.
  const auto build = [&](auto&& self, std::size_t begin, std::size_t end, std::size_t depth) -> int32_t {
    std::vector<int32_t> options;
    std::size_t i = begin;
    if (texts[i].size() == depth) {  // sorted: the text that ends here comes first
      options.push_back(empty());
      ++i;
    }
    while (i < end) {
      std::size_t j = i + 1;
      while (j < end && texts[j][depth] == texts[i][depth]) ++j;
      // Sorted: what the first and last of [i, j) share, every text between shares, and is no longer.
      std::size_t stop = depth + 1;
      while (texts[i].size() > stop && texts[j - 1].size() > stop && texts[i][stop] == texts[j - 1][stop]) ++stop;
      options.push_back(sequence({literal(std::string_view(texts[i]).substr(depth, stop - depth)), self(self, i, j, stop)}));
      i = j;
    }
    return options.size() == 1 ? options[0] : choice(std::move(options));
  };
  if (texts.empty()) return bytes(byte_set{});
  return build(build, 0, texts.size(), 0);
}

codepoint_ranges normalize_ranges(codepoint_ranges ranges, bool negate) {
  std::sort(ranges.begin(), ranges.end());
  codepoint_ranges merged;
  for (const auto& [lo, hi] : ranges) {
    if (lo > hi) continue;
    if (!merged.empty() && lo <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, hi);
    } else {
      merged.emplace_back(lo, hi);
    }
  }
  if (!negate) return merged;
  codepoint_ranges complement;
  char32_t next = 0;
  for (const auto& [lo, hi] : merged) {
    if (lo > next) complement.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= 0x10FFFF) complement.emplace_back(next, 0x10FFFF);
  return complement;
}

namespace {

int utf8_length(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

void encode(char32_t c, uint8_t* out) {
  switch (utf8_length(c)) {
  case 1: out[0] = static_cast<uint8_t>(c); break;
  case 2:
    out[0] = static_cast<uint8_t>(0xC0 | (c >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
    break;
  case 3:
    out[0] = static_cast<uint8_t>(0xE0 | (c >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
    break;
  default:
    out[0] = static_cast<uint8_t>(0xF0 | (c >> 18));
    out[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
    out[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
  }
}

// Splits lo..hi until each piece is a product of byte ranges (the construction of RE2 and Rust's
// regex-syntax Utf8Sequences).
void split(char32_t lo, char32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  if (lo > hi) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) split(lo, 0xD7FF, out);
    if (hi > 0xDFFF) split(0xE000, hi, out);
    return;
  }
  for (const char32_t limit : {char32_t{0x7F}, char32_t{0x7FF}, char32_t{0xFFFF}}) {
    if (lo <= limit && hi > limit) {
      split(lo, limit, out);
      split(limit + 1, hi, out);
      return;
    }
  }
  const int n = utf8_length(lo);
  for (int i = 1; i < n; ++i) {
    const char32_t m = (char32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split(lo, lo | m, out);
        split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split(lo, (hi & ~m) - 1, out);
        split(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  encode(lo, a);
  encode(hi, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (int i = 0; i < n; ++i) seq.emplace_back(a[i], b[i]);
  out.push_back(std::move(seq));
}

} // namespace

std::vector<std::vector<std::pair<uint8_t, uint8_t>>> utf8_sequences(char32_t lo, char32_t hi) {
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> out;
  split(lo, std::min<char32_t>(hi, 0x10FFFF), out);
  return out;
}

} // namespace troupe::structured
