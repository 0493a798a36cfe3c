#pragma once
// --kv-cache-dtype, under vLLM's names.

#include <optional>
#include <string_view>

#include "runtime/model/dtype.hpp"

namespace troupe {

// The KV cache's element type for a --kv-cache-dtype value: nullopt for "auto" (the activation dtype),
// f8_e4m3 for "fp8" and "fp8_e4m3", f8_e5m2 for "fp8_e5m2". Throws user_error naming the accepted values
// for anything else.
std::optional<dtype> parse_kv_cache_dtype(std::string_view value);

} // namespace troupe
