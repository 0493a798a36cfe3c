#include "runtime/openai/openai_error.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <stdexcept>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "runtime/engine/engine_core.hpp"
#include "runtime/openai/json_writer.hpp"
#include "runtime/openai/python_repr.hpp"
#include "runtime/tokenizer/tokenizer_utf8.hpp"

namespace troupe {

namespace {

// One of sanitize_message's substitutions, compiled once (Python's regex: Unicode \w and \s).
class substitution {
public:
  substitution(const char* pattern, const char* replacement) : replacement_(replacement) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &error, &offset, nullptr);
    if (!code_) throw std::logic_error(std::string("bad sanitize pattern: ") + pattern);
  }
  ~substitution() { pcre2_code_free(code_); }
  substitution(const substitution&) = delete;
  substitution& operator=(const substitution&) = delete;

  std::string apply(const std::string& text) const {
    std::string out(text.size() + 64, '\0');
    for (int attempt = 0; attempt < 2; ++attempt) {
      PCRE2_SIZE out_len = out.size();
      int rc = pcre2_substitute(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                                PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, nullptr, nullptr,
                                reinterpret_cast<PCRE2_SPTR>(replacement_), PCRE2_ZERO_TERMINATED,
                                reinterpret_cast<PCRE2_UCHAR*>(out.data()), &out_len);
      if (rc >= 0) {
        out.resize(out_len);
        return out;
      }
      if (rc != PCRE2_ERROR_NOMEMORY) return text;
      out.assign(out_len + 1, '\0');
    }
    return text;
  }

private:
  pcre2_code* code_ = nullptr;
  const char* replacement_;
};

// Python's dict repr of one pydantic error after vLLM's _format_error (loc joined, input summarized),
// cut at 1000 characters as vLLM cuts it.
std::string format_issue(const validation_issue& issue) {
  std::string text = "{'type': " + python_str_repr(issue.type) + ", 'loc': " + python_str_repr(clean_loc(issue.loc)) +
                     ", 'msg': " + python_str_repr(issue.msg) + ", 'input': " + python_str_repr(issue.input);
  if (!issue.ctx.empty()) text += ", 'ctx': " + issue.ctx;
  text += "}";
  if (python_len(text) > 1000) text = std::string(python_prefix(text, 1000)) + "...[truncated]";
  return text;
}

bool is_internal_loc_segment(std::string_view segment) {
  if (segment.find_first_of("[]{}()") != std::string_view::npos) return true;
  static constexpr std::array<std::string_view, 30> markers = {
      "function-wrap", "function-after", "function-before", "function-plain", "json-or-python", "lax-or-strict",
      "chain", "default", "nullable", "tagged-union", "union", "call", "arguments", "is-instance", "is-subclass",
      "callable", "str", "int", "float", "bool", "bytes", "bytearray", "list", "tuple", "dict", "set", "frozenset",
      "complex", "none", "nonetype"};
  std::string lower(segment);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(markers.begin(), markers.end(), lower) != markers.end();
}

std::string join_loc(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += '.';
    out += p;
  }
  return out;
}

// Python's str.strip(): whitespace at both ends.
std::string python_strip(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    char32_t c = 0;
    size_t len = utf8::decode_at(s, begin, c);
    if (!utf8::is_whitespace(c) && !(c >= 0x1C && c <= 0x1F)) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    char32_t c = 0;
    utf8::decode_at(s, start, c);
    if (!utf8::is_whitespace(c) && !(c >= 0x1C && c <= 0x1F)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

} // namespace

std::string error_body(const api_error& e) {
  json_writer w;
  w.begin_object().key("error").begin_object();
  w.key("message").value(e.message);
  w.key("type").value(e.type);
  w.key("param");
  if (e.param)
    w.value(*e.param);
  else
    w.null();
  w.key("code").value(static_cast<int64_t>(e.code));
  w.end_object().end_object();
  return w.take();
}

api_error server_error(int status, std::string_view type, std::string_view message, std::optional<std::string> param) {
  return api_error{status, std::string(type), sanitize_message(message), std::move(param), status};
}

std::optional<api_error> engine_error(const request_output& out) {
  if (out.error.empty()) return std::nullopt;
  return out.aborted ? server_error(503, "ServiceUnavailableError", out.error)
                     : server_error(500, "InternalServerError", out.error);
}

api_error bad_request(std::string_view message, std::optional<std::string> param) {
  return api_error{400, "BadRequestError", sanitize_message(message), std::move(param), 400};
}

api_error vllm_validation_error(std::string_view message, std::optional<std::string> parameter,
                                std::optional<std::string> value_str) {
  // VLLMValidationError.__str__: "msg (parameter=p, value=v)" with whichever extras are set.
  std::string text(message);
  std::string extras;
  if (parameter) extras = "parameter=" + *parameter;
  if (value_str) extras += (extras.empty() ? "" : ", ") + ("value=" + *value_str);
  if (!extras.empty()) text += " (" + extras + ")";
  return bad_request(text, std::move(parameter));
}

api_error model_not_found(std::string_view model) {
  return api_error{404, "NotFoundError", sanitize_message("The model `" + std::string(model) + "` does not exist."),
                   "model", 404};
}

api_error body_parse_error() {
  return api_error{400, "Bad Request", "There was an error parsing the body", std::nullopt, 400};
}

api_error unsupported_media_type_error() {
  return api_error{400, "Bad Request", "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed",
                   std::nullopt, 400};
}

std::string clean_loc(const std::vector<std::string>& loc) {
  std::vector<std::string> parts;
  for (const auto& p : loc)
    if (!is_internal_loc_segment(p)) parts.push_back(p);
  return parts.empty() ? join_loc(loc) : join_loc(parts);
}

api_error validation_error(const std::vector<validation_issue>& issues) {
  constexpr size_t max_reported = 10;
  std::optional<std::string> param;
  for (const auto& issue : issues) {
    if (issue.from_vllm_error) {
      param = issue.vllm_parameter;
      break;
    }
  }
  if (!param && !issues.empty() && !issues.front().loc.empty()) param = clean_loc(issues.front().loc);

  std::string message = "Validation error";
  if (!issues.empty()) {
    const char* label = issues.size() == 1 ? "error" : "errors";
    message = std::to_string(issues.size()) + " validation " + label + ":\n";
    size_t reported = std::min(issues.size(), max_reported);
    for (size_t i = 0; i < reported; ++i) message += "  " + format_issue(issues[i]) + "\n";
    if (issues.size() > reported)
      message += "  ...and " + std::to_string(issues.size() - reported) + " more " + label + "\n";
    while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back()))) message.pop_back();
  }
  return api_error{400, "Bad Request", sanitize_message(message), std::move(param), 400};
}

std::string sanitize_message(std::string_view message) {
  static const substitution addresses(" at 0x[0-9a-f]+>", ">");
  static const substitution frames("\\n?\\s*File \"[^\"]+\", line \\d+, in \\S+(\\n\\s+.*)?", "");
  static const substitution system_paths("/(?:home|usr|opt|var|tmp|root|lib|mnt|srv)(?:/[\\w.\\-]+)+", "<path>");
  static const substitution file_paths("(?:/[\\w\\-]+)+/[\\w\\-]+\\.\\w+", "<path>");
  std::string text = utf8::make_valid(message);
  text = addresses.apply(text);
  text = frames.apply(text);
  text = system_paths.apply(text);
  text = file_paths.apply(text);
  return python_strip(text);
}

} // namespace troupe
