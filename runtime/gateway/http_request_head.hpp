#pragma once
// What the gateway decides from a request's head alone, before it reads the body (RFC 9110/9112):
// refuse a transfer coding it cannot decode (501: reading it as plain would hand compressed or framed
// bytes to the JSON parser), ask for a length a POST lacks (411), answer an expectation (100 Continue,
// or 417 for any other), and map the parser's errors to 400 / 413 / 431.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct request_head {
  std::string_view method;                          // as sent: "POST"
  int version = 11;                                 // 10 or 11
  bool has_content_length = false;
  std::vector<std::string_view> transfer_encoding;  // each Transfer-Encoding field value as sent
  std::vector<std::string_view> expect;             // each Expect field value as sent
};

struct head_verdict {
  int status = 0;              // 0: go on; else answer this status and do not read the body
  std::string message;         // why, for the error object
  bool send_continue = false;  // go on, after writing "100 Continue"
};

// The decision on a head; body_expected: the route reads a body (a POST route).
head_verdict check_request_head(const request_head& head, bool body_expected);

// The parser's failures: which status answers each. header_limit: 431; body_limit: 413; anything else
// malformed (start line, field syntax, Content-Length, chunk framing): 400.
enum class parse_failure { malformed, header_limit, body_limit };
int status_of(parse_failure failure);

// The reason phrase of a status, as Python's HTTPStatus spells it (vLLM's error type for protocol errors).
std::string_view status_phrase(int status);

} // namespace troupe
