#include "runtime/gateway/http_request_head.hpp"

#include <algorithm>
#include <cctype>

namespace troupe {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

std::string joined(const std::vector<std::string_view>& values) {
  std::string out;
  for (std::string_view v : values) out += (out.empty() ? "" : ", ") + std::string(trim(v));
  return out;
}

} // namespace

head_verdict check_request_head(const request_head& head, bool body_expected) {
  head_verdict v;
  if (!head.transfer_encoding.empty()) {
    // Only a lone "chunked": any other coding (gzip, deflate, a list) would reach the parser undecoded.
    if (head.transfer_encoding.size() != 1 || !iequals(trim(head.transfer_encoding.front()), "chunked")) {
      v.status = 501;
      v.message = "Transfer-Encoding '" + joined(head.transfer_encoding) +
                  "' is not supported: send the body as is, with Content-Length or Transfer-Encoding: chunked";
      return v;
    }
    if (head.version < 11) {
      v.status = 400;
      v.message = "Transfer-Encoding is not allowed in an HTTP/1.0 request";
      return v;
    }
  }
  if (!head.expect.empty()) {
    if (head.expect.size() != 1 || !iequals(trim(head.expect.front()), "100-continue")) {
      v.status = 417;
      v.message = "Expectation '" + joined(head.expect) + "' is not supported; only 'Expect: 100-continue' is";
      return v;
    }
    // HTTP/1.0 clients do not know 1xx responses (RFC 9110 15.2).
    v.send_continue = head.version >= 11 && body_expected;
  }
  if (body_expected && !head.has_content_length && head.transfer_encoding.empty()) {
    v.status = 411;
    v.message = "A " + std::string(head.method) + " request needs a Content-Length header (or Transfer-Encoding: chunked)";
    v.send_continue = false;
  }
  return v;
}

int status_of(parse_failure failure) {
  switch (failure) {
    case parse_failure::header_limit: return 431;
    case parse_failure::body_limit: return 413;
    case parse_failure::malformed: break;
  }
  return 400;
}

std::string_view status_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Request Entity Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
  }
  return "Error";
}

} // namespace troupe
