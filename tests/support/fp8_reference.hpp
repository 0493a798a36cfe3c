#pragma once
// The torch FP8 references scripts/gpu/make_fp8_references.py writes beside a reference checkpoint's reference.json
// (<name>/reference_fp8.json): for FP8 weights (--quantization fp8), an FP8 KV cache (--kv-cache-dtype fp8, scales
// 1.0) and both, torch's last-position logits of the reference prompts with the weights, activations and K/V rounded
// as troupe rounds them, and how far each lands from torch's f32 logits. Shared by tests/fp8_reference_test.cpp (the
// CPU) and troupe_gpu_check (the CUDA backend), so that both build each variant and judge it the same way.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/quantized_reference.hpp"
#include "tests/support/reference_steps.hpp"

namespace troupe::testing {

inline constexpr const char* fp8_reference_file = "reference_fp8.json";

// One way of running a reference checkpoint in FP8, under its key in reference_fp8.json.
struct fp8_variant {
  const char* key;
  bool weights;  // --quantization fp8: linear weights per output channel, activations per token, both dynamic
  bool kv;       // --kv-cache-dtype fp8: e4m3 with the checkpoint's scales (the references carry none: 1.0)
};
inline constexpr fp8_variant fp8_variants[] = {
    {"fp8_weights", true, false}, {"fp8_kv", false, true}, {"fp8_weights_kv", true, true}};

// troupe's logits of a prompt must lie within tolerance(prompt) of torch's FP8 logits: a tenth of torch's own
// FP8-vs-f32 error, or 1.5 times the farthest that f32 noise alone moved torch's FP8 logits (noise_error), whichever
// is larger. Both round the same f32 values by the same rules and part only where a value sits within f32 noise
// (summation order, exp) of the middle of two codes. For most prompts that never happens and they agree to f32
// noise (1e-7); but with dynamic activation scales one such code early on moves every later activation and its
// codes, and a long prompt's logits by up to about the FP8 error itself: torch measures how far on each prompt
// (scripts/gpu/make_fp8_references.py, noise_error) and the margin of 1.5 covers troupe's draw landing a little
// farther. A different rule (another KV scale, one weight scale per tensor) rounds every value anew and lands
// about as far from torch's FP8 logits as those lie from f32, outside the tolerance of every prompt that f32
// noise leaves alone (tests/fp8_reference_test.cpp shows both).
inline constexpr double fp8_reference_fraction = 0.1;
inline constexpr double fp8_reference_noise_margin = 1.5;

struct fp8_reference {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> last_logits;  // [prompt][vocab]: torch's, with the variant's rounding
  std::vector<double> torch_error;              // [prompt]: ‖fp8 − f32‖ / ‖f32‖ of torch's own logits
  std::vector<double> noise_error;              // [prompt]: ‖fp8 with f32 noise − fp8‖ / ‖fp8‖, the farthest draw

  double tolerance(size_t prompt) const {
    return std::max(fp8_reference_fraction * torch_error.at(prompt), fp8_reference_noise_margin * noise_error.at(prompt));
  }
};

// `variant`'s part of dir/reference_fp8.json. Throws nlohmann::json's errors when the file or the variant is not
// there or not complete.
inline fp8_reference read_fp8_reference(const std::filesystem::path& dir, const std::string& variant) {
  std::ifstream in(dir / fp8_reference_file);
  const auto j = nlohmann::json::parse(in);
  const auto& v = j.at(variant);
  fp8_reference r{j.at("prompts").get<std::vector<std::vector<int32_t>>>(),
                  v.at("last_logits").get<std::vector<std::vector<float>>>(),
                  v.at("relative_error").get<std::vector<double>>(), v.at("noise_error").get<std::vector<double>>()};
  if (r.last_logits.size() != r.prompts.size() || r.torch_error.size() != r.prompts.size() ||
      r.noise_error.size() != r.prompts.size())
    throw std::runtime_error((dir / fp8_reference_file).string() + ": " + variant + " has not one row per prompt");
  return r;
}

// The folders under `root` that scripts/gpu/make_fp8_references.py makes references for: every reference
// checkpoint (a folder with a reference.json) but the 4-bit ones, sorted.
inline std::vector<std::string> fp8_reference_sources(const std::filesystem::path& root) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (std::filesystem::exists(entry.path() / "reference.json") && !is_4_bit_reference(name)) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The checkpoint in `dir` run as `v` on `backend` with activations in `act`: with v.weights its linear weights kept
// in FP8 (an FP8 checkpoint as it says; an unquantized one with --quantization fp8 resolved, quantized at load),
// with v.kv the KV cache in e4m3 with the checkpoint's scales, or with `kv_scale` for every layer's k and v when
// it is positive (a wrong scale rule, for the checks that show the tolerance can fail).
inline std::unique_ptr<model> fp8_variant_model(const std::filesystem::path& dir, ops& backend, dtype act,
                                                const fp8_variant& v, float kv_scale = 0) {
  model_config config = model_config::from_dir(dir);
  if (v.weights && !config.quantization) config.quantization = resolve_quantization(std::nullopt, "fp8", dir);
  const checkpoint ckpt = checkpoint::open(dir);
  model_limits limits = reference_limits();
  if (v.kv) {
    limits.kv_cache_type = dtype::f8_e4m3;
    kv_cache_scales scales = checkpoint_kv_cache_scales(ckpt, config);
    if (kv_scale > 0) scales.k.assign(scales.k.size(), kv_scale), scales.v.assign(scales.v.size(), kv_scale);
    limits.k_scales = std::move(scales.k);
    limits.v_scales = std::move(scales.v);
  }
  return std::make_unique<model>(config, backend,
                                 load_model_weights(config, backend, act, checkpoint_weight_source(ckpt, config), {},
                                                    v.weights ? checkpoint_fp8_source(ckpt, config) : fp8_source{}),
                                 act, limits);
}

// The last-position logits of each prompt, each run alone as one prefill step.
inline std::vector<std::vector<float>> last_logits(model& net, const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<std::vector<float>> out;
  for (const auto& p : prompts) net.forward(make_step({{p, 0}}), out.emplace_back());
  return out;
}

} // namespace troupe::testing
