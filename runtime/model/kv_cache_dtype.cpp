#include "runtime/model/kv_cache_dtype.hpp"

#include <string>

#include "runtime/error.hpp"

namespace troupe {

std::optional<dtype> parse_kv_cache_dtype(std::string_view value) {
  if (value == "auto") return std::nullopt;
  if (value == "fp8" || value == "fp8_e4m3") return dtype::f8_e4m3;  // vLLM's fp8 is e4m3 on NVIDIA
  if (value == "fp8_e5m2") return dtype::f8_e5m2;
  throw user_error("--kv-cache-dtype must be auto, fp8, fp8_e4m3 or fp8_e5m2, got '" + std::string(value) + "'");
}

} // namespace troupe
