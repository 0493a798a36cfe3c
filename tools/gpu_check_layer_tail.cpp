// troupe_gpu_check's rows of ops::fp8_layer_tail (kernels/cuda/fp8_layer_tail.cu): the persistent kernel in each form
// against the separate ops on the GPU with every product on the "qgemv" path (the GEMV's arithmetic: its bits, exactly),
// and at the smaller shapes against the CPU twin (the separate CPU ops); where it must not take the step, that it says
// so and writes nothing.

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/launchers.hpp"
#include "runtime/model/dtype.hpp"
#include "tools/gpu_check.hpp"
#include "tools/gpu_check_twin.hpp"

namespace gpu_check {

using namespace troupe;

namespace {

// A random FP8 weight [n, k] with per-channel scales on both backends (codes of spread 40, scales that keep the
// products' sums near 1), and a static input scale where asked.
struct fp8_twin {
  twin codes, scale, input_scale;
  bool static_input = false;
  fp8_device_weight cpu() const {
    return {codes.cpu, scale.cpu, static_input ? input_scale.cpu.get() : tensor{}};
  }
  fp8_device_weight gpu() const {
    return {codes.gpu, scale.gpu, static_input ? input_scale.gpu.get() : tensor{}};
  }
};

fp8_twin random_fp8(checker& c, int64_t n, int64_t k, bool static_input) {
  std::vector<uint8_t> codes(static_cast<size_t>(n * k));
  std::normal_distribution<float> d(0.0f, 40.0f);
  for (auto& q : codes) q = f32_to_f8_e4m3(d(rng));
  fp8_twin w;
  w.codes = {c.cpu.alloc(dtype::f8_e4m3, {n, k}), c.gpu.alloc(dtype::f8_e4m3, {n, k}), dtype::f8_e4m3, {n, k}};
  c.cpu.upload_raw(w.codes.cpu, codes.data());
  c.gpu.upload_raw(w.codes.gpu, codes.data());
  std::vector<float> scales(static_cast<size_t>(n));
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  for (auto& v : scales) v = u(rng) / (40.0f * std::sqrt(static_cast<float>(k)));
  w.scale = c.make(dtype::f32, {n}, scales);
  w.input_scale = c.make(dtype::f32, {1}, {0.02f});
  w.static_input = static_input;
  return w;
}

void check_layer_tail(checker& c, dtype t) {
  struct shape {
    int64_t hidden, attn, inter, qkv;
    bool last, bias, static_input, fused, on_cpu;  // on_cpu: also against the CPU twin (~40 s a dtype at 7B)
    const char* note;
    // The next layer's rope_write_kv too (rope 1: a cache in t; 2: e4m3, 3: e5m2, with scales), q/k/v's heads, the
    // row's position (past the table's 64: not rotated) and slot (-1: nothing written).
    int rope = 0;
    int32_t heads = 0, kv_heads = 0, head_dim = 0, pos = 0;
    int64_t slot = 0;
  };
  const bool half = t != dtype::f32;
  // Qwen2.5-7B's layer (q/k/v with its bias), its last layer, small ones with fewer outputs than the grid's warps, a
  // static input scale; f32 (not taken). The 7B shapes against the GPU's ops only: their CPU twin takes ~40 s.
  const std::vector<shape> shapes = {
      {3584, 3584, 18944, 4608, false, true, false, half, false, "qwen2.5-7b"},
      {3584, 3584, 18944, 4608, false, true, false, half, false, "qwen2.5-7b rope", 1, 28, 4, 128, 37, 83},
      {3584, 3584, 18944, 4608, true, false, true, half, false, "qwen2.5-7b last static"},
      {256, 512, 640, 384, false, true, false, half, half, "small"},
      {256, 512, 640, 384, false, true, false, half, half, "small rope e4m3", 2, 4, 1, 64, 5, 17},
      {256, 512, 640, 384, false, false, false, half, half, "small rope no slot", 1, 4, 1, 64, 3, -1},
      {256, 512, 640, 384, true, false, true, half, half, "small last static"},
      {1024, 1024, 2816, 1536, false, true, false, half, half, "medium"},
      {1024, 1024, 2816, 1536, false, true, true, half, half, "medium rope e5m2 past the table", 3, 8, 2, 128, 70, 40},
  };
  for (const shape& s : shapes) {
    const fp8_twin o_proj = random_fp8(c, s.hidden, s.attn, s.static_input);
    const fp8_twin gate_up = random_fp8(c, 2 * s.inter, s.hidden, s.static_input);
    const fp8_twin down = random_fp8(c, s.hidden, s.inter, s.static_input);
    const fp8_twin qkv_w = random_fp8(c, s.qkv, s.hidden, s.static_input);
    const fp8_device_weight o_c = o_proj.cpu(), o_g = o_proj.gpu(), gu_c = gate_up.cpu(), gu_g = gate_up.gpu();
    const fp8_device_weight d_c = down.cpu(), d_g = down.gpu(), q_c = qkv_w.cpu(), q_g = qkv_w.gpu();
    auto attn = c.random(t, {1, s.attn}, 2.0f);
    auto o_bias = c.random(t, {s.hidden}, 0.5f);
    auto qkv_bias = c.random(t, {s.qkv}, 0.5f);
    auto post_norm = c.random(t, {s.hidden}, 0.3f);
    auto next_norm = c.random(t, {s.hidden}, 0.3f);
    const std::vector<float> residual_values = random_values(static_cast<size_t>(s.hidden), 4.0f);
    auto residual = c.make(t, {1, s.hidden}, residual_values);
    auto hidden = c.random(t, {1, s.hidden});
    auto residual_mid = c.random(t, {1, s.hidden});
    auto mlp = c.random(t, {1, 2 * s.inter});
    auto act = c.random(t, {1, s.inter});
    auto qkv = c.random(t, {1, s.qkv});
    // The rope's operands: a table of 64 positions, 8 blocks of 16 slots.
    constexpr int64_t kPositions = 64, kBlocks = 8, kBlockSize = 16;
    const dtype kv = s.rope == 2 ? dtype::f8_e4m3 : s.rope == 3 ? dtype::f8_e5m2 : t;
    attention_shape rope_shape{s.heads, s.kv_heads, s.head_dim, static_cast<int32_t>(kBlockSize), 1.0f};
    if (s.rope >= 2) rope_shape.k_scale = 0.05f, rope_shape.v_scale = 0.8f;
    const int64_t kv_heads = std::max<int64_t>(s.kv_heads, 1), head_dim = std::max<int64_t>(s.head_dim, 2);
    auto cos_sin = c.random(dtype::f32, {kPositions, head_dim}, 0.7f);
    auto positions = c.ints<int32_t>({1}, std::vector<int32_t>{s.pos});
    auto slots = c.ints<int64_t>({1}, std::vector<int64_t>{s.slot});
    auto new_cache = [&] {
      return s.rope >= 2 ? c.fp8_cache(kv, {kBlocks, kBlockSize, kv_heads, head_dim}, 1.0f)
                         : c.random(t, {kBlocks, kBlockSize, kv_heads, head_dim});
    };
    const twin k_cache = new_cache(), v_cache = new_cache();
    const bytes k_first = c.gpu_bytes(k_cache), v_first = c.gpu_bytes(v_cache);
    const auto reset_caches = [&] {
      c.gpu.upload_raw(k_cache.gpu, k_first.data());
      c.gpu.upload_raw(v_cache.gpu, v_first.data());
    };
    auto args = [&](bool gpu) {
      fp8_layer_tail_args a;
      a.attn = gpu ? attn.gpu.get() : attn.cpu.get();
      a.o_proj = gpu ? &o_g : &o_c;
      if (s.bias) a.o_bias = gpu ? o_bias.gpu.get() : o_bias.cpu.get();
      a.post_norm = gpu ? post_norm.gpu.get() : post_norm.cpu.get();
      a.gate_up = gpu ? &gu_g : &gu_c;
      a.down = gpu ? &d_g : &d_c;
      a.next_norm = gpu ? next_norm.gpu.get() : next_norm.cpu.get();
      if (!s.last) {
        a.next_qkv = gpu ? &q_g : &q_c;
        if (s.bias) a.next_qkv_bias = gpu ? qkv_bias.gpu.get() : qkv_bias.cpu.get();
      }
      a.eps = 1e-6f;
      const auto pick = [&](const twin& w) { return gpu ? w.gpu.get() : w.cpu.get(); };
      a.residual = pick(residual);
      a.hidden = pick(hidden);
      a.residual_mid = pick(residual_mid);
      a.mlp = pick(mlp);
      a.act = pick(act);
      a.qkv = pick(qkv);
      if (s.rope) {
        a.rope.positions = pick(positions);
        a.rope.cos_sin = pick(cos_sin);
        a.rope.slot_mapping = pick(slots);
        a.rope.k_cache = pick(k_cache);
        a.rope.v_cache = pick(v_cache);
        a.rope.shape = rope_shape;
      }
      return a;
    };
    const twin& out = s.last ? hidden : qkv;  // what the next op reads
    const std::string what = std::string(s.note) + " H,A,I,N=" + dims({s.hidden, s.attn, s.inter, s.qkv});
    const auto reset_both = [&] {
      c.cpu.upload(residual.cpu, rounded(residual_values, t));
      c.gpu.upload(residual.gpu, rounded(residual_values, t));
    };

    // The CPU twin (where the kernel takes the step: the rows compare against it).
    reset_both();
    if (s.on_cpu) run_fp8_layer_tail(c.cpu, args(false));
    // The separate ops on the GPU, every product on the GEMV's arithmetic ("qgemv"), for the bits; from here on only
    // the GPU's stream goes back to its first values, the CPU's keeps the twin's result.
    const auto reset = [&] {
      c.gpu.upload(residual.gpu, rounded(residual_values, t));
      reset_caches();
    };
    reset();
    {
      const scoped_value<std::string> forced(cuda::fp8_settings().path, "qgemv");
      run_fp8_layer_tail(c.gpu, args(true));
    }
    const bytes ops_out = c.gpu_bytes(out), ops_residual = c.gpu_bytes(residual);
    const bytes ops_k = c.gpu_bytes(k_cache), ops_v = c.gpu_bytes(v_cache);

    {
      const scoped_value<int> off(cuda::fp8_settings().tail, 0);
      c.poison(out);
      const bytes poisoned = c.gpu_bytes(out);
      const bool took = c.gpu.fp8_layer_tail(args(true));
      report("fp8_layer_tail", t, what + " switch off", took ? 1.0 : 0.0, 0.0, "must leave the step to the ops");
      report("fp8_layer_tail", t, what + " switch off untouched",
             static_cast<double>(differing_elements(c.gpu_bytes(out), poisoned, size_in_bytes(t))), 0.0,
             "elements written");
    }
    // Each form (fp8_settings().tail 1-4: the staged row as values or codes, 4 or 8 loads ahead) the same bits.
    for (const int form : {1, 2, 3, 4}) {
      const scoped_value<int> on(cuda::fp8_settings().tail, form);
      const std::string row = what + " form " + std::to_string(form);
      reset();
      c.poison(out);
      c.poison(residual_mid);
      const bool took = c.gpu.fp8_layer_tail(args(true));
      report("fp8_layer_tail", t, row + " fused", took == s.fused ? 0.0 : 1.0, 0.0,
             s.fused ? "must take the step" : "must leave the step to the ops");
      if (!took) continue;
      report("fp8_layer_tail", t, row + " bits",
             static_cast<double>(differing_elements(c.gpu_bytes(out), ops_out, size_in_bytes(t)) +
                                 differing_elements(c.gpu_bytes(residual), ops_residual, size_in_bytes(t))),
             0.0, "elements of the output and the stream differing from the ops on the qgemv path");
      if (s.rope)
        report("fp8_layer_tail", t, row + " cache bits",
               static_cast<double>(differing_elements(c.gpu_bytes(k_cache), ops_k, size_in_bytes(kv)) +
                                   differing_elements(c.gpu_bytes(v_cache), ops_v, size_in_bytes(kv))),
               0.0, "cache elements differing from rope_write_kv's");
      // Against the CPU's f32 ops: four products, each input quantized to e4m3 from values the GPU rounds to t
      // first, so a code may land one step apart here and there; the stream itself is two additions of rounded values.
      if (s.on_cpu) {
        report("fp8_layer_tail", t, row + " vs cpu", c.error(out), 3 * tolerance_for(t));
        report("fp8_layer_tail", t, row + " stream vs cpu", c.error(residual), tolerance_for(t));
      }
      // Again, from the same inputs: a second launch finds the barrier as the first left it.
      reset();
      c.poison(out);
      c.gpu.fp8_layer_tail(args(true));
      report("fp8_layer_tail", t, row + " again",
             static_cast<double>(differing_elements(c.gpu_bytes(out), ops_out, size_in_bytes(t))), 0.0,
             "elements differing from the first launch's");
    }
  }
}

} // namespace

void check_fp8_layer_tail_ops(cuda_ops& gpu, dtype t) {
  checker c(gpu);
  guarded("fp8_layer_tail", [&] { check_layer_tail(c, t); });
}

} // namespace gpu_check
