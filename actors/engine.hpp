#pragma once
// troupe::engine: loads a model, spawns the scheduler and shard actors for a config, and serves
// offline batch jobs like vLLM's LLM.generate (a list of prompts in, completions out). The gateway and
// the client endpoint reach the same actors through engine::internals().
//
// NOTE: CAF stays out of this header (it is heavy); actors/*.cpp reach the actors through internals().

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine/engine_core.hpp"
#include "runtime/engine/engine_metrics.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/engine/sampling_params.hpp"
#include "runtime/tokenizer/tokenizer.hpp"

namespace troupe {

class mpi_session;
struct model_front;

// Who drives the engine: offline batches (generate, bench throughput; vLLM's LLM class) or the API
// server. vLLM picks different step sizes for each, and so do we.
enum class usage_context { offline, server };

struct batch_limits {
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
};

// vLLM's defaults (EngineArgs.get_batch_defaults): a GPU of 70 GiB or more takes 1024 sequences and
// 16,384 tokens per step offline, 8,192 in the server; a smaller GPU 256 sequences and 8,192 / 2,048
// tokens. The CPU and null backends take 256 and 2,048 either way. device_memory: total bytes, 0 for none.
batch_limits default_batch_limits(const std::string& backend, int64_t device_memory, usage_context usage);

struct engine_options {
  std::string model;                  // Hugging Face folder; empty: the built-in default model
  std::string tokenizer;              // folder of tokenizer.json and tokenizer_config.json; empty: the model's
  std::string load_format = "auto";   // auto | safetensors | dummy
  std::string backend = "cpu";        // cpu | cuda (when built with CUDA) | null (no arithmetic: measures scheduling and messaging)
  std::string dtype = "auto";         // auto (bf16 on CUDA, f32 on the CPU) | bfloat16 | float16 | float32
  std::string quantization;           // "" (the checkpoint's quantization_config) | awq | gptq | rtn | fp8 | compressed-tensors
  double gpu_memory_utilization = 0.9;  // share of GPU memory for weights, workspaces and the KV cache
  // 0: vLLM's default for the device and the usage (default_batch_limits); the engine fills them in.
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
  usage_context usage = usage_context::offline;
  int64_t max_model_len = 0;          // 0: the model's (derived_max_model_len)
  bool allow_long_max_model_len = false;  // vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN: max_model_len may exceed the model's
  int32_t tensor_parallel_size = 1;   // shards the model is split over (Megatron-style, as vLLM)
  int32_t block_size = 16;
  int64_t kv_cache_memory = int64_t{1} << 30;  // bytes of KV cache per shard on the CPU backend (CUDA: what memory allows)
  std::string kv_cache_dtype = "auto";         // auto | fp8 | fp8_e4m3 | fp8_e5m2 (parse_kv_cache_dtype)
  int64_t num_gpu_blocks_override = 0;         // > 0: exactly this many KV blocks
  bool enable_prefix_caching = true;
  bool enforce_eager = false;                  // CUDA: no CUDA graphs for decode steps
  // CUDA tensor parallelism: every all-reduce through NCCL (or the shared-GPU communicator), never the custom
  // one-shot kernel over peer-to-peer memory (kernels/cuda/custom_all_reduce.hpp).
  bool disable_custom_all_reduce = false;
  std::string scheduling_policy = "fcfs";      // fcfs | priority
  int32_t long_request_threshold = 0;          // 0: one pool; else max_tokens above it is the long pool
  double long_max_fraction = 0.75;             // seats the long pool may hold
  int32_t long_prefill_token_threshold = 0;    // 0: none; else one prompt's largest prefill chunk
  // Draws the seeds of requests that give none (unset: a random one each start), and the dummy weights'.
  std::optional<uint64_t> seed;
  // The names the API answers to, the first in responses and metrics (default: --model).
  std::vector<std::string> served_model_names;
  std::string chat_template;  // --chat-template: a Jinja file or the template itself (default: the model's)
  std::string generation_config = "auto";  // --generation-config: auto, vllm or a folder (model_front_options)
  std::string override_generation_config;  // --override-generation-config: a JSON object
  std::string metrics_prefix = std::string(default_metrics_prefix);  // /metrics names PREFIX:name (check_metrics_prefix)
  // This process's MPI session when mpirun started it (launch/distributed.hpp): the engine then builds only
  // this rank's shard; rank 0 schedules and sends each step's plan to the others, which run engine::run_rank.
  std::shared_ptr<mpi_session> mpi;
  // Seconds one step may take on all tensor-parallel shards before the engine declares a rank dead or a
  // collective stalled: every request fails, /health turns 503, the process exits with code 3.
  double distributed_timeout = 20;
  // A model of one shard in this process: the scheduler runs each step in its own thread (no shard actor; two thread
  // wake-ups a step fewer), so a submit waits for the step in progress. True for the offline engine (generate sends
  // every prompt at once); `serve` sets false and keeps a shard actor, so that a client submitting job by job (the
  // native client's submit returns the job's id) is answered while a step runs.
  bool steps_in_scheduler = true;
  // Called with each step's number on the thread that runs shard 0's steps, just before the step (tests hold a step
  // with it).
  std::function<void(uint64_t step)> before_step;
};

// A prompt as text or as token ids (one of them).
struct prompt_input {
  std::string text;
  std::vector<int32_t> token_ids;
};

struct completion {
  std::vector<int32_t> prompt_token_ids;
  std::vector<int32_t> token_ids;
  std::string text;
  std::string finish_reason;  // "stop" | "length" | "abort" | "error"
  std::string error;          // why it was refused or failed
  int32_t num_cached_tokens = 0;
};

class engine {
public:
  // Loads the model and starts the actors. Throws user_error on a bad option or checkpoint.
  explicit engine(const engine_options& options);
  ~engine();  // stops the actors and waits for them
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Completes every prompt (all in flight at once, batched continuously), in the given order.
  // on_finished, when given, is called once per finished prompt (from another thread).
  std::vector<completion> generate(const std::vector<prompt_input>& prompts, const sampling_params& params,
                                   const std::function<void()>& on_finished = {});
  // The same with each prompt's own parameters (params_per_prompt[i] for prompts[i]).
  std::vector<completion> generate(const std::vector<prompt_input>& prompts,
                                   const std::vector<sampling_params>& params_per_prompt,
                                   const std::function<void()>& on_finished = {});

  // Tokens of a text prompt with the model's tokenizer (special tokens added as the tokenizer says).
  std::vector<int32_t> encode(const std::string& text) const;

  // Ends every request still open, waiting or running, with this error (each gets its final output as an
  // error): what a shutdown does to requests that outlived --shutdown-timeout.
  void fail_all(const std::string& error);

  engine_stats stats();
  // The /metrics page (Prometheus text), and the figures the dashboard shows.
  std::string metrics_text() const;
  metrics_snapshot metrics() const;
  const std::string& served_model_name() const;  // the first of served_model_names()
  const std::vector<std::string>& served_model_names() const;
  // False once the engine can no longer run steps (a shard is gone).
  bool healthy() const;
  const model_config& config() const;
  const tokenizer* tok() const;  // null when the model folder has none
  // Names, tokenizer, chat templates and context length: what the API side renders and checks requests with.
  const model_front& front() const;
  int64_t max_model_len() const;
  // The limits in force: the options', or the defaults they left to the engine.
  batch_limits limits() const;

  // On a rank other than 0 of an mpirun job: runs the steps rank 0 sends, until rank 0's engine stops.
  void run_rank();

  struct impl;
  impl& internals() { return *impl_; }

private:
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
