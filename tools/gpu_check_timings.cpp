// troupe_gpu_check, part 4: a few timings at Qwen2.5-7B shapes (informative, no pass/fail). Attention runs
// with a bf16 cache and an FP8 one (issue 13). Each op is timed in a stream of calls (stream_ms: what it costs
// inside a step); before 2026-12-05 (sixth session) each call was waited for, which added ~10 us of launch and
// synchronization to every figure (the small linears' most of all).

#include <algorithm>
#include <map>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;

namespace gpu_check {
namespace {

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

// An FP8 cache of random codes (normal values rounded, as rope_write_kv writes them).
// Random FP8 codes of magnitude below 2 in e4m3 and e5m2 alike (sign, and the low 6 bits: an exponent at most the
// bias), never NaN: eight codes a xorshift step (a normal draw per code made the KV caches' fills most of the
// timings' minute and a half).
void fill_fp8(cuda_ops& gpu, const tensor& t) {
  std::vector<uint8_t> codes(static_cast<size_t>(t.numel()));
  uint64_t x = rng() | 1;
  for (size_t i = 0; i < codes.size(); ++i) {
    if (i % 8 == 0) x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    codes[i] = static_cast<uint8_t>((x >> (8 * (i % 8))) & 0xBF);
  }
  gpu.upload_raw(t, codes.data());
}

// Attention over sequences given as (new tokens, context after the step), Qwen2.5-7B heads (28 / 4 of 128),
// blocks of 16 laid out one sequence after another, the cache in `kv` (bf16 or FP8); milliseconds per call.
double time_attention(cuda_ops& gpu, const std::vector<std::pair<int32_t, int32_t>>& seqs, dtype kv,
                      bool whole_batch_launch = false) {
  const dtype t = dtype::bf16;
  const int32_t bs = 16, nh = 28, nkv = 4, d = 128;
  int32_t max_q = 0, max_len = 0, mb = 0;
  std::vector<int32_t> qs{0}, sl;
  for (auto [q, len] : seqs) {
    qs.push_back(qs.back() + q);
    sl.push_back(len);
    max_q = std::max(max_q, q);
    max_len = std::max(max_len, len);
    mb = std::max(mb, (len + bs - 1) / bs);
  }
  const int32_t n = static_cast<int32_t>(seqs.size()), tokens = qs.back();
  auto qkv = gpu.alloc(t, {tokens, (nh + 2 * nkv) * d});
  auto kc = gpu.alloc(kv, {int64_t(n) * mb, bs, nkv, d});
  auto vc = gpu.alloc(kv, {int64_t(n) * mb, bs, nkv, d});
  auto out = gpu.alloc(t, {tokens, nh * d});
  fill(gpu, qkv);
  for (const tensor* c : {&kc.get(), &vc.get()}) {
    if (kv == t) fill(gpu, *c);
    else fill_fp8(gpu, *c);
  }
  std::vector<int32_t> bt(size_t(n) * mb);
  std::iota(bt.begin(), bt.end(), 0);
  auto qs_t = gpu.alloc(dtype::i32, {n + 1}), sl_t = gpu.alloc(dtype::i32, {n}), bt_t = gpu.alloc(dtype::i32, {n, mb});
  gpu.upload_raw(qs_t, qs.data());
  gpu.upload_raw(sl_t, sl.data());
  gpu.upload_raw(bt_t, bt.data());
  attention_metadata m{qs_t, sl_t, bt_t, n, max_q, max_len, 0};
  if (!whole_batch_launch) set_multi_token_range(m, qs);  // as the model sets it
  attention_shape s{nh, nkv, d, bs, 0.088f};
  if (kv != t) s.k_scale = 0.5f, s.v_scale = 2.0f;
  return stream_ms(gpu, [&] { gpu.paged_attention(qkv, kc, vc, m, s, out); });
}

std::string kv_label(dtype kv) { return kv == dtype::f8_e4m3 ? " kv=fp8_e4m3" : kv == dtype::f8_e5m2 ? " kv=fp8_e5m2" : ""; }

// A linear layer of Qwen2.5-7B at a row count: x [rows, k] by weight [n, k].
struct layer_shape {
  const char* name;
  int64_t rows, k, n;
};
// gate_up at each of gate_up_rows, then the decode step's other linears (qkv, o_proj, down) at 1 and 8 rows: the
// small ones show launch and tail costs.
std::vector<layer_shape> qwen7b_linears(std::initializer_list<int64_t> gate_up_rows) {
  std::vector<layer_shape> shapes;
  for (int64_t rows : gate_up_rows) shapes.push_back({"gate_up", rows, 3584, 2 * 18944});
  for (int64_t rows : {1, 8}) {
    shapes.push_back({"qkv", rows, 3584, 4608});
    shapes.push_back({"o_proj", rows, 3584, 3584});
    shapes.push_back({"down", rows, 18944, 3584});
  }
  return shapes;
}

} // namespace

void time_ops(cuda_ops& gpu, bool only_attention) {
  const dtype t = dtype::bf16;
  char buf[160];
  // Decode attention, 28 query / 4 KV heads of 128, blocks of 16: 256 sequences of 640 (no context split),
  // 64 of 4096 (split). Bytes of K/V read, and positions (of a sequence, all KV heads) per second: an FP8
  // cache reads half the bytes a position, so at the same GB/s it attends twice the positions.
  // An FP8 cache also on f16 mma (attention_settings().fp8_f16, "f16"), and so with its codes read straight into
  // fragments (attention_settings().fp8_direct, "f16 direct").
  for (const auto& [seqs, ctx] : {std::pair<int32_t, int32_t>{256, 640}, {64, 4096}})
    for (const dtype kv : {t, dtype::f8_e4m3, dtype::f8_e5m2})
      for (const int form : {0, 1, 2, 3}) {  // tensor cores, CUDA cores, tensor cores in f16, f16 direct
        const bool simt = form == 1, f16 = form >= 2, direct = form == 3;
        if ((simt && ctx != 640) || (f16 && kv == t) || (kv == dtype::f8_e5m2 && !f16 && ctx != 640)) continue;
        set_simt_attention(simt);
        const scoped_value<bool> in_f16(cuda::attention_settings().fp8_f16, f16);
        const scoped_value<bool> straight(cuda::attention_settings().fp8_direct, direct);
        const double ms = time_attention(gpu, std::vector<std::pair<int32_t, int32_t>>(size_t(seqs), {1, ctx}), kv);
        const double positions = double(seqs) * ctx;
        const double gb = 2.0 * positions * 4 * 128 * double(size_in_bytes(kv)) / 1e9;
        std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V, %.2f G positions/s", ms, gb / (ms / 1e3),
                      positions / (ms / 1e3) / 1e9);
        inform(std::string(simt ? "time paged_attention (cuda cores)" : "time paged_attention") + kv_label(kv) +
                   (direct ? " f16 direct" : f16 ? " f16" : ""),
               t, "decode S=" + std::to_string(seqs) + " ctx=" + std::to_string(ctx) + " 28/4x128", buf);
      }
  set_simt_attention(false);
  // An FP8 cache's Direct decode form (the default) with two stages and four blocks an SM, three stages and four blocks
  // (attention_settings().direct_stages, swizzled), four stages and two blocks (the deep layout, decode_stages 3);
  // at 64 x 4,096 also with longer partitions of the context (256 blocks: 128 keys each by default, two tiles).
  for (const auto& [seqs, ctx] : {std::pair<int32_t, int32_t>{256, 640}, {64, 4096}})
    for (const int form : {0, 1, 2})
      for (const int keys : {0, 256, 512, 1024}) {
        if (keys > 0 && ctx == 640) continue;
        const scoped_value<int> three(cuda::attention_settings().direct_stages, form == 1 ? 3 : 2);
        const scoped_value<int> deep(cuda::attention_settings().decode_stages, form == 2 ? 3 : 0);
        const scoped_value<int> part(cuda::attention_settings().part_keys, keys);
        const double ms = time_attention(gpu, std::vector<std::pair<int32_t, int32_t>>(size_t(seqs), {1, ctx}),
                                         dtype::f8_e4m3);
        const double gb = 2.0 * seqs * ctx * 4 * 128 / 1e9;
        std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V", ms, gb / (ms / 1e3));
        inform(std::string("time paged_attention f16 direct, ") +
                   (form == 0 ? "2 stages" : form == 1 ? "3 stages" : "4 stages (deep)") +
                   (keys ? ", part_keys=" + std::to_string(keys) : std::string()) + kv_label(dtype::f8_e4m3),
               t, "decode S=" + std::to_string(seqs) + " ctx=" + std::to_string(ctx) + " 28/4x128", buf);
      }
  // Partition length for large batches (1024 = no split at this context).
  if (!only_attention) {
    for (const int keys : {64, 128, 256, 384, 1024}) {
      cuda::attention_settings().part_keys = keys;
      const double ms = time_attention(gpu, std::vector<std::pair<int32_t, int32_t>>(256, {1, 640}), t);
      const double gb = 2.0 * 256 * 640 * 4 * 128 * 2 / 1e9;
      std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V", ms, gb / (ms / 1e3));
      inform("time paged_attention part_keys=" + std::to_string(keys), t, "decode S=256 ctx=640 28/4x128", buf);
    }
    cuda::attention_settings().part_keys = 0;
    // The default two tiles in flight (three blocks an SM) against the deep layout's 3 (bf16) or 4 (FP8), at 256
    // sequences of 640 and 64 of 4096.
    for (const dtype kv : {t, dtype::f8_e4m3})
      for (const int stages : {0, 3})
        for (const int ctx : {640, 4096}) {
          const scoped_value<int> forced(cuda::attention_settings().decode_stages, stages);
          const int seqs = ctx == 640 ? 256 : 64;
          const double ms = time_attention(gpu, std::vector<std::pair<int32_t, int32_t>>(size_t(seqs), {1, ctx}), kv);
          const double gb = 2.0 * seqs * ctx * 4 * 128 * double(size_in_bytes(kv)) / 1e9;
          std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s of K/V", ms, gb / (ms / 1e3));
          inform(std::string("time paged_attention stages=") + (stages ? "3 (deep)" : "default") + kv_label(kv), t,
                 "decode S=" + std::to_string(seqs) + " ctx=" + std::to_string(ctx) + " 28/4x128", buf);
        }
  }
  // Prefill: 4 prompts of 512; one prompt of 4096; 2048 new tokens after 6144 cached (a chunked long prompt); each on
  // the tensor cores and in their lean form (attention_settings().prefill_lean), 4 x 512 also on the CUDA cores.
  for (const dtype kv : {t, dtype::f8_e4m3})
    for (const auto& [n, q, len] : {std::tuple<int, int32_t, int32_t>{4, 512, 512}, {1, 4096, 4096}, {1, 2048, 8192}})
      for (const int form : {0, 1, 2, 3}) {  // tensor cores, CUDA cores, lean, an FP8 cache on f16 mma
        if ((form == 1 && n == 1) || (form == 3 && kv == t)) continue;
        set_simt_attention(form == 1);
        const scoped_value<bool> lean(cuda::attention_settings().prefill_lean, form == 2);
        const scoped_value<bool> in_f16(cuda::attention_settings().fp8_f16, form == 3);
        const double ms = time_attention(gpu, std::vector<std::pair<int32_t, int32_t>>(size_t(n), {q, len}), kv);
        // Keys each query sees: the cached ones, then causally among the new.
        const double pairs = double(n) * (double(q) * (len - q) + double(q) * q / 2);
        const double tflop = 4.0 * 28 * 128 * pairs / 1e12;
        std::snprintf(buf, sizeof buf, "%.3f ms, %.1f TFLOP/s", ms, tflop / (ms / 1e3));
        const std::string name = form == 1 ? "time paged_attention (cuda cores)"
                                 : form == 2 ? "time paged_attention lean prefill"
                                 : form == 3 ? "time paged_attention f16"
                                             : "time paged_attention";
        inform(name + kv_label(kv), t,
               "prefill " + (n > 1 ? std::to_string(n) + "x" + std::to_string(q)
                                   : std::to_string(q) + " new of " + std::to_string(len)) + " 28/4x128",
               buf);
      }
  set_simt_attention(false);
  // A mixed step: 3 prompt chunks of 512 (after 0, 512 and 1024 cached positions) beside 200 decodes of 640, the
  // decodes first as the scheduler orders them; on tensor cores also with the many-token launch over the whole batch
  // (as before the metadata carried the many-token range: 56 row tiles for every one of the 203 sequences).
  {
    std::vector<std::pair<int32_t, int32_t>> mixed;
    for (int i = 0; i < 200; ++i) mixed.push_back({1, 640});
    for (int i = 0; i < 3; ++i) mixed.push_back({512, 512 * (i + 1)});
    for (const dtype kv : {t, dtype::f8_e4m3})
      for (const int form : {0, 1, 2, 3, 4}) {  // tensor cores, the same over the whole batch, CUDA cores, FP8 on f16
                                                 // mma, that with the decodes direct
        if (form >= 3 && kv == t) continue;
        set_simt_attention(form == 2);
        const scoped_value<bool> in_f16(cuda::attention_settings().fp8_f16, form >= 3);
        const scoped_value<bool> straight(cuda::attention_settings().fp8_direct, form == 4);
        std::snprintf(buf, sizeof buf, "%.3f ms", time_attention(gpu, mixed, kv, form == 1));
        inform(std::string(form == 2 ? "time paged_attention (cuda cores)" : "time paged_attention") + kv_label(kv) +
                   (form == 1 ? " whole-batch launch" : form == 3 ? " f16" : form == 4 ? " f16 direct" : ""),
               t, "mixed 3x512 prefill + 200 decodes", buf);
      }
    set_simt_attention(false);
  }
  if (only_attention) return;
  // The MLP GEMMs of one decode step of 256 sequences, and of a 2048-token prefill step.
  for (int64_t rows : {256, 2048}) {
    const int64_t h = 3584, inter = 18944;
    auto x = gpu.alloc(t, {rows, h});
    auto w = gpu.alloc(t, {2 * inter, h});
    auto out = gpu.alloc(t, {rows, 2 * inter});
    fill(gpu, x);
    fill(gpu, w);
    const double ms = stream_ms(gpu, [&] { gpu.linear(x, w, tensor{}, out, false); });
    const double tflop = 2.0 * rows * h * 2 * inter / 1e12;
    std::snprintf(buf, sizeof buf, "%.3f ms, %.0f TFLOP/s, %.0f GB/s of weights", ms, tflop / (ms / 1e3),
                  2.0 * h * 2 * inter / 1e9 / (ms / 1e3));
    inform("time linear gate_up", t, "T,K,N=" + dims({rows, h, 2 * inter}), buf);
  }
  time_int4(gpu);
}

// 4-bit weights (issue 12), at Qwen2.5-7B shapes in groups of 128: the decode kernels' achieved bandwidth (bytes: the
// packed weights, scales and zeros, read once; x and out are small) on each variant, and the large-batch paths' TFLOP/s.
void time_int4(cuda_ops& gpu) {
  const dtype t = dtype::bf16;
  char buf[200];
  // Ceilings: 4.14 TB/s copy, 737 TFLOP/s bf16 (GPU.md, H200).
  std::vector<layer_shape> int4_shapes = qwen7b_linears({1, 2, 4, 8, 16, 32, 64, 256, 4096});
  for (const int64_t rows : {32, 64, 256}) {  // the decode step's other layers at batches, for the GEMMs' rows
    int4_shapes.push_back({"qkv", rows, 3584, 4608});
    int4_shapes.push_back({"o_proj", rows, 3584, 3584});
    int4_shapes.push_back({"down", rows, 18944, 3584});
  }
  // One weight per layer shape, made once (filling 68 MB of random words per row count took most of the time).
  struct int4_weight {
    device_buffer words, scales, zeros;
  };
  std::map<std::pair<int64_t, int64_t>, int4_weight> int4_weights;
  const int64_t group = 128;
  for (const auto& [layer, rows, h, n] : int4_shapes) {
    auto [it, made] = int4_weights.try_emplace({h, n});
    int4_weight& iw = it->second;
    if (made) {
      iw.words = gpu.alloc(dtype::i32, {n, h / 8});
      iw.scales = gpu.alloc(t, {n, h / group});
      iw.zeros = gpu.alloc(t, {n, h / group});
      fill(gpu, iw.scales);
      std::vector<int32_t> w(static_cast<size_t>(n * h / 8));
      uint64_t r = rng();
      for (auto& v : w) r ^= r << 13, r ^= r >> 7, r ^= r << 17, v = static_cast<int32_t>(r);
      gpu.upload_raw(iw.words, w.data());
      std::vector<float> z(static_cast<size_t>(n * h / group));
      for (auto& v : z) r ^= r << 13, r ^= r >> 7, r ^= r << 17, v = static_cast<float>(r % 16);
      gpu.upload(iw.zeros, z);
    }
    auto x = gpu.alloc(t, {rows, h});
    auto out = gpu.alloc(t, {rows, n});
    fill(gpu, x);
    const int4_device_weight w{iw.words, iw.scales, iw.zeros, static_cast<int32_t>(group)};
    // The W4A16 paths whatever int4_fp8_rows() says (TROUPE_INT4_FP8_ROWS); the FP8 form's rows below set it.
    const scoped_value<int64_t> w4a16(int4_fp8_rows(), 0);
    // Up to 32 rows also on the kernel that stages its weights by cp.async (int4_settings().async).
    // From 16 rows to 512 also on the shared-memory GEMM (int4_settings().gemm).
    // Up to 32 rows also on the ring kernel's variants (int4_settings().ring); "" is int4_mma_kernel up to 32 rows.
    // "wide": the wide kernel where it takes the layer by default (gate_up), the register kernel elsewhere; the other
    // variants with it off.
    // "async lean", "ring1 lean" and "wide lean": their lean form (int4_settings().lean), up to 8 rows.
    // From 16 rows up also on the warpgroup-MMA GEMM (int4_settings().wgmma), alone and overlapping stages
    // (int4_settings().wgmma_overlap), from 256 with its 256-row tiles too, alone and overlapping.
    for (const std::string variant : {"", "async", "ring1", "ring2", "ring3", "ring5", "wide", "async lean", "ring1 lean",
                                      "wide lean", "gemm", "wgmma", "wgmma overlap", "wgmma 256", "wgmma 256 overlap"}) {
      if (variant == "gemm"                       ? rows < 16 || rows > 512
          : variant == "wgmma" || variant == "wgmma overlap" ? rows < 16
          : variant.starts_with("wgmma 256")               ? rows < 256
                                   : !variant.empty() && rows > 32)
        continue;
      const bool lean = variant.ends_with(" lean");
      if (lean && rows > 8) continue;
      const scoped_value<bool> leaner(cuda::int4_settings().lean, lean);
      const bool async = variant.starts_with("async");
      const scoped_value<int> forced(cuda::int4_settings().async, async ? 1 : 0);
      const scoped_value<int> gemm(cuda::int4_settings().gemm, variant == "gemm" ? 1 : 0);
      const scoped_value<int> wgmma(cuda::int4_settings().wgmma, variant.starts_with("wgmma") ? 2 : 0);
      const scoped_value<int> wgmma_rows(cuda::int4_settings().wgmma_rows, variant.starts_with("wgmma 256") ? 256 : 128);
      const scoped_value<bool> overlap(cuda::int4_settings().wgmma_overlap, variant.ends_with("overlap"));
      const scoped_value<int> ringed(cuda::int4_settings().ring, variant.starts_with("ring") ? variant[4] - '0' : 0);
      const scoped_value<bool> wide(cuda::int4_settings().wide, variant.starts_with("wide"));
      const double ms = stream_ms(gpu, [&] { gpu.linear_int4(x, w, tensor{}, out); });
      const double bytes = n * h / 2.0 + 2.0 * 2 * n * (h / group) + 2.0 * rows * (h + n);
      const double tflop = 2.0 * rows * h * n / 1e12;
      std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s, %.1f TFLOP/s", ms, bytes / 1e9 / (ms / 1e3), tflop / (ms / 1e3));
      inform(std::string("time linear_int4 ") + layer + (variant.empty() ? "" : " " + variant), t,
             "T,K,N=" + dims({rows, h, n}) + " G128", buf);
    }
    // The FP8 form (int4_fp8_rows(): the weight requantized to e4m3 each step, then linear_fp8), from 64 rows: its
    // channels' scales found each step, given (made at load), and the fused kernel (int4_settings().w4a8).
    if (rows >= 64) {
      auto fp8_scale = gpu.alloc(dtype::f32, {n});
      gpu.upload(fp8_scale, std::vector<float>(static_cast<size_t>(n), 1.0f / 64));
      for (const int form : {0, 1, 2, 3}) {  // 3: given, the conversion's quotient a weight (no table)
        int4_device_weight wf = w;
        if (form > 0) wf.fp8_scale = fp8_scale;
        const scoped_value<int64_t> from(int4_fp8_rows(), 1);
        const scoped_value<bool> fused(cuda::int4_settings().w4a8, form == 2);
        const scoped_value<bool> table(cuda::int4_settings().fp8_table, form != 3);
        const double ms = stream_ms(gpu, [&] { gpu.linear_int4(x, wf, tensor{}, out); });
        const double tflop = 2.0 * rows * h * n / 1e12;
        std::snprintf(buf, sizeof buf, "%.3f ms, %.1f TFLOP/s", ms, tflop / (ms / 1e3));
        inform(std::string("time linear_int4 ") + layer + kInt4Fp8Forms[form], t, "T,K,N=" + dims({rows, h, n}) + " G128", buf);
      }
    }
    // gate_up with silu_and_mul: the two ops (the wide kernel, then silu_and_mul) against linear_int4_silu, and it
    // with the next launch let into its tail (int4_settings().silu 2; here the next is itself).
    if (std::string_view(layer) == "gate_up" && rows <= 8) {
      auto act = gpu.alloc(t, {rows, n / 2});
      for (const int mode : {0, 1, 2, 3}) {  // 3: 2 in the lean form
        const scoped_value<int> silu(cuda::int4_settings().silu, std::min(mode, 2));
        const scoped_value<bool> lean(cuda::int4_settings().lean, mode == 3);
        const double ms = stream_ms(gpu, [&] {
          if (!gpu.linear_int4_silu(x, w, tensor{}, act)) gpu.linear_int4(x, w, tensor{}, out), gpu.silu_and_mul(out, act);
        });
        std::snprintf(buf, sizeof buf, "%.3f ms", ms);
        inform(std::string("time linear_int4 gate_up + silu_and_mul") +
                   (mode == 0 ? " (two ops)" : mode == 1 ? " fused" : mode == 2 ? " fused tail" : " fused tail lean"),
               t, "T,K,N=" + dims({rows, h, n}) + " G128", buf);
      }
    }
  }
}

namespace {

// One weight per layer shape, bf16 and FP8 codes with their scales, made once (the FP8 timings).
struct fp8_weights_made {
  struct weights {
    device_buffer bf16, codes, scale;
  };
  std::map<std::pair<int64_t, int64_t>, weights> made;
  const weights& get(cuda_ops& gpu, int64_t h, int64_t n) {
    auto [it, fresh] = made.try_emplace({h, n});
    weights& w = it->second;
    if (fresh) {
      w.bf16 = gpu.alloc(dtype::bf16, {n, h});
      fill(gpu, w.bf16);
      w.codes = gpu.alloc(dtype::f8_e4m3, {n, h});
      fill_fp8(gpu, w.codes);
      w.scale = gpu.alloc(dtype::f32, {n});
      std::vector<float> sc(static_cast<size_t>(n), 0.01f);
      gpu.upload_raw(w.scale, sc.data());
    }
    return w;
  }
};

// The decode step's products in FP8 where the nineteenth session's kernels (2026-12-06) change them, first: at 256
// sequences (W1's decode steps) cuBLASLt's GEMM beside the warpgroup-MMA GEMM (linear_fp8_wgmma.cu) in its three forms;
// at one row (one request's steps) the quantizer + GEMV or mma path the launcher picks beside "qgemv" (the quantizer
// inside the GEMV), 1024-thread quantizer blocks and "gemv_split" (a block an output). troupe_gpu_check --fp8-decode-timing runs these alone.
void time_fp8_decode_products(cuda_ops& gpu, fp8_weights_made& made) {
  const dtype t = dtype::bf16;
  char buf[400];
  for (const layer_shape& shape : std::vector<layer_shape>{{"qkv", 1, 3584, 4608}, {"o_proj", 1, 3584, 3584},
                                                          {"down", 1, 18944, 3584}, {"gate_up", 1, 3584, 37888}}) {
    const fp8_weights_made::weights& w = made.get(gpu, shape.k, shape.n);
    auto x = gpu.alloc(t, {1, shape.k});
    auto out = gpu.alloc(t, {1, shape.n});
    fill(gpu, x);
    const fp8_device_weight fw{w.codes, w.scale, tensor{}};
    const double chosen_ms = stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
    const std::string chosen = cuda::fp8_settings().last_path.load();
    const auto timed = [&](const char* path, int wide_rows) {  // a forced path ("": the chosen one), the quantizer's blocks
      const scoped_value<std::string> forced(cuda::fp8_settings().path, path);
      const scoped_value<int> wide(cuda::fp8_settings().wide_rows, wide_rows);
      return stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
    };
    // Beside it: the quantizer inside the GEMV; the chosen path with 1024-thread quantizer blocks
    // (fp8_settings().wide_rows); a block an output (fp8_gemv_split_kernel), with 256- and 1024-thread quantizer blocks.
    const double qgemv_ms = timed("qgemv", 0), wide_ms = timed("", 1), split_ms = timed("gemv_split", 0),
                 split_wide_ms = timed("gemv_split", 1);
    const auto gbs = [&](double ms) { return 1.0 * shape.k * shape.n / 1e9 / (ms / 1e3); };
    std::snprintf(buf, sizeof buf,
                  "%s %.4f ms (%.0f GB/s of weights), qgemv %.4f (%.0f), wide quantizer %.4f (%.0f), gemv_split "
                  "%.4f (%.0f), gemv_split + wide quantizer %.4f (%.0f)",
                  chosen.c_str(), chosen_ms, gbs(chosen_ms), qgemv_ms, gbs(qgemv_ms), wide_ms, gbs(wide_ms), split_ms,
                  gbs(split_ms), split_wide_ms, gbs(split_wide_ms));
    inform(std::string("time decode-1 ") + shape.name, t, "T,K,N=" + dims({1, shape.k, shape.n}), buf);
  }
  // The decode step's GEMMs at 256 sequences (W1's decode steps) in bf16 and FP8, planned without and with the split-K
  // candidates (cuda::gemm_settings().split_k), and over 32 of the heuristic's algorithms instead of 8
  // (cuda::gemm_settings().candidates): the layers with few outputs make few tiles (H100 W1 profile, 2026-12-05, FP8:
  // down_proj 441 TFLOP/s, o_proj 257, q/k/v 368, gate_up 883).
  for (const layer_shape& shape : std::vector<layer_shape>{{"qkv", 256, 3584, 4608}, {"o_proj", 256, 3584, 3584},
                                                          {"down", 256, 18944, 3584}, {"gate_up", 256, 3584, 37888}}) {
    const fp8_weights_made::weights& w = made.get(gpu, shape.k, shape.n);
    auto x = gpu.alloc(t, {shape.rows, shape.k});
    auto out = gpu.alloc(t, {shape.rows, shape.n});
    fill(gpu, x);
    const fp8_device_weight fw{w.codes, w.scale, tensor{}};
    const double tflop = 2.0 * shape.rows * shape.k * shape.n / 1e12;
    // The default tuning, with split-K variants, over 32 heuristic candidates, with FP8 fast accumulation
    // (cuda::gemm_settings().fp8_fast_accum), fast accumulation over 32 candidates.
    for (const int form : {0, 1, 2, 3, 4}) {
      const bool split = form == 1;
      const scoped_value<bool> split_k(cuda::gemm_settings().split_k, split);
      const scoped_value<int> candidates(cuda::gemm_settings().candidates,
                                         form == 2 || form == 4 ? 32 : cuda::gemm_settings().candidates);
      const scoped_value<bool> fast(cuda::gemm_settings().fp8_fast_accum, form >= 3);
      const double bf16_ms = stream_ms(gpu, [&] { gpu.linear(x, w.bf16, tensor{}, out, false); });
      const double fp8_ms = stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
      const std::string cublas_path = cuda::fp8_settings().last_path.load();
      // The same product on the warpgroup-MMA GEMM (linear_fp8_wgmma.cu): 128-row tiles, 64-row tiles, 256-row tiles
      // (fast accumulation only: 128 promoting), then its TMA form (fp8_settings().wgmma_tma) with 128 and 256.
      double wgmma_ms[5];
      for (const int variant : {0, 1, 2, 3, 4}) {
        const scoped_value<std::string> forced(cuda::fp8_settings().path, "wgmma");
        const scoped_value<int> wgmma_rows(cuda::fp8_settings().wgmma_rows,
                                           variant == 1 ? 64 : variant == 2 || variant == 4 ? 256 : 128);
        const scoped_value<bool> tma(cuda::fp8_settings().wgmma_tma, variant >= 3);
        wgmma_ms[variant] = stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
      }
      const auto tf = [&](double ms) { return tflop / (ms / 1e3); };
      std::snprintf(buf, sizeof buf,
                    "bf16 %.3f ms (%.0f TFLOP/s), fp8 %.3f ms (%.0f TFLOP/s, ran %s), wgmma %.3f (%.0f) / 64-row tiles "
                    "%.3f (%.0f) / 256-row tiles %.3f (%.0f), tma %.3f (%.0f) / 256-row tiles %.3f (%.0f)",
                    bf16_ms, tf(bf16_ms), fp8_ms, tf(fp8_ms), cublas_path.c_str(), wgmma_ms[0], tf(wgmma_ms[0]),
                    wgmma_ms[1], tf(wgmma_ms[1]), wgmma_ms[2], tf(wgmma_ms[2]), wgmma_ms[3], tf(wgmma_ms[3]),
                    wgmma_ms[4], tf(wgmma_ms[4]));
      static constexpr const char* kForm[] = {"", " split-K", " 32 candidates", " fast accum", " fast accum 32 candidates"};
      inform(std::string("time decode-256 ") + shape.name + kForm[form], t,
             "T,K,N=" + dims({shape.rows, shape.k, shape.n}), buf);
      if (form != 0) continue;
      // Where the FP8 time goes: cuBLASLt's GEMM alone on codes made before (linear_fp8_quantized: no quantizer, as a
      // step with TROUPE_FP8_FUSED has it), and the "epilogue" path (a per-tensor GEMM of unscaled sums, then a
      // kernel scaling them in place), which may choose other kernels than outer-vector scaling allows.
      double epilogue_ms = 0;
      {
        const scoped_value<std::string> forced(cuda::fp8_settings().path, "epilogue");
        epilogue_ms = stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
      }
      auto residual = gpu.alloc(t, {shape.rows, shape.k});
      auto norm = gpu.alloc(t, {shape.k});
      auto codes = gpu.alloc(dtype::f8_e4m3, {shape.rows, shape.k});
      auto scales = gpu.alloc(dtype::f32, {shape.rows});
      fill(gpu, residual);
      fill(gpu, norm);
      const fp8_activations in{codes.get(), scales.get()};
      gpu.add_rms_norm_fp8(x, residual, norm, 1e-6f, tensor{}, in);  // codes of the kind a step makes
      const double gemm_ms = stream_ms(gpu, [&] { gpu.linear_fp8_quantized(in, fw, tensor{}, out); });
      std::snprintf(buf, sizeof buf, "fp8 GEMM on codes made before %.3f ms (%.0f TFLOP/s, %s), epilogue path %.3f (%.0f)",
                    gemm_ms, tflop / (gemm_ms / 1e3), cuda::fp8_settings().last_path.load(), epilogue_ms,
                    tflop / (epilogue_ms / 1e3));
      inform(std::string("time decode-256 ") + shape.name + " parts", t, "T,K,N=" + dims({shape.rows, shape.k, shape.n}),
             buf);
    }
  }
}

} // namespace

void time_fp8_decode_timing(cuda_ops& gpu) {
  fp8_weights_made made;
  time_fp8_decode_products(gpu, made);
}

void time_fp8_weights(cuda_ops& gpu) {
  const dtype t = dtype::bf16;
  char buf[240];
  // FP8 weights (issue 13) at Qwen2.5-7B shapes beside the bf16 linear at the same rows: per-token quantization of
  // x plus the FP8 GEMM with its scales, on the path the launcher picks, on "gemv" (up to 4 rows), "mma" and
  // "mma_async" (up to 32 rows) and on "epilogue" (cuBLASLt's unscaled sums, scaled in place). gate_up at 1 to
  // 4,096 rows; the decode step's other layers at 1 and 8. Weight bytes per call: 1 a weight in FP8, 2 in bf16. Ceilings (GPU.md): 4.14 TB/s copy;
  // 737 TFLOP/s bf16, twice that in FP8.
  const std::vector<layer_shape> shapes = qwen7b_linears({1, 8, 32, 256, 4096});
  fp8_weights_made made;
  time_fp8_decode_products(gpu, made);  // first: what the nineteenth session's kernels need measured
  for (const auto& [layer, rows, h, n] : shapes) {
    const fp8_weights_made::weights& w = made.get(gpu, h, n);
    auto x = gpu.alloc(t, {rows, h});
    auto out = gpu.alloc(t, {rows, n});
    fill(gpu, x);
    const std::string what = "T,K,N=" + dims({rows, h, n});
    const double tflop = 2.0 * rows * h * n / 1e12;
    const double bf16_ms = stream_ms(gpu, [&] { gpu.linear(x, w.bf16, tensor{}, out, false); });
    std::snprintf(buf, sizeof buf, "%.3f ms, %.0f TFLOP/s, %.0f GB/s of weights", bf16_ms, tflop / (bf16_ms / 1e3),
                  2.0 * h * n / 1e9 / (bf16_ms / 1e3));
    inform(std::string("time linear ") + layer, t, what, buf);
    const fp8_device_weight fw{w.codes, w.scale, tensor{}};
    // "quantize_scalar": the chosen path with the element-by-element quantizer (fp8_settings().quantize_vec false).
    // "quantize_wide": the chosen path with 1024-thread quantizer blocks (fp8_settings().wide_rows). "w16": no quantizer
    // (W8A16, fp8_w16_rows()).
    for (const std::string path :
         {"", "quantize_scalar", "quantize_wide", "w16", "qgemv", "gemv", "gemv_split", "mma", "mma_async", "wgmma",
          "wgmma64", "epilogue"}) {
      if ((path == "qgemv" || path == "gemv_split") && rows > 1) continue;
      if (path.starts_with("wgmma") && rows < 8) continue;
      if ((path == "mma" || path == "mma_async") && rows > 32) continue;
      if ((path == "gemv" || path == "quantize_wide" || path == "w16") && rows > 4) continue;
      const scoped_value<int> wide(cuda::fp8_settings().wide_rows, path == "quantize_wide" ? 4 : 0);
      const scoped_value<bool> quantizer(cuda::fp8_settings().quantize_vec, path != "quantize_scalar");
      // "wgmma64": the wgmma path with 64-row tiles at any row count (fp8_settings().wgmma_rows).
      const scoped_value<int> wgmma_rows(cuda::fp8_settings().wgmma_rows, path == "wgmma64" ? 64 : 128);
      const scoped_value<std::string> forced(cuda::fp8_settings().path,
                                             path.starts_with("quantize") ? "" : path.starts_with("wgmma") ? "wgmma" : path);
      const double ms = stream_ms(gpu, [&] { gpu.linear_fp8(x, fw, tensor{}, out); });
      std::snprintf(buf, sizeof buf, "%.3f ms (%.2fx bf16), %.0f TFLOP/s, %.0f GB/s of weights, ran %s", ms, bf16_ms / ms,
                    tflop / (ms / 1e3), 1.0 * h * n / 1e9 / (ms / 1e3), cuda::fp8_settings().last_path.load());
      inform(std::string("time linear_fp8 ") + layer + (path.empty() ? "" : " " + path), t, what, buf);
    }
  }
}

} // namespace gpu_check
