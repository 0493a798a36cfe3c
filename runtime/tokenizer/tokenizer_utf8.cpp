#include "runtime/tokenizer/tokenizer_utf8.hpp"

#include <utf8proc.h>

namespace troupe::utf8 {
namespace {

bool in(unsigned char byte, unsigned char low, unsigned char high) { return byte >= low && byte <= high; }

} // namespace

std::size_t decode_at(std::string_view text, std::size_t pos, char32_t& code_point) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  const std::size_t left = text.size() - pos;
  const unsigned char lead = byte(0);
  if (lead < 0x80) {
    code_point = lead;
    return 1;
  }
  // Unicode Table 3-7 (well-formed byte sequences): the allowed range of the second byte depends on the
  // lead; later bytes are always 80..BF. Stopping at the first byte outside its range gives the maximal
  // subpart, which becomes a single U+FFFD.
  std::size_t length = 0;
  unsigned char second_low = 0x80, second_high = 0xBF;
  char32_t value = 0;
  if (in(lead, 0xC2, 0xDF)) {
    length = 2;
    value = lead & 0x1F;
  } else if (in(lead, 0xE0, 0xEF)) {
    length = 3;
    value = lead & 0x0F;
    if (lead == 0xE0) second_low = 0xA0;
    if (lead == 0xED) second_high = 0x9F;
  } else if (in(lead, 0xF0, 0xF4)) {
    length = 4;
    value = lead & 0x07;
    if (lead == 0xF0) second_low = 0x90;
    if (lead == 0xF4) second_high = 0x8F;
  } else {
    code_point = replacement_char;
    return 1;
  }
  for (std::size_t i = 1; i < length; ++i) {
    if (i >= left) {
      code_point = replacement_char;
      return i;
    }
    const unsigned char next = byte(i);
    const bool ok = i == 1 ? in(next, second_low, second_high) : in(next, 0x80, 0xBF);
    if (!ok) {
      code_point = replacement_char;
      return i;
    }
    value = (value << 6) | (next & 0x3F);
  }
  code_point = value;
  return length;
}

void append(std::string& out, char32_t c) {
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) c = replacement_char;
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

bool is_valid(std::string_view bytes) {
  for (std::size_t pos = 0; pos < bytes.size();) {
    char32_t c;
    const std::size_t length = decode_at(bytes, pos, c);
    if (c == replacement_char && length != 3) return false;
    if (c == replacement_char && bytes.substr(pos, 3) != "\xEF\xBF\xBD") return false;
    pos += length;
  }
  return true;
}

std::string make_valid(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    // Copy runs of ASCII untouched: the common case.
    const std::size_t start = pos;
    while (pos < bytes.size() && static_cast<unsigned char>(bytes[pos]) < 0x80) ++pos;
    out.append(bytes.substr(start, pos - start));
    if (pos == bytes.size()) break;
    char32_t c;
    const std::size_t length = decode_at(bytes, pos, c);
    if (c == replacement_char) {
      append(out, c);
    } else {
      out.append(bytes.substr(pos, length));
    }
    pos += length;
  }
  return out;
}

std::size_t complete_prefix_length(std::string_view bytes) {
  // Walk back over at most 3 continuation bytes to the last lead byte; drop it when its sequence is
  // still open (a prefix of a valid sequence that the end of the bytes cut short).
  std::size_t lead = bytes.size();
  for (std::size_t back = 1; back <= 4 && back <= bytes.size(); ++back) {
    const auto byte = static_cast<unsigned char>(bytes[bytes.size() - back]);
    if ((byte & 0xC0) != 0x80) {
      lead = bytes.size() - back;
      break;
    }
  }
  if (lead == bytes.size()) return bytes.size();
  char32_t c;
  const std::size_t length = decode_at(bytes, lead, c);
  const bool truncated = c == replacement_char && lead + length == bytes.size() &&
                         static_cast<unsigned char>(bytes[lead]) >= 0xC2;
  return truncated ? lead : bytes.size();
}

bool is_whitespace(char32_t c) {
  switch (c) {
  case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20: case 0x85: case 0xA0:
  case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
    return true;
  default:
    return c >= 0x2000 && c <= 0x200A;
  }
}

bool is_numeric(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category == UTF8PROC_CATEGORY_ND || category == UTF8PROC_CATEGORY_NL ||
         category == UTF8PROC_CATEGORY_NO;
}

bool is_alphanumeric(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_LO) || is_numeric(c);
}

bool is_punctuation(char32_t c) {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                       (c >= 0x7B && c <= 0x7E);
  const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return category >= UTF8PROC_CATEGORY_PC && category <= UTF8PROC_CATEGORY_PO;
}

} // namespace troupe::utf8
