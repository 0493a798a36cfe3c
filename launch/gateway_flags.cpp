#include "launch/gateway_flags.hpp"

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "runtime/cli/environment.hpp"
#include "runtime/engine/engine_metrics.hpp"
#include "runtime/error.hpp"
#include "runtime/tools/tool_parser.hpp"

namespace troupe {

void add_gateway_flags(CLI::App* cmd, gateway_flags& f) {
  gateway_options& o = f.options;
  cmd->add_option("--host", o.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "Port of the OpenAI-compatible HTTP API (0: any free port)")->capture_default_str();
  cmd->add_option("--api-key", o.admission.api_keys,
                  "API key clients must send as 'Authorization: Bearer KEY' (repeatable; default: TROUPE_API_KEY, else "
                  "VLLM_API_KEY, else none)");
  cmd->add_option("--tenants-file", f.tenants_file, "JSON file mapping API keys to tenants with token-rate and concurrency limits");
  cmd->add_option("--max-queue-len", o.admission.max_queue_len, "Waiting requests beyond this are refused with 429 (0: no cap)")
      ->capture_default_str();
  cmd->add_option("--max-tokens-limit", o.max_tokens_limit, "Server-side cap on max_tokens (0: none)")->capture_default_str();
  cmd->add_option("--request-timeout", o.request_timeout_s, "Seconds a request may take before it is aborted (0: none)")
      ->capture_default_str();
  cmd->add_option("--max-connections", o.max_connections,
                  "Open HTTP connections at most; past it the longest-idle one is closed, else 503 (0: what the "
                  "descriptor limit allows, less a reserve)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-stream-buffer", o.max_stream_buffer, "SSE events queued for a slow client before it is cut off")
      ->capture_default_str();
  cmd->add_option("--max-logprobs", o.max_logprobs, "Most logprobs a request may ask for (-1: the vocabulary)")->capture_default_str();
  cmd->add_flag("--enable-prompt-tokens-details", o.prompt_tokens_details,
                "Usage reports the prompt tokens found in the prefix cache (prompt_tokens_details.cached_tokens)");
  cmd->add_flag("--trust-request-chat-template", o.trust_request_chat_template,
                "Requests may send their own chat template (chat_template, or chat_template_kwargs.chat_template)");
  cmd->add_option("--chat-template-content-format", o.chat_template_content_format,
                  "How message content reaches the template: string, openai (a list of {type, text} parts), or auto "
                  "(openai for a template that loops over a message's content, else string)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "string", "openai"}));
  cmd->add_option("--root-path", o.root_path,
                  "Path prefix a path-routing proxy leaves on requests ('/api'): paths are served with and without it");
  cmd->add_option("--allowed-origins", f.allowed_origins, "CORS: origins allowed, a JSON list")->capture_default_str();
  cmd->add_option("--allowed-methods", f.allowed_methods, "CORS: methods allowed, a JSON list")->capture_default_str();
  cmd->add_option("--allowed-headers", f.allowed_headers, "CORS: request headers allowed, a JSON list")->capture_default_str();
  cmd->add_flag("--allow-credentials", o.cors.allow_credentials, "CORS: allow credentials (cookies, authorization)");
  cmd->add_flag("--enable-request-id-headers", o.request_id_headers, "Responses carry X-Request-Id: the request's own, or a new one");
  cmd->add_flag("--enable-auto-tool-choice", o.enable_auto_tool_choice,
                "Serve tool_choice \"auto\" (the default with tools): the model's tool calls are read with --tool-call-parser");
  cmd->add_option("--tool-call-parser", o.tool_call_parser,
                  "How the model writes tool calls: hermes, llama3_json, mistral, qwen3 (JSON or XML calls), qwen3_coder");
  cmd->add_option("--reasoning-parser", o.reasoning_parser,
                  "Reads the model's <think> reasoning into reasoning_content: qwen3, deepseek_r1");
  cmd->add_flag("--disable-log-requests", f.disable_log_requests, "No request log (one line per API request; on by default)");
  cmd->add_flag_callback("--no-disable-log-requests", [&f] { f.disable_log_requests = false; }, "The request log (the default)");
  cmd->add_flag("--enable-log-requests", f.enable_log_requests, "The request log (on by default, unlike vLLM's)");
  cmd->add_flag_callback("--no-enable-log-requests", [&f] { f.enable_log_requests = false; }, "No request log");
  cmd->add_flag("--disable-uvicorn-access-log", f.disable_access_log, "No request log, as --disable-log-requests");
  cmd->add_option("--metrics-prefix", f.metrics_prefix,
                  "Name prefix of the /metrics families: troupe, or vllm so that dashboards and alerts written for vLLM "
                  "read troupe unchanged")
      ->capture_default_str();
  cmd->add_option("--dashboard-interval", o.dashboard_interval_s,
                  "Seconds between the /dashboard history's samples (it keeps the last hour)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
}

gateway_options resolve_gateway_flags(gateway_flags& f) {
  gateway_options& o = f.options;
  try {
    check_metrics_prefix(f.metrics_prefix);
  } catch (const std::invalid_argument& e) {
    throw user_error(e.what());
  }
  if (o.admission.api_keys.empty())
    if (const auto key = api_key_from_env([](const char* name) { return std::getenv(name); })) {
      o.admission.api_keys.push_back(key->value);
      spdlog::info("API key from {}: requests must send 'Authorization: Bearer <key>'", key->name);
    }
  o.cors.allowed_origins = parse_cors_list(f.allowed_origins, "--allowed-origins");
  o.cors.allowed_methods = parse_cors_list(f.allowed_methods, "--allowed-methods");
  o.cors.allowed_headers = parse_cors_list(f.allowed_headers, "--allowed-headers");
  o.log_requests = f.enable_log_requests && !f.disable_log_requests && !f.disable_access_log;
  if (!o.root_path.empty() && !o.root_path.starts_with("/"))
    throw user_error("--root-path must start with '/', got '" + o.root_path + "'");
  if (const std::string e = check_parser_flags(o.enable_auto_tool_choice, o.tool_call_parser, o.reasoning_parser);
      !e.empty())
    throw user_error(e);
  gateway_options out = o;
  if (!f.tenants_file.empty()) out.admission.tenants = read_tenants_file(f.tenants_file);
  return out;
}

} // namespace troupe
