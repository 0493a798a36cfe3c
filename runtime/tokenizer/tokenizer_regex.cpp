#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/tokenizer/tokenizer_regex.hpp"

#include <pcre2.h>

#include "runtime/error.hpp"

namespace troupe::tokenization {
namespace {

// Unicode White_Space, what Oniguruma's \s means on UTF-8 text. PCRE2's UCP \s adds U+180E.
constexpr std::string_view white_space_items =
    "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

struct match_data_deleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

} // namespace

std::string onig_compatible_pattern(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        if (in_class) {
          out += white_space_items;
        } else {
          out += '[';
          out += white_space_items;
          out += ']';
        }
      } else if (next == 'S' && !in_class) {
        out += "[^";
        out += white_space_items;
        out += ']';
      } else {
        out += c;
        out += next;
      }
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
    } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      // A POSIX class such as [:alpha:] inside a bracket: copy it through its closing ":]".
      const std::size_t close = pattern.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(pattern.substr(i + 1, close + 2 - (i + 1)));
        i = close + 1;
      }
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

struct regex::impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~impl() { pcre2_code_free(code); }
};

regex::regex(std::string_view pattern) : impl_(std::make_unique<impl>()) {
  const std::string translated = onig_compatible_pattern(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (impl_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    throw user_error("invalid regex pattern '" + std::string(pattern) + "': " +
                     reinterpret_cast<const char*>(message) + " at offset " + std::to_string(error_offset));
  }
  // JIT is an optimisation only: without it (no JIT support on this CPU) matching still works.
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

regex::~regex() = default;
regex::regex(regex&&) noexcept = default;
regex& regex::operator=(regex&&) noexcept = default;

std::vector<std::pair<std::size_t, std::size_t>> regex::find_all(std::string_view text) const {
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  std::unique_ptr<pcre2_match_data, match_data_deleter> data(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr));
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t search_from = 0;
  bool have_previous = false;
  std::size_t previous_end = 0;
  while (search_from <= text.size()) {
    // NOTE: callers pass valid UTF-8 only (encode sanitises its input), so the per-call UTF check,
    // which would make this loop quadratic, is skipped.
    uint32_t options = PCRE2_NO_UTF_CHECK;
    int rc = pcre2_match(impl_->code, subject, text.size(), search_from, options, data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      options |= PCRE2_NO_JIT;
      rc = pcre2_match(impl_->code, subject, text.size(), search_from, options, data.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw user_error(std::string("regex matching failed: ") + reinterpret_cast<const char*>(message));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const std::size_t start = ovector[0], end = ovector[1];
    if (start == end && have_previous && previous_end == end) {
      // Oniguruma's iterator refuses an empty match glued to the previous one and steps a character on.
      if (search_from >= text.size()) break;
      std::size_t step = 1;
      while (search_from + step < text.size() && (static_cast<unsigned char>(text[search_from + step]) & 0xC0) == 0x80)
        ++step;
      search_from += step;
      continue;
    }
    matches.emplace_back(start, end);
    have_previous = true;
    previous_end = end;
    search_from = end;
    if (start == end && end == text.size()) break;
  }
  return matches;
}

std::string regex::escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() * 2);
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    const bool plain = byte >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!plain) out += '\\';
    out += c;
  }
  return out;
}

} // namespace troupe::tokenization
