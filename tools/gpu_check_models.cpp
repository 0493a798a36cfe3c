// troupe_gpu_check, part 2: whole models (tests/data/reference/*, or a model of real size that
// scripts/gpu/make_large_reference.py makes) on the GPU against transformers' last-position logits, plus
// chunked prefill, one batch of all prompts, greedy and sampled continuations. The 4-bit references
// (<name>_awq, _gptq, _rtn: tests/support/quantized_reference.hpp) run the same checks with their weights
// packed on the GPU, against transformers on the dequantized weights (issue 12, item 1).

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "kernels/sampling_inputs.hpp"
#include "runtime/model/random_model.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/fp8_reference.hpp"
#include "tests/support/quantized_copy.hpp"
#include "tests/support/quantized_reference.hpp"
#include "tests/support/reference_steps.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace gpu_check {
namespace {

using troupe::testing::make_step;

// "4-bit awq g32, packed on the GPU": what the logits row of a 4-bit reference ran.
std::string four_bit_note(const quantization_config& q) {
  return "4-bit " + std::string(name(q.method)) +
         (q.method == quant_method::rtn ? " rounded at load" : " g" + std::to_string(q.group_size)) + ", packed on the GPU";
}

// Greedy continuations of 16 tokens of the first three prompts, decoded together: a batch of 3 replays
// the decode graph of 4 (with one padding row) where graphs are available.
// 16 greedy tokens for each of the first `count` prompts, decoded together (the decode graph of `count` or the next
// size up).
std::vector<std::vector<int32_t>> greedy_together(model& net, const std::vector<std::vector<int32_t>>& prompts,
                                                  size_t count) {
  std::vector<std::pair<std::vector<int32_t>, int32_t>> first;
  for (size_t p = 0; p < count; ++p) first.push_back({prompts[p], 0});
  std::vector<int32_t> token;
  net.forward_greedy(make_step(first), token);
  std::vector<std::vector<int32_t>> outs(count);
  for (size_t p = 0; p < count; ++p) outs[p].push_back(token.at(p));
  while (outs[0].size() < 16) {
    std::vector<std::pair<std::vector<int32_t>, int32_t>> step;
    for (size_t p = 0; p < count; ++p)
      step.push_back({{outs[p].back()}, static_cast<int32_t>(prompts[p].size() + outs[p].size() - 1)});
    net.forward_greedy(make_step(step), token);
    for (size_t p = 0; p < count; ++p) outs[p].push_back(token.at(p));
  }
  return outs;
}
std::vector<std::vector<int32_t>> greedy_three_together(model& net, const std::vector<std::vector<int32_t>>& prompts) {
  return greedy_together(net, prompts, 3);
}

} // namespace

double model_tolerance(dtype t, const model_config& config) {
  if (t != dtype::f32) return 3e-2;
  return config.quantization ? 1e-3 : 1e-4;
}

namespace {

// The f32 model rows force linear_fp8's exact "simt" path: cuBLASLt's FP8 GEMMs accumulate with less than f32's
// precision (the op rows measure 1.1e-4 to 1.3e-4 from exact sums, against 6e-8 for the simt kernel), noise some
// 500 times f32's. Each FP8 layer rounds its inputs again, and a value that noise moves across the middle of two
// codes moves by a whole code; with dynamic scales that cascades through the layers
// (scripts/gpu/make_fp8_references.py, noise_error), so the chosen path lands about a third of the FP8 error from
// exact sums in every prompt (the H100 run of 2026-12-05: 2e-2 to 8e-2 against tolerances of 2e-3). The exact
// path is what the CPU twin and torch compute, so it gets their tolerance; the chosen path, the cascade's bound:
// a whole FP8 error (torch's jittered draws moved the logits by 0.15 to 0.72 times it where a flipped code
// cascaded; a wrong scale or a lost row lands many times farther).
constexpr double kChosenPathFraction = 1.0;

// The largest of torch's FP8-vs-f32 errors of `variant` over the prompts, or 0 without reference_fp8.json.
double torch_fp8_error(const fs::path& dir, const char* variant) {
  if (!fs::exists(dir / troupe::testing::fp8_reference_file)) return 0;
  const auto e = troupe::testing::read_fp8_reference(dir, variant).torch_error;
  return e.empty() ? 0 : *std::max_element(e.begin(), e.end());
}

// bf16 against the f32 CPU twin with FP8 rounding inside: bf16 activations sit about 4e-3 from f32, so values near
// the middle of two codes round to the other one (some percent of them), a fresh draw of the FP8 rounding: the
// rule of the bf16 rows against torch's FP8 (1.5 times torch's FP8 error) on top of the bf16 model tolerance.
double bf16_fp8_tolerance(const model_config& config, double fp8_error) {
  return model_tolerance(dtype::bf16, config) + 1.5 * fp8_error;
}

} // namespace

void check_model(cuda_ops& gpu, const fs::path& dir, dtype t) {
  const std::string label = "model " + dir.filename().string();
  std::ifstream in(dir / "reference.json");
  const auto j = nlohmann::json::parse(in);
  const auto prompts = j.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto ref_logits = j.at("last_logits").get<std::vector<std::vector<float>>>();
  const auto ref_greedy = j.at("greedy").get<std::vector<std::vector<int32_t>>>();

  // A 4-bit reference loads with its quantization (rtn's from the folder name), its linear weights kept packed
  // on the GPU (ops::linear_int4) as the engine keeps them; its reference.json holds the logits of the
  // dequantized weights.
  const model_config config = troupe::testing::reference_config(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  model net(config, gpu,
            load_model_weights(config, gpu, t, checkpoint_weight_source(ckpt, config),
                               config.quantization ? checkpoint_int4_source(ckpt, config) : int4_source{}),
            t, troupe::testing::reference_limits());
  // A reference that says how far transformers' own bf16 run lands from fp32 (the real-size model,
  // scripts/gpu/make_large_reference.py) allows 1.5 times that: no worse than transformers in bf16.
  double tol = model_tolerance(t, config);
  if (t != dtype::f32 && j.contains("transformers_bf16_relative_error"))
    tol = std::max(tol, 1.5 * j.at("transformers_bf16_relative_error").get<double>());

  std::vector<float> logits;
  double worst = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    net.forward(make_step({{prompts[p], 0}}), logits);
    worst = std::max(worst, relative_error(logits, ref_logits[p]));
  }
  report(label, t, "last logits, " + std::to_string(prompts.size()) + " prompts", worst, tol,
         config.quantization ? four_bit_note(*config.quantization) : std::string());

  const auto& last = prompts.back();
  for (size_t begin = 0; begin < last.size(); begin += 23) {
    const size_t end = std::min(last.size(), begin + 23);
    net.forward(make_step({{std::vector<int32_t>(last.begin() + begin, last.begin() + end), int32_t(begin)}}), logits);
  }
  report(label, t, "chunked prefill (23) of " + std::to_string(last.size()), relative_error(logits, ref_logits.back()),
         tol);
  check_unsampled_steps(net, label, t, last, [](const std::vector<int32_t>& tokens, int32_t cached) {
    return make_step({{tokens, cached}});
  });

  std::vector<std::pair<std::vector<int32_t>, int32_t>> all;
  for (const auto& p : prompts) all.push_back({p, 0});
  net.forward(make_step(all), logits);
  worst = 0;
  const size_t vocab = static_cast<size_t>(config.vocab_size);
  for (size_t p = 0; p < prompts.size(); ++p)
    worst = std::max(worst, relative_error(std::span<const float>(logits).subspan(p * vocab, vocab), ref_logits[p]));
  report(label, t, "one batch of all prompts", worst, tol);

  // Greedy continuations decode one token a step; fp32 must reproduce them exactly.
  size_t same = 0, total = 0, equal_runs = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& prompt = prompts[p];
    // The argmax is taken on the device (model::forward_greedy, the engine's greedy path).
    std::vector<int32_t> token;
    net.forward_greedy(make_step({{prompt, 0}}), token);
    std::vector<int32_t> out{token.at(0)};
    while (out.size() < ref_greedy[p].size()) {
      net.forward_greedy(make_step({{{out.back()}, static_cast<int32_t>(prompt.size() + out.size() - 1)}}), token);
      out.push_back(token.at(0));
    }
    size_t prefix = 0;
    while (prefix < out.size() && out[prefix] == ref_greedy[p][prefix]) ++prefix;
    same += prefix;
    total += out.size();
    equal_runs += out == ref_greedy[p];
  }
  const std::string note = std::to_string(same) + "/" + std::to_string(total) + " tokens before divergence";
  if (t == dtype::f32) report(label, t, "greedy 32 tokens x" + std::to_string(prompts.size()), double(prompts.size() - equal_runs), 0.0, note);
  else
    inform(label, t, "greedy 32 tokens x" + std::to_string(prompts.size()),
           note + (j.contains("transformers_bf16_greedy_agreement")
                       ? " (transformers in bf16: " + std::to_string(j.at("transformers_bf16_greedy_agreement").get<int>()) +
                             ")"
                       : std::string()));

  // The first three prompts decoded together: a batch of 3 replays the graph of 4 with one padding row,
  // which must change nothing (fp32: the reference continuations exactly).
  if (prompts.size() >= 3) {
    const auto outs = greedy_three_together(net, prompts);
    size_t agree = 0, differ = 0;
    for (size_t p = 0; p < 3; ++p) {
      size_t prefix = 0;
      while (prefix < outs[p].size() && outs[p][prefix] == ref_greedy[p][prefix]) ++prefix;
      agree += prefix;
      differ += prefix < outs[p].size();
    }
    const std::string what = "greedy 16 tokens, 3 decoded together (graph of 4)";
    const std::string n = std::to_string(agree) + "/48 tokens before divergence";
    if (t == dtype::f32) report(label, t, what, double(differ), 0.0, n);
    else inform(label, t, what, n);
  }

  // Sampled continuations through model::forward_sample (the engine's sampled path: decode steps
  // replay their graph, then the sample op) against sample_cpu over the logits model::forward
  // downloads for the same step (recomputing a step rewrites its KV slots with the same values).
  sampling_params sp;
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.top_p = 0.9f;
  sp.repetition_penalty = 1.1f;
  size_t sampled_same = 0, sampled = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const auto& prompt = prompts[p];
    std::vector<int32_t> out, token;
    while (out.size() < 16) {
      const step_input in = out.empty() ? make_step({{prompt, 0}})
                                        : make_step({{{out.back()}, static_cast<int32_t>(prompt.size() + out.size() - 1)}});
      const sample_request r{&sp, prompt, out, 1000 + p, {}, {}};
      sampling_inputs si;
      si.build(std::span<const sample_request>(&r, 1), static_cast<int32_t>(vocab));
      net.forward_sample(in, si, token);
      net.forward(in, logits);
      sampled_same += token.at(0) == sample_cpu(logits, static_cast<int32_t>(vocab), std::span<const sample_request>(&r, 1))[0];
      ++sampled;
      out.push_back(token.at(0));
    }
  }
  report(label, t, "sampled 16 tokens x" + std::to_string(prompts.size()) + " (forward_sample)",
         double(sampled - sampled_same), 0.0,
         std::to_string(sampled_same) + "/" + std::to_string(sampled) + " as sample_cpu on the downloaded logits");
}

} // namespace gpu_check

namespace gpu_check {
namespace {

// A model on the GPU against its CPU twin over `prompts`: the last logits of each prompt; the last prompt in chunks
// of 23 (each chunk reads the cache the earlier ones wrote) against the CPU's whole; three prompts decoded together
// for 16 tokens (a batch of 3 replays the GPU's decode graph of 4). A greedy divergence fails only when
// `greedy_must_agree`.
void check_against_cpu_twin(model& on_gpu, model& on_cpu, const std::string& label, dtype t,
                            const std::vector<std::vector<int32_t>>& prompts, double tol, bool greedy_must_agree) {
  std::vector<float> got, want;
  double worst = 0;
  for (const auto& p : prompts) {
    on_gpu.forward(make_step({{p, 0}}), got);
    on_cpu.forward(make_step({{p, 0}}), want);
    worst = std::max(worst, relative_error(got, want));
  }
  report(label, t, "last logits, " + std::to_string(prompts.size()) + " prompts, against the CPU twin", worst, tol);

  const auto& last = prompts.back();
  for (size_t begin = 0; begin < last.size(); begin += 23) {
    const size_t end = std::min(last.size(), begin + 23);
    on_gpu.forward(make_step({{std::vector<int32_t>(last.begin() + begin, last.begin() + end), int32_t(begin)}}), got);
  }
  on_cpu.forward(make_step({{last, 0}}), want);
  report(label, t, "chunked prefill (23) of " + std::to_string(last.size()) + ", against the CPU whole",
         relative_error(got, want), tol);

  if (prompts.size() < 3) return;
  const auto gpu_outs = greedy_three_together(on_gpu, prompts), cpu_outs = greedy_three_together(on_cpu, prompts);
  size_t agree = 0, differ = 0;
  for (size_t p = 0; p < 3; ++p) {
    size_t prefix = 0;
    while (prefix < 16 && gpu_outs[p][prefix] == cpu_outs[p][prefix]) ++prefix;
    agree += prefix;
    differ += prefix < 16;
  }
  const std::string what = "greedy 16 tokens, 3 decoded together (graph of 4), against the CPU twin";
  const std::string n = std::to_string(agree) + "/48 tokens before divergence";
  if (greedy_must_agree) report(label, t, what, double(differ), 0.0, n);
  else inform(label, t, what, n);
}

// A random two-layer model whose linear layers' K (1,024 and 2,048) the large-batch GEMMs take, head_dim 128, with
// `quantization` (make_model_options says which) and `seed`.
make_model_options wide_random_model(const std::string& quantization, uint64_t seed) {
  make_model_options o;
  o.hidden_size = 1024;
  o.intermediate_size = 2048;
  o.num_layers = 2;
  o.num_heads = 8;
  o.num_kv_heads = 2;
  o.quantization = quantization;
  o.seed = seed;
  return o;
}

// Prompts of 1 to 230 tokens (the reference limits hold 256), token i of a prompt of n (i·a + n·b) % 250 + 3: prefill
// steps of each size the GEMMs tell apart.
std::vector<std::vector<int32_t>> prompts_of_each_size(int a, int b) {
  std::vector<std::vector<int32_t>> prompts;
  for (const int len : {20, 40, 1, 64, 65, 130, 230}) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (int i = 0; i < len; ++i) p[static_cast<size_t>(i)] = (i * a + len * b) % 250 + 3;
    prompts.push_back(std::move(p));
  }
  return prompts;
}

} // namespace

// The 4-bit kernels that the reference models' shapes never reach (their K of 64 is no multiple of 128): a random AWQ
// model made here with K of 1024 and 2048 (g128: the shared-memory GEMM splits K over blocks from 1024), in bf16 on the
// GPU against its f32 CPU twin, on each 4-bit path of a step of 17 to 512 rows: int4_settings().gemm 0 (the decode
// kernels, then dequantize + cuBLAS), -1 (the default, TROUPE_INT4_GEMM=auto: the shared-memory GEMM for 17 to 64
// rows, the decode graphs of 17-64 sequences included) and 1 (every step up to 512 rows), and the ring kernel's
// variants (int4_settings().ring; 1 the default) for steps of up to 32, and the wide kernel (int4_settings().wide) for
// steps of up to 8, alone and fused with silu_and_mul (int4_settings().silu), and in their lean form
// (int4_settings().lean), and the warpgroup-MMA GEMM (int4_settings().wgmma) above 48 rows (128-row tiles, and 256-row
// tiles above 128 rows, also overlapping its stages: the default since the eighteenth session) and on every step, also
// overlapping its stages.
// Prompts of 1 to 230 tokens make prefill steps of each size; the three-prompt decode replays
// the graph of 4.
void check_model_int4_paths(cuda_ops& gpu) {
  troupe::testing::temp_folder folder("gpu_check_int4");
  make_model_options o = wide_random_model("awq", 12);
  o.group_size = 128;
  write_random_model(o, folder.path());
  const model_config config = model_config::from_dir(folder.path());
  const checkpoint ckpt = checkpoint::open(folder.path());
  const auto prompts = prompts_of_each_size(37, 11);
  cpu_ops cpu;
  model on_cpu(config, cpu,
               load_model_weights(config, cpu, dtype::f32, checkpoint_weight_source(ckpt, config),
                                  checkpoint_int4_source(ckpt, config)),
               dtype::f32, troupe::testing::reference_limits());
  struct path {
    const char* name;
    int gemm, ring;
    bool wide = false;
    int silu = 2;
    bool lean = false;
    int wgmma = 0, wgmma_rows = 128;
    bool wgmma_overlap = false;
  };
  for (const path& p : {path{"gemm off, ring off", 0, 0}, {"gemm auto", -1, 1}, {"gemm all", 1, 1}, {"ring1", 0, 1},
                        {"ring2", 0, 2}, {"ring3", 0, 3}, {"ring4", -1, 4}, {"ring5", 0, 5}, {"wide", -1, 1, true, 0},
                        {"wide silu", -1, 1, true, 1}, {"wide silu tail", -1, 1, true, 2},
                        {"wide silu tail lean", -1, 1, true, 2, true}, {"wgmma", -1, 1, false, 2, false, 1},
                        {"wgmma all", 0, 1, false, 2, false, 2}, {"wgmma 256", -1, 1, false, 2, false, 1, 256},
                        {"wgmma 256 overlap lean", -1, 1, false, 2, true, 1, 256, true},
                        {"wgmma overlap all", 0, 1, false, 2, false, 2, 128, true}}) {
    // Set before the model exists: its decode graphs record the kernels in force when captured. The wide kernel on
    // every layer of one row tile (its own rule would leave this small model's layers to the ring kernel), without and
    // with gate/up and silu_and_mul in one kernel (int4_settings().silu; it goes where the wide kernel goes).
    const scoped_value<int> gemm(cuda::int4_settings().gemm, p.gemm);
    const scoped_value<int> ring(cuda::int4_settings().ring, p.ring);
    const scoped_value<bool> wide(cuda::int4_settings().wide, p.wide);
    const scoped_value<int64_t> everywhere(cuda::int4_settings().wide_min_blocks, p.wide ? 0 : -1);
    const scoped_value<int> silu(cuda::int4_settings().silu, p.silu);
    const scoped_value<bool> lean(cuda::int4_settings().lean, p.lean);
    const scoped_value<int> wgmma(cuda::int4_settings().wgmma, p.wgmma);
    const scoped_value<int> wgmma_rows(cuda::int4_settings().wgmma_rows, p.wgmma_rows);
    const scoped_value<bool> wgmma_overlap(cuda::int4_settings().wgmma_overlap, p.wgmma_overlap);
    model on_gpu(config, gpu,
                 load_model_weights(config, gpu, dtype::bf16, checkpoint_weight_source(ckpt, config),
                                    checkpoint_int4_source(ckpt, config)),
                 dtype::bf16, troupe::testing::reference_limits());
    on_gpu.warm_up();
    const std::string label = std::string("model random awq g128 K1024/2048 int4 ") + p.name;
    check_against_cpu_twin(on_gpu, on_cpu, label, dtype::bf16, prompts, model_tolerance(dtype::bf16, config), false);
    // Decode steps of one and two rows (the graphs of 1 and 2), a one-request server's steps, which the three-prompt
    // decode above does not reach.
    if (p.wide)
      for (const size_t count : {size_t{1}, size_t{2}}) {
        const auto gpu_outs = greedy_together(on_gpu, prompts, count), cpu_outs = greedy_together(on_cpu, prompts, count);
        size_t agree = 0;
        for (size_t q = 0; q < count; ++q) {
          size_t prefix = 0;
          while (prefix < 16 && gpu_outs[q][prefix] == cpu_outs[q][prefix]) ++prefix;
          agree += prefix;
        }
        inform(label, dtype::bf16, "greedy 16 tokens, " + std::to_string(count) + " decoded together, against the CPU twin",
               std::to_string(agree) + "/" + std::to_string(16 * count) + " tokens before divergence");
      }
  }
}

// FP8 weights' GEMM paths on a random compressed-tensors FP8 model (per-channel weight scales, dynamic activations)
// whose K (1,024 and 2,048, multiples of 128) the warpgroup-MMA GEMM takes (the reference models' K of 64 never reaches
// it), in bf16 against its f32 CPU twin: cuBLASLt's path (the default), the wgmma GEMM above 8 rows with 128- and
// 64-row tiles (fp8_settings().wgmma), the wgmma GEMM on every product, the decode graph of
// 4 included (its K splits inside the capture), and every one-row product with its quantization inside the GEMV
// (fp8_settings().qgemv 2: the one-token prompt and one request's decode), one row's gate/up and silu_and_mul as two
// ops ("two ops"; the default fuses them, fp8_settings().silu) and fused with qgemv on every product, and every
// one-row product as a block an output (fp8_settings().gemv_split; the default takes down_proj's long rows so).
// Prompts of 1 to 230 tokens make prefill steps of each size. Each FP8 layer rounds its inputs again, so the two
// backends' codes differ where a value sits near the middle of two (kChosenPathFraction): every path gets the default
// path's own error against the twin, doubled, or the bf16 model tolerance if larger.
void check_model_fp8_paths(cuda_ops& gpu) {
  troupe::testing::temp_folder folder("gpu_check_fp8_paths");
  make_model_options o = wide_random_model("compressed-tensors", 13);
  o.weight_strategy = "channel";
  write_random_model(o, folder.path());
  const model_config config = model_config::from_dir(folder.path());
  const checkpoint ckpt = checkpoint::open(folder.path());
  const auto prompts = prompts_of_each_size(41, 7);
  cpu_ops cpu;
  model on_cpu(config, cpu,
               load_model_weights(config, cpu, dtype::f32, checkpoint_weight_source(ckpt, config), {},
                                  checkpoint_fp8_source(ckpt, config)),
               dtype::f32, troupe::testing::reference_limits());
  struct path {
    const char* name;
    std::string forced;
    int wgmma, wgmma_rows;
    int qgemv = 0;
    int silu = -1;   // fp8_settings().silu (one row's gate/up and silu_and_mul in one kernel): 0 off, 1 on, -1 the default
    int split = -1;  // 1: every one-row product on the GEMV, as a block an output (fp8_settings().gemv, gemv_split);
                     // 0: no product as a block an output; -1 the default (down_proj's long rows)
    bool tma = false;  // the wgmma GEMM's TMA form (fp8_settings().wgmma_tma)
  };
  double tol = model_tolerance(dtype::bf16, config);
  for (const path& p : {path{"cublaslt", "", 0, 128}, {"wgmma", "", 1, 128}, {"wgmma 64-row tiles", "", 1, 64},
                        {"wgmma 256-row tiles", "", 1, 256}, {"wgmma tma", "", 1, 128, 0, -1, -1, true},
                        {"wgmma tma 256-row tiles", "", 1, 256, 0, -1, -1, true},
                        {"wgmma all", "wgmma", 1, 128}, {"qgemv", "", 0, 128, 2, 0, 0}, {"two ops", "", 0, 128, 0, 0, 0},
                        {"qgemv silu", "", 0, 128, 2, 1, 0}, {"gemv_split all", "", 0, 128, 0, 1, 1}}) {
    // Set before the model exists: its decode graphs record the path in force when captured.
    cuda::fp8_switches& fs = cuda::fp8_settings();
    const scoped_value<std::string> forced(fs.path, p.forced);
    const scoped_value<int> wgmma(fs.wgmma, p.wgmma);
    const scoped_value<int> wgmma_rows(fs.wgmma_rows, p.wgmma_rows);
    const scoped_value<bool> tma(fs.wgmma_tma, p.tma);
    const scoped_value<int> qgemv(fs.qgemv, p.qgemv);
    const scoped_value<bool> silu(fs.silu, p.silu < 0 ? fs.silu : p.silu == 1);
    const scoped_value<int> gemv(fs.gemv, p.split == 1 ? 1 : fs.gemv);
    const scoped_value<int64_t> split(fs.gemv_split, p.split < 0 ? fs.gemv_split : p.split == 1 ? 16 : 0);
    model on_gpu(config, gpu,
                 load_model_weights(config, gpu, dtype::bf16, checkpoint_weight_source(ckpt, config), {},
                                    checkpoint_fp8_source(ckpt, config)),
                 dtype::bf16, troupe::testing::reference_limits());
    on_gpu.warm_up();
    if (p.forced.empty() && p.wgmma == 0) {  // cuBLASLt on every product sets the bar
      std::vector<float> got, want;
      double worst = 0;
      for (const auto& q : prompts) {
        on_gpu.forward(make_step({{q, 0}}), got);
        on_cpu.forward(make_step({{q, 0}}), want);
        worst = std::max(worst, relative_error(got, want));
      }
      tol = std::max(tol, 2 * worst);
    }
    const std::string label = std::string("model random fp8 channel K1024/2048 ") + p.name;
    check_against_cpu_twin(on_gpu, on_cpu, label, dtype::bf16, prompts, tol, false);
    if (p.wgmma == 0) {  // one request's decode steps (the graph of 1), which the three-prompt decode does not reach
      const auto gpu_outs = greedy_together(on_gpu, prompts, 1), cpu_outs = greedy_together(on_cpu, prompts, 1);
      size_t agree = 0;
      while (agree < 16 && gpu_outs[0][agree] == cpu_outs[0][agree]) ++agree;
      inform(label, dtype::bf16, "greedy 16 tokens, one request, against the CPU twin",
             std::to_string(agree) + "/16 tokens before divergence");
    }
  }
}

void check_model_fp8_kv(cuda_ops& gpu, const fs::path& dir, dtype t) {
  std::ifstream in(dir / "reference.json");
  const auto prompts = nlohmann::json::parse(in).at("prompts").get<std::vector<std::vector<int32_t>>>();
  const model_config config = troupe::testing::reference_config(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  cpu_ops cpu;
  // e4m3 with the checkpoint's scales (1.0 where it has none, as the engine reads them), e5m2 with others.
  for (const dtype kv : {dtype::f8_e4m3, dtype::f8_e5m2}) {
    const std::string label = "model " + dir.filename().string() + (kv == dtype::f8_e4m3 ? " kv=e4m3" : " kv=e5m2");
    model_limits limits = troupe::testing::reference_limits();
    limits.kv_cache_type = kv;
    kv_cache_scales scales = checkpoint_kv_cache_scales(ckpt, config);
    if (kv == dtype::f8_e5m2) {
      scales.k.assign(scales.k.size(), 0.37f);
      scales.v.assign(scales.v.size(), 1.9f);
    }
    limits.k_scales = scales.k;
    limits.v_scales = scales.v;
    model on_gpu(config, gpu, load_model_weights(config, gpu, t, checkpoint_weight_source(ckpt, config)), t, limits);
    model on_cpu(config, cpu, load_model_weights(config, cpu, dtype::f32, checkpoint_weight_source(ckpt, config)),
                 dtype::f32, limits);
    // f32: the two backends' q/k/v differ by rounding only, but where a value sits that close to the middle
    // of two FP8 codes the caches differ by a code (1/16 of the value in e4m3), hence 1e-3 rather than 1e-4.
    // bf16: e5m2 keeps one mantissa bit fewer than e4m3, so twice torch's e4m3 error.
    const double kv_error = torch_fp8_error(dir, "fp8_kv") * (kv == dtype::f8_e5m2 ? 2 : 1);
    const double tol = t == dtype::f32 ? 1e-3 : bf16_fp8_tolerance(config, kv_error);
    check_against_cpu_twin(on_gpu, on_cpu, label, t, prompts, tol, t == dtype::f32);
  }
}

void check_model_fp8_weights(cuda_ops& gpu, const fs::path& dir, dtype t) {
  std::ifstream in(dir / "reference.json");
  const auto prompts = nlohmann::json::parse(in).at("prompts").get<std::vector<std::vector<int32_t>>>();
  cpu_ops cpu;
  // --quantization fp8 on the reference's own weights, and a compressed-tensors copy of them with per-tensor
  // scales and static activations (each layer's input_scale made-up but the same on both backends).
  troupe::testing::temp_folder copy("gpu_check_fp8");
  troupe::testing::write_fp8_copy(dir, copy.path(),
                                  troupe::testing::fp8_config(quant_method::compressed_tensors, false, true), 0.05f);
  // Each also with the FP8 layers' inputs quantized by the kernel before them (TROUPE_FP8_FUSED=1, read as a model is
  // made: add_rms_norm_fp8, silu_and_mul_fp8, linear_fp8_quantized on both backends).
  for (const auto& [static_copy, fused] : {std::pair{false, false}, {true, false}, {false, true}, {true, true}}) {
    const fs::path from = static_copy ? copy.path() : dir;
    model_config config = model_config::from_dir(from);
    if (!static_copy) config.quantization = resolve_quantization(config.quantization, "fp8", from);
    const std::string label = "model " + dir.filename().string() + (static_copy ? " fp8 ct static" : " fp8 weights") +
                              (fused ? " (inputs quantized before)" : "");
    if (fused) ::setenv("TROUPE_FP8_FUSED", "1", 1);
    struct unset_on_exit {
      ~unset_on_exit() { ::unsetenv("TROUPE_FP8_FUSED"); }
    } unset;
    const checkpoint ckpt = checkpoint::open(from);
    const model_limits limits = troupe::testing::reference_limits();
    // f32 on the exact path (kChosenPathFraction says why), bf16 on the path the engine takes; forced before the
    // model exists, as its decode graphs record the path in force when captured.
    const scoped_value<std::string> path(cuda::fp8_settings().path, t == dtype::f32 ? "simt" : cuda::fp8_settings().path);
    model on_gpu(config, gpu,
                 load_model_weights(config, gpu, t, checkpoint_weight_source(ckpt, config), {},
                                    checkpoint_fp8_source(ckpt, config)),
                 t, limits);
    on_gpu.warm_up();  // as the engine does (check_model_fp8_torch says why)
    model on_cpu(config, cpu,
                 load_model_weights(config, cpu, dtype::f32, checkpoint_weight_source(ckpt, config), {},
                                    checkpoint_fp8_source(ckpt, config)),
                 dtype::f32, limits);
    // f32: both backends quantize each token's activations, which differ by rounding only; where one sits that
    // close to the middle of two codes the backends take neighbouring codes (1/16 of the value), at every linear
    // layer: 2e-3 rather than 1e-4. A flipped code may flip a close greedy choice: the tokens are informative.
    // With dynamic scales one such code early in a long prompt moves every later code, and the logits by up to
    // about the FP8 error (tests/support/fp8_reference.hpp): where torch measured that (reference_fp8.json's
    // noise_error), the prompts it reaches get its margin.
    // bf16: per-tensor scales (the static copy) round coarser than per-channel ones, but within the same FP8 error.
    double tol = t == dtype::f32 ? 2e-3 : bf16_fp8_tolerance(config, torch_fp8_error(dir, "fp8_weights"));
    if (t == dtype::f32 && !static_copy && fs::exists(dir / troupe::testing::fp8_reference_file)) {
      const auto noise = troupe::testing::read_fp8_reference(dir, "fp8_weights").noise_error;
      tol = std::max(tol, troupe::testing::fp8_reference_noise_margin * *std::max_element(noise.begin(), noise.end()));
    }
    check_against_cpu_twin(on_gpu, on_cpu, t == dtype::f32 ? label + " (simt)" : label, t, prompts, tol, false);
  }
}

void check_model_fp8_torch(cuda_ops& gpu, const fs::path& dir, dtype t, bool kv, bool weights) {
  using troupe::testing::fp8_reference;
  const std::string label = "model " + dir.filename().string();
  if (!fs::exists(dir / troupe::testing::fp8_reference_file)) {
    report(label, t, "torch FP8 references", INFINITY, 0,
           "no " + std::string(troupe::testing::fp8_reference_file) + ": run scripts/gpu/make_fp8_references.py");
    return;
  }
  for (const troupe::testing::fp8_variant& v : troupe::testing::fp8_variants) {
    if (!(v.kv && kv) && !(v.weights && weights)) continue;
    const fp8_reference ref = troupe::testing::read_fp8_reference(dir, v.key);
    // f32 with FP8 weights runs twice: on the exact path with the CPU test's rule (fp8_reference::tolerance), and
    // on the path the engine chooses within a whole FP8 error (kChosenPathFraction says why). bf16 activations
    // sit about 4e-3 from f32, so a value rounds to another FP8 code than in f32 where it is that close to the
    // middle of two codes (some percent of them): the rounding is drawn anew, and two such draws land about √2
    // times the FP8 error apart; on top, what the bf16 check against transformers allows. Each row shows the
    // prompt that comes nearest its tolerance.
    for (const bool exact : {true, false}) {
      if (exact && (t != dtype::f32 || !v.weights)) continue;
      // The path is forced before the model exists: the decode graphs record the path in force when captured.
      const scoped_value<std::string> path(cuda::fp8_settings().path, exact ? "simt" : cuda::fp8_settings().path);
      const auto net = troupe::testing::fp8_variant_model(dir, gpu, t, v);
      // As the engine does before serving: a one-token prompt is a decode step, and its graph would otherwise be
      // the first thing to need linear_fp8's scratch (which cannot grow inside a capture).
      net->warm_up();
      const auto logits = troupe::testing::last_logits(*net, ref.prompts);
      const bool chosen_f32 = t == dtype::f32 && v.weights && !exact;
      double worst_error = 0, worst_tolerance = 1, worst_ratio = -1;
      for (size_t p = 0; p < ref.prompts.size(); ++p) {
        const double error = relative_error(logits[p], ref.last_logits[p]);
        const double tol = chosen_f32          ? std::max(ref.tolerance(p), kChosenPathFraction * ref.torch_error[p])
                           : t == dtype::f32 ? ref.tolerance(p)
                                             : 1.5 * ref.torch_error[p] + model_tolerance(t, net->config());
        if (!(error / tol <= worst_ratio)) worst_ratio = error / tol, worst_error = error, worst_tolerance = tol;
      }
      const std::string what = std::string(exact ? "(simt) " : chosen_f32 ? "(chosen path) " : "") + "last logits, " +
                               std::to_string(ref.prompts.size()) + " prompts, against torch's FP8";
      report(label + " " + v.key, t, what, worst_error, worst_tolerance,
             "torch's own fp8 vs f32: up to " + std::to_string(*std::max_element(ref.torch_error.begin(), ref.torch_error.end())));
    }
  }
}

} // namespace gpu_check
