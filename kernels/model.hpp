#pragma once
// The decoder forward pass (Llama / Mistral / Qwen2 / Qwen3), written once over the op interface.

#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kernels/communicator.hpp"
#include "kernels/ops.hpp"
#include "kernels/sampling_inputs.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/engine/step_input.hpp"
#include "runtime/model/weight_names.hpp"

namespace troupe {

// A linear weight kept in 4 bits on the device (ops::linear_int4), as the loader repacked it.
struct int4_layer {
  device_buffer qweight, scales, zeros, fp8_scale;  // see int4_device_weight
  int32_t group_size = 0;
  bool empty() const { return qweight.empty(); }
  int4_device_weight view() const { return {qweight.get(), scales.get(), zeros.get(), group_size, fp8_scale.get()}; }
};

// A linear weight kept in FP8 on the device (ops::linear_fp8), as the loader read or quantized it.
struct fp8_layer {
  device_buffer weight, scale, input_scale;  // see fp8_device_weight; input_scale empty: dynamic activations
  bool empty() const { return weight.empty(); }
  fp8_device_weight view() const { return {weight.get(), scale.get(), input_scale.get()}; }
};

struct layer_weights {
  device_buffer input_norm;  // [H]
  device_buffer qkv;         // [(nH + 2 nKV) D, H]: q_proj, k_proj, v_proj stacked by rows
  device_buffer qkv_bias;    // [(nH + 2 nKV) D] or empty
  device_buffer q_norm, k_norm;  // [D] each (Qwen3), or empty
  device_buffer o_proj;      // [H, nH D]
  device_buffer o_bias;      // [H] or empty
  device_buffer post_norm;   // [H]
  device_buffer gate_up;     // [2 I, H]: gate_proj then up_proj
  device_buffer down;        // [H, I]
  // With 4-bit weights kept packed (load_model_weights with an int4_source), these replace the dense
  // qkv, o_proj, gate_up and down above, which stay empty.
  int4_layer qkv4, o_proj4, gate_up4, down4;
  // With FP8 weights (load_model_weights with an fp8_source), the same for ops::linear_fp8.
  fp8_layer qkv8, o_proj8, gate_up8, down8;
};

struct model_weights {
  device_buffer embed;       // [V, H]
  device_buffer final_norm;  // [H]
  device_buffer lm_head;     // [V, H]; empty when tied to embed
  std::vector<layer_weights> layers;
  const tensor& lm_head_or_embed() const { return lm_head.empty() ? embed.get() : lm_head.get(); }
};

// Supplies one checkpoint tensor's values as fp32, given its name and expected shape.
using weight_source = std::function<void(const weight_spec& spec, std::vector<float>& values)>;

// Supplies a linear weight's 4-bit codes, zero points and scales (runtime/model/int4_formats.hpp) when the
// loader keeps it packed: returns false for a tensor it does not (norms, embeddings, the LM head).
struct int4_weight;
using int4_source = std::function<bool(const weight_spec& spec, int4_weight& out)>;

// Supplies a linear weight's FP8 codes and scales (runtime/model/fp8_formats.hpp) when the loader keeps it in FP8;
// returns false for a tensor it does not.
struct fp8_weight;
using fp8_source = std::function<bool(const weight_spec& spec, fp8_weight& out)>;

// Makes a tensor's values where it lives, into `out` (the tensor in its local shape: a fused tensor's rows
// for it): dummy weights made by the backend (ops::fill_random). Returns false for a tensor it does not make,
// which then comes from the weight_source.
using weight_fill = std::function<bool(const weight_spec& spec, ops& backend, const tensor& out)>;

// Reads every tensor the config needs from `source` and uploads it in `type`, fusing q/k/v and gate/up.
// With `int4`, the linear weights it supplies are kept in 4 bits (int4_layer, in `type` for the scales and
// zeros) instead: q/k/v and gate/up fused the same way; they must share one group size. With `fp8`, those it
// supplies are kept in FP8 (fp8_layer, scales in f32), fused the same way: each part's rows keep their scales,
// and a static input scale is the largest of the parts' (vLLM's input_scale.max() over a fused layer's shards).
// Throws user_error when a fused layer's parts are not all in FP8 (vLLM refuses such checkpoints too). With
// `fill`, the tensors it makes skip `source` and the upload.
model_weights load_model_weights(const model_config& config, ops& backend, dtype type, const weight_source& source,
                                 const int4_source& int4 = {}, const fp8_source& fp8 = {}, const weight_fill& fill = {});

struct model_limits {
  int64_t max_num_tokens = 2048;  // tokens in one step
  int64_t max_num_seqs = 256;     // sequences in one step
  int64_t max_model_len = 2048;   // context length; sizes the rotary table and block tables
  int32_t block_size = 16;
  int64_t num_blocks = 0;         // KV cache blocks (each holds block_size tokens for every layer)
  bool enforce_eager = false;     // no graphs for decode steps (--enforce-eager)
  // The KV cache's element type (--kv-cache-dtype): nullopt (auto) keeps the activation dtype; f8_e4m3 or
  // f8_e5m2 store K / k_scale and V / v_scale in FP8 (attention_shape), with each layer's scales (empty: 1.0).
  std::optional<dtype> kv_cache_type;
  std::vector<float> k_scales, v_scales;  // [num_layers] or empty
};

// A tensor-parallel shard's place in its group (runtime/model/sharding_plan.hpp). Its model is built with
// the rank's local_config and weights: o_proj and down_proj outputs are partial sums that the communicator
// all-reduces, the embedding and LM head hold vocabulary rows [vocab_begin, +local vocab), and the logits
// are gathered from every rank and cut back to the real vocabulary. Every rank computes every step's
// tokens, the same on each.
struct shard_context {
  communicator* comm = nullptr;  // null: the whole model on one device; else outlives the model
  int64_t vocab_begin = 0;       // the first vocabulary row this rank holds
  int64_t vocab_size = 0;        // the model's real vocabulary (the logits' width)
};

class model {
public:
  // Allocates the KV cache and step workspaces for `limits`. Throws user_error when limits do not fit the config.
  // `config` and `weights` are the rank's own with a communicator in `shard` (see shard_context).
  model(model_config config, ops& backend, model_weights weights, dtype activation_type, model_limits limits,
        shard_context shard = {});
  // Releases the decode graphs it recorded on the backend: a graph that captured NCCL collectives keeps
  // ncclCommDestroy waiting until it is gone, so the model goes before its communicator (as it must).
  ~model();
  model(const model&) = delete;
  model& operator=(const model&) = delete;

  // Runs one step. logits receives [logits_indices.size(), V] in fp32. A step may sample no row (a
  // prefill chunk short of its prompt's end): it writes the KV cache and returns no logits or tokens.
  void forward(const step_input& in, std::vector<float>& logits);
  // Runs one step and takes each sampled row's argmax on the backend (greedy sampling without
  // processors), so only the token ids leave the device. tokens receives [logits_indices.size()].
  void forward_greedy(const step_input& in, std::vector<int32_t>& tokens);
  // Runs one step and samples each sampled row on the backend (ops::sample) with `sampling`, built from
  // the step's sample_requests in logits_indices order: one upload of the sampling inputs, and only the
  // token ids come back. tokens receives [logits_indices.size()]. Throws std::invalid_argument when
  // `sampling` has another number of rows. `before_sampling`, when given, runs once the forward pass is
  // computed (CPU) or enqueued (CUDA) and before `sampling` is read: the caller finishes the sampling
  // inputs there (structured outputs' bitmasks, computed while the forward runs).
  void forward_sample(const step_input& in, const sampling_inputs& sampling, std::vector<int32_t>& tokens,
                      const std::function<void()>& before_sampling = {});

  // Runs steps that write nothing to the KV cache (every slot -1) at the token counts steps will have:
  // each power of two up to max_num_tokens, and a one-sequence decode step. On CUDA that picks the GEMM
  // algorithms, loads their kernels and records the batch-1 decode graph before the first request
  // rather than during it.
  void warm_up();

  // One eager step at the largest size the limits allow (max_num_tokens over as few sequences as the
  // context length permits), writing nothing to the KV cache: afterwards the backend has allocated all
  // it will for steps (kernel modules, library workspaces), so an engine can measure what is left.
  void profile_run();

  // Replaces the KV cache with one of num_blocks blocks (the engine sizes it after profile_run); graphs
  // recorded over the old cache are dropped.
  void allocate_kv_cache(int64_t num_blocks);

  // Bytes of one KV block: every layer's K and V for block_size tokens.
  int64_t kv_block_bytes() const;

  const model_config& config() const { return config_; }  // the rank's local config when sharded
  const model_limits& limits() const { return limits_; }

private:
  // Checks the step, packs its inputs into the host staging block and copies them to the device in
  // one transfer; returns the attention metadata over the device copy.
  // A decode step that can replay a graph is padded to `padded` sequences (0: not padded): the extra
  // rows are one-token sequences that write nothing to the KV cache and whose logits nobody reads.
  attention_metadata stage_inputs(const step_input& in, int64_t padded = 0);
  // The graph size a step replays: for a decode step where every sequence samples, the smallest capture
  // size that holds it; 0 for any other step, a batch above the largest size, or graphs turned off.
  int64_t graph_size_for(const step_input& in) const;
  // Runs the layers and the LM head over staged inputs; returns the device logits [num_logits, V] f32.
  // Issues ops only (no host synchronization), so a graph can record it.
  tensor compute_logits(int64_t num_tokens, int64_t num_logits, const attention_metadata& meta);
  // A step that writes nothing to the KV cache: (context length, new tokens) per sequence, each sampling
  // its last token greedily.
  void dry_step(const std::vector<std::pair<int32_t, int32_t>>& seqs);
  // compute_logits, through the graph recorded for the step's batch size when every sequence of a
  // decode step samples (recording it the first time).
  tensor logits_of_step(const step_input& in, const attention_metadata& meta, int64_t graph_size);
  // Packs the sampling inputs into the host staging block and copies them up in one transfer, growing
  // both blocks first when they are too small; returns the batch over the device copy.
  sampling_batch stage_sampling(const sampling_inputs& sampling);

  // out = x · Wᵀ (+ bias) with the dense weight, or its 4-bit or FP8 form when the loader kept one.
  void linear(const tensor& x, const device_buffer& dense, const int4_layer& packed, const fp8_layer& fp8,
              const tensor& bias, const tensor& out) {
    if (!packed.empty()) ops_.linear_int4(x, packed.view(), bias, out);
    else if (!fp8.empty()) ops_.linear_fp8(x, fp8.view(), bias, out);
    else ops_.linear(x, dense, bias, out);
  }
  // Whether the kernel before an FP8 layer quantizes its input in a step of num_tokens rows (the layer is FP8,
  // fp8_codes_ exists and the step has at least fp8_fused_rows_).
  bool quantized_before(const int4_layer& packed, const fp8_layer& fp8, int64_t num_tokens) const {
    return packed.empty() && !fp8.empty() && !fp8_codes_.empty() && num_tokens >= fp8_fused_rows_;
  }
  // The first num_tokens rows of fp8_codes_ / fp8_scales_ as a [num_tokens, width] input.
  fp8_activations fp8_input(int64_t num_tokens, int64_t width) const;
  // Sums a row-parallel layer's partial outputs over the ranks (nothing on one device).
  void all_reduce(const tensor& t) {
    if (shard_.comm) shard_.comm->all_reduce_sum(t);
  }

  model_config config_;
  ops& ops_;
  shard_context shard_;
  int64_t vocab_ = 0;  // the logits' width: the real vocabulary
  model_weights weights_;
  model_limits limits_;
  attention_shape shape_;
  std::vector<float> k_scales_, v_scales_;  // [num_layers]: limits_'s, or 1.0
  dtype act_type_;
  dtype kv_type_;  // limits_.kv_cache_type or the activation dtype
  std::vector<device_buffer> k_cache_, v_cache_;  // per layer [num_blocks, block_size, nKV, D]
  device_buffer cos_sin_;                         // [max_model_len, D]
  // Step inputs, one block on the device and its host twin, regions at fixed offsets sized for the
  // limits (so a graph recorded once reads each later step's values); each step uses their first rows.
  // Block tables are always max_blocks_ wide.
  device_buffer inputs_;
  std::shared_ptr<void> host_inputs_;
  int64_t max_blocks_ = 0;
  tensor ids_, positions_, slots_, query_start_, seq_lens_, block_tables_, logits_indices_;
  std::unordered_map<int64_t, int32_t> decode_graphs_;  // sequences in a decode step → recorded graph
  // Decode batch sizes with a graph, as vLLM's capture sizes: 1, 2, 4, multiples of 8 up to 256, of 16
  // up to 512, no more than max_num_seqs; larger decode steps run eagerly.
  std::vector<int64_t> graph_sizes_;
  // Workspaces, sized for the limits; each step uses their first rows.
  device_buffer hidden_, residual_, qkv_, attn_, mlp_, act_, selected_, logits_, tokens_;
  device_buffer local_logits_, gathered_logits_;  // sharded: [rows, local V], [rows, local V * ranks]
  // With FP8 layers: the codes [t, max(H, I)] and scales [t] that add_rms_norm_fp8 and silu_and_mul_fp8 make for the
  // FP8 linear after them (fp8_input), in steps of at least fp8_fused_rows_ rows; empty where no step has that many
  // (each linear_fp8 quantizes its input).
  device_buffer fp8_codes_, fp8_scales_;
  // The fewest rows of a step whose FP8 inputs the kernel before quantizes: kFp8FusedRows, or TROUPE_FP8_FUSED=N
  // (0 never; steps of fewer rows keep the silu kernel and each linear's quantizer).
  static constexpr int64_t kFp8FusedRows = 1025;
  int64_t fp8_fused_rows_ = kFp8FusedRows;
  bool fp8_attention_trigger_ = false;  // TROUPE_FP8_ATTN_TRIGGER=1: an FP8 o_proj is attention's programmatic dependent
  // Sampling inputs: a device block and its host twin of sampling_bytes_ each, sized for max_num_seqs rows
  // and some list entries, grown (outside any graph) when a step needs more.
  device_buffer sampling_;
  std::shared_ptr<void> host_sampling_;
  size_t sampling_bytes_ = 0;
};

} // namespace troupe
