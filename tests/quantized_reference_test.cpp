// The CPU forward of 4-bit reference checkpoints against transformers on their dequantized weights:
// tests/data/reference/<name>_awq, _gptq and _rtn, recorded by scripts/gpu/make_quantized_references.py (issue
// 12, item 1). A folder is tested only when it exists: until the script has run on the GPU machine and its
// output is committed, this file registers no test at all (rather than one that passes without checking).

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

// The quantized reference folders present, sorted.
std::vector<std::string> quantized_reference_folders() {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(fs::path(TROUPE_TEST_DATA) / "reference")) {
    const std::string name = entry.path().filename().string();
    if ((name.ends_with("_awq") || name.ends_with("_gptq") || name.ends_with("_rtn")) &&
        fs::exists(entry.path() / "reference.json"))
      names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

class quantized_reference : public ::testing::TestWithParam<std::string> {};

} // namespace

TEST_P(quantized_reference, logits_within_1e_3_and_greedy_tokens_equal_transformers_on_the_dequantized_weights) {
  const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / GetParam();
  model_config config = model_config::from_dir(dir);
  if (GetParam().ends_with("_rtn")) config.quantization = resolve_quantization(config.quantization, "rtn", dir);
  ASSERT_TRUE(config.quantization);
  const checkpoint ckpt = checkpoint::open(dir);
  std::ifstream in(dir / "reference.json");
  const auto ref = nlohmann::json::parse(in);
  cpu_ops ops;
  model_limits limits;
  limits.max_num_tokens = troupe::testing::reference_max_len;
  limits.max_num_seqs = 1;
  limits.max_model_len = troupe::testing::reference_max_len;
  limits.block_size = troupe::testing::reference_block_size;
  limits.num_blocks = troupe::testing::reference_max_len / troupe::testing::reference_block_size;
  model m(config, ops, load_model_weights(config, ops, dtype::f32, checkpoint_weight_source(ckpt, config)), dtype::f32, limits);
  const auto prompts = ref.at("prompts").get<std::vector<std::vector<int32_t>>>();
  std::vector<float> logits;
  for (size_t p = 0; p < prompts.size(); ++p) {
    m.forward(troupe::testing::make_step({{prompts[p], 0}}), logits);
    EXPECT_LT(relative_error(logits, ref.at("last_logits")[p].get<std::vector<float>>()), 1e-3) << "prompt " << p;
    std::vector<int32_t> out{static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
    const auto greedy = ref.at("greedy")[p].get<std::vector<int32_t>>();
    while (out.size() < greedy.size()) {
      m.forward(troupe::testing::make_step({{{out.back()}, static_cast<int32_t>(prompts[p].size() + out.size() - 1)}}), logits);
      out.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    }
    EXPECT_EQ(out, greedy) << "prompt " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(checkpoints, quantized_reference, ::testing::ValuesIn(quantized_reference_folders()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });
// No folder yet: no test (see the top of this file).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(quantized_reference);
