#pragma once
// Test fixtures for 4-bit checkpoints: a copy of a model folder with its linear weights RTN-quantized and
// packed as AWQ or GPTQ (what AutoAWQ / AutoGPTQ would write for RTN codes), and a copy with those weights
// replaced by their dequantized f32 values (what the packed copy must load as). For FP8: a copy with the linear
// weights in FP8 as AutoFP8 (quant_method fp8) or llm-compressor (compressed-tensors) store them.

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/model/safetensors.hpp"

namespace troupe::testing {

class temp_folder {
public:
  explicit temp_folder(const std::string& tag)
      : path_(std::filesystem::temp_directory_path() /
              ("troupe_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    std::filesystem::create_directories(path_);
  }
  ~temp_folder() { std::filesystem::remove_all(path_); }
  temp_folder(const temp_folder&) = delete;
  temp_folder& operator=(const temp_folder&) = delete;
  const std::filesystem::path& path() const { return path_; }

private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// Creates `to` and copies into it every file of the model folder `from` but its config and weights.
inline void copy_model_files(const std::filesystem::path& from, const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from)) {
    const std::string file = entry.path().filename().string();
    if (file != "config.json" && !file.ends_with(".safetensors") && !file.ends_with(".index.json"))
      fs::copy_file(entry.path(), to / file, fs::copy_options::overwrite_existing);
  }
}

// The RTN code of linear weight [out, in] `values` under q, as make-model packs it (GPTQ v1 keeps zeros ≥ 1).
inline int4_weight rtn_code(const quantization_config& q, int64_t out, int64_t in, std::span<const float> values) {
  const int min_zero = q.method == quant_method::gptq && !q.gptq_v2 ? 1 : 0;
  return rtn_quantize(values, out, in, q.group_for(in), q.symmetric, min_zero);
}

// Writes `to` = the model folder `from` (config.json, model safetensors; other files copied) with each linear
// weight q quantizes replaced: replace(name, tensor, its f32 values, tensors) appends what stands for it, in
// storage that outlives the call. config.json says `written` for its quantization.
template <class Replace>
void write_copy_replacing(const std::filesystem::path& from, const std::filesystem::path& to, const quantization_config& q,
                          const std::optional<quantization_config>& written, Replace replace) {
  model_config config = model_config::from_dir(from);
  const checkpoint ckpt = checkpoint::open(from);
  std::vector<tensor_to_write> tensors;
  std::vector<float> values;
  for (const std::string& name : ckpt.names()) {
    const tensor_info& t = *ckpt.find(name);
    if (!q.quantizes(name)) {
      tensors.push_back({name, t.type, t.shape, t.bytes()});
      continue;
    }
    values.resize(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, values);
    replace(name, t, values, tensors);
  }
  copy_model_files(from, to);
  write_safetensors(to / "model.safetensors", tensors, {{"format", "pt"}});
  config.quantization = written;
  std::ofstream(to / "config.json") << config.to_json();
}

// Writes `to` = the model folder `from` with every linear weight q quantizes either packed in q's format
// (`packed`) or replaced by its dequantized f32 values.
inline void write_quantized_copy(const std::filesystem::path& from, const std::filesystem::path& to,
                                 const quantization_config& q, bool packed) {
  std::vector<packed_int4> packs;  // moving them keeps their buffers, which the tensors point into
  std::vector<std::vector<float>> dequantized;
  write_copy_replacing(from, to, q, packed ? std::optional(q) : std::nullopt,
                       [&](const std::string& name, const tensor_info& t, const std::vector<float>& values,
                           std::vector<tensor_to_write>& tensors) {
                         const int4_weight code = rtn_code(q, t.shape[0], t.shape[1], values);
                         if (packed) {
                           packs.push_back(pack_int4(code, q));
                           for (auto& p : packed_tensors(name.substr(0, name.size() - 7), packs.back()))
                             tensors.push_back(std::move(p));
                         } else {
                           dequantized.emplace_back();
                           dequantize(code, dequantized.back());
                           tensors.push_back({name, dtype::f32, t.shape, std::as_bytes(std::span(dequantized.back()))});
                         }
                       });
}

// Writes `to` = the model folder `from` with every linear weight q quantizes (q: fp8 or compressed-tensors, FP8 in
// the checkpoint) in FP8 with q's scales: per channel (each row's fp8_dynamic_scale, as --quantization fp8 makes
// them) or per tensor, and with static activations every layer's input_scale `input_scale`.
inline void write_fp8_copy(const std::filesystem::path& from, const std::filesystem::path& to,
                           const quantization_config& q, float input_scale = 0.0f) {
  std::vector<packed_fp8> packs;  // moving them keeps their buffers, which the tensors point into
  write_copy_replacing(from, to, q, q,
                       [&](const std::string& name, const tensor_info& t, const std::vector<float>& values,
                           std::vector<tensor_to_write>& tensors) {
                         fp8_weight w = quantize_fp8(values, t.shape[0], t.shape[1], q.fp8_channel_scales);
                         w.input_scale = input_scale;
                         packs.push_back(pack_fp8(w, q));
                         for (auto& p : packed_tensors(name.substr(0, name.size() - 7), packs.back()))
                           tensors.push_back(std::move(p));
                       });
}

// An FP8 checkpoint's config: `method` fp8 or compressed-tensors, scales per channel or per tensor, static or
// dynamic activations.
inline quantization_config fp8_config(quant_method method, bool channel, bool static_input) {
  quantization_config q;
  q.method = method;
  q.fp8_serialized = true;
  q.fp8_channel_scales = channel;
  q.fp8_static_input = static_input;
  return q;
}

} // namespace troupe::testing
