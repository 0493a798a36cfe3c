// Normalizers: text-to-text rewrites applied before pre-tokenization, as in HF tokenizers/normalizers.

#include <utf8proc.h>

#include <cstdlib>

#include "runtime/tokenizer/tokenizer_components.hpp"
#include "runtime/tokenizer/tokenizer_json.hpp"
#include "runtime/tokenizer/tokenizer_regex.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe::tokenization {
namespace {

class unicode_normalizer final : public normalizer {
public:
  explicit unicode_normalizer(int options) : options_(options) {}
  void normalize(std::string& text) const override {
    if (text.empty()) return;
    utf8proc_uint8_t* result = nullptr;
    const auto length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                     static_cast<utf8proc_ssize_t>(text.size()), &result,
                                     static_cast<utf8proc_option_t>(options_));
    // utf8proc fails only on invalid UTF-8, which never reaches a normalizer.
    if (length < 0) return;
    text.assign(reinterpret_cast<const char*>(result), static_cast<std::size_t>(length));
    std::free(result);
  }

private:
  int options_;
};

class lowercase_normalizer final : public normalizer {
public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    for (std::size_t pos = 0; pos < text.size();) {
      char32_t c;
      pos += utf8::decode_at(text, pos, c);
      if (c < 0x80) {
        out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c));
      } else if (c == 0x130) {
        // Rust's char::to_lowercase uses the full mapping: İ becomes i + combining dot above.
        out += "i\xCC\x87";
      } else {
        utf8::append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
      }
    }
    text = std::move(out);
  }
};

class strip_normalizer final : public normalizer {
public:
  strip_normalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    std::size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        char32_t c;
        const std::size_t length = utf8::decode_at(text, begin, c);
        if (!utf8::is_whitespace(c)) break;
        begin += length;
      }
    }
    if (right_) {
      while (end > begin) {
        std::size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        char32_t c;
        utf8::decode_at(text, start, c);
        if (!utf8::is_whitespace(c)) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

private:
  bool left_, right_;
};

class strip_accents_normalizer final : public normalizer {
public:
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    for (std::size_t pos = 0; pos < text.size();) {
      char32_t c;
      const std::size_t length = utf8::decode_at(text, pos, c);
      const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      const bool mark = category == UTF8PROC_CATEGORY_MN || category == UTF8PROC_CATEGORY_MC ||
                        category == UTF8PROC_CATEGORY_ME;
      if (!mark) out.append(text, pos, length);
      pos += length;
    }
    text = std::move(out);
  }
};

class prepend_normalizer final : public normalizer {
public:
  explicit prepend_normalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  // HF prepends only to non-empty text.
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

private:
  std::string prefix_;
};

class replace_normalizer final : public normalizer {
public:
  replace_normalizer(regex pattern, std::string content) : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    const auto matches = pattern_.find_all(text);
    if (matches.empty()) return;
    std::string out;
    out.reserve(text.size());
    std::size_t last = 0;
    for (const auto& [begin, end] : matches) {
      out.append(text, last, begin - last);
      out += content_;
      last = end;
    }
    out.append(text, last, std::string::npos);
    text = std::move(out);
  }

private:
  regex pattern_;
  std::string content_;
};

class byte_level_normalizer final : public normalizer {
public:
  void normalize(std::string& text) const override {
    const auto& chars = byte_level_chars();
    std::string out;
    out.reserve(text.size() * 2);
    for (const char byte : text) out += chars[static_cast<unsigned char>(byte)];
    text = std::move(out);
  }
};

class sequence_normalizer final : public normalizer {
public:
  explicit sequence_normalizer(std::vector<std::unique_ptr<normalizer>> steps) : steps_(std::move(steps)) {}
  void normalize(std::string& text) const override {
    for (const auto& step : steps_) step->normalize(text);
  }

private:
  std::vector<std::unique_ptr<normalizer>> steps_;
};

} // namespace

// The regex of a {"String": s} or {"Regex": r} pattern object (Split, Replace).
regex make_pattern(const json& pattern, std::string_view where) {
  if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string())
    return regex(regex::escape(pattern["String"].get<std::string>()));
  if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
    return regex(pattern["Regex"].get<std::string>());
  throw user_error(std::string(where) + ": field 'pattern' must be {\"String\": ...} or {\"Regex\": ...}");
}

std::unique_ptr<normalizer> make_normalizer(const json& section) {
  if (section.is_null()) return nullptr;
  constexpr std::string_view where = "normalizer";
  const std::string type = type_of(section, where);
  if (type == "NFC") return std::make_unique<unicode_normalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<unicode_normalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<unicode_normalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD")
    return std::make_unique<unicode_normalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::make_unique<lowercase_normalizer>();
  if (type == "StripAccents") return std::make_unique<strip_accents_normalizer>();
  if (type == "Strip")
    return std::make_unique<strip_normalizer>(optional_bool(section, "strip_left", true, where),
                                              optional_bool(section, "strip_right", true, where));
  if (type == "Prepend") return std::make_unique<prepend_normalizer>(required_string(section, "prepend", where));
  if (type == "Replace")
    return std::make_unique<replace_normalizer>(make_pattern(required_field(section, "pattern", "Replace normalizer"),
                                                             "Replace normalizer"),
                                                required_string(section, "content", "Replace normalizer"));
  if (type == "ByteLevel") return std::make_unique<byte_level_normalizer>();
  if (type == "Sequence") {
    const json& list = required_field(section, "normalizers", "Sequence normalizer");
    if (!list.is_array()) throw user_error("Sequence normalizer: field 'normalizers' must be a list");
    std::vector<std::unique_ptr<normalizer>> steps;
    for (const json& step : list) {
      if (auto made = make_normalizer(step)) steps.push_back(std::move(made));
    }
    return std::make_unique<sequence_normalizer>(std::move(steps));
  }
  throw user_error("normalizer type '" + type + "' is not supported (troupe supports NFC, NFD, NFKC, NFKD, "
                   "Lowercase, Strip, StripAccents, Prepend, Replace, ByteLevel, Sequence)");
}

} // namespace troupe::tokenization
