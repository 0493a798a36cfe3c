#include "runtime/cli/vllm_flags.hpp"

#include <array>
#include <string>

namespace troupe {
namespace {

using enum flag_class;
using a = flag_arity;

// Reasons shared by several flags.
constexpr std::string_view no_download =
    "troupe never downloads: it serves the local model folder as it is";
constexpr std::string_view text_only = "troupe serves text-only models: there is no media input to configure";
constexpr std::string_view no_lora = "troupe cannot load LoRA adapters; serve a model with the adapter merged into its weights";
constexpr std::string_view no_moe = "troupe serves dense models: there are no experts to place or balance";
constexpr std::string_view no_dp =
    "troupe runs one engine per process; run several servers behind a load balancer for data parallelism";
constexpr std::string_view no_python = "troupe runs no Python: there is no class or plugin to load";
constexpr std::string_view no_tls = "troupe serves plain HTTP; put a TLS-terminating proxy in front of it";
constexpr std::string_view no_tracing = "troupe exports no OpenTelemetry traces; use /metrics and the request log";
constexpr std::string_view own_grammar_engine =
    "troupe constrains decoding with its own grammar engine (JSON schema, regex, choice and EBNF grammars), which "
    "stands in for xgrammar; only the backend xgrammar or auto is accepted";

// vLLM 0.11.0's `vllm serve --help`, group by group: the serve command's own flags, the frontend
// (FrontendArgs), then the engine (EngineArgs: model, load, structured outputs, parallel, cache,
// multimodal, LoRA, observability, scheduler, vLLM config) and AsyncEngineArgs.
constexpr std::array flags = std::to_array<vllm_flag>({
    // ---- vllm serve
    {"--headless", "", a::none, refused, "troupe has no headless (engine-only) mode: every process serves HTTP"},
    {"--api-server-count", "-asc", a::one, refused, "troupe serves HTTP from I/O threads of one process", "1"},
    {"--config", "", a::one, refused, "troupe reads no YAML config file: give the flags on the command line"},
    {"--disable-log-stats", "", a::none, works, "turns off the stats line troupe logs every 10 s"},
    {"--enable-log-requests", "", a::none, works,
     "troupe logs one line per API request unless --disable-log-requests (vLLM's default is off)"},
    {"--disable-log-requests", "", a::none, works, "turns off troupe's request log"},

    // ---- Frontend
    {"--host", "", a::one, works, "default 0.0.0.0"},
    {"--port", "", a::one, works, ""},
    {"--uds", "", a::one, refused, "troupe listens on TCP only; give --host and --port"},
    {"--uvicorn-log-level", "", a::one, no_effect,
     "troupe has no uvicorn: its HTTP server logs at --log-level (or TROUPE_LOGGING_LEVEL / VLLM_LOGGING_LEVEL)"},
    {"--disable-uvicorn-access-log", "", a::none, works, "turns off troupe's request log, as --disable-log-requests"},
    {"--allow-credentials", "", a::none, works, ""},
    {"--allowed-origins", "", a::one, works, "a JSON list, as vLLM's (a bare origin is taken as a list of one)"},
    {"--allowed-methods", "", a::one, works, "a JSON list, as vLLM's"},
    {"--allowed-headers", "", a::one, works, "a JSON list, as vLLM's"},
    {"--api-key", "", a::many, works,
     "also protects /tokenize, /detokenize and /metrics; VLLM_API_KEY or TROUPE_API_KEY when absent"},
    {"--lora-modules", "", a::many, refused, no_lora},
    {"--chat-template", "", a::one, works, "a file, else the template itself when it holds {, } or a newline"},
    {"--chat-template-content-format", "", a::one, works, "auto detects as vLLM's: openai for a template that loops over message content"},
    {"--trust-request-chat-template", "", a::none, works, "also chat_template_kwargs.chat_template"},
    {"--response-role", "", a::one, refused, "troupe's responses always have the role \"assistant\"", "assistant"},
    {"--ssl-keyfile", "", a::one, refused, no_tls},
    {"--ssl-certfile", "", a::one, refused, no_tls},
    {"--ssl-ca-certs", "", a::one, refused, no_tls},
    {"--enable-ssl-refresh", "", a::none, refused, no_tls},
    {"--ssl-cert-reqs", "", a::one, refused, no_tls},
    {"--root-path", "", a::one, works, "requests are served with and without the prefix"},
    {"--middleware", "", a::one, refused, no_python},
    {"--return-tokens-as-token-ids", "", a::none, refused,
     "troupe spells logprob tokens as text only"},
    {"--disable-frontend-multiprocessing", "", a::none, no_effect,
     "troupe's HTTP frontend is threads of the engine's process, never a separate process"},
    {"--enable-request-id-headers", "", a::none, works, "adds X-Request-Id (the client's, or a new one) to responses"},
    {"--enable-auto-tool-choice", "", a::none, works, "needs --tool-call-parser, as in vLLM"},
    {"--exclude-tools-when-tool-choice-none", "", a::none, no_effect,
     "troupe always leaves the tools out of the prompt when tool_choice is \"none\""},
    {"--tool-call-parser", "", a::one, works,
     "hermes, llama3_json, mistral, qwen3_coder, and qwen3 (Qwen3's hermes-style JSON calls and Qwen3-Coder's "
     "XML calls alike); other names are refused naming these"},
    {"--tool-parser-plugin", "", a::one, refused, no_python},
    {"--tool-server", "", a::one, refused, "troupe runs no built-in tools"},
    {"--log-config-file", "", a::one, no_effect,
     "a Python logging config cannot apply to troupe's logs: set --log-level (or TROUPE_LOGGING_LEVEL)"},
    {"--max-log-len", "", a::one, no_effect, "troupe's request log never prints prompts"},
    {"--disable-fastapi-docs", "", a::none, no_effect, "troupe serves no OpenAPI or Swagger pages"},
    {"--enable-prompt-tokens-details", "", a::none, works, "usage.prompt_tokens_details.cached_tokens"},
    {"--enable-server-load-tracking", "", a::none, refused,
     "troupe has no /load endpoint; /metrics shows the requests running and waiting"},
    {"--enable-force-include-usage", "", a::none, refused,
     "troupe sends usage in streams when a request asks (stream_options.include_usage)"},
    {"--enable-tokenizer-info-endpoint", "", a::none, refused, "troupe has no /tokenizer_info endpoint"},
    {"--enable-log-outputs", "", a::none, refused, "troupe's request log never prints generated text"},
    {"--h11-max-incomplete-event-size", "", a::one, no_effect,
     "troupe's HTTP parser has its own limits: a request head up to 16 KiB (431 beyond), a body up to 16 MiB (413)"},
    {"--h11-max-header-count", "", a::one, no_effect,
     "troupe's HTTP parser bounds a request head by its size (16 KiB), not its header count"},
    {"--log-error-stack", "", a::none, no_effect, "troupe's errors are messages, with no stack to print"},

    // ---- ModelConfig
    {"--model", "", a::one, works, "a local folder; as `troupe serve MODEL`"},
    {"--runner", "", a::one, refused, "troupe runs generative models only", "auto,generate"},
    {"--convert", "", a::one, refused, "troupe does not convert models to pooling or classification", "auto,none"},
    {"--task", "", a::one, refused, "troupe runs generative models only", "auto,generate"},
    {"--tokenizer", "", a::one, works, "a local folder with tokenizer.json (and tokenizer_config.json)"},
    {"--tokenizer-mode", "", a::one, refused,
     "troupe reads Hugging Face tokenizer.json files only (no slow or Mistral tokenizers)", "auto"},
    {"--trust-remote-code", "", a::none, no_effect,
     "troupe runs no model code from the checkpoint; its architectures are built in"},
    {"--dtype", "", a::one, works, "auto is bfloat16 on CUDA and float32 on the CPU"},
    {"--seed", "", a::one, works,
     "seeds the sampling of requests that give no seed (default: random at each start; vLLM's V1 default is 0)"},
    {"--hf-config-path", "", a::one, refused, "troupe reads config.json from the model folder"},
    {"--allowed-local-media-path", "", a::one, no_effect, text_only},
    {"--revision", "", a::one, no_effect, no_download},
    {"--code-revision", "", a::one, no_effect, no_download},
    {"--rope-scaling", "", a::one, refused, "troupe takes rope_scaling from config.json; edit it there"},
    {"--rope-theta", "", a::one, refused, "troupe takes rope_theta from config.json; edit it there"},
    {"--tokenizer-revision", "", a::one, no_effect, no_download},
    {"--max-model-len", "", a::one, works,
     "beyond the model's positions it is refused unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, as in vLLM"},
    {"--quantization", "-q", a::one, works, "awq, gptq, rtn, fp8 and compressed-tensors (FP8); other methods are refused naming these"},
    {"--enforce-eager", "", a::none, works, "CUDA: no CUDA graphs"},
    {"--max-logprobs", "", a::one, works, ""},
    {"--logprobs-mode", "", a::one, refused,
     "troupe returns the logprobs of the raw logits, vLLM's default", "raw_logprobs"},
    {"--disable-sliding-window", "", a::none, refused,
     "troupe applies a model's sliding window as config.json gives it; remove sliding_window there to attend to "
     "the whole context"},
    {"--disable-cascade-attn", "", a::none, no_effect, "troupe has no cascade attention to turn off"},
    {"--skip-tokenizer-init", "", a::none, refused,
     "troupe loads tokenizer.json when the folder has one (token-id prompts work either way); remove it from the "
     "folder to serve without a tokenizer"},
    {"--enable-prompt-embeds", "", a::none, refused, "troupe takes prompts as text or token ids, not embeddings"},
    {"--served-model-name", "", a::many, works, "every name answers; /v1/models lists them all"},
    {"--config-format", "", a::one, refused, "troupe reads Hugging Face config.json files only", "auto,hf"},
    {"--hf-token", "", a::one, no_effect, no_download},
    {"--hf-overrides", "", a::one, refused, "troupe takes the model's config from config.json; edit it there"},
    {"--pooler-config", "", a::one, refused, "troupe serves no pooling models"},
    {"--override-pooler-config", "", a::one, refused, "troupe serves no pooling models"},
    {"--logits-processor-pattern", "", a::one, refused, no_python},
    {"--generation-config", "", a::one, works, "auto, vllm or a local folder"},
    {"--override-generation-config", "", a::one, works, ""},
    {"--enable-sleep-mode", "", a::none, refused, "troupe has no sleep mode"},
    {"--model-impl", "", a::one, refused,
     "troupe has its own implementation of each architecture (no Transformers backend)", "auto,vllm"},
    {"--override-attention-dtype", "", a::one, refused,
     "troupe's attention runs in the activation dtype (--dtype)"},
    {"--logits-processors", "", a::many, refused, no_python},
    {"--io-processor-plugin", "", a::one, refused, no_python},

    // ---- LoadConfig
    {"--load-format", "", a::one, works, "auto, safetensors and dummy; other formats are refused naming these"},
    {"--download-dir", "", a::one, no_effect, no_download},
    {"--safetensors-load-strategy", "", a::one, no_effect,
     "troupe reads each tensor's slice from the safetensors files with its own reader"},
    {"--model-loader-extra-config", "", a::one, refused, "troupe has one loader (safetensors) with no options"},
    {"--ignore-patterns", "", a::many, no_effect,
     "troupe reads only config.json, tokenizer files and model*.safetensors from the folder"},
    {"--use-tqdm-on-load", "", a::none, no_effect, "troupe logs its own loading progress"},
    {"--pt-load-map-location", "", a::one, no_effect, "troupe never loads .pt files"},

    // ---- StructuredOutputsConfig
    {"--reasoning-parser", "", a::one, works, "qwen3 and deepseek_r1; other names are refused naming these"},

    // ---- ParallelConfig
    {"--distributed-executor-backend", "", a::one, refused,
     "troupe runs its shards as threads of one process, or as ranks of `mpirun -np N troupe serve`", "mp,uni"},
    {"--pipeline-parallel-size", "-pp", a::one, refused,
     "troupe has no pipeline parallelism; split the model with --tensor-parallel-size", "1"},
    {"--tensor-parallel-size", "-tp", a::one, works, "across nodes: mpirun -np N troupe serve"},
    {"--decode-context-parallel-size", "-dcp", a::one, refused, "troupe has no context parallelism", "1"},
    {"--data-parallel-size", "-dp", a::one, refused, no_dp, "1"},
    {"--data-parallel-rank", "-dpn", a::one, refused, no_dp},
    {"--data-parallel-start-rank", "-dpr", a::one, refused, no_dp},
    {"--data-parallel-size-local", "-dpl", a::one, refused, no_dp},
    {"--data-parallel-address", "-dpa", a::one, refused, no_dp},
    {"--data-parallel-rpc-port", "-dpp", a::one, refused, no_dp},
    {"--data-parallel-backend", "-dpb", a::one, refused, no_dp},
    {"--data-parallel-hybrid-lb", "", a::none, refused, no_dp},
    {"--enable-expert-parallel", "", a::none, no_effect, no_moe},
    {"--enable-dbo", "", a::none, no_effect, no_moe},
    {"--dbo-decode-token-threshold", "", a::one, no_effect, no_moe},
    {"--dbo-prefill-token-threshold", "", a::one, no_effect, no_moe},
    {"--disable-nccl-for-dp-synchronization", "", a::none, no_effect, "troupe has no data-parallel ranks to synchronize"},
    {"--enable-eplb", "", a::none, no_effect, no_moe},
    {"--eplb-config", "", a::one, no_effect, no_moe},
    {"--expert-placement-strategy", "", a::one, no_effect, no_moe},
    {"--num-redundant-experts", "", a::one, no_effect, no_moe},
    {"--eplb-window-size", "", a::one, no_effect, no_moe},
    {"--eplb-step-interval", "", a::one, no_effect, no_moe},
    {"--eplb-log-balancedness", "", a::none, no_effect, no_moe},
    {"--max-parallel-loading-workers", "", a::one, no_effect,
     "each of troupe's shards loads its own slices, all shards at once"},
    {"--ray-workers-use-nsight", "", a::none, no_effect, "troupe has no Ray workers"},
    {"--disable-custom-all-reduce", "", a::none, works,
     "CUDA: every all-reduce through NCCL; otherwise sums up to 8 MiB take troupe's one-shot peer-to-peer kernel"},
    {"--worker-cls", "", a::one, refused, no_python, "auto"},
    {"--worker-extension-cls", "", a::one, refused, no_python},
    {"--enable-multimodal-encoder-data-parallel", "", a::none, no_effect, text_only},

    // ---- CacheConfig
    {"--block-size", "", a::one, works, "any size from 1 to 1024 (vLLM's CUDA choices are 1 to 256)"},
    {"--gpu-memory-utilization", "", a::one, works, ""},
    {"--kv-cache-memory-bytes", "", a::one, refused,
     "on CUDA troupe sizes the KV cache from --gpu-memory-utilization or --num-gpu-blocks-override; on the CPU "
     "give --kv-cache-memory"},
    {"--swap-space", "", a::one, no_effect,
     "troupe preempts a sequence by freeing its blocks and recomputing it later, never by swapping to CPU memory"},
    {"--kv-cache-dtype", "", a::one, works, "auto, fp8, fp8_e4m3, fp8_e5m2 (on the CPU backend)"},
    {"--num-gpu-blocks-override", "", a::one, works, ""},
    {"--enable-prefix-caching", "", a::none, works, "on by default, as vLLM's"},
    {"--prefix-caching-hash-algo", "", a::one, no_effect,
     "troupe keys blocks with xxHash and confirms every hit against the stored token ids, so a collision cannot "
     "serve a wrong cache"},
    {"--cpu-offload-gb", "", a::one, refused,
     "troupe keeps every weight in GPU memory and refuses up front weights that cannot fit", "0"},
    {"--calculate-kv-scales", "", a::none, refused,
     "troupe's FP8 KV cache takes its scales from the checkpoint (1.0 where it has none)"},
    {"--kv-sharing-fast-prefill", "", a::none, no_effect, "troupe's architectures share no KV cache between layers"},
    {"--mamba-cache-dtype", "", a::one, no_effect, "troupe serves no Mamba models"},
    {"--mamba-ssm-cache-dtype", "", a::one, no_effect, "troupe serves no Mamba models"},

    // ---- MultiModalConfig
    {"--limit-mm-per-prompt", "", a::one, no_effect, text_only},
    {"--interleave-mm-strings", "", a::none, no_effect, text_only},
    {"--media-io-kwargs", "", a::one, no_effect, text_only},
    {"--mm-processor-kwargs", "", a::one, no_effect, text_only},
    {"--mm-processor-cache-gb", "", a::one, no_effect, text_only},
    {"--disable-mm-preprocessor-cache", "", a::none, no_effect, text_only},
    {"--mm-processor-cache-type", "", a::one, no_effect, text_only},
    {"--mm-shm-cache-max-object-size-mb", "", a::one, no_effect, text_only},
    {"--mm-encoder-tp-mode", "", a::one, no_effect, text_only},
    {"--skip-mm-profiling", "", a::none, no_effect, text_only},
    {"--video-pruning-rate", "", a::one, no_effect, text_only},

    // ---- LoRAConfig
    {"--enable-lora", "", a::none, refused, no_lora},
    {"--enable-lora-bias", "", a::none, refused, no_lora},
    {"--max-loras", "", a::one, refused, no_lora},
    {"--max-lora-rank", "", a::one, refused, no_lora},
    {"--lora-extra-vocab-size", "", a::one, refused, no_lora},
    {"--lora-dtype", "", a::one, refused, no_lora},
    {"--max-cpu-loras", "", a::one, refused, no_lora},
    {"--fully-sharded-loras", "", a::none, refused, no_lora},
    {"--default-mm-loras", "", a::one, refused, no_lora},

    // ---- ObservabilityConfig
    {"--show-hidden-metrics-for-version", "", a::one, no_effect, "troupe hides no deprecated metrics: /metrics shows them all"},
    {"--otlp-traces-endpoint", "", a::one, refused, no_tracing},
    {"--collect-detailed-traces", "", a::one, refused, no_tracing},

    // ---- SchedulerConfig
    {"--max-num-batched-tokens", "", a::one, works, ""},
    {"--max-num-seqs", "", a::one, works, ""},
    {"--max-num-partial-prefills", "", a::one, refused,
     "troupe prefills one chunk per prompt per step; see --long-request-threshold for its short/long pools", "1"},
    {"--max-long-partial-prefills", "", a::one, refused,
     "troupe prefills one chunk per prompt per step; see --long-request-threshold for its short/long pools", "1"},
    {"--cuda-graph-sizes", "", a::many, no_effect, "troupe captures decode graphs at batch sizes of its own choosing"},
    {"--long-prefill-token-threshold", "", a::one, works, "caps one prompt's prefill chunk per step"},
    {"--num-lookahead-slots", "", a::one, no_effect, "troupe has no speculative decoding to reserve slots for"},
    {"--scheduling-policy", "", a::one, works, ""},
    {"--enable-chunked-prefill", "", a::none, no_effect,
     "troupe always chunks prefills to fit --max-num-batched-tokens"},
    {"--no-enable-chunked-prefill", "", a::none, refused,
     "troupe always chunks prefills; give --max-num-batched-tokens at least --max-model-len to keep prompts whole"},
    {"--disable-chunked-mm-input", "", a::none, no_effect, text_only},
    {"--scheduler-cls", "", a::one, refused, no_python},
    {"--disable-hybrid-kv-cache-manager", "", a::none, no_effect,
     "troupe's architectures have one kind of attention layer, so one KV cache manager"},
    {"--async-scheduling", "", a::none, no_effect,
     "troupe plans step N+1 after step N ends; overlapping them is not built yet"},

    // ---- VllmConfig
    {"--speculative-config", "", a::one, refused, "troupe has no speculative decoding"},
    {"--kv-transfer-config", "", a::one, refused, "troupe has no disaggregated prefill or KV transfer"},
    {"--kv-events-config", "", a::one, refused, "troupe publishes no KV cache events"},
    {"--compilation-config", "-O", a::one, no_effect,
     "troupe's kernels are compiled ahead of time; decode steps replay CUDA graphs unless --enforce-eager"},
    {"--additional-config", "", a::one, refused, "troupe has no platform plugins to configure"},
    {"--structured-outputs-config", "", a::one, refused, own_grammar_engine,
     R"({"backend":"xgrammar"},{"backend": "xgrammar"},{"backend":"auto"},{"backend": "auto"})"},
    // vLLM before 0.11 (now --structured-outputs-config); deployment files still carry it.
    {"--guided-decoding-backend", "", a::one, refused, own_grammar_engine, "xgrammar,auto"},
});

} // namespace

std::string_view to_string(flag_class c) {
  switch (c) {
    case flag_class::works: return "works";
    case flag_class::no_effect: return "no effect";
    case flag_class::refused: return "refused";
  }
  return "refused";
}

std::span<const vllm_flag> vllm_serve_flags() { return flags; }

const vllm_flag* find_vllm_flag(std::string_view name) {
  for (const vllm_flag& f : flags)
    if (f.name == name || (!f.short_name.empty() && f.short_name == name)) return &f;
  // argparse's BooleanOptionalAction: --no-X for a switch --X.
  if (name.starts_with("--no-")) {
    const std::string plain = "--" + std::string(name.substr(5));
    for (const vllm_flag& f : flags)
      if (f.name == plain && f.arity == flag_arity::none) return &f;
  }
  return nullptr;
}

bool is_harmless_value(const vllm_flag& flag, std::string_view value) {
  std::string_view rest = flag.harmless_values;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    if (rest.substr(0, comma) == value) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

} // namespace troupe
