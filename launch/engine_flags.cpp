#include "launch/engine_flags.hpp"

#include <cstdlib>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "actors/model_front.hpp"
#include "runtime/cli/environment.hpp"

namespace troupe {

void add_engine_flags(CLI::App* cmd, engine_options& o) {
  cmd->add_option("--model", o.model, "Hugging Face model folder (default: the built-in small model)");
  cmd->add_option("--tokenizer", o.tokenizer,
                  "Folder of the tokenizer.json and tokenizer_config.json to use (default: the model folder's)");
  // vLLM's override of the context length check (a variable, not a flag, in vLLM too).
  o.allow_long_max_model_len = env_flag([](const char* name) { return std::getenv(name); }, "VLLM_ALLOW_LONG_MAX_MODEL_LEN");
  cmd->add_option("--load-format", o.load_format, "auto, safetensors or dummy (random weights)")->capture_default_str();
  cmd->add_option("--backend", o.backend, "cpu, cuda (when built with CUDA), or null (no arithmetic: measures the engine's own cost)")
      ->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "auto (bfloat16 on CUDA, float32 on the CPU), bfloat16, float16 or float32")
      ->capture_default_str();
  cmd->add_option("--quantization,-q", o.quantization,
                  "awq, gptq or rtn (4-bit weights rounded to nearest at load, group 128, a zero point per group), "
                  "fp8 (FP8 weights: an FP8 checkpoint's, or quantized at load per output channel; activations "
                  "quantized per token) or compressed-tensors (llm-compressor's FP8); default: the checkpoint's "
                  "quantization_config. The CPU runs 4-bit weights dequantized in f32, FP8 as the GPU does");
  cmd->add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                  "This server's share of GPU memory for weights, activations and the KV cache (memory other processes hold does not count)")->capture_default_str();
  cmd->add_option("--max-num-seqs", o.max_num_seqs,
                  "Sequences in one step (default as vLLM's: 1024 on a GPU of 70 GiB or more, else 256)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", o.max_num_batched_tokens,
                  "Tokens in one step (default as vLLM's: on a GPU of 70 GiB or more 16384 offline and 8192 in "
                  "the server; smaller GPUs 8192 and 2048; CPU 2048)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-model-len", o.max_model_len,
                  "Context length (default: the model's; longer than the model's is refused unless "
                  "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)");
  cmd->add_option("--tensor-parallel-size", o.tensor_parallel_size,
                  "Shards the model is split over (-tp): one per GPU, or CPU shards as threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--distributed-timeout", o.distributed_timeout,
                  "Seconds one step may take on all tensor-parallel shards before a rank is declared dead or "
                  "stalled (requests fail, the process exits 3)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", o.block_size, "Tokens per KV cache block")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-cache-memory", o.kv_cache_memory, "Bytes of KV cache per shard (CPU backend)")->capture_default_str();
  cmd->add_option("--kv-cache-dtype", o.kv_cache_dtype,
                  "auto (the activation dtype), fp8 or fp8_e4m3, or fp8_e5m2: K and V stored in 8 bits with per-tensor "
                  "scales (1.0, or the checkpoint's k_scale / v_scale), holding more blocks in the same memory")
      ->capture_default_str();
  cmd->add_option("--num-gpu-blocks-override", o.num_gpu_blocks_override, "Exactly this many KV blocks");
  cmd->add_flag_callback("--enable-prefix-caching", [&o] { o.enable_prefix_caching = true; },
                         "Reuse the KV blocks of prompts' common prefixes (on by default)");
  cmd->add_flag_callback("--no-enable-prefix-caching", [&o] { o.enable_prefix_caching = false; }, "No prefix caching");
  cmd->add_option("--scheduling-policy", o.scheduling_policy, "fcfs or priority")->capture_default_str();
  cmd->add_option("--long-request-threshold", o.long_request_threshold,
                  "Requests with max_tokens above this form the long pool, admitted after short ones (0: one pool)");
  cmd->add_option("--long-max-fraction", o.long_max_fraction, "Share of --max-num-seqs the long pool may hold")
      ->capture_default_str();
  cmd->add_option("--long-prefill-token-threshold", o.long_prefill_token_threshold,
                  "Largest prefill chunk of one prompt per step (0: no cap)");
  cmd->add_flag("--enforce-eager", o.enforce_eager, "CUDA: run every step op by op, without CUDA graphs");
  cmd->add_flag("--disable-custom-all-reduce", o.disable_custom_all_reduce,
                "CUDA tensor parallelism: every all-reduce through NCCL, never the one-shot kernel over peer-to-peer "
                "GPU memory that otherwise takes sums up to 8 MiB");
}

void add_generation_config_flags(CLI::App* cmd, engine_options& o) {
  cmd->add_option("--generation-config", o.generation_config,
                  "Default sampling parameters (temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens) "
                  "for requests (generate and bench: flags) that give none: auto (the model's generation_config.json), vllm "
                  "(none), or a folder "
                  "holding a generation_config.json")
      ->capture_default_str();
  cmd->add_option("--override-generation-config", o.override_generation_config,
                  "A JSON object of default sampling parameters merged over --generation-config's, as "
                  "'{\"temperature\": 0.5}'");
}

void take_generation_defaults(const CLI::App& cmd, const engine& e, sampling_params& p, bool without_max_tokens) {
  generation_defaults d =
      defaults_for_flags_not_given(e.front().sampling_defaults, [&cmd](std::string_view flag) {
        const CLI::Option* o = cmd.get_option_no_throw(std::string(flag));  // bench has no --top-p
        return o && o->count() > 0;
      });
  if (without_max_tokens) d.max_tokens.reset();
  if (d.temperature) p.temperature = static_cast<float>(*d.temperature);
  if (d.top_p) p.top_p = static_cast<float>(*d.top_p);
  if (d.top_k) p.top_k = static_cast<int32_t>(*d.top_k);
  if (d.min_p) p.min_p = static_cast<float>(*d.min_p);
  if (d.repetition_penalty) p.repetition_penalty = static_cast<float>(*d.repetition_penalty);
  if (d.max_tokens) p.max_tokens = static_cast<int32_t>(*d.max_tokens);
  if (!d.empty())
    spdlog::info("default sampling parameters, from the generation config: {} (flags given win; "
                 "--generation-config vllm ignores the model's)",
                 d.describe());
}

void add_sampling_flags(CLI::App* cmd, sampling_params& p) {
  cmd->add_option("--max-tokens", p.max_tokens, "Tokens to generate")->capture_default_str();
  cmd->add_option("--min-tokens", p.min_tokens)->capture_default_str();
  cmd->add_option("--temperature", p.temperature, "0: greedy")->capture_default_str();
  cmd->add_option("--top-p", p.top_p)->capture_default_str();
  cmd->add_option("--top-k", p.top_k, "0: off")->capture_default_str();
  cmd->add_option("--min-p", p.min_p)->capture_default_str();
  cmd->add_option("--repetition-penalty", p.repetition_penalty)->capture_default_str();
  cmd->add_option("--presence-penalty", p.presence_penalty)->capture_default_str();
  cmd->add_option("--frequency-penalty", p.frequency_penalty)->capture_default_str();
  cmd->add_option("--seed", p.seed, "Seed: the same seed gives the same text");
  cmd->add_option("--stop", p.stop, "Stop string (repeatable)");
  cmd->add_option("--stop-token-ids", p.stop_token_ids, "Token ids that stop generation")->delimiter(',');
  cmd->add_flag("--ignore-eos", p.ignore_eos, "Keep generating past EOS");
}

} // namespace troupe
