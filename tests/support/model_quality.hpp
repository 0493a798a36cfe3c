#pragma once
// What the quantized-model tests share (tests/quantized_model_test.cpp: 4-bit weights and the FP8 KV cache;
// tests/fp8_weights_test.cpp): running `troupe`, its error lines and greedy tokens, a reference folder on the CPU
// backend with its quantization, the logits of every position of its prompts, and how far two sets of logits
// are apart (relative error, mean KL of the next-token distributions).

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"
#include "tests/support/run_command.hpp"

namespace troupe::testing {

// make-model flags of a small Llama in f32: 2 layers, hidden 64, 4 heads of 16 over 2 KV heads, intermediate 128.
inline const std::string small_llama =
    " --architecture llama --hidden-size 64 --num-layers 2 --num-heads 4 --num-kv-heads 2 --intermediate-size 128"
    " --dtype float32 --seed 5";

inline command_result run_troupe(const std::string& args) {
  return run_command(std::string(TROUPE_BINARY) + " " + args);
}

// The "[error]" lines of a run's stderr (logs may come before them), from their level on (the timestamp left out).
inline std::vector<std::string> error_lines(const std::string& err) {
  std::vector<std::string> lines;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    if (const size_t at = line.find("[error] "); at != std::string::npos) lines.push_back(line.substr(at));
  return lines;
}

inline std::vector<int32_t> greedy_tokens(const std::filesystem::path& model, const std::string& extra = "") {
  const auto r = run_troupe("generate --model " + model.string() +
                            " --prompt-token-ids 11,12,13,14,15 --max-tokens 16 --temperature 0 --ignore-eos --json" + extra);
  if (r.exit_code != 0) throw std::runtime_error(r.err);
  return nlohmann::json::parse(r.out)["token_ids"].get<std::vector<int32_t>>();
}

// Rewrites the safetensors file `file` with `edit` applied to its tensors (edit sees the original bytes).
template <class Edit>
void rewrite_tensors(const std::filesystem::path& file, Edit edit) {
  const safetensors_file original = safetensors_file::open(file);
  std::vector<tensor_to_write> tensors;
  for (const tensor_info& t : original.tensors()) tensors.push_back({t.name, t.type, t.shape, t.bytes()});
  edit(tensors);
  const std::vector<std::byte> bytes = serialize_safetensors(tensors);
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A model folder on the CPU backend in f32, loaded with config's quantization, with room for one sequence of
// the reference prompts' lengths (reference_limits).
struct cpu_model {
  cpu_ops ops;
  std::unique_ptr<model> net;

  // packed: the linear weights stay in 4 bits (checkpoint_int4_source, ops::linear_int4), as on a GPU. FP8 weights
  // always stay in FP8 (checkpoint_fp8_source, ops::linear_fp8), as the engine keeps them on either backend.
  // kv_cache_type: the KV cache's dtype (nullopt: f32, as the activations), FP8 with the checkpoint's scales.
  cpu_model(const std::filesystem::path& dir, const model_config& config, bool packed = false,
            std::optional<dtype> kv_cache_type = std::nullopt) {
    const checkpoint ckpt = checkpoint::open(dir);
    model_limits limits = reference_limits(1);
    limits.kv_cache_type = kv_cache_type;
    if (kv_cache_type) {  // as the engine does: the checkpoint's scales, 1.0 where it has none
      kv_cache_scales scales = checkpoint_kv_cache_scales(ckpt, config);
      limits.k_scales = std::move(scales.k);
      limits.v_scales = std::move(scales.v);
    }
    net = std::make_unique<model>(config, ops,
                                  load_model_weights(config, ops, dtype::f32, checkpoint_weight_source(ckpt, config),
                                                     packed ? checkpoint_int4_source(ckpt, config) : int4_source{},
                                                     checkpoint_fp8_source(ckpt, config)),
                                  dtype::f32, limits);
  }
};

// Logits of every position of every reference prompt, [positions, vocab] each, of the model in `dir` loaded
// with `q` (none: as the checkpoint says).
inline std::vector<std::vector<float>> all_position_logits(const std::filesystem::path& dir, const std::vector<std::vector<int32_t>>& prompts,
                                                    std::optional<quantization_config> q = std::nullopt, bool packed = false,
                                                    std::optional<dtype> kv_cache_type = std::nullopt) {
  model_config config = model_config::from_dir(dir);
  if (q) config.quantization = q;
  cpu_model m(dir, config, packed, kv_cache_type);
  std::vector<std::vector<float>> out;
  std::vector<float> logits;
  for (const auto& p : prompts) {  // one token per step: a step samples one row per sequence
    out.emplace_back();
    for (int32_t i = 0; i < static_cast<int32_t>(p.size()); ++i) {
      m.net->forward(make_step({{{p[static_cast<size_t>(i)]}, i}}), logits);
      out.back().insert(out.back().end(), logits.begin(), logits.end());
    }
  }
  return out;
}

inline const char* const reference_names[] = {"llama_f32", "llama3_rope_bf16", "qwen2_sharded_bf16", "mistral_head_dim"};

// The prompts of a reference folder (its reference.json).
inline std::vector<std::vector<int32_t>> reference_prompts(const std::filesystem::path& dir) {
  std::ifstream in(dir / "reference.json");
  return nlohmann::json::parse(in)["prompts"].get<std::vector<std::vector<int32_t>>>();
}

struct quality {
  double relative_error = 0;  // ‖a − b‖ / ‖b‖ over every logit
  double mean_kl = 0;         // mean over positions of KL(p_reference ‖ p_quantized), in nats
  int64_t positions = 0;
};

inline quality compare(const std::vector<std::vector<float>>& quantized, const std::vector<std::vector<float>>& reference,
                int64_t vocab) {
  quality r;
  double diff = 0, norm = 0, kl = 0;
  for (size_t p = 0; p < reference.size(); ++p) {
    for (size_t row = 0; row * vocab < reference[p].size(); ++row, ++r.positions) {
      const float* a = quantized[p].data() + row * vocab;
      const float* b = reference[p].data() + row * vocab;
      const auto log_softmax = [vocab](const float* x, std::vector<double>& out) {
        const double m = *std::max_element(x, x + vocab);
        double sum = 0;
        for (int64_t i = 0; i < vocab; ++i) sum += std::exp(x[i] - m);
        out.resize(static_cast<size_t>(vocab));
        for (int64_t i = 0; i < vocab; ++i) out[static_cast<size_t>(i)] = x[i] - m - std::log(sum);
      };
      std::vector<double> la, lb;
      log_softmax(a, la);
      log_softmax(b, lb);
      for (int64_t i = 0; i < vocab; ++i) {
        diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        norm += double(b[i]) * b[i];
        kl += std::exp(lb[static_cast<size_t>(i)]) * (lb[static_cast<size_t>(i)] - la[static_cast<size_t>(i)]);
      }
    }
  }
  r.relative_error = std::sqrt(diff / norm);
  r.mean_kl = kl / static_cast<double>(r.positions);
  return r;
}

} // namespace troupe::testing
