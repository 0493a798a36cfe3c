// Issue 13, must-show 1, on the CPU: the reference checkpoints with FP8 weights, an FP8 KV cache and both against
// torch's logits of the same rounding (scripts/gpu/make_fp8_references.py, <name>/reference_fp8.json), within a
// tolerance derived from torch's own FP8-vs-f32 error and f32 noise (tests/support/fp8_reference.hpp); that a wrong
// scale rule lands outside it; the rule itself, with troupe standing in for torch (a second correct implementation
// passes, a wrong rule fails), so that it is shown before the torch references exist; and which checkpoints still
// lack their torch references.

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>

#include "kernels/cpu/cpu_ops.hpp"
#include "tests/support/fp8_reference.hpp"
#include "tests/support/model_quality.hpp"
#include "tests/support/quantized_copy.hpp"

using namespace troupe;
using namespace troupe::testing;
namespace fs = std::filesystem;

namespace {

const fs::path reference_root = fs::path(TROUPE_TEST_DATA) / "reference";

// The folders with a reference_fp8.json.
std::vector<std::string> folders_with_fp8_references() {
  std::vector<std::string> names;
  for (const std::string& name : fp8_reference_sources(reference_root))
    if (fs::exists(reference_root / name / fp8_reference_file)) names.push_back(name);
  return names;
}

// `dir` run as `v` on the CPU, each prompt's last logits.
std::vector<std::vector<float>> variant_logits(const fs::path& dir, const fp8_variant& v,
                                               const std::vector<std::vector<int32_t>>& prompts, float kv_scale = 0) {
  cpu_ops cpu;
  return last_logits(*fp8_variant_model(dir, cpu, dtype::f32, v, kv_scale), prompts);
}

// `dir` run as `v` by a wrong scale rule: one weight scale per tensor (AutoFP8's layout) where --quantization fp8
// takes one per output channel, and KV scales of 1.9 where the checkpoint says 1.0.
std::vector<std::vector<float>> wrong_rule_logits(const fs::path& dir, const fp8_variant& v,
                                                  const std::vector<std::vector<int32_t>>& prompts) {
  temp_folder per_tensor("fp8_per_tensor");
  if (v.weights) write_fp8_copy(dir, per_tensor.path(), fp8_config(quant_method::fp8, false, false));
  return variant_logits(v.weights ? per_tensor.path() : dir, v, prompts, 1.9f);
}

// How many of the prompts land outside the reference's tolerance.
size_t prompts_outside(const std::vector<std::vector<float>>& logits, const fp8_reference& ref) {
  size_t n = 0;
  for (size_t p = 0; p < ref.prompts.size(); ++p) n += relative_error(logits[p], ref.last_logits[p]) >= ref.tolerance(p);
  return n;
}

// `to` = the checkpoint `from` in f32 with every value outside the decoder's linear weights (embeddings, norms,
// biases, lm_head) multiplied by 1 + u, u uniform within ±4 f32 ulps (seeded): the f32 noise by which another
// correct implementation differs, put where it reaches every value troupe rounds to FP8 but leaves the weights'
// codes alone (which two implementations compute from the same bits).
void write_with_f32_noise(const fs::path& from, const fs::path& to, uint32_t seed) {
  copy_model_files(from, to);
  fs::copy_file(from / "config.json", to / "config.json");
  const checkpoint ckpt = checkpoint::open(from);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-4.8e-7f, 4.8e-7f);
  std::vector<std::vector<float>> values;
  std::vector<tensor_to_write> tensors;
  for (const std::string& name : ckpt.names()) {
    const tensor_info& t = *ckpt.find(name);
    std::vector<float>& v = values.emplace_back(static_cast<size_t>(t.num_elements()));
    checkpoint::to_f32(t, v);
    const bool linear_weight = name.starts_with("model.layers.") && name.ends_with("proj.weight");
    if (!linear_weight)
      for (float& x : v) x *= 1.0f + u(rng);
    tensors.push_back({name, dtype::f32, t.shape, std::as_bytes(std::span(v))});
  }
  write_safetensors(to / "model.safetensors", tensors);
}

class fp8_reference_logits : public ::testing::TestWithParam<std::string> {};

} // namespace

// Each prompt's troupe-vs-torch error is printed beside its tolerance, for the closing note.
TEST_P(fp8_reference_logits, are_within_the_tolerance_torchs_own_fp8_error_and_f32_noise_give_of_torchs_fp8_logits) {
  const fs::path dir = reference_root / GetParam();
  for (const fp8_variant& v : fp8_variants) {
    const fp8_reference ref = read_fp8_reference(dir, v.key);
    const auto logits = variant_logits(dir, v, ref.prompts);
    for (size_t p = 0; p < ref.prompts.size(); ++p) {
      const double error = relative_error(logits[p], ref.last_logits[p]);
      std::printf("[fp8 reference] %-18s %-15s prompt of %3zu: troupe vs torch %.2e, tolerance %.2e "
                  "(torch fp8 vs f32 %.4f, f32 noise %.1e)\n", GetParam().c_str(), v.key, ref.prompts[p].size(), error,
                  ref.tolerance(p), ref.torch_error[p], ref.noise_error[p]);
      EXPECT_LT(error, ref.tolerance(p)) << v.key << ", prompt " << p;
    }
  }
}

// The tolerance can fail: by a wrong scale rule the same checkpoints land outside it on some prompt of each variant.
TEST_P(fp8_reference_logits, by_a_wrong_scale_rule_land_outside_the_tolerance) {
  const fs::path dir = reference_root / GetParam();
  for (const fp8_variant& v : fp8_variants) {
    const fp8_reference ref = read_fp8_reference(dir, v.key);
    EXPECT_GT(prompts_outside(wrong_rule_logits(dir, v, ref.prompts), ref), 0u) << v.key;
  }
}

INSTANTIATE_TEST_SUITE_P(checkpoints, fp8_reference_logits, ::testing::ValuesIn(folders_with_fp8_references()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });
// Until the script has run on the GPU machine and its output is committed, no folder has a reference_fp8.json and
// the suite has no instances; the test below says so instead of passing in silence.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(fp8_reference_logits);

// Every reference checkpoint needs its reference_fp8.json once any has one (a new checkpoint must come with its
// torch FP8 references), and with TROUPE_REQUIRE_FP8_REFERENCES=1 even before: CI, whose machine has no torch,
// can check only what is committed, so before the first GPU run the missing files are listed, not failed.
TEST(fp8_reference_files, exist_for_every_reference_checkpoint_once_any_does) {
  const std::vector<std::string> sources = fp8_reference_sources(reference_root);
  ASSERT_FALSE(sources.empty());
  std::string missing;
  for (const std::string& name : sources)
    if (!fs::exists(reference_root / name / fp8_reference_file)) missing += " " + name + "/" + fp8_reference_file;
  if (missing.empty()) return;
  const char* required = std::getenv("TROUPE_REQUIRE_FP8_REFERENCES");
  const std::string what = "missing under tests/data/reference:" + missing +
                           " (made on the GPU machine by scripts/gpu/make_fp8_references.py, which"
                           " scripts/gpu/check.sh and quick.sh run first)";
  if (!folders_with_fp8_references().empty() || (required && std::string(required) == "1")) FAIL() << what;
  std::printf("[fp8 references] not checked yet: %s; TROUPE_REQUIRE_FP8_REFERENCES=1 makes this a failure\n",
              what.c_str());
  RecordProperty("fp8_references_missing", missing);
}

// The rule of tests/support/fp8_reference.hpp with troupe standing in for torch, on every reference checkpoint and
// variant: troupe's own FP8 logits are the reference, f32 noise (write_with_f32_noise, 8 seeds) gives noise_error as
// the script measures it, and a second correct implementation (4 more seeds) must land within the tolerance on
// every prompt, while the wrong scale rule must land outside it on some prompt.
TEST(fp8_reference_tolerance, passes_a_second_correct_implementation_and_fails_a_wrong_scale_rule) {
  constexpr uint32_t noise_draws = 8, other_draws = 4;
  for (const std::string& name : fp8_reference_sources(reference_root)) {
    const fs::path dir = reference_root / name;
    fp8_reference own{reference_prompts(dir), {}, {}, {}};
    const auto exact = variant_logits(dir, {"f32", false, false}, own.prompts);
    std::deque<temp_folder> noisy;  // not movable: a deque grows without moving them
    for (uint32_t seed = 0; seed < noise_draws + other_draws; ++seed)
      write_with_f32_noise(dir, noisy.emplace_back("fp8_noise").path(), seed);
    for (const fp8_variant& v : fp8_variants) {
      SCOPED_TRACE(name + " " + v.key);
      own.last_logits = variant_logits(dir, v, own.prompts);
      own.torch_error.assign(own.prompts.size(), 0);
      own.noise_error.assign(own.prompts.size(), 0);
      for (size_t p = 0; p < own.prompts.size(); ++p) own.torch_error[p] = relative_error(own.last_logits[p], exact[p]);
      for (uint32_t seed = 0; seed < noise_draws; ++seed) {
        const auto drawn = variant_logits(noisy[seed].path(), v, own.prompts);
        for (size_t p = 0; p < own.prompts.size(); ++p)
          own.noise_error[p] = std::max(own.noise_error[p], relative_error(drawn[p], own.last_logits[p]));
      }
      for (uint32_t seed = noise_draws; seed < noise_draws + other_draws; ++seed)
        EXPECT_EQ(prompts_outside(variant_logits(noisy[seed].path(), v, own.prompts), own), 0u) << "seed " << seed;
      EXPECT_GT(prompts_outside(wrong_rule_logits(dir, v, own.prompts), own), 0u);
    }
  }
}
