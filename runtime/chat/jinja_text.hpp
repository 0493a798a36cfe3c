#pragma once
// Python str operations on UTF-8 text, counted in code points as Python counts them: what templates
// call as methods ('a,b'.split(',')) and filters (trim, title) use.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::jinja::text {

// Decodes the code point at s[i] and advances i; invalid bytes decode as themselves (Latin-1) so no
// input is ever dropped.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t cp);
std::vector<char32_t> code_points(std::string_view s);
std::string from_code_points(const std::vector<char32_t>& cps, size_t begin, size_t end);
size_t code_point_count(std::string_view s);
// The byte offset of the code point with index cp_index (the end when past it).
size_t byte_offset(std::string_view s, size_t cp_index);

bool is_space(char32_t cp);     // str.isspace
bool is_printable(char32_t cp); // str.isprintable, which decides repr's escapes
bool is_alpha(char32_t cp);
bool is_digit(char32_t cp);
bool is_numeric(char32_t cp);
bool is_lower(char32_t cp);
bool is_upper(char32_t cp);
bool is_cased(char32_t cp);
char32_t to_lower(char32_t cp);
char32_t to_upper(char32_t cp);
char32_t to_title(char32_t cp);
bool is_line_break(char32_t cp); // what str.splitlines splits on
// Python's full case mappings of one code point (str.upper of 'ß' is "SS"), appended to out.
void append_upper(std::string& out, char32_t cp);
void append_lower(std::string& out, char32_t cp);
void append_title(std::string& out, char32_t cp);

std::string lower(std::string_view s);
std::string upper(std::string_view s);
std::string title(std::string_view s);      // str.title
std::string capitalize(std::string_view s); // str.capitalize
std::string swapcase(std::string_view s);
// str.strip / lstrip / rstrip; chars absent strips whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / rsplit; sep absent splits on runs of whitespace. maxsplit < 0: no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> splitlines(std::string_view s, bool keepends);
// str.replace; count < 0: all.
std::string replace(std::string_view s, std::string_view old, std::string_view replacement, int64_t count);
// str.find / rfind, as code point indexes; -1 when absent. start/end are code point indexes
// (Python slice semantics).
int64_t find(std::string_view s, std::string_view sub, std::optional<int64_t> start, std::optional<int64_t> end,
             bool reverse);
int64_t count(std::string_view s, std::string_view sub);
bool all_of(std::string_view s, bool (*pred)(char32_t)); // False for ""
bool is_lower_str(std::string_view s);                  // str.islower
bool is_upper_str(std::string_view s);                  // str.isupper
std::string pad(std::string_view s, int64_t width, char32_t fill, int align); // align: -1 left, 0 center, 1 right
std::string expandtabs(std::string_view s, int64_t tabsize);

// Python slice s[start:stop:step] over code points.
std::string slice(std::string_view s, std::optional<int64_t> start, std::optional<int64_t> stop, int64_t step);

} // namespace troupe::jinja::text
