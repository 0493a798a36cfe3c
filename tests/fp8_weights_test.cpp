// FP8 weights end to end on the CPU (issue 13): make-model's checkpoints in each FP8 format load and generate; an
// llm-compressor checkpoint of per-channel codes runs exactly as --quantization fp8 on the weights it came from,
// and AutoFP8's per-tensor layout exactly as llm-compressor's; every tensor-parallel rank reads its cut of each
// layer; a broken FP8 checkpoint is one error line naming the tensor or the field; and the quality of FP8
// weights on the reference checkpoints against their unquantized logits (printed: issue 13, item 4).

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "kernels/model_loader.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/random_model.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "tests/support/model_quality.hpp"
#include "tests/support/quantized_copy.hpp"

using namespace troupe;
using namespace troupe::testing;
namespace fs = std::filesystem;

namespace {

// `make-model` of the small Llama into a fresh folder with `flags`.
struct made_model {
  temp_folder dir;
  explicit made_model(const std::string& flags) : dir("fp8_made") {
    const auto r = run_troupe("make-model --out " + dir.path().string() + small_llama + flags);
    if (r.exit_code != 0) throw std::runtime_error(r.err);
  }
  const fs::path& path() const { return dir.path(); }
};

// Rewrites config.json of `dir` with `edit` applied to its quantization_config.
void rewrite_quantization_config(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config;
  std::ifstream(dir / "config.json") >> config;
  edit(config["quantization_config"]);
  std::ofstream(dir / "config.json") << config.dump(2);
}

// The error lines of `troupe generate` on the model in `dir`.
std::vector<std::string> generate_errors(const fs::path& dir) {
  const auto r = run_troupe("generate --model " + dir.string() + " --prompt-token-ids 1,2 --max-tokens 1");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  return error_lines(r.err);
}

} // namespace

TEST(fp8_checkpoints, make_model_writes_each_fp8_format_and_troupe_runs_it) {
  for (const std::string flags : {" --quantization fp8", " --quantization fp8 --activation-scheme static",
                                  " --quantization compressed-tensors",
                                  " --quantization compressed-tensors --weight-strategy tensor --activation-scheme static"}) {
    SCOPED_TRACE(flags);
    const made_model m(flags);
    const model_config config = model_config::from_dir(m.path());
    ASSERT_TRUE(config.quantization && config.quantization->fp8() && config.quantization->fp8_serialized);
    const checkpoint ckpt = checkpoint::open(m.path());
    EXPECT_EQ(ckpt.find("model.layers.1.mlp.down_proj.weight")->type, dtype::f8_e4m3);
    EXPECT_EQ(ckpt.find("model.layers.1.mlp.down_proj.input_scale") != nullptr, config.quantization->fp8_static_input);
    const auto r = run_troupe("generate --model " + m.path().string() +
                              " --prompt-token-ids 11,12,13 --max-tokens 8 --temperature 0 --ignore-eos --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["token_ids"].size(), 8u);
    EXPECT_NE(r.err.find(std::string(name(config.quantization->method)) + " weights kept in FP8: the linear layers take about"),
              std::string::npos)
        << r.err;
  }
}

// make-model quantizes the same f32 values --quantization fp8 quantizes at load, per channel, so its
// compressed-tensors checkpoint (channel strategy, dynamic activations) must run bit for bit as the plain model
// with --quantization fp8; and an AutoFP8 checkpoint (per-tensor scales, quant_method fp8) as llm-compressor's
// tensor strategy holding the same codes.
TEST(fp8_checkpoints, llm_compressor_per_channel_codes_run_as_quantized_at_load_and_autofp8_as_llm_compressor) {
  const made_model plain(""), ct(" --quantization compressed-tensors");
  const std::vector<std::vector<int32_t>> prompts = {{11, 12, 13, 14, 15, 16, 17}, {3, 1, 4}};
  const auto at_load = all_position_logits(plain.path(), prompts, resolve_quantization(std::nullopt, "fp8", plain.path()));
  EXPECT_EQ(all_position_logits(ct.path(), prompts), at_load);
  EXPECT_NE(all_position_logits(plain.path(), prompts), at_load);  // the weights and activations really are in FP8
  EXPECT_EQ(greedy_tokens(ct.path()), greedy_tokens(plain.path(), " --quantization fp8"));

  temp_folder autofp8("autofp8"), tensor_ct("tensor_ct");
  write_fp8_copy(plain.path(), autofp8.path(), fp8_config(quant_method::fp8, false, false));
  write_fp8_copy(plain.path(), tensor_ct.path(), fp8_config(quant_method::compressed_tensors, false, false));
  const auto per_tensor = all_position_logits(autofp8.path(), prompts);
  EXPECT_EQ(per_tensor, all_position_logits(tensor_ct.path(), prompts));
  EXPECT_NE(per_tensor, at_load);  // one scale per tensor rounds other codes than one per channel
}

// The norm and the activation before an FP8 layer quantize its input themselves (add_rms_norm_fp8, silu_and_mul_fp8,
// then linear_fp8_quantized): every logit must be what each linear_fp8 quantizing its own input gives
// (TROUPE_FP8_FUSED=1 takes the fused path in every step, =N in steps of N rows or more: 5 fuses the 5-token prompt
// step and not the decode steps; by default only steps of more than 1,024 rows fuse), for dynamic and
// static activation scales, the prompts in one step and in several.
TEST(fp8_checkpoints, inputs_quantized_by_the_kernel_before_give_the_logits_of_each_linear_quantizing_its_own) {
  const std::vector<std::vector<int32_t>> prompts = {{11, 12, 13, 14, 15, 16, 17}, {3, 1, 4}, {9}};
  for (const std::string flags : {" --quantization compressed-tensors", " --quantization fp8 --activation-scheme static"}) {
    SCOPED_TRACE(flags);
    const made_model m(flags);
    const auto unfused = all_position_logits(m.path(), prompts);
    const auto unfused_tokens = greedy_tokens(m.path());  // a 5-token prefill step, then decode steps
    for (const char* mode : {"1", "2", "5"}) {
      SCOPED_TRACE(std::string("TROUPE_FP8_FUSED=") + mode);
      ::setenv("TROUPE_FP8_FUSED", mode, 1);
      const auto fused = all_position_logits(m.path(), prompts);
      const auto fused_tokens = greedy_tokens(m.path());
      ::unsetenv("TROUPE_FP8_FUSED");
      ASSERT_FALSE(fused.empty());
      EXPECT_EQ(fused, unfused);
      EXPECT_EQ(fused_tokens, unfused_tokens);
    }
  }
}

// A checkpoint's FP8 slices are exactly the cut of the whole layer (codes and each row's scale); the dummy
// sources give the engine's dummy FP8 weights; a split model runs and agrees with the whole on greedy tokens.
TEST(fp8_checkpoints, every_ranks_fp8_slice_is_its_cut_of_the_whole_layer_and_a_split_model_runs) {
  const made_model m(" --quantization compressed-tensors --activation-scheme static");
  const model_config config = model_config::from_dir(m.path());
  const checkpoint ckpt = checkpoint::open(m.path());
  const fp8_source whole = checkpoint_fp8_source(ckpt, config);
  int checked = 0;
  for (int64_t tp : {2, 4}) {
    for (int64_t rank = 0; rank < tp; ++rank) {
      const sharding_plan plan = sharding_plan::make(config, tp, rank);
      const fp8_source part = sharded_fp8_source(ckpt, config, plan);
      const weight_source loaded = sharded_weight_source(ckpt, config, plan);
      const std::vector<weight_spec> specs = hf_weight_specs(config), local = hf_weight_specs(local_config(config, plan));
      for (size_t i = 0; i < specs.size(); ++i) {
        fp8_weight w, got;
        if (!whole(specs[i], w)) continue;
        SCOPED_TRACE(specs[i].name + " on rank " + std::to_string(rank) + " of " + std::to_string(tp));
        ASSERT_TRUE(part(local[i], got));
        const fp8_weight cut = slice_fp8(w, plan.slice(specs[i].name));
        EXPECT_EQ(got.codes, cut.codes);
        EXPECT_EQ(got.scales, cut.scales);
        EXPECT_EQ(got.input_scale, fp8_made_input_scale);
        std::vector<float> values, expected;
        loaded(local[i], values);
        dequantize(cut, expected);
        EXPECT_EQ(values, expected);
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, (2 + 4) * 2 * 7);  // every rank, layer and linear weight
  const auto tokens = greedy_tokens(m.path());
  EXPECT_EQ(tokens.size(), 16u);
  EXPECT_EQ(greedy_tokens(m.path(), " --tensor-parallel-size 2"), tokens);
  EXPECT_EQ(greedy_tokens(m.path(), " --load-format dummy").size(), 16u);
}

TEST(fp8_checkpoints, a_broken_fp8_checkpoint_is_one_error_line_naming_the_tensor_or_the_field) {
  {
    const made_model m(" --quantization fp8");
    rewrite_tensors(m.path() / "model.safetensors", [](std::vector<tensor_to_write>& t) {
      std::erase_if(t, [](const tensor_to_write& x) { return x.name == "model.layers.1.mlp.down_proj.weight_scale"; });
    });
    EXPECT_EQ(generate_errors(m.path()),
              std::vector<std::string>{"[error] " + m.path().string() +
                                       ": tensor 'model.layers.1.mlp.down_proj.weight_scale' is missing; an FP8 linear "
                                       "layer of 128 inputs and 64 outputs is stored as weight (F8_E4M3) and "
                                       "weight_scale (quantization_config says fp8)"});
  }
  {
    const made_model m(" --quantization compressed-tensors");
    rewrite_tensors(m.path() / "model.safetensors", [](std::vector<tensor_to_write>& t) {
      for (auto& x : t)
        if (x.name == "model.layers.0.self_attn.k_proj.weight") x.shape = {64, 32};
    });
    EXPECT_EQ(generate_errors(m.path()),
              std::vector<std::string>{"[error] " + (m.path() / "model.safetensors").string() +
                                       ": tensor 'model.layers.0.self_attn.k_proj.weight' has shape [64, 32], but an FP8 "
                                       "linear layer of 64 inputs and 32 outputs needs [32, 64] ([out, in]); the "
                                       "checkpoint does not match config.json"});
  }
  {
    const made_model m(" --quantization compressed-tensors");
    rewrite_quantization_config(m.path(), [](nlohmann::json& q) { q["config_groups"]["group_0"]["weights"]["strategy"] = "block"; });
    EXPECT_EQ(generate_errors(m.path()),
              std::vector<std::string>{"[error] " + (m.path() / "config.json").string() +
                                       ": quantization_config: compressed-tensors weights strategy \"block\" is not "
                                       "supported; supported: tensor, channel (block and group scales are not)"});
  }
  {  // vLLM refuses a fused layer whose shards differ in precision.
    temp_folder mixed("fp8_mixed");
    quantization_config q = fp8_config(quant_method::compressed_tensors, true, false);
    q.modules_to_not_convert = {"lm_head", "model.layers.0.self_attn.k_proj"};
    const made_model plain("");
    write_fp8_copy(plain.path(), mixed.path(), q);
    EXPECT_EQ(generate_errors(mixed.path()),
              std::vector<std::string>{"[error] some but not all of model.layers.0.self_attn.q_proj.weight and the "
                                       "weights fused with it are quantized to FP8; all shards of a fused layer (q/k/v, "
                                       "gate/up) need the same precision"});
  }
  {  // An FP8 weight in a checkpoint whose config says nothing of FP8.
    const made_model m(" --quantization fp8");
    rewrite_quantization_config(m.path(), [](nlohmann::json& q) { q = nullptr; });
    const auto errors = generate_errors(m.path());
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].find("tensor 'model.layers.0.mlp.down_proj.weight_scale' is not used by a LlamaForCausalLM "
                           "with this config.json"),
              std::string::npos)
        << errors[0];
  }
}

// Issue 13, item 4, on the CPU twin: next-token distributions with FP8 weights (and FP8 activations, quantized per
// token, or by a static scale) against the same model unquantized, over every position of the reference prompts.
// Printed for the closing note; the bounds catch a broken path, not quality.
TEST(fp8_quality, fp8_weights_of_the_reference_checkpoints_stay_close_to_the_unquantized_logits) {
  for (const std::string name : reference_names) {
    const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / name;
    const auto prompts = reference_prompts(dir);
    const int64_t vocab = model_config::from_dir(dir).vocab_size;
    const auto reference = all_position_logits(dir, prompts);
    const auto report = [&](const std::string& what, const std::vector<std::vector<float>>& logits, double kl_bound) {
      const quality q = compare(logits, reference, vocab);
      std::printf("[quality] %-18s %-40s relative error %.4f, mean KL %.6f nats over %lld positions\n", name.c_str(),
                  what.c_str(), q.relative_error, q.mean_kl, static_cast<long long>(q.positions));
      EXPECT_GT(q.relative_error, 0) << what;  // really quantized
      EXPECT_LT(q.relative_error, 0.2) << what;
      EXPECT_LT(q.mean_kl, kl_bound) << what;
    };
    report("--quantization fp8 (channel, per token)", all_position_logits(dir, prompts, resolve_quantization(std::nullopt, "fp8", dir)),
           0.005);
    temp_folder per_tensor("fp8_quality");
    write_fp8_copy(dir, per_tensor.path(), fp8_config(quant_method::fp8, false, false));
    report("fp8 checkpoint (tensor, per token)", all_position_logits(per_tensor.path(), prompts), 0.005);
    // A static scale of 1/32 covers activations up to 14, not calibrated to these models: the coarsest case.
    temp_folder static_input("fp8_quality_static");
    write_fp8_copy(dir, static_input.path(), fp8_config(quant_method::compressed_tensors, true, true), fp8_made_input_scale);
    report("compressed-tensors (channel, static 1/32)", all_position_logits(static_input.path(), prompts), 0.05);
  }
}

// W8A16 steps (fp8_w16_rows, TROUPE_FP8_W16_ROWS, on either backend): x keeps its bits, so only the weights are
// rounded to FP8, and every reference checkpoint's next-token distributions must come out nearer the unquantized
// model's than W8A8's (weights and activations rounded) — the evidence that the path can serve in W8A8's place for
// steps of few rows. Every position is a one-row step here, so the whole run takes the path. Printed for the note.
TEST(fp8_quality, w8a16_steps_stay_nearer_the_unquantized_logits_than_w8a8) {
  struct restore {
    int before = fp8_w16_rows();
    ~restore() { fp8_w16_rows() = before; }
  } restore_setting;
  for (const std::string name : reference_names) {
    const fs::path dir = fs::path(TROUPE_TEST_DATA) / "reference" / name;
    const auto prompts = reference_prompts(dir);
    const int64_t vocab = model_config::from_dir(dir).vocab_size;
    const auto reference = all_position_logits(dir, prompts);
    const auto fp8 = resolve_quantization(std::nullopt, "fp8", dir);
    fp8_w16_rows() = 0;
    const quality w8a8 = compare(all_position_logits(dir, prompts, fp8), reference, vocab);
    fp8_w16_rows() = 1;
    const quality w8a16 = compare(all_position_logits(dir, prompts, fp8), reference, vocab);
    std::printf("[quality] %-18s W8A16 relative error %.4f, mean KL %.6f nats; W8A8 %.4f, %.6f (%lld positions)\n",
                name.c_str(), w8a16.relative_error, w8a16.mean_kl, w8a8.relative_error, w8a8.mean_kl,
                static_cast<long long>(w8a16.positions));
    EXPECT_GT(w8a16.relative_error, 0) << name;  // the weights really are in FP8
    EXPECT_LT(w8a16.relative_error, w8a8.relative_error) << name;
    EXPECT_LT(w8a16.mean_kl, w8a8.mean_kl) << name;
  }
}
