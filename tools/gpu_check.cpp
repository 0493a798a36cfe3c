// troupe_gpu_check: checks the CUDA backend. NEEDS A GPU (scripts/gpu/check.sh runs it there).
//
// 1. Every CUDA op against its CPU twin over random shapes and dtypes: the same inputs (rounded to the
//    dtype) go to both; the CPU computes in fp32. Outputs are poisoned with NaN first, so an element the
//    kernel never writes fails. Error is ‖gpu − cpu‖ / ‖cpu‖ over the whole output.
// 2. Whole models (tests/data/reference/*) on the GPU against transformers' last-position logits, in
//    fp32 and bf16, plus chunked prefill, one batch of all prompts, greedy and sampled continuations.
//    The same for a model of real size (Qwen2.5-7B shapes) that scripts/gpu/make_large_reference.py
//    makes on the GPU machine (scripts/gpu/check.sh with LARGE=1; --no-ops --data that folder).
// 3. The sampling op against sample_cpu (tools/gpu_check_sampling.cpp).
// 4. A few timings at Qwen2.5-7B shapes (informative, no pass/fail).
// 5. The engine torture test's plans on the CUDA backend for --torture-seconds (default 60; 0: none):
//    tools/gpu_check_torture.cpp.
//
// Prints a table (op, dtype, shapes, error, tolerance, pass) and exits 1 when a check fails.
//
//   troupe_gpu_check [--data DIR] [--seed N] [--no-ops] [--no-models] [--no-timing] [--torture-seconds S]
//                    [--sampling | --sampling-quick | --sampling-timing | --torture]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "kernels/model.hpp"
#include "kernels/model_loader.hpp"
#include "kernels/sampling_inputs.hpp"
#include "runtime/model/safetensors.hpp"
#include "tests/support/reference_steps.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace gpu_check {
namespace {

struct result_row {
  std::string op, type, shape;
  double error = 0, tolerance = 0;
  bool pass = false;
  bool informative = false;  // a timing or an agreement count: never fails
  std::string note;
};

std::vector<result_row> results;

} // namespace

std::mt19937_64 rng;

void report(std::string op, dtype t, std::string shape, double error, double tolerance, std::string note) {
  const bool pass = std::isfinite(error) && error <= tolerance;
  results.push_back({std::move(op), std::string(name(t)), std::move(shape), error, tolerance, pass, false, std::move(note)});
}
void inform(std::string op, dtype t, std::string shape, std::string note) {
  results.push_back({std::move(op), std::string(name(t)), std::move(shape), 0, 0, true, true, std::move(note)});
}

double time_ms(cuda_ops& gpu, const std::function<void()>& f, int reps) {
  f();
  gpu.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    gpu.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::nth_element(ms.begin(), ms.begin() + reps / 2, ms.end());
  return ms[reps / 2];
}

double tolerance_for(dtype t) { return t == dtype::f32 ? 1e-4 : 1e-2; }

// ‖a − b‖ / ‖b‖; infinity when a holds a NaN or infinity.
double relative_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

} // namespace gpu_check

using namespace gpu_check;

namespace {

std::vector<float> random_values(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The values as the GPU stores them in `t`.
std::vector<float> rounded(std::vector<float> v, dtype t) {
  for (auto& x : v) {
    if (t == dtype::bf16) x = bf16_to_f32(f32_to_bf16(x));
    else if (t == dtype::f16) x = f16_to_f32(f32_to_f16(x));
  }
  return v;
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t x : d) s += (s.empty() ? "" : "x") + std::to_string(x);
  return s;
}

// One tensor on both backends with equal contents: fp32 on the CPU, `type` on the GPU.
struct twin {
  device_buffer cpu, gpu;
  dtype type;
  std::vector<int64_t> shape;
};

class checker {
public:
  checker() = default;
  cpu_ops cpu;
  cuda_ops gpu;

  twin make(dtype t, std::initializer_list<int64_t> shape, const std::vector<float>& values) {
    twin w{cpu.alloc(dtype::f32, shape), gpu.alloc(t, shape), t, shape};
    const std::vector<float> r = rounded(values, t);
    cpu.upload(w.cpu, r);
    gpu.upload(w.gpu, r);
    return w;
  }
  twin random(dtype t, std::initializer_list<int64_t> shape, float scale = 1.0f) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return make(t, shape, random_values(static_cast<size_t>(n), scale));
  }
  // Integer tensors (i32 or i64) hold the same values on both.
  template <class I> twin ints(std::initializer_list<int64_t> shape, const std::vector<I>& values) {
    const dtype t = sizeof(I) == 4 ? dtype::i32 : dtype::i64;
    twin w{cpu.alloc(t, shape), gpu.alloc(t, shape), t, shape};
    cpu.upload_raw(w.cpu, values.data());
    gpu.upload_raw(w.gpu, values.data());
    return w;
  }
  void poison(const twin& w) {
    gpu.upload(w.gpu, std::vector<float>(static_cast<size_t>(w.gpu.get().numel()), NAN));
  }
  std::vector<float> read_gpu(const twin& w) {
    std::vector<float> v(static_cast<size_t>(w.gpu.get().numel()));
    gpu.download(v, w.gpu);
    return v;
  }
  std::vector<float> read_cpu(const twin& w) {
    std::vector<float> v(static_cast<size_t>(w.cpu.get().numel()));
    cpu.download(v, w.cpu);
    return v;
  }
  double error(const twin& w) { return relative_error(read_gpu(w), read_cpu(w)); }
};

void check_rows(checker& c, dtype t) {
  for (auto [vocab, hidden, tokens] : {std::tuple{1000, 64, 1}, {1000, 3584, 37}, {500, 50, 9}}) {
    auto table = c.random(t, {vocab, hidden});
    std::vector<int32_t> ids(tokens);
    for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
    auto idt = c.ints<int32_t>({tokens}, ids);
    auto out = c.random(t, {tokens, hidden});
    c.poison(out);
    c.cpu.embedding(idt.cpu, table.cpu, out.cpu);
    c.gpu.embedding(idt.gpu, table.gpu, out.gpu);
    report("embedding", t, "V,H,T=" + dims({vocab, hidden, tokens}), c.error(out), 0.0);

    auto x = c.random(t, {vocab, hidden});
    c.poison(out);
    c.cpu.gather_rows(x.cpu, idt.cpu, out.cpu);
    c.gpu.gather_rows(x.gpu, idt.gpu, out.gpu);
    report("gather_rows", t, "T,H,R=" + dims({vocab, hidden, tokens}), c.error(out), 0.0);
  }
}

void check_norms(checker& c, dtype t) {
  for (auto [rows, hidden] : {std::pair{1, 64}, {33, 3584}, {5, 100}, {256, 4096}}) {
    auto x = c.random(t, {rows, hidden});
    auto w = c.random(t, {hidden}, 0.5f);
    auto out = c.random(t, {rows, hidden});
    c.poison(out);
    c.cpu.rms_norm(x.cpu, w.cpu, 1e-6f, out.cpu);
    c.gpu.rms_norm(x.gpu, w.gpu, 1e-6f, out.gpu);
    report("rms_norm", t, "T,H=" + dims({rows, hidden}), c.error(out), tolerance_for(t));

    auto res = c.random(t, {rows, hidden}, 4.0f);
    c.cpu.add_rms_norm(x.cpu, res.cpu, w.cpu, 1e-5f);
    c.gpu.add_rms_norm(x.gpu, res.gpu, w.gpu, 1e-5f);
    const double e = std::max(c.error(x), c.error(res));
    report("add_rms_norm", t, "T,H=" + dims({rows, hidden}), e, tolerance_for(t));
  }
}

void check_linear(checker& c, dtype t) {
  struct shape {
    int64_t rows, k, n;
    bool bias, accumulate;
    dtype out;
  };
  const std::vector<shape> shapes = {
      {1, 64, 96, false, false, t},        {7, 576, 1000, true, false, t},  {64, 3584, 512, false, false, t},
      {300, 100, 130, true, false, t},     {5, 256, 384, false, true, t},   {33, 512, 1234, false, false, dtype::f32},
      {256, 3584, 4608, true, false, t},
  };
  for (const shape& s : shapes) {
    auto x = c.random(t, {s.rows, s.k});
    auto w = c.random(t, {s.n, s.k}, 1.0f / std::sqrt(float(s.k)));
    twin bias{};
    if (s.bias) bias = c.random(s.out, {s.n});
    auto out = c.random(s.out, {s.rows, s.n});
    if (!s.accumulate) c.poison(out);
    c.cpu.linear(x.cpu, w.cpu, s.bias ? bias.cpu.get() : tensor{}, out.cpu, s.accumulate);
    c.gpu.linear(x.gpu, w.gpu, s.bias ? bias.gpu.get() : tensor{}, out.gpu, s.accumulate);
    std::string what = "T,K,N=" + dims({s.rows, s.k, s.n});
    if (s.bias) what += " +bias";
    if (s.accumulate) what += " +=";
    if (s.out != t) what += " ->" + std::string(name(s.out));
    report("linear", t, what, c.error(out), tolerance_for(t));
  }
}

void check_silu(checker& c, dtype t) {
  for (auto [rows, inter] : {std::pair{1, 64}, {17, 18944}, {3, 100}}) {
    auto x = c.random(t, {rows, 2 * inter}, 2.0f);
    auto out = c.random(t, {rows, inter});
    c.poison(out);
    c.cpu.silu_and_mul(x.cpu, out.cpu);
    c.gpu.silu_and_mul(x.gpu, out.gpu);
    report("silu_and_mul", t, "T,I=" + dims({rows, inter}), c.error(out), tolerance_for(t));
  }
}

std::vector<float> cos_sin_table(int64_t max_pos, int64_t d, double theta) {
  std::vector<float> v(static_cast<size_t>(max_pos * d));
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = double(p) * std::pow(theta, -2.0 * double(i) / double(d));
      v[p * d + i] = static_cast<float>(std::cos(a));
      v[p * d + d / 2 + i] = static_cast<float>(std::sin(a));
    }
  return v;
}

void check_rope(checker& c, dtype t) {
  struct shape {
    int32_t heads, kv_heads, d, block_size;
    int64_t tokens;
  };
  for (const shape& s : {shape{4, 1, 16, 16, 21}, {28, 4, 128, 16, 67}, {8, 8, 64, 32, 5}, {4, 2, 80, 16, 9}}) {
    const int64_t max_pos = 4096, num_blocks = 64, width = (s.heads + 2 * s.kv_heads) * int64_t(s.d);
    auto qkv = c.random(t, {s.tokens, width});
    auto cos_sin = c.make(dtype::f32, {max_pos, s.d}, cos_sin_table(max_pos, s.d, 1e6));
    std::vector<int32_t> positions(s.tokens);
    for (auto& p : positions) p = static_cast<int32_t>(rng() % max_pos);
    std::vector<int64_t> slots(num_blocks * s.block_size);
    std::iota(slots.begin(), slots.end(), 0);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(s.tokens);
    slots[s.tokens / 2] = -1;  // a token whose K/V is not stored
    auto pos_t = c.ints<int32_t>({s.tokens}, positions);
    auto slot_t = c.ints<int64_t>({s.tokens}, slots);
    auto kc = c.random(t, {num_blocks, s.block_size, s.kv_heads, s.d});
    auto vc = c.random(t, {num_blocks, s.block_size, s.kv_heads, s.d});
    const attention_shape shape{s.heads, s.kv_heads, s.d, s.block_size, 1.0f};
    c.cpu.rope_write_kv(qkv.cpu, pos_t.cpu, cos_sin.cpu, slot_t.cpu, kc.cpu, vc.cpu, shape);
    c.gpu.rope_write_kv(qkv.gpu, pos_t.gpu, cos_sin.gpu, slot_t.gpu, kc.gpu, vc.gpu, shape);
    const double e = std::max({c.error(qkv), c.error(kc), c.error(vc)});
    report("rope_write_kv", t,
           "T=" + std::to_string(s.tokens) + " nH,nKV,D=" + dims({s.heads, s.kv_heads, s.d}) + " bs=" +
               std::to_string(s.block_size),
           e, tolerance_for(t));
  }
}

// bf16/f16 attention on the CUDA-core kernel (on) or the tensor cores (off).
void set_simt_attention(bool on) { cuda::attention_settings().simt = on; }

// One attention case: sequences given as (new tokens, context length after the step).
struct attention_case {
  std::string name;
  int32_t heads, kv_heads, d, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;
  int32_t window = 0;
};

void check_attention(checker& c, dtype t, const attention_case& ac) {
  const int32_t bs = ac.block_size;
  int64_t tokens = 0, blocks_needed = 0;
  int32_t max_q = 0, max_len = 0, max_blocks = 0;
  for (auto [q, len] : ac.seqs) {
    tokens += q;
    const int32_t b = (len + bs - 1) / bs;
    blocks_needed += b;
    max_q = std::max(max_q, q);
    max_len = std::max(max_len, len);
    max_blocks = std::max(max_blocks, b);
  }
  max_blocks += 2;  // padding entries the kernel must never follow
  const int64_t num_blocks = blocks_needed + 7;
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<int32_t> query_start{0}, seq_lens, tables;
  size_t next = 0;
  for (auto [q, len] : ac.seqs) {
    query_start.push_back(query_start.back() + q);
    seq_lens.push_back(len);
    const int32_t b = (len + bs - 1) / bs;
    for (int32_t i = 0; i < max_blocks; ++i)
      tables.push_back(i < b ? free_blocks[next++] : static_cast<int32_t>(rng() % num_blocks));
  }
  const int32_t num_seqs = static_cast<int32_t>(ac.seqs.size());
  const int64_t width = (ac.heads + 2 * ac.kv_heads) * int64_t(ac.d);
  auto qkv = c.random(t, {tokens, width});
  auto kc = c.random(t, {num_blocks, bs, ac.kv_heads, ac.d});
  auto vc = c.random(t, {num_blocks, bs, ac.kv_heads, ac.d});
  auto qs = c.ints<int32_t>({num_seqs + 1}, query_start);
  auto sl = c.ints<int32_t>({num_seqs}, seq_lens);
  auto bt = c.ints<int32_t>({num_seqs, max_blocks}, tables);
  auto out = c.random(t, {tokens, ac.heads * int64_t(ac.d)});
  c.poison(out);
  const attention_shape shape{ac.heads, ac.kv_heads, ac.d, bs, 1.0f / std::sqrt(float(ac.d))};
  attention_metadata m;
  m.num_seqs = num_seqs;
  m.max_query_len = max_q;
  m.max_seq_len = max_len;
  m.sliding_window = ac.window;
  m.query_start = qs.cpu;
  m.seq_lens = sl.cpu;
  m.block_tables = bt.cpu;
  c.cpu.paged_attention(qkv.cpu, kc.cpu, vc.cpu, m, shape, out.cpu);
  m.query_start = qs.gpu;
  m.seq_lens = sl.gpu;
  m.block_tables = bt.gpu;
  c.gpu.paged_attention(qkv.gpu, kc.gpu, vc.gpu, m, shape, out.gpu);
  std::string what = ac.name + " nH,nKV,D=" + dims({ac.heads, ac.kv_heads, ac.d}) + " bs=" + std::to_string(bs) +
                     " S=" + std::to_string(num_seqs) + " T=" + std::to_string(tokens) + " ctx<=" + std::to_string(max_len);
  if (ac.window) what += " win=" + std::to_string(ac.window);
  report("paged_attention", t, what, c.error(out), tolerance_for(t));
}

void check_attention_all(checker& c, dtype t) {
  const std::vector<attention_case> cases = {
      {"decode", 28, 4, 128, 16, {{1, 1}, {1, 17}, {1, 300}, {1, 64}, {1, 1000}}},
      {"prefill", 8, 8, 64, 16, {{50, 50}, {1, 1}, {129, 129}}},
      {"chunked", 16, 2, 128, 16, {{40, 300}, {23, 71}, {1, 77}, {64, 64}}},
      {"window", 8, 2, 64, 32, {{70, 200}, {1, 150}, {100, 100}}, 37},
      {"d256", 4, 1, 256, 16, {{33, 90}, {1, 500}}},
      {"tiny", 4, 1, 16, 16, {{133, 133}, {1, 134}, {23, 46}}},
      {"d32win", 4, 2, 32, 8, {{133, 133}, {1, 134}}, 48},
      {"d80", 4, 2, 80, 16, {{17, 40}, {1, 33}}},
      {"d96", 12, 2, 96, 16, {{70, 90}, {1, 33}}},
      {"two_new", 8, 2, 128, 16, {{2, 100}, {2, 513}, {1, 7}}},
      {"long", 28, 4, 128, 16, {{300, 900}, {1, 2000}, {1, 3000}}},
      {"long_window", 16, 16, 64, 16, {{200, 700}, {1, 1500}}, 300},
      {"group16", 32, 2, 64, 32, {{1, 400}, {1, 90}}},
  };
  // Each case on the tensor-core kernel (bf16/f16 with head_dim 64-128) and on the CUDA-core kernel.
  for (const bool simt : {false, true}) {
    set_simt_attention(simt);
    for (auto ac : cases) {
      if (simt) ac.name += " (cuda cores)";
      check_attention(c, t, ac);
    }
  }
  set_simt_attention(false);
}

void check_argmax(checker& c) {
  for (auto [rows, vocab] : {std::pair{1, 384}, {7, 152064}, {256, 32000}}) {
    auto logits = c.random(dtype::f32, {rows, vocab});
    auto out = c.ints<int32_t>({rows}, std::vector<int32_t>(rows, -1));
    c.gpu.argmax(logits.gpu, out.gpu);
    const auto got = c.read_gpu(out), values = c.read_cpu(logits);
    int wrong = 0;
    for (int r = 0; r < rows; ++r) {
      const auto row = std::span<const float>(values).subspan(size_t(r) * vocab, vocab);
      wrong += int(got[r]) != int(std::max_element(row.begin(), row.end()) - row.begin());
    }
    report("argmax", dtype::f32, "R,V=" + dims({rows, vocab}), wrong, 0.0, "rows wrong");
  }
}

// --- whole models against transformers ---

constexpr int32_t block_size = troupe::testing::reference_block_size;
constexpr int64_t max_len = troupe::testing::reference_max_len;
using troupe::testing::make_step;

void check_model(cuda_ops& gpu, const fs::path& dir, dtype t) {
  const std::string label = "model " + dir.filename().string();
  std::ifstream in(dir / "reference.json");
  const auto j = nlohmann::json::parse(in);
  const auto prompts = j.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto ref_logits = j.at("last_logits").get<std::vector<std::vector<float>>>();
  const auto ref_greedy = j.at("greedy").get<std::vector<std::vector<int32_t>>>();

  const model_config config = model_config::from_dir(dir);
  const checkpoint ckpt = checkpoint::open(dir);
  model_limits limits;
  limits.max_num_tokens = max_len * 4;
  limits.max_num_seqs = 8;
  limits.max_model_len = max_len;
  limits.block_size = block_size;
  limits.num_blocks = 8 * max_len / block_size;
  model net(config, gpu, load_model_weights(config, gpu, t, checkpoint_weight_source(ckpt, config)), t, limits);
  // fp32 must agree as the CPU does (1e-4); bf16 weights and activations land near 1e-2 on the small
  // models. A reference that says how far transformers' own bf16 run lands from fp32 (the real-size
  // model, scripts/gpu/make_large_reference.py) allows 1.5 times that: no worse than transformers in bf16.
  double tol = t == dtype::f32 ? 1e-4 : 3e-2;
  if (t != dtype::f32 && j.contains("transformers_bf16_relative_error"))
    tol = std::max(tol, 1.5 * j.at("transformers_bf16_relative_error").get<double>());

  std::vector<float> logits;
  double worst = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    net.forward(make_step({{prompts[p], 0}}), logits);
    worst = std::max(worst, relative_error(logits, ref_logits[p]));
  }
  report(label, t, "last logits, " + std::to_string(prompts.size()) + " prompts", worst, tol);

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
    std::vector<std::pair<std::vector<int32_t>, int32_t>> first;
    for (size_t p = 0; p < 3; ++p) first.push_back({prompts[p], 0});
    std::vector<int32_t> token;
    net.forward_greedy(make_step(first), token);
    std::vector<std::vector<int32_t>> outs(3);
    for (size_t p = 0; p < 3; ++p) outs[p].push_back(token.at(p));
    while (outs[0].size() < 16) {
      std::vector<std::pair<std::vector<int32_t>, int32_t>> step;
      for (size_t p = 0; p < 3; ++p)
        step.push_back({{outs[p].back()}, static_cast<int32_t>(prompts[p].size() + outs[p].size() - 1)});
      net.forward_greedy(make_step(step), token);
      for (size_t p = 0; p < 3; ++p) outs[p].push_back(token.at(p));
    }
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
      const sample_request r{&sp, prompt, out, 1000 + p, {}};
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

// --- timings at Qwen2.5-7B shapes (informative) ---

// Timing inputs are random, never zeros (zeros can run faster than real data).
void fill(cuda_ops& gpu, const tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  uint64_t x = rng();
  for (auto& f : v) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    f = static_cast<float>(static_cast<int64_t>(x >> 40) - (int64_t{1} << 23)) / float(1 << 23);
  }
  gpu.upload(t, v);
}

void timings(cuda_ops& gpu) {
  const dtype t = dtype::bf16;
  char buf[160];
  // Decode attention: 256 sequences of 640 context, 28 query / 4 KV heads of 128, blocks of 16.
  {
    const int32_t seqs = 256, ctx = 640, bs = 16, nh = 28, nkv = 4, d = 128, mb = ctx / bs;
    auto qkv = gpu.alloc(t, {seqs, (nh + 2 * nkv) * d});
    auto kc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto vc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto out = gpu.alloc(t, {seqs, nh * d});
    for (const tensor* b : {&qkv.get(), &kc.get(), &vc.get()}) fill(gpu, *b);
    std::vector<int32_t> qs(seqs + 1), sl(seqs, ctx), bt(seqs * mb);
    std::iota(qs.begin(), qs.end(), 0);
    std::iota(bt.begin(), bt.end(), 0);
    auto qs_t = gpu.alloc(dtype::i32, {seqs + 1}), sl_t = gpu.alloc(dtype::i32, {seqs}), bt_t = gpu.alloc(dtype::i32, {seqs, mb});
    gpu.upload_raw(qs_t, qs.data());
    gpu.upload_raw(sl_t, sl.data());
    gpu.upload_raw(bt_t, bt.data());
    attention_metadata m{qs_t, sl_t, bt_t, seqs, 1, ctx, 0};
    const attention_shape s{nh, nkv, d, bs, 0.088f};
    for (const bool simt : {false, true}) {
      set_simt_attention(simt);
      const double ms = time_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
      const double gb = 2.0 * seqs * ctx * nkv * d * 2 / 1e9;
      std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V", ms, gb / (ms / 1e3));
      inform(simt ? "time paged_attention (cuda cores)" : "time paged_attention", t, "decode S=256 ctx=640 28/4x128", buf);
    }
    set_simt_attention(false);
    // Partition length for large batches (1024 = no split at this context).
    for (const int keys : {64, 128, 256, 384, 1024}) {
      cuda::attention_settings().part_keys = keys;
      const double ms = time_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
      const double gb = 2.0 * seqs * ctx * nkv * d * 2 / 1e9;
      std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V", ms, gb / (ms / 1e3));
      inform("time paged_attention part_keys=" + std::to_string(keys), t, "decode S=256 ctx=640 28/4x128", buf);
    }
    cuda::attention_settings().part_keys = 0;
  }
  // Prefill attention: 4 prompts of 512.
  {
    const int32_t seqs = 4, len = 512, bs = 16, nh = 28, nkv = 4, d = 128, mb = len / bs;
    auto qkv = gpu.alloc(t, {seqs * len, (nh + 2 * nkv) * d});
    auto kc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto vc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto out = gpu.alloc(t, {seqs * len, nh * d});
    for (const tensor* b : {&qkv.get(), &kc.get(), &vc.get()}) fill(gpu, *b);
    std::vector<int32_t> qs(seqs + 1), sl(seqs, len), bt(seqs * mb);
    for (int i = 0; i <= seqs; ++i) qs[i] = i * len;
    std::iota(bt.begin(), bt.end(), 0);
    auto qs_t = gpu.alloc(dtype::i32, {seqs + 1}), sl_t = gpu.alloc(dtype::i32, {seqs}), bt_t = gpu.alloc(dtype::i32, {seqs, mb});
    gpu.upload_raw(qs_t, qs.data());
    gpu.upload_raw(sl_t, sl.data());
    gpu.upload_raw(bt_t, bt.data());
    attention_metadata m{qs_t, sl_t, bt_t, seqs, len, len, 0};
    const attention_shape s{nh, nkv, d, bs, 0.088f};
    for (const bool simt : {false, true}) {
      set_simt_attention(simt);
      const double ms = time_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
      const double tflop = 4.0 * seqs * nh * d * (double(len) * len / 2) / 1e12;
      std::snprintf(buf, sizeof buf, "%.3f ms, %.1f TFLOP/s", ms, tflop / (ms / 1e3));
      inform(simt ? "time paged_attention (cuda cores)" : "time paged_attention", t, "prefill 4x512 28/4x128", buf);
    }
    set_simt_attention(false);
  }
  // Long prefills: one prompt of 4096, and 2048 new tokens after 6144 cached (a chunked long prompt).
  for (const auto& [q, len] : {std::pair<int32_t, int32_t>{4096, 4096}, {2048, 8192}}) {
    const int32_t bs = 16, nh = 28, nkv = 4, d = 128, mb = len / bs;
    auto qkv = gpu.alloc(t, {q, (nh + 2 * nkv) * d});
    auto kc = gpu.alloc(t, {mb, bs, nkv, d});
    auto vc = gpu.alloc(t, {mb, bs, nkv, d});
    auto out = gpu.alloc(t, {q, nh * d});
    for (const tensor* b : {&qkv.get(), &kc.get(), &vc.get()}) fill(gpu, *b);
    std::vector<int32_t> qs{0, q}, sl{len}, bt(mb);
    std::iota(bt.begin(), bt.end(), 0);
    auto qs_t = gpu.alloc(dtype::i32, {2}), sl_t = gpu.alloc(dtype::i32, {1}), bt_t = gpu.alloc(dtype::i32, {1, mb});
    gpu.upload_raw(qs_t, qs.data());
    gpu.upload_raw(sl_t, sl.data());
    gpu.upload_raw(bt_t, bt.data());
    attention_metadata m{qs_t, sl_t, bt_t, 1, q, len, 0};
    const attention_shape s{nh, nkv, d, bs, 0.088f};
    const double ms = time_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
    // Keys each query sees: the cached ones, then causally among the new.
    const double pairs = double(q) * (len - q) + double(q) * q / 2;
    const double tflop = 4.0 * nh * d * pairs / 1e12;
    std::snprintf(buf, sizeof buf, "%.3f ms, %.1f TFLOP/s", ms, tflop / (ms / 1e3));
    inform("time paged_attention", t, "prefill " + std::to_string(q) + " new of " + std::to_string(len) + " 28/4x128", buf);
  }
  // A mixed step: 3 prompt chunks of 512 (after 0, 512 and 1024 cached positions) beside 200 decodes of 640.
  {
    const int32_t bs = 16, nh = 28, nkv = 4, d = 128, mb = 1536 / bs;
    std::vector<int32_t> qs{0}, sl;
    for (int i = 0; i < 3; ++i) {
      qs.push_back(qs.back() + 512);
      sl.push_back(512 * (i + 1));
    }
    for (int i = 0; i < 200; ++i) {
      qs.push_back(qs.back() + 1);
      sl.push_back(640);
    }
    const int32_t seqs = static_cast<int32_t>(sl.size()), tokens = qs.back();
    auto qkv = gpu.alloc(t, {tokens, (nh + 2 * nkv) * d});
    auto kc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto vc = gpu.alloc(t, {seqs * mb, bs, nkv, d});
    auto out = gpu.alloc(t, {tokens, nh * d});
    for (const tensor* b : {&qkv.get(), &kc.get(), &vc.get()}) fill(gpu, *b);
    std::vector<int32_t> bt(seqs * mb);
    std::iota(bt.begin(), bt.end(), 0);
    auto qs_t = gpu.alloc(dtype::i32, {seqs + 1}), sl_t = gpu.alloc(dtype::i32, {seqs}), bt_t = gpu.alloc(dtype::i32, {seqs, mb});
    gpu.upload_raw(qs_t, qs.data());
    gpu.upload_raw(sl_t, sl.data());
    gpu.upload_raw(bt_t, bt.data());
    attention_metadata m{qs_t, sl_t, bt_t, seqs, 512, 1536, 0};
    const attention_shape s{nh, nkv, d, bs, 0.088f};
    for (const bool simt : {false, true}) {
      set_simt_attention(simt);
      const double ms = time_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
      std::snprintf(buf, sizeof buf, "%.3f ms", ms);
      inform(simt ? "time paged_attention (cuda cores)" : "time paged_attention", t, "mixed 3x512 prefill + 200 decodes", buf);
    }
    set_simt_attention(false);
  }
  // The MLP GEMMs of one decode step of 256 sequences, and of a 2048-token prefill step.
  for (int64_t rows : {256, 2048}) {
    const int64_t h = 3584, inter = 18944;
    auto x = gpu.alloc(t, {rows, h});
    auto w = gpu.alloc(t, {2 * inter, h});
    auto out = gpu.alloc(t, {rows, 2 * inter});
    fill(gpu, x);
    fill(gpu, w);
    const double ms = time_ms(gpu, [&] { gpu.linear(x, w, tensor{}, out, false); });
    const double tflop = 2.0 * rows * h * 2 * inter / 1e12;
    std::snprintf(buf, sizeof buf, "%.3f ms, %.0f TFLOP/s, %.0f GB/s of weights", ms, tflop / (ms / 1e3),
                  2.0 * h * 2 * inter / 1e9 / (ms / 1e3));
    inform("time linear gate_up", t, "T,K,N=" + dims({rows, h, 2 * inter}), buf);
  }
}

void print_table() {
  std::printf("\n%-22s %-5s %-64s %10s %8s  %s\n", "op", "dtype", "shapes", "rel err", "tol", "result");
  int failed = 0;
  for (const auto& r : results) {
    if (r.informative) {
      std::printf("%-22s %-5s %-64s %10s %8s  %s\n", r.op.c_str(), r.type.c_str(), r.shape.c_str(), "-", "-", r.note.c_str());
      continue;
    }
    failed += !r.pass;
    std::printf("%-22s %-5s %-64s %10.2e %8.0e  %s%s%s\n", r.op.c_str(), r.type.c_str(), r.shape.c_str(), r.error,
                r.tolerance, r.pass ? "pass" : "FAIL", r.note.empty() ? "" : "  ", r.note.c_str());
  }
  int checks = 0;
  for (const auto& r : results) checks += !r.informative;
  std::printf("\n%d of %d checks pass\n", checks - failed, checks);
}

} // namespace

int main(int argc, char** argv) {
  fs::path data = "tests/data/reference";
  uint64_t seed = 1;
  bool models = true, timing = true, ops = true, sampling = true, quick_sampling = false;
  double torture_seconds = 60;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--seed" && i + 1 < argc) seed = std::stoull(argv[++i]);
    else if (a == "--no-models") models = false;
    else if (a == "--no-ops") ops = sampling = false;  // models (and timings) only
    else if (a == "--no-timing") timing = false;
    else if (a == "--sampling") ops = models = false;  // only the sampling checks and timings
    else if (a == "--sampling-quick") ops = models = timing = false, quick_sampling = true;  // small vocabularies
    else if (a == "--sampling-timing") ops = models = sampling = false;  // only the sampling timings
    else if (a == "--torture-seconds" && i + 1 < argc) torture_seconds = std::stod(argv[++i]);
    else if (a == "--torture") ops = models = sampling = timing = false;  // only the engine torture run
    else {
      std::fprintf(stderr,
                   "usage: troupe_gpu_check [--data DIR] [--seed N] [--no-ops] [--no-models] [--no-timing] "
                   "[--torture-seconds S] [--sampling | --sampling-quick | --sampling-timing | --torture]\n");
      return 2;
    }
  }
  rng.seed(seed);
  try {
    checker c;
    std::printf("device: %s\n", c.gpu.device_description().c_str());
    auto guarded = [&](const char* what, const std::function<void()>& f) {
      try {
        f();
      } catch (const std::exception& e) {
        results.push_back({what, "-", std::string("threw: ") + e.what(), INFINITY, 0, false, false, {}});
      }
    };
    for (dtype t : {dtype::f32, dtype::bf16, dtype::f16}) {
      if (!ops) break;
      guarded("rows", [&] { check_rows(c, t); });
      guarded("norms", [&] { check_norms(c, t); });
      guarded("linear", [&] { check_linear(c, t); });
      guarded("silu_and_mul", [&] { check_silu(c, t); });
      guarded("rope_write_kv", [&] { check_rope(c, t); });
      guarded("paged_attention", [&] { check_attention_all(c, t); });
      guarded("op rows", [&] { check_op_rows(c.gpu, t); });
    }
    if (ops) guarded("argmax", [&] { check_argmax(c); });
    if (sampling) guarded("sample", [&] { check_sampling(c.gpu, quick_sampling); });
    if (models) {
      std::vector<fs::path> dirs;
      for (const auto& e : fs::directory_iterator(data))
        if (fs::exists(e.path() / "reference.json")) dirs.push_back(e.path());
      std::sort(dirs.begin(), dirs.end());
      if (dirs.empty()) results.push_back({"models", "-", "no reference models under " + data.string(), INFINITY, 0, false, false, {}});
      for (const auto& dir : dirs)
        for (dtype t : {dtype::f32, dtype::bf16})
          guarded(("model " + dir.filename().string()).c_str(), [&] { check_model(c.gpu, dir, t); });
    }
    if (torture_seconds > 0 && fs::exists(data / "llama_f32"))
      guarded("engine torture", [&] { check_torture(c.gpu, data, seed, torture_seconds); });
    if (timing && ops) guarded("timings", [&] { timings(c.gpu); });
    if (timing) guarded("sample timings", [&] { time_sampling(c.gpu); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe_gpu_check: %s\n", e.what());
    print_table();
    return 1;
  }
  print_table();
  for (const auto& r : results)
    if (!r.pass) return 1;
  return 0;
}
