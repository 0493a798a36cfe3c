#pragma once
// OpenAI error objects as vLLM's OpenAI server sends them:
//   {"error":{"message":"...","type":"BadRequestError","param":"top_p","code":400}}
// (vLLM's newer ErrorResponse{error: ErrorInfo}; older vLLM sent the fields flat with "object":"error").
//
// Three families, as in vLLM:
//   - request schema errors (pydantic's, raised while FastAPI parses the body): type "Bad Request",
//     message "N validation error(s):\n  {...}" listing pydantic's error dicts, param the first
//     error's field path ("body.n") or the parameter a model validator named ("stream_options");
//   - serving errors (create_error_response): type "BadRequestError" (404: "NotFoundError"), message
//     str(exception), which for a VLLMValidationError ends in " (parameter=top_p, value=1.5)";
//   - every message passes vLLM's sanitize_message (memory addresses, tracebacks, file paths).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct request_output;

struct api_error {
  int status = 400;                  // the HTTP status
  std::string type = "BadRequestError";
  std::string message;
  std::optional<std::string> param;  // null in JSON when empty
  int code = 400;                    // vLLM repeats the status here
};

// {"error":{"message":...,"type":...,"param":...,"code":...}} (json.dumps layout: compact, UTF-8).
std::string error_body(const api_error& e);

// Any error the server answers itself (401, 429, 503, 504, ...): status, OpenAI type, message.
api_error server_error(int status, std::string_view type, std::string_view message,
                       std::optional<std::string> param = std::nullopt);

// The error a response fails with when the engine ended one of its requests with one: 503
// ServiceUnavailableError when the server aborted it (shutting down: worth retrying elsewhere), 500
// InternalServerError when a step failed. nullopt when the output carries no error.
std::optional<api_error> engine_error(const request_output& out);

// A serving error: BadRequestError, 400.
api_error bad_request(std::string_view message, std::optional<std::string> param = std::nullopt);

// A VLLMValidationError reported by create_error_response: BadRequestError, 400, param = parameter,
// message + " (parameter=..., value=...)" for whichever of the two is set.
api_error vllm_validation_error(std::string_view message, std::optional<std::string> parameter,
                                std::optional<std::string> value_str);

// 404 NotFoundError "The model `x` does not exist." with param "model".
api_error model_not_found(std::string_view model);

// The body is not UTF-8 (or is nested too deep to decode): FastAPI's 400 "There was an error parsing
// the body", reported by vLLM's HTTPException handler with type "Bad Request".
api_error body_parse_error();

// vLLM refuses a Content-Type other than application/json before reading the body.
api_error unsupported_media_type_error();

// One entry of pydantic's error list, as FastAPI passes it to vLLM's validation handler.
struct validation_issue {
  std::string type;              // pydantic's error type: "int_parsing", "missing", "value_error"
  std::vector<std::string> loc;  // ("body", "messages", "0", "role")
  std::string msg;               // "Input should be a valid integer"
  std::string input;             // the offending input as vLLM summarizes it (Python str, unquoted)
  std::string ctx;               // Python repr of the ctx dict, or "" when the error has none
  bool from_vllm_error = false;  // ctx['error'] is a VLLMValidationError
  std::optional<std::string> vllm_parameter;  // its parameter
};

// vLLM's validation_exception_handler over a list of issues: 400, type "Bad Request".
api_error validation_error(const std::vector<validation_issue>& issues);

// vLLM's clean_loc_for_param: the loc joined with '.', pydantic's internal segments ("function-wrap[...]",
// "list[int]", "str", "union", ...) dropped.
std::string clean_loc(const std::vector<std::string>& loc);

// vLLM's sanitize_message: memory addresses, traceback frames and file paths removed, then stripped.
std::string sanitize_message(std::string_view message);

} // namespace troupe
