// troupe_gpu_check, part 1 (attention): rope_write_kv and paged attention against their CPU twins (the same inputs
// on both; an FP8 KV cache holds the same codes on both, so rope_write_kv must write the same bytes), over the cases
// below, both kernels, the decode and prefill layouts, FP8 caches of either format.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "kernels/cuda/launchers.hpp"
#include "tools/gpu_check_twin.hpp"

using namespace troupe;

namespace gpu_check {
namespace {

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

// kv: nullopt keeps the caches in t; an FP8 case must leave the same bytes in both backends' caches.
} // namespace

void check_rope(checker& c, dtype t, std::optional<fp8_kv_case> kv) {
  struct shape {
    int32_t heads, kv_heads, d, block_size;
    int64_t tokens;
  };
  for (const shape& s : {shape{4, 1, 16, 16, 21}, {28, 4, 128, 16, 67}, {8, 8, 64, 32, 5}, {4, 2, 80, 16, 9}}) {
    const int64_t max_pos = 4096, num_blocks = 64, width = (s.heads + 2 * s.kv_heads) * int64_t(s.d);
    // FP8: values up to about 12, so that k / 0.011 saturates e4m3's 448 and v / 2.5 reaches its subnormals.
    auto qkv = c.random(t, {s.tokens, width}, kv ? 3.0f : 1.0f);
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
    // FP8 caches start from random codes: a slot the kernel misses keeps them and differs from the CPU's.
    auto kc = kv ? c.fp8_cache(kv->kv, {num_blocks, s.block_size, s.kv_heads, s.d}, 1.0f)
                 : c.random(t, {num_blocks, s.block_size, s.kv_heads, s.d});
    auto vc = kv ? c.fp8_cache(kv->kv, {num_blocks, s.block_size, s.kv_heads, s.d}, 1.0f)
                 : c.random(t, {num_blocks, s.block_size, s.kv_heads, s.d});
    attention_shape shape{s.heads, s.kv_heads, s.d, s.block_size, 1.0f};
    if (kv) shape.k_scale = kv->k_scale, shape.v_scale = kv->v_scale;
    c.cpu.rope_write_kv(qkv.cpu, pos_t.cpu, cos_sin.cpu, slot_t.cpu, kc.cpu, vc.cpu, shape);
    c.gpu.rope_write_kv(qkv.gpu, pos_t.gpu, cos_sin.gpu, slot_t.gpu, kc.gpu, vc.gpu, shape);
    const std::string what = "T=" + std::to_string(s.tokens) + " nH,nKV,D=" + dims({s.heads, s.kv_heads, s.d}) +
                             " bs=" + std::to_string(s.block_size);
    if (!kv) {
      report("rope_write_kv", t, what, std::max({c.error(qkv), c.error(kc), c.error(vc)}), tolerance_for(t));
      continue;
    }
    // The rotated q and k within the dtype's tolerance; the caches to the byte (else the row fails).
    const size_t differ = c.differing_bytes(kc) + c.differing_bytes(vc);
    const size_t bytes = 2 * kc.cpu.get().num_bytes();
    report("rope_write_kv", t, what + fp8_note(*kv), differ == 0 ? c.error(qkv) : double(INFINITY), tolerance_for(t),
           differ == 0 ? "all " + std::to_string(bytes) + " cache bytes as the CPU's"
                       : std::to_string(differ) + " of " + std::to_string(bytes) + " cache bytes differ from the CPU's");
  }
}

namespace {

// One attention case: sequences given as (new tokens, context length after the step).
struct attention_case {
  std::string name;
  int32_t heads, kv_heads, d, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;
  int32_t window = 0;
  float q_scale = 1.0f;  // q's values times this, the softmax scale over it (the same scores from larger or smaller q)
};

// kv: nullopt keeps the caches in t; else FP8 caches holding the same codes on both backends.
void check_attention(checker& c, dtype t, const attention_case& ac, std::optional<fp8_kv_case> kv = std::nullopt) {
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
  auto qkv = c.random(t, {tokens, width}, ac.q_scale);
  auto kc = kv ? c.fp8_cache(kv->kv, {num_blocks, bs, ac.kv_heads, ac.d}, kv->k_scale)
               : c.random(t, {num_blocks, bs, ac.kv_heads, ac.d});
  auto vc = kv ? c.fp8_cache(kv->kv, {num_blocks, bs, ac.kv_heads, ac.d}, kv->v_scale)
               : c.random(t, {num_blocks, bs, ac.kv_heads, ac.d});
  auto qs = c.ints<int32_t>({num_seqs + 1}, query_start);
  auto sl = c.ints<int32_t>({num_seqs}, seq_lens);
  auto bt = c.ints<int32_t>({num_seqs, max_blocks}, tables);
  auto out = c.random(t, {tokens, ac.heads * int64_t(ac.d)});
  c.poison(out);
  attention_shape shape{ac.heads, ac.kv_heads, ac.d, bs, 1.0f / std::sqrt(float(ac.d)) / ac.q_scale};
  if (kv) shape.k_scale = kv->k_scale, shape.v_scale = kv->v_scale;
  attention_metadata m;
  m.num_seqs = num_seqs;
  m.max_query_len = max_q;
  m.max_seq_len = max_len;
  m.sliding_window = ac.window;
  set_multi_token_range(m, query_start);  // the GPU's launch for many-token sequences spans only their range
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
  if (kv) what += fp8_note(*kv);
  int part_keys = 0;
  const int parts = cuda::paged_attention_partitions(m, shape, t, tokens, int64_t{16} << 20, &part_keys);
  report("paged_attention", t, what, c.error(out), tolerance_for(t),
         parts > 1 ? "context split in " + std::to_string(parts) + " x " + std::to_string(part_keys) : "");
}

const std::vector<attention_case>& attention_cases() {
  static const std::vector<attention_case> cases = {
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
      // Decodes before and after the prompt chunks: the many-token launch starts at sequence 2.
      {"mixed_tail", 28, 4, 128, 16, {{1, 50}, {1, 300}, {30, 100}, {1, 20}, {17, 17}, {1, 64}}},
      {"long", 28, 4, 128, 16, {{300, 900}, {1, 2000}, {1, 3000}}},
      {"long_window", 16, 16, 64, 16, {{200, 700}, {1, 1500}}, 300},
      {"group16", 32, 2, 64, 32, {{1, 400}, {1, 90}}},
  };
  return cases;
}

} // namespace

void check_attention_all(checker& c, dtype t) {
  // Each case on the tensor-core kernel (bf16/f16 with head_dim 64-128) and on the CUDA-core kernel.
  for (const bool simt : {false, true}) {
    set_simt_attention(simt);
    for (auto ac : attention_cases()) {
      if (simt) ac.name += " (cuda cores)";
      check_attention(c, t, ac);
    }
  }
  set_simt_attention(false);
  // The prefill layout's lean form (attention_settings().prefill_lean: Q in registers first, three blocks an SM) on every
  // case with prompt rows.
  if (t != dtype::f32) {
    const scoped_value<bool> lean(cuda::attention_settings().prefill_lean, true);
    for (auto ac : attention_cases())
      if (ac.name != "decode" && ac.name != "group16") {
        ac.name += " (lean prefill)";
        check_attention(c, t, ac);
      }
  }
  // head_dim 128's decode layout in its deep form (3 tiles in flight, attention_settings().decode_stages = 3)
  // beside the default two.
  const scoped_value<int> deep(cuda::attention_settings().decode_stages, 3);
  for (auto ac : attention_cases())
    if (ac.d == 128 && t != dtype::f32) {
      ac.name += " (deep decode)";
      check_attention(c, t, ac);
    }
}

// The F16 form (attention_settings().fp8_f16: codes to f16 by cvt, f16 mma) on every tensor-core case of
// check_attention_fp8, both layouts; in bf16 also with q far above f16's range (x3e5: values past 65,504) and far below
// it (x1e-6), which its power of two brings into range. troupe_gpu_check --fp8-kv-f16 runs these alone.
void check_attention_fp8_f16(checker& c, dtype t) {
  const std::vector<std::string> names = {"decode", "prefill", "chunked", "window", "d80",
                                          "two_new", "group16", "tiny", "d256"};
  if (t == dtype::f32) return;
  const scoped_value<bool> in_f16(cuda::attention_settings().fp8_f16, true);
  // Direct (attention_settings().fp8_direct): the decode layout's codes straight into fragments; the cases with
  // decode-layout launches (prefill has none; d80 keeps the converting form, 80 not being a multiple of 32).
  for (const bool direct : {false, true}) {
    const scoped_value<bool> straight(cuda::attention_settings().fp8_direct, direct);
    const std::string form = direct ? "f16 direct" : "f16";
    for (const fp8_kv_case& kv : fp8_kv_cases)
      for (const attention_case& base : attention_cases()) {
        if (std::find(names.begin(), names.end(), base.name) == names.end() || base.name == "tiny" || base.name == "d256")
          continue;
        if (direct && base.name == "prefill") continue;
        attention_case ac = base;
        ac.name += " (" + form + ")";
        check_attention(c, t, ac, kv);
        if (t != dtype::bf16 || (base.name != "decode" && base.name != "prefill")) continue;
        for (const float q_scale : {3e5f, 1e-6f}) {
          attention_case scaled = base;
          scaled.q_scale = q_scale;
          scaled.name += " (" + form + (q_scale > 1.0f ? ", q x3e5)" : ", q x1e-6)");
          check_attention(c, t, scaled, kv);
        }
      }
    const scoped_value<int> deep(cuda::attention_settings().decode_stages, 3);  // 4 tiles in flight
    for (const fp8_kv_case& kv : fp8_kv_cases)
      for (auto ac : attention_cases())
        if (ac.d == 128 && (ac.name == "decode" || ac.name == "group16")) {
          ac.name += " (" + form + ", deep decode)";
          check_attention(c, t, ac, kv);
        }
  }
  // Direct with three tiles in flight (attention_settings().direct_stages) on every head_dim-128 case with a decode-layout
  // launch.
  const scoped_value<bool> straight(cuda::attention_settings().fp8_direct, true);
  const scoped_value<int> three(cuda::attention_settings().direct_stages, 3);
  for (const fp8_kv_case& kv : fp8_kv_cases)
    for (auto ac : attention_cases())
      if (ac.d == 128 && std::find(names.begin(), names.end(), ac.name) != names.end() && ac.name != "prefill" &&
          ac.name != "tiny" && ac.name != "d256") {
        ac.name += " (f16 direct, 3 stages)";
        check_attention(c, t, ac, kv);
      }
}

// FP8 caches: decode with its context split (decode, group16), two new tokens a sequence, prefill, prefill
// after a cached prefix beside decodes (chunked: two launches of the tensor-core kernel), a sliding window,
// head_dim 80 (tensor cores), and 16 and 256 (CUDA cores only), each format with scales of 1.0 and not, on
// both kernels (f32 has the CUDA-core one only). Not "long": the CPU twin would take minutes over it.
void check_attention_fp8(checker& c, dtype t) {
  const std::vector<std::string> names = {"decode", "prefill", "chunked", "window", "d80",
                                          "two_new", "group16", "tiny", "d256"};
  // The tensor-core kernel with bf16/f16 tiles (the default); the F16 form has its rows in check_attention_fp8_f16.
  const scoped_value<bool> tiles(cuda::attention_settings().fp8_f16, false);
  for (const bool simt : {false, true}) {
    if (simt && t == dtype::f32) break;
    set_simt_attention(simt);
    for (const fp8_kv_case& kv : fp8_kv_cases)
      for (auto ac : attention_cases()) {
        if (std::find(names.begin(), names.end(), ac.name) == names.end()) continue;
        if (simt) ac.name += " (cuda cores)";
        check_attention(c, t, ac, kv);
      }
  }
  set_simt_attention(false);
  if (t != dtype::f32) {  // the prefill layout's lean form, as check_attention_all
    const scoped_value<bool> lean(cuda::attention_settings().prefill_lean, true);
    for (const fp8_kv_case& kv : fp8_kv_cases)
      for (auto ac : attention_cases())
        if (std::find(names.begin(), names.end(), ac.name) != names.end() && ac.name != "decode" && ac.name != "group16") {
          ac.name += " (lean prefill)";
          check_attention(c, t, ac, kv);
        }
  }
  check_attention_fp8_f16(c, t);
  const scoped_value<int> deep(cuda::attention_settings().decode_stages, 3);  // 4 tiles in flight, as check_attention_all
  if (t != dtype::f32)
    for (const fp8_kv_case& kv : fp8_kv_cases)
      for (auto ac : attention_cases())
        if (ac.d == 128 && std::find(names.begin(), names.end(), ac.name) != names.end()) {
          ac.name += " (deep decode)";
          check_attention(c, t, ac, kv);
        }
}

} // namespace gpu_check
