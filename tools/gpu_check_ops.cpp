// troupe_gpu_check, part 1: every CUDA op against its CPU twin over random shapes and dtypes (the same
// inputs, rounded to the dtype, go to both; the CPU computes in fp32). Outputs are poisoned with NaN first,
// so an element the kernel never writes fails. Error is ‖gpu − cpu‖ / ‖cpu‖ over the whole output.
// rope_write_kv and paged attention are in gpu_check_attention.cpp; what both files share, in gpu_check_twin.hpp.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "tools/gpu_check.hpp"
#include "tools/gpu_check_twin.hpp"

using namespace troupe;

namespace gpu_check {
namespace {

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
  // Qwen3's per-head q/k norm in place (v untouched, poisoned values would show): Qwen3-8B's heads on one
  // GPU (32 + 8 of 128), a prefill of them, and a small head that leaves lanes of the warp idle.
  for (auto [tokens, heads, kv_heads, d] : {std::tuple{1, 32, 8, 128}, {77, 32, 8, 128}, {3, 4, 1, 24}}) {
    const attention_shape s{heads, kv_heads, d, 16, 1.0f};
    auto qkv = c.random(t, {tokens, (heads + 2 * kv_heads) * d}, 3.0f);
    auto qw = c.random(t, {d}, 0.5f), kw = c.random(t, {d}, 0.5f);
    c.cpu.qk_norm(qkv.cpu, qw.cpu, kw.cpu, s, 1e-6f);
    c.gpu.qk_norm(qkv.gpu, qw.gpu, kw.gpu, s, 1e-6f);
    report("qk_norm", t, "T,nH,nKV,D=" + dims({tokens, heads, kv_heads, d}), c.error(qkv), tolerance_for(t));
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

// A random 4-bit weight [n, k] in groups of `group` on both backends: random words, scales of spread 0.02, whole zero
// points in 0..15.
struct int4_twin {
  twin qweight, scales, zeros;
  int32_t group;
  int4_device_weight cpu() const { return {qweight.cpu.get(), scales.cpu.get(), zeros.cpu.get(), group}; }
  int4_device_weight gpu() const { return {qweight.gpu.get(), scales.gpu.get(), zeros.gpu.get(), group}; }
};
int4_twin random_int4(checker& c, dtype t, int64_t n, int64_t k, int32_t group) {
  std::vector<int32_t> words(static_cast<size_t>(n * k / 8));
  for (auto& w : words) w = static_cast<int32_t>(rng());
  std::vector<float> scale_values = random_values(static_cast<size_t>(n * (k / group)), 0.02f);
  std::vector<float> zero_values(scale_values.size());
  for (auto& z : zero_values) z = static_cast<float>(rng() % 16);
  int4_twin w{c.ints<int32_t>({n, k / 8}, words), c.make(t, {n, k / group}, scale_values),
              c.make(t, {n, k / group}, zero_values), group};
  // The GPU's words in its nibble order (ops::int4_nibble), as the model packs them: the same weights.
  for (auto& word : words) {
    const auto from = static_cast<uint32_t>(word);
    uint32_t to = 0;
    for (int i = 0; i < 8; ++i) to |= ((from >> (4 * i)) & 15u) << (4 * c.gpu.int4_nibble(i));
    word = static_cast<int32_t>(to);
  }
  c.gpu.upload_raw(w.qweight.gpu, words.data());
  return w;
}

double linear_fp8_tolerance(dtype t, int64_t k);

// The CPU twin of linear_int4's FP8 form (int4_fp8_rows(), runtime/model/fp8_formats.hpp), made apart from the CPU
// backend's own (which runs it the same way): w dequantized on the host as the CPU backend
// dequantizes it ((q − zero) · scale in f32, its words in troupe's nibble order), then quantize_fp8 per output channel
// — the codes and scales int4_to_fp8_kernel makes on the device.
struct fp8_form_twin {
  twin weight, scale;
  fp8_device_weight cpu() const { return {weight.cpu, scale.cpu, tensor{}}; }
};
fp8_form_twin fp8_form_of(checker& c, const int4_twin& w, int64_t n, int64_t k) {
  std::vector<uint32_t> words(static_cast<size_t>(n * k / 8));
  c.cpu.download_raw(words.data(), w.qweight.cpu);
  const std::vector<float> scales = c.read_cpu(w.scales), zeros = c.read_cpu(w.zeros);
  std::vector<float> values(static_cast<size_t>(n * k));
  const int64_t groups = k / w.group;
  for (int64_t o = 0; o < n; ++o)
    for (int64_t i = 0; i < k; ++i) {
      const uint32_t q = (words[static_cast<size_t>((o * k + i) / 8)] >> (4 * (i % 8))) & 15u;
      const size_t g = static_cast<size_t>(o * groups + i / w.group);
      values[static_cast<size_t>(o * k + i)] = (static_cast<float>(q) - zeros[g]) * scales[g];
    }
  const fp8_weight f = quantize_fp8(values, n, k, true);
  twin weight{c.cpu.alloc(dtype::f8_e4m3, {n, k}), c.gpu.alloc(dtype::f8_e4m3, {n, k}), dtype::f8_e4m3, {n, k}};
  c.cpu.upload_raw(weight.cpu, f.codes.data());
  return {std::move(weight), c.make(dtype::f32, {n}, f.scales)};
}

// 4-bit weights (issue 12) at the edges of every CUDA path: 1 to 65 rows around the tensor-core kernel's tiles of
// 8 rows, output features that are not a multiple of its 16, K not a multiple of its 128 (a lane with no
// weights), groups of 32, 64 and 128; f32 runs the CUDA-core kernel (≤ 4 rows) or dequantize-then-GEMM.
void check_linear_int4(checker& c, dtype t) {
  struct shape {
    int64_t rows, k, n;
    int32_t group;
    bool bias;
  };
  const std::vector<shape> shapes = {
      {1, 128, 16, 128, false}, {1, 3584, 4608, 128, true}, {3, 96, 24, 32, false},    {5, 64, 40, 32, true},
      {8, 352, 300, 32, true},  {9, 256, 200, 64, false},   {16, 384, 48, 128, false}, {17, 4096, 130, 128, true},
      {32, 18944, 64, 128, false}, {33, 160, 100, 32, false}, {64, 512, 96, 64, true},  {65, 256, 80, 128, false},
      // The shared-memory GEMM's (int4_settings().gemm): rows past its 32- and 64-row tiles, outputs past its 128, K
      // split over blocks (few tiles), groups of 32 and 64.
      {100, 3584, 300, 128, true}, {300, 1024, 520, 64, false}, {512, 256, 136, 32, true},
      // The warpgroup-MMA GEMM's (int4_settings().wgmma): K a multiple of its 64 but not of 128, one stage of K, rows
      // one past its 128-row tile.
      {4, 64, 200, 32, true}, {130, 192, 136, 64, true}, {257, 320, 72, 32, false},
      // The FP8 form's fused kernel (int4_settings().w4a8): K a multiple of its 128, groups of 64 and 128, rows
      // around its 64-, 128- and 256-row tiles, outputs past its 128, K split over blocks (few tiles).
      {65, 1024, 264, 64, true}, {200, 3584, 136, 128, false}, {300, 2048, 520, 128, true},
  };
  for (const shape& s : shapes) {
    // The W4A16 paths whatever int4_fp8_rows() says (TROUPE_INT4_FP8_ROWS); the FP8 form's rows below set it.
    const scoped_value<int64_t> w4a16(int4_fp8_rows(), 0);
    auto x = c.random(t, {s.rows, s.k});
    const int4_twin w = random_int4(c, t, s.n, s.k, s.group);
    twin bias{};
    if (s.bias) bias = c.random(t, {s.n});
    auto out = c.random(t, {s.rows, s.n});
    c.cpu.linear_int4(x.cpu, w.cpu(), s.bias ? bias.cpu.get() : tensor{}, out.cpu);
    // The tensor-core shapes (bf16 / f16, up to 32 rows) also on the kernel that stages weights by cp.async, and on
    // the ring kernel's variants (int4_settings().ring): 1, 2 and 5 must write the register kernel's ("") bits, and so
    // must the wide kernel ("wide": int4_settings().wide, made to take every layer here). The other variants run with it
    // off, so that they take the layers the wide kernel would.
    // "gemm": the shared-memory GEMM for batches (int4_settings().gemm), at any rows up to 512 with K a multiple of 128.
    // "ring1 lean" and "wide lean" (int4_settings().lean, up to 8 rows) must write the register kernel's bits too, and
    // "async lean" the cp.async kernel's ("async": its 4 warps split K unlike the register kernel's 8, so its sums round
    // apart from the register kernel's in the last bit of f16 now and then). "wgmma": the warpgroup-MMA GEMM (int4_settings().wgmma), at any rows with K a multiple of 64; "wgmma
    // 256" with its 256-row tiles (int4_settings().wgmma_rows) above 128 rows.
    bytes register_kernel, async_kernel;
    for (const std::string variant : {"", "async", "ring1", "ring2", "ring3", "ring5", "wide", "async lean", "ring1 lean",
                                      "wide lean", "gemm", "wgmma", "wgmma 256", "wgmma overlap"}) {
      if (variant == "gemm"                ? t == dtype::f32 || s.rows > 512 || s.k % 128 != 0
          : variant.starts_with("wgmma") ? t == dtype::f32 || s.k % 64 != 0 || (variant == "wgmma 256" && s.rows <= 128)
                                           : !variant.empty() && (t == dtype::f32 || s.rows > 32))
        continue;
      const bool lean = variant.ends_with(" lean");
      if (lean && s.rows > 8) continue;
      const scoped_value<bool> leaner(cuda::int4_settings().lean, lean);
      const int ring = variant.starts_with("ring") ? variant[4] - '0' : 0;
      const scoped_value<int> forced(cuda::int4_settings().async, variant.starts_with("async") ? 1 : 0);
      const scoped_value<int> gemm(cuda::int4_settings().gemm, variant == "gemm" ? 1 : 0);
      const scoped_value<int> wgmma(cuda::int4_settings().wgmma, variant.starts_with("wgmma") ? 2 : 0);
      const scoped_value<int> wgmma_rows(cuda::int4_settings().wgmma_rows, variant == "wgmma 256" ? 256 : 128);
      const scoped_value<bool> overlap(cuda::int4_settings().wgmma_overlap, variant == "wgmma overlap");
      const scoped_value<int> ringed(cuda::int4_settings().ring, ring);
      const scoped_value<bool> wide(cuda::int4_settings().wide, variant.starts_with("wide"));
      const scoped_value<int64_t> everywhere(cuda::int4_settings().wide_min_blocks, 0);
      c.poison(out);
      c.gpu.linear_int4(x.gpu, w.gpu(), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
      std::string what = "T,K,N=" + dims({s.rows, s.k, s.n}) + " G" + std::to_string(s.group);
      if (s.bias) what += " +bias";
      if (!variant.empty()) what += " " + variant;
      report("linear_int4", t, what, c.error(out), tolerance_for(t));
      if (t == dtype::f32 || s.rows > 32 ||
          (!variant.empty() && ring != 1 && ring != 2 && ring != 5 && !variant.starts_with("wide") &&
           !variant.starts_with("async")))
        continue;
      bytes b = c.gpu_bytes(out);
      if (variant.empty()) register_kernel = std::move(b);
      else if (variant == "async") async_kernel = std::move(b);
      else if (variant == "async lean")
        report("linear_int4", t, what + " bits", static_cast<double>(differing_elements(b, async_kernel, size_in_bytes(t))),
               0.0, "elements differing from the cp.async kernel's");
      else
        report("linear_int4", t, what + " bits", static_cast<double>(differing_elements(b, register_kernel, size_in_bytes(t))),
               0.0, "elements differing from the register kernel's");
    }
    // "fp8 form" (int4_fp8_rows(), here from one row): the weight requantized to FP8 on the device, then
    // linear_fp8 — against the CPU's linear_fp8 on fp8_form_of's codes and scales (both quantize x the same way).
    {
      const fp8_form_twin form = fp8_form_of(c, w, s.n, s.k);
      auto expected = c.random(t, {s.rows, s.n});
      c.cpu.linear_fp8(x.cpu, form.cpu(), s.bias ? bias.cpu.get() : tensor{}, expected.cpu);
      const scoped_value<int64_t> from_one(int4_fp8_rows(), 1);
      std::string what = "T,K,N=" + dims({s.rows, s.k, s.n}) + " G" + std::to_string(s.group);
      if (s.bias) what += " +bias";
      // The channels' scales found by the kernel, then given as the loader makes them (int4_device_weight::fp8_scale),
      // then the fused kernel (int4_settings().w4a8) where it takes the product, then given with the conversion's
      // quotient a weight instead of its table (int4_settings().fp8_table).
      for (const int variant : {0, 1, 2, 3}) {
        int4_device_weight wg = w.gpu();
        if (variant > 0) wg.fp8_scale = form.scale.gpu;
        if (variant == 2 && !cuda::linear_int4_w4a8_takes(s.rows, s.k, wg, t)) continue;
        const scoped_value<bool> fused(cuda::int4_settings().w4a8, variant == 2);
        const scoped_value<bool> table(cuda::int4_settings().fp8_table, variant != 3);
        c.poison(expected);
        c.gpu.linear_int4(x.gpu, wg, s.bias ? bias.gpu.get() : tensor{}, expected.gpu);
        // The fused kernel accumulates fast on the tensor cores, as cuBLASLt does.
        const double tol = variant == 2 && t == dtype::f32 ? fp8_gemm_tolerance(s.k) : linear_fp8_tolerance(t, s.k);
        report("linear_int4", t, what + kInt4Fp8Forms[variant], c.error(expected), tol);
      }
    }
  }
}

// A fused op that says whether it took the shape (fused()): poisons out, runs it, and reports whether it took the shape
// as `expected` says; where it did not, that it wrote nothing into out. Returns whether it took the shape.
bool fused_as_expected(checker& c, const char* op, dtype t, const std::string& row, const twin& out, bool expected,
                       const std::function<bool()>& fused) {
  c.poison(out);
  const bytes poisoned = c.gpu_bytes(out);
  const bool took = fused();
  report(op, t, row + " fused", took == expected ? 0.0 : 1.0, 0.0,
         expected ? "must take the shape" : "must leave the shape to the two ops");
  if (!took)
    report(op, t, row + " untouched",
           static_cast<double>(differing_elements(c.gpu_bytes(out), poisoned, size_in_bytes(t))), 0.0,
           "elements of out written");
  return took;
}

// linear_int4_silu (gate/up and silu_and_mul in one kernel, int4_settings().silu): where it takes the shape it must
// write the bits of linear_int4 then silu_and_mul on the GPU, with and without launching down_proj into its tail (2),
// and agree with the CPU's two ops; where it does not (rows past 8, groups below 128 or not a power of two, f32) it
// must say so and leave out alone. Features ending inside a block of 16 (72, 1,000), 7B's gate/up (18,944) at 1 and 8
// rows, a bias.
void check_linear_int4_silu(checker& c, dtype t) {
  struct shape {
    int64_t rows, k, inter;
    int32_t group;
    bool bias, fused;
  };
  const bool half = t != dtype::f32;
  const std::vector<shape> shapes = {
      {1, 256, 64, 128, false, half},   {3, 384, 72, 128, true, half},      {8, 512, 1000, 256, false, half},
      {1, 3584, 18944, 128, false, half}, {8, 3584, 18944, 128, false, half}, {5, 256, 48, 128, true, half},
      {9, 256, 64, 128, false, false},  {2, 256, 64, 64, false, false},     {2, 384, 64, 384, false, false},
  };
  for (const shape& s : shapes) {
    const int64_t n = 2 * s.inter;
    auto x = c.random(t, {s.rows, s.k});
    const int4_twin w = random_int4(c, t, n, s.k, s.group);
    twin bias{};
    if (s.bias) bias = c.random(t, {n});
    auto mlp = c.random(t, {s.rows, n});
    auto act = c.random(t, {s.rows, s.inter});
    const int4_device_weight wc = w.cpu(), wg = w.gpu();
    c.cpu.linear_int4(x.cpu, wc, s.bias ? bias.cpu.get() : tensor{}, mlp.cpu);
    c.cpu.silu_and_mul(mlp.cpu, act.cpu);
    std::string what = "T,K,I=" + dims({s.rows, s.k, s.inter}) + " G" + std::to_string(s.group);
    if (s.bias) what += " +bias";
    // The two ops on the GPU, for the bits.
    c.gpu.linear_int4(x.gpu, wg, s.bias ? bias.gpu.get() : tensor{}, mlp.gpu);
    c.gpu.silu_and_mul(mlp.gpu, act.gpu);
    const bytes unfused = c.gpu_bytes(act);
    const scoped_value<int64_t> everywhere(cuda::int4_settings().wide_min_blocks, 0);
    for (const int mode : {1, 2, 3}) {  // 3: 2 in the lean form (int4_settings().lean), the same bits
      const scoped_value<int> silu(cuda::int4_settings().silu, std::min(mode, 2));
      const scoped_value<bool> lean(cuda::int4_settings().lean, mode == 3);
      const std::string row = what + (mode == 2 ? " tail" : mode == 3 ? " tail lean" : "");
      if (!fused_as_expected(c, "linear_int4_silu", t, row, act, s.fused, [&] {
            return c.gpu.linear_int4_silu(x.gpu, wg, s.bias ? bias.gpu.get() : tensor{}, act.gpu);
          }))
        continue;
      report("linear_int4_silu", t, row, c.error(act), tolerance_for(t));
      report("linear_int4_silu", t, row + " bits",
             static_cast<double>(differing_elements(c.gpu_bytes(act), unfused, size_in_bytes(t))), 0.0,
             "elements differing from linear_int4 + silu_and_mul");
    }
  }
}

// linear_fp8_silu (one row's gate/up product and silu_and_mul in one kernel, fp8_settings().silu): where it takes the
// step it must write the bits of linear_fp8 then silu_and_mul on the GPU, on the default path and with the quantizer
// inside the GEMV (qgemv 2), and agree with the CPU's two ops; where it does not (more rows, K not a multiple of 16, the
// switch off, a forced path) it must say so and leave out alone. 7B's gate/up (K 3,584, I 18,944), down's K (18,944)
// at the kernel's shared-memory reach, features fewer than a block's warps, a bias, a static input scale.
void check_linear_fp8_silu(checker& c, dtype t) {
  struct shape {
    int64_t rows, k, inter;
    bool bias, static_input, fused;
  };
  const std::vector<shape> shapes = {
      {1, 3584, 18944, false, false, true}, {1, 256, 64, true, false, true},  {1, 18944, 40, false, true, true},
      {1, 512, 5, true, true, true},        {2, 256, 64, false, false, false}, {1, 200, 64, false, false, false},
  };
  for (const shape& s : shapes) {
    const int64_t n = 2 * s.inter;
    auto x = c.random(t, {s.rows, s.k}, 2.0f);
    std::vector<uint8_t> codes(static_cast<size_t>(n * s.k));
    std::normal_distribution<float> d(0.0f, 40.0f);
    for (auto& q : codes) q = f32_to_f8_e4m3(d(rng));
    twin weight{c.cpu.alloc(dtype::f8_e4m3, {n, s.k}), c.gpu.alloc(dtype::f8_e4m3, {n, s.k}), dtype::f8_e4m3, {n, s.k}};
    c.cpu.upload_raw(weight.cpu, codes.data());
    c.gpu.upload_raw(weight.gpu, codes.data());
    std::vector<float> scales(static_cast<size_t>(n));
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (auto& v : scales) v = u(rng) / (40.0f * std::sqrt(float(s.k)));
    auto scale = c.make(dtype::f32, {n}, scales);
    auto input_scale = c.make(dtype::f32, {1}, {0.02f});
    twin bias{};
    if (s.bias) bias = c.random(t, {n});
    const tensor bias_cpu = s.bias ? bias.cpu.get() : tensor{}, bias_gpu = s.bias ? bias.gpu.get() : tensor{};
    const fp8_device_weight wc{weight.cpu, scale.cpu, s.static_input ? input_scale.cpu.get() : tensor{}};
    const fp8_device_weight wg{weight.gpu, scale.gpu, s.static_input ? input_scale.gpu.get() : tensor{}};
    auto mlp = c.random(t, {s.rows, n});
    auto act = c.random(t, {s.rows, s.inter});
    c.cpu.linear_fp8(x.cpu, wc, bias_cpu, mlp.cpu);
    c.cpu.silu_and_mul(mlp.cpu, act.cpu);
    std::string what = "T,K,I=" + dims({s.rows, s.k, s.inter});
    if (s.bias) what += " +bias";
    if (s.static_input) what += " static";
    {
      const scoped_value<bool> off(cuda::fp8_settings().silu, false);
      fused_as_expected(c, "linear_fp8_silu", t, what + " switch off", act, false,
                        [&] { return c.gpu.linear_fp8_silu(x.gpu, wg, bias_gpu, act.gpu); });
    }
    const scoped_value<bool> on(cuda::fp8_settings().silu, true);
    {
      const scoped_value<std::string> forced(cuda::fp8_settings().path, "simt");
      fused_as_expected(c, "linear_fp8_silu", t, what + " path forced", act, false,
                        [&] { return c.gpu.linear_fp8_silu(x.gpu, wg, bias_gpu, act.gpu); });
    }
    for (const int qgemv : {0, 2}) {  // what the unfused ops ran: "gemv" or the mma kernels, or "qgemv" (gemv's bits)
      const scoped_value<int> inside(cuda::fp8_settings().qgemv, qgemv);
      const std::string row = what + (qgemv ? " qgemv 2" : "");
      // The two ops on the GPU, on the path the launcher picks, for the bits.
      c.gpu.linear_fp8(x.gpu, wg, bias_gpu, mlp.gpu);
      const std::string unfused_path = cuda::fp8_settings().last_path.load();
      c.gpu.silu_and_mul(mlp.gpu, act.gpu);
      const bytes unfused = c.gpu_bytes(act);
      if (!fused_as_expected(c, "linear_fp8_silu", t, row, act, s.fused,
                             [&] { return c.gpu.linear_fp8_silu(x.gpu, wg, bias_gpu, act.gpu); }))
        continue;
      report("linear_fp8_silu", t, row, c.error(act), t == dtype::f32 ? 1e-3 : tolerance_for(t));
      // Bits: against the two ops where they ran the GEMV ("gemv" or "qgemv"); the mma kernels sum in another order.
      if (unfused_path == "gemv" || unfused_path == "qgemv")
        report("linear_fp8_silu", t, row + " bits",
               static_cast<double>(differing_elements(c.gpu_bytes(act), unfused, size_in_bytes(t))), 0.0,
               "elements differing from linear_fp8 + silu_and_mul");
    }
  }
}

// FP8 weights (issue 13): rows 1 to 300, with and without a bias, a static input scale, on each path the shape
// allows (kernels/cuda/linear_fp8.cu): "gemv" (CUDA cores, up to 4 rows, K a multiple of 16), "qgemv" (one row, the
// quantizer inside the GEMV: gemv's bits), "mma" and "mma_async"
// (tensor cores, up to 32 rows, K a multiple of 16), "wgmma" (warpgroup MMA, any rows, K a multiple of 128),
// "outer" (cuBLASLt, scales in its epilogue) and "epilogue" (cuBLASLt's unscaled sums in the output, scaled in place;
// f16 through f32 scratch) where K and N are multiples of 16, "simt" everywhere, and the path the launcher
// chooses by itself. The same x (rounded to t) goes to both: both quantize it to the same codes, so what differs
// is the order of the f32 sums (and the rounding of the output in bf16 / f16).
// What a linear_fp8 row of `t` tolerates on the path the call ran (fp8_settings().last_path): in f32, the same codes on
// both backends with the sums in another order, 1e-3; on cuBLASLt ("outer", "epilogue") and the wgmma GEMM, which
// accumulate fast by default, what fp8_gemm_tolerance derives.
double linear_fp8_tolerance(dtype t, int64_t k) {
  if (t != dtype::f32) return tolerance_for(t);
  const std::string ran = cuda::fp8_settings().last_path.load();
  return ran.starts_with("outer") || ran.starts_with("epilogue") || ran.starts_with("wgmma") ? fp8_gemm_tolerance(k) : 1e-3;
}

void check_linear_fp8(checker& c, dtype t) {
  struct shape {
    int64_t rows, k, n;
    bool bias, static_input;
  };
  const std::vector<shape> shapes = {
      {1, 3584, 4608, true, false}, {2, 64, 32, false, false},    {8, 3584, 512, false, false},
      {17, 256, 96, true, false},   {33, 512, 256, false, true},  {64, 512, 1024, true, false},
      {256, 3584, 1024, false, false}, {300, 1024, 4608, true, false}, {3, 24, 20, true, false},
      {5, 100, 48, false, false},   {9, 64, 40, true, true},  // K = 100: bf16/f16 quantize element by element
      // The mma path's edges: 16 and 32 rows (two and four tiles of 8), 24 (a tile of none), K ending inside a
      // 64-byte step, outputs ending inside a block of 16.
      {16, 3584, 512, true, false}, {32, 3584, 1024, false, false}, {24, 80, 24, true, false}, {4, 48, 8, false, true},
      // The gemv path's: a long K (down's) at one row, 3 rows with K ending inside a warp's 512-byte run.
      {1, 18944, 200, true, false}, {3, 1040, 40, false, false},
      // The wgmma path's (K a multiple of 128): K split 4 ways over outputs ending inside a block of 128 (70 rows, 2
      // tiles), 8 ways at 256 rows over 6 tiles with a bias, one stage of K (k = 128) at 129 rows (two tiles of 128
      // rows, the second of one row).
      {70, 2048, 200, false, false}, {256, 18944, 384, true, false}, {129, 128, 136, true, true},
  };
  for (const shape& s : shapes) {
    auto x = c.random(t, {s.rows, s.k}, 2.0f);
    // Codes of normal weights over a scale that puts their spread near the middle of e4m3's range.
    std::vector<uint8_t> codes(static_cast<size_t>(s.n * s.k));
    std::normal_distribution<float> d(0.0f, 40.0f);
    for (auto& q : codes) q = f32_to_f8_e4m3(d(rng));
    twin weight{c.cpu.alloc(dtype::f8_e4m3, {s.n, s.k}), c.gpu.alloc(dtype::f8_e4m3, {s.n, s.k}), dtype::f8_e4m3, {s.n, s.k}};
    c.cpu.upload_raw(weight.cpu, codes.data());
    c.gpu.upload_raw(weight.gpu, codes.data());
    std::vector<float> scales(static_cast<size_t>(s.n));
    std::uniform_real_distribution<float> u(0.5f, 1.5f);
    for (auto& v : scales) v = u(rng) / (40.0f * std::sqrt(float(s.k)));
    auto scale = c.make(dtype::f32, {s.n}, scales);
    auto input_scale = c.make(dtype::f32, {1}, {0.02f});
    twin bias{};
    if (s.bias) bias = c.random(t, {s.n});
    auto out = c.random(t, {s.rows, s.n});
    const auto weight_of = [&](bool gpu) {
      return fp8_device_weight{gpu ? weight.gpu.get() : weight.cpu.get(), gpu ? scale.gpu.get() : scale.cpu.get(),
                               s.static_input ? (gpu ? input_scale.gpu.get() : input_scale.cpu.get()) : tensor{}};
    };
    c.cpu.linear_fp8(x.cpu, weight_of(false), s.bias ? bias.cpu.get() : tensor{}, out.cpu);
    const bool cublas = s.k % 16 == 0 && s.n % 16 == 0, mma = s.k % 16 == 0 && s.rows <= 32,
               gemv = s.k % 16 == 0 && s.rows <= 4, wgmma = s.k % 128 == 0;
    bytes gemv_bits;  // "qgemv" must write "gemv"'s bits (the same codes, sums in the same order)
    for (const std::string path : {"", "gemv", "qgemv", "gemv_split", "mma", "mma_async", "wgmma", "wgmma 64",
                                   "wgmma 256", "wgmma tma", "wgmma tma 64", "wgmma tma 256", "outer", "epilogue",
                                   "simt"}) {
      if (!wgmma && path.starts_with("wgmma")) continue;
      if (path.ends_with(" 256") && s.rows <= 128) continue;
      if ((path == "qgemv" || path == "gemv_split") && !(gemv && s.rows == 1)) continue;
      // "wgmma 64": 64-row tiles at any row count; "wgmma 256": 256-row tiles above 128 rows (fast accumulation's);
      // "wgmma tma": the warp-specialized form whose loads the TMA makes (fp8_settings().wgmma_tma), the same tiles.
      const scoped_value<int> tile_rows(cuda::fp8_settings().wgmma_rows,
                                        path.ends_with(" 64") ? 64 : path.ends_with(" 256") ? 256 : 128);
      const scoped_value<bool> tma(cuda::fp8_settings().wgmma_tma, path.starts_with("wgmma tma"));
      if (!cublas && (path == "outer" || path == "epilogue")) continue;
      if (!mma && (path == "mma" || path == "mma_async")) continue;
      if (!gemv && path == "gemv") continue;
      const scoped_value<std::string> forced(cuda::fp8_settings().path, path.starts_with("wgmma") ? "wgmma" : path);
      c.poison(out);
      std::string what = "T,K,N=" + dims({s.rows, s.k, s.n});
      if (s.bias) what += " +bias";
      if (s.static_input) what += " static";
      what += path.empty() ? " (chosen)" : " " + path;
      if (path == "outer") {
        // cuBLASLt may refuse outer-vector scales for a shape (the H200 run of 2026-12-05: x [1, 3584] by w
        // [4608, 3584]); the chosen path then falls back, and its row above checks what runs.
        try {
          c.gpu.linear_fp8(x.gpu, weight_of(true), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
        } catch (const std::runtime_error& e) {
          if (std::string(e.what()).find("takes no FP8 GEMM with outer-vector") == std::string::npos) throw;
          inform("linear_fp8", t, what, "not run: cuBLASLt takes no outer-vector-scaled FP8 GEMM at this shape");
          continue;
        }
      } else {
        c.gpu.linear_fp8(x.gpu, weight_of(true), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
      }
      report("linear_fp8", t, what, c.error(out), linear_fp8_tolerance(t, s.k),
             std::string("ran ") + cuda::fp8_settings().last_path.load());
      if (path == "gemv") gemv_bits = c.gpu_bytes(out);
      if (path == "qgemv")
        report("linear_fp8", t, what + " bits", static_cast<double>(differing_elements(c.gpu_bytes(out), gemv_bits, size_in_bytes(t))),
               0.0, "elements differing from gemv's");
    }
    // W8A16 ("w16", up to 4 rows, K a multiple of 16): x is not quantized; the twin is the CPU's linear_fp8 under the
    // same rule (fp8_w16_rows(), both backends' setting).
    if (gemv) {
      {
        const scoped_value<std::string> forced(cuda::fp8_settings().path, "w16");
        const scoped_value<int> w16(fp8_w16_rows(), static_cast<int>(s.rows));
        c.cpu.linear_fp8(x.cpu, weight_of(false), s.bias ? bias.cpu.get() : tensor{}, out.cpu);
        c.poison(out);
        c.gpu.linear_fp8(x.gpu, weight_of(true), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
        const std::string what = "T,K,N=" + dims({s.rows, s.k, s.n}) + (s.bias ? " +bias" : "") +
                                 (s.static_input ? " static" : "") + " w16";
        report("linear_fp8", t, what, c.error(out), t == dtype::f32 ? 1e-4 : tolerance_for(t),
               std::string("ran ") + cuda::fp8_settings().last_path.load());
      }
      c.cpu.linear_fp8(x.cpu, weight_of(false), s.bias ? bias.cpu.get() : tensor{}, out.cpu);  // W8A8 again, for what follows
    }
    // The 16-byte quantizer (fp8_settings().quantize_vec) must write the element-by-element quantizer's codes and
    // scales: on simt (exact sums in one order) the outputs must be the same bits; on the chosen path, the twin's.
    const auto bits = [&](bool vec, int wide_rows = 0) {
      const scoped_value<bool> quantizer(cuda::fp8_settings().quantize_vec, vec);
      const scoped_value<int> wide(cuda::fp8_settings().wide_rows, wide_rows);
      const scoped_value<std::string> forced(cuda::fp8_settings().path, "simt");
      c.poison(out);
      c.gpu.linear_fp8(x.gpu, weight_of(true), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
      bytes b(static_cast<size_t>(out.gpu.get().numel()) * size_in_bytes(t));
      c.gpu.download_raw(b.data(), out.gpu.get());
      return b;
    };
    std::string what = "T,K,N=" + dims({s.rows, s.k, s.n}) + (s.static_input ? " static" : "");
    report("linear_fp8", t, what + " quantize_vec simt", static_cast<double>(differing_elements(bits(true), bits(false),
                                                                                                size_in_bytes(t))),
           0.0, "elements differing from the element-by-element quantizer's");
    // Blocks of 1024 threads for steps of few rows (fp8_settings().wide_rows) must write the same codes and scales.
    report("linear_fp8", t, what + " wide quantizer simt",
           static_cast<double>(differing_elements(bits(true, 1 << 20), bits(true), size_in_bytes(t))), 0.0,
           "elements differing from the 256-thread quantizer's");
    const scoped_value<bool> quantizer(cuda::fp8_settings().quantize_vec, true);
    c.poison(out);
    c.gpu.linear_fp8(x.gpu, weight_of(true), s.bias ? bias.gpu.get() : tensor{}, out.gpu);
    report("linear_fp8", t, what + " quantize_vec (chosen)", c.error(out), linear_fp8_tolerance(t, s.k),
           std::string("ran ") + cuda::fp8_settings().last_path.load());
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

// Dummy weights made in place (--load-format dummy): the GPU's values are the CPU twin's rounded to t, exactly,
// for whole tensors and for a rank's row, column, padded and bias slices (kinds 0 matrix, 1 norm, 2 bias).
void check_fill_random(checker& c, dtype t) {
  struct fill_case {
    const char* what;
    random_slice s;
    int64_t rows, cols;  // cols 0: a vector
  };
  const uint64_t state = 0x1234abcd5678ef90ULL;
  const fill_case cases[] = {
      {"whole matrix", {state, 0, 0, 0, 300, 1000}, 300, 1000},
      {"rows 4096.. of 8192", {state, 0, 0, 4096, 4096, 512}, 4096, 512},
      {"vocab rows, 60 of 64 real", {state, 0, 0, 96, 60, 384}, 64, 384},
      {"columns 7168.. of 28672", {state, 0, 1, 7168, 7168, 28672}, 64, 7168},
      {"norm", {state, 1, 0, 0, 8192, 1}, 8192, 0},
      {"bias rows 512..", {state, 2, 0, 512, 256, 1}, 256, 0},
  };
  for (const fill_case& f : cases) {
    twin out = f.cols ? c.random(t, {f.rows, f.cols}) : c.random(t, {f.rows});
    c.poison(out);
    c.cpu.fill_random(f.s, out.cpu);
    c.gpu.fill_random(f.s, out.gpu);
    report("fill_random", t, f.what, relative_error(c.read_gpu(out), rounded(c.read_cpu(out), t)), 0.0);
  }
}

void check_argmax_with(checker& c) {
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

// The kernels that quantize an FP8 layer's input themselves (add_rms_norm_fp8, silu_and_mul_fp8) and the product of
// such codes (linear_fp8_quantized): against the CPU twin (the normalized rows and scales; the product of the GPU's codes
// on the path the launcher picks), and on the GPU against the unfused ops (add_rms_norm or silu_and_mul, then linear_fp8
// quantizing its own input) on simt, whose sums are exact in one order: the same bits, or the fused codes differ.
void check_fp8_fused_inputs(checker& c, dtype t) {
  struct shape {
    int64_t rows, h, inter;
    bool static_input;
  };
  // 256 x 18,944: a W1 decode step's activation (the single-pass form's five vectors a thread); 20,488: past what the
  // single-pass form keeps in registers (the two-pass kernel runs).
  const std::vector<shape> shapes = {{1, 3584, 18944, false}, {5, 64, 96, false},      {17, 512, 1024, true},
                                     {3, 100, 52, false},     {64, 3584, 2048, false}, {256, 64, 18944, false},
                                     {2, 64, 20488, true}};
  const int64_t n = 40;
  for (const shape& s : shapes) {
    const std::string what = "T,H,I=" + dims({s.rows, s.h, s.inter}) + (s.static_input ? " static" : "");
    auto input_scale = c.make(dtype::f32, {1}, {0.02f});
    const tensor scale_cpu = s.static_input ? input_scale.cpu.get() : tensor{};
    const tensor scale_gpu = s.static_input ? input_scale.gpu.get() : tensor{};
    auto weights_for = [&](int64_t k) {  // FP8 weights [n, k] with per-row scales, the same codes on both
      std::vector<uint8_t> codes(static_cast<size_t>(n * k));
      std::normal_distribution<float> d(0.0f, 40.0f);
      for (auto& q : codes) q = f32_to_f8_e4m3(d(rng));
      twin w{c.cpu.alloc(dtype::f8_e4m3, {n, k}), c.gpu.alloc(dtype::f8_e4m3, {n, k}), dtype::f8_e4m3, {n, k}};
      c.cpu.upload_raw(w.cpu, codes.data());
      c.gpu.upload_raw(w.gpu, codes.data());
      return w;
    };
    auto w_scale = c.make(dtype::f32, {n}, std::vector<float>(static_cast<size_t>(n), 0.001f));
    auto codes_of = [&](int64_t k) {
      return twin{c.cpu.alloc(dtype::f8_e4m3, {s.rows, k}), c.gpu.alloc(dtype::f8_e4m3, {s.rows, k}), dtype::f8_e4m3,
                  {s.rows, k}};
    };
    auto bits = [&](const twin& w) {
      bytes b(w.gpu.get().num_bytes());
      c.gpu.download_raw(b.data(), w.gpu);
      return b;
    };
    // The fused product against the unfused one on the GPU (simt), then against the twin on the chosen path.
    auto compare = [&](const char* op, int64_t k, const twin& codes, const twin& scales, const tensor& plain_x) {
      auto w = weights_for(k);
      const fp8_device_weight gw{w.gpu, w_scale.gpu, scale_gpu}, cw{w.cpu, w_scale.cpu, scale_cpu};
      auto fused = c.random(t, {s.rows, n}), plain = c.random(t, {s.rows, n});
      {
        const scoped_value<std::string> simt(cuda::fp8_settings().path, "simt");
        c.poison(fused);
        c.poison(plain);
        c.gpu.linear_fp8_quantized({codes.gpu, scales.gpu}, gw, tensor{}, fused.gpu);
        c.gpu.linear_fp8(plain_x, gw, tensor{}, plain.gpu);
      }
      report(op, t, what + " = unfused on the GPU (simt)",
             static_cast<double>(differing_elements(bits(fused), bits(plain), size_in_bytes(t))), 0.0,
             "output elements differing from the unfused ops'");
      // The twin multiplies the GPU's codes and scales (its own quantization of unrounded f32 rows flips a few codes
      // a step, which is the FP8 error the model rows bound, not this product's).
      const bytes gpu_codes = bits(codes);
      std::vector<float> gpu_scales(static_cast<size_t>(s.rows));
      c.gpu.download(gpu_scales, scales.gpu);
      c.cpu.upload_raw(codes.cpu, gpu_codes.data());
      c.cpu.upload(scales.cpu, gpu_scales);
      c.poison(fused);
      c.cpu.linear_fp8_quantized({codes.cpu, scales.cpu}, cw, tensor{}, fused.cpu);
      c.gpu.linear_fp8_quantized({codes.gpu, scales.gpu}, gw, tensor{}, fused.gpu);
      // The path the launcher chose accumulates as it does (the wgmma GEMM on down_proj's 256-row steps, fast).
      report(op, t, what + " then linear_fp8_quantized", c.error(fused), linear_fp8_tolerance(t, k),
             std::string("ran ") + cuda::fp8_settings().last_path.load());
    };

    // add_rms_norm_fp8: x and residual as add_rms_norm leaves them, and the codes of x.
    const std::vector<float> xv = random_values(static_cast<size_t>(s.rows * s.h)),
                             rv = random_values(static_cast<size_t>(s.rows * s.h));
    std::vector<float> wv = random_values(static_cast<size_t>(s.h), 0.1f);
    for (auto& v : wv) v += 1.0f;
    auto x = c.make(t, {s.rows, s.h}, xv), residual = c.make(t, {s.rows, s.h}, rv), weight = c.make(t, {s.h}, wv);
    auto x_plain = c.make(t, {s.rows, s.h}, xv), residual_plain = c.make(t, {s.rows, s.h}, rv);
    auto codes = codes_of(s.h);
    auto scales = c.make(dtype::f32, {s.rows}, std::vector<float>(static_cast<size_t>(s.rows), -1.0f));
    c.cpu.add_rms_norm_fp8(x.cpu, residual.cpu, weight.cpu, 1e-6f, scale_cpu, {codes.cpu, scales.cpu});
    c.gpu.add_rms_norm_fp8(x.gpu, residual.gpu, weight.gpu, 1e-6f, scale_gpu, {codes.gpu, scales.gpu});
    c.gpu.add_rms_norm(x_plain.gpu, residual_plain.gpu, weight.gpu, 1e-6f);
    report("add_rms_norm_fp8", t, what + " x", c.error(x), tolerance_for(t));
    report("add_rms_norm_fp8", t, what + " residual", c.error(residual), tolerance_for(t));
    report("add_rms_norm_fp8", t, what + " scales", c.error(scales), tolerance_for(t));
    compare("add_rms_norm_fp8", s.h, codes, scales, x_plain.gpu);

    // silu_and_mul_fp8: the codes of silu_and_mul's rows.
    auto mlp = c.random(t, {s.rows, 2 * s.inter}, 2.0f);
    auto act = c.random(t, {s.rows, s.inter});
    auto act_codes = codes_of(s.inter);
    auto act_scales = c.make(dtype::f32, {s.rows}, std::vector<float>(static_cast<size_t>(s.rows), -1.0f));
    c.cpu.silu_and_mul_fp8(mlp.cpu, scale_cpu, {act_codes.cpu, act_scales.cpu});
    c.gpu.silu_and_mul_fp8(mlp.gpu, scale_gpu, {act_codes.gpu, act_scales.gpu});
    c.gpu.silu_and_mul(mlp.gpu, act.gpu);
    report("silu_and_mul_fp8", t, what + " scales", c.error(act_scales), tolerance_for(t));
    compare("silu_and_mul_fp8", s.inter, act_codes, act_scales, act.gpu);
    // The single-pass form (fp8_settings().single_pass, where the row fits; the two-pass kernel elsewhere) must write
    // the two-pass form's codes and scales.
    const bytes two_pass_codes = bits(act_codes), two_pass_scales = bits(act_scales);
    {
      const scoped_value<bool> single(cuda::fp8_settings().single_pass, true);
      c.gpu.upload_raw(act_codes.gpu, bytes(two_pass_codes.size(), std::byte{0x7F}).data());  // NaN codes
      c.poison(act_scales);
      c.gpu.silu_and_mul_fp8(mlp.gpu, scale_gpu, {act_codes.gpu, act_scales.gpu});
    }
    report("silu_and_mul_fp8", t, what + " single pass",
           static_cast<double>(differing_elements(bits(act_codes), two_pass_codes, 1) +
                               differing_elements(bits(act_scales), two_pass_scales, 4)),
           0.0, "codes and scales differing from the two-pass kernel's");
  }
}

} // namespace

void check_fp8_weight_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("linear_fp8", [&] { check_linear_fp8(c, t); });
  guarded("linear_fp8_silu", [&] { check_linear_fp8_silu(c, t); });
  guarded("fp8 inputs quantized before", [&] { check_fp8_fused_inputs(c, t); });
}

void check_fp8_silu_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("linear_fp8_silu", [&] { check_linear_fp8_silu(c, t); });
}

void check_int4_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("linear_int4", [&] { check_linear_int4(c, t); });
  guarded("linear_int4_silu", [&] { check_linear_int4_silu(c, t); });
}

void check_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("rows", [&] { check_rows(c, t); });
  guarded("norms", [&] { check_norms(c, t); });
  guarded("linear", [&] { check_linear(c, t); });
  guarded("linear_int4", [&] { check_linear_int4(c, t); });
  guarded("linear_int4_silu", [&] { check_linear_int4_silu(c, t); });
  check_fp8_weight_ops(gpu, t);
  guarded("silu_and_mul", [&] { check_silu(c, t); });
  guarded("fill_random", [&] { check_fill_random(c, t); });
  guarded("rope_write_kv", [&] { check_rope(c, t); });
  guarded("paged_attention", [&] { check_attention_all(c, t); });
  check_fp8_kv_ops(gpu, t);
}

void check_fp8_kv_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("rope_write_kv fp8", [&] {
    for (const fp8_kv_case& kv : fp8_kv_cases) check_rope(c, t, kv);
  });
  guarded("paged_attention fp8", [&] { check_attention_fp8(c, t); });
}

void check_fp8_kv_f16_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("paged_attention fp8 f16", [&] { check_attention_fp8_f16(c, t); });
}

void check_argmax(cuda_ops& gpu) {
  checker c(gpu);
  check_argmax_with(c);
}

} // namespace gpu_check
