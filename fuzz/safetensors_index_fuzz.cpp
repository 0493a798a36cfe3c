// Fuzz target for model.safetensors.index.json: any text must either give a weight_map whose shard names all
// stay inside the model folder, or throw checkpoint_error with a one-line message.

#include "fuzz/fuzz_check.hpp"
#include "runtime/error.hpp"
#include "runtime/model/safetensors_detail.hpp"

#include <cstdint>
#include <cstring>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto weight_map = troupe::safetensors_detail::parse_weight_map(text, "model/model.safetensors.index.json");
    FUZZ_CHECK(!weight_map.empty());
    for (const auto& [name, shard] : weight_map) {
      const std::filesystem::path p(shard);
      FUZZ_CHECK(!shard.empty() && !p.has_root_path());
      FUZZ_CHECK(shard.find('\0') == std::string::npos);
      for (const auto& part : p) FUZZ_CHECK(part != "..");
    }
  } catch (const troupe::checkpoint_error& e) {
    FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);
  }
  return 0;
}
