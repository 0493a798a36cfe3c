#pragma once
// UTF-8 helpers for the tokenizer: decoding with Unicode's "maximal subpart" replacement (what Rust's
// String::from_utf8_lossy and Python's errors="replace" do, so our decode matches Hugging Face byte for
// byte), and the character classes Rust's char methods use.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::utf8 {

inline constexpr char32_t replacement_char = 0xFFFD;

// Decodes the character at text[pos]. Returns the number of bytes it takes (>= 1 when pos < size);
// an invalid sequence yields replacement_char and the length of its maximal subpart.
std::size_t decode_at(std::string_view text, std::size_t pos, char32_t& code_point);

// Appends the UTF-8 encoding of code_point (surrogates and values past U+10FFFF become U+FFFD).
void append(std::string& out, char32_t code_point);

// True when bytes are well-formed UTF-8.
bool is_valid(std::string_view bytes);

// bytes with each maximal invalid subpart replaced by U+FFFD, like Rust's String::from_utf8_lossy.
std::string make_valid(std::string_view bytes);

// Byte length of the longest prefix of bytes that ends on a character boundary and holds no incomplete
// trailing sequence: what can be shown now without splitting a character.
std::size_t complete_prefix_length(std::string_view bytes);

// Rust's char::is_whitespace: the Unicode White_Space property.
bool is_whitespace(char32_t c);

// Rust's char::is_numeric: general categories Nd, Nl, No.
bool is_numeric(char32_t c);

// Rust's char::is_alphanumeric: Alphabetic or Numeric (approximated by general categories L*, Nl, N*).
bool is_alphanumeric(char32_t c);

// Unicode punctuation (general category P*) or ASCII punctuation, as HF's Punctuation pre-tokenizer.
bool is_punctuation(char32_t c);

} // namespace troupe::utf8
