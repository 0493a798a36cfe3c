#pragma once
// The 4-bit reference folders scripts/gpu/make_quantized_references.py writes beside the reference models:
// <name>_awq and <name>_gptq hold packed checkpoints, <name>_rtn the plain checkpoint, whose reference.json
// holds transformers' logits of its weights rounded as `--quantization rtn` rounds them. Shared by
// tests/quantized_model_test.cpp (the CPU) and troupe_gpu_check (the CUDA backend), so that both load each
// folder the same way.

#include <filesystem>
#include <string_view>

#include "runtime/model/model_config.hpp"

namespace troupe::testing {

// Whether a reference folder's name marks it as one of the 4-bit references (the suffix names the method).
inline bool is_4_bit_reference(std::string_view folder_name) {
  return folder_name.ends_with("_awq") || folder_name.ends_with("_gptq") || folder_name.ends_with("_rtn");
}

// The config a reference folder is checked with: its config.json, and for an _rtn folder the rtn quantization
// that `--quantization rtn` resolves (the folder's own config has none). Throws as model_config::from_dir and
// resolve_quantization do.
inline model_config reference_config(const std::filesystem::path& dir) {
  model_config config = model_config::from_dir(dir);
  if (dir.filename().string().ends_with("_rtn")) config.quantization = resolve_quantization(config.quantization, "rtn", dir);
  return config;
}

} // namespace troupe::testing
