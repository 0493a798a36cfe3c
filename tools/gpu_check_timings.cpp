// troupe_gpu_check, part 4: a few timings at Qwen2.5-7B shapes (informative, no pass/fail).

#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"
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

} // namespace

void time_ops(cuda_ops& gpu) {
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
  // 4-bit weights (issue 12), gate_up at Qwen2.5-7B shapes in groups of 128: the fused kernel's achieved
  // bandwidth at decode batches (bytes: the packed weights, scales and zeros, read once; x and out are
  // small), and the large-batch path's TFLOP/s. Ceilings: 4.14 TB/s copy, 737 TFLOP/s bf16 (GPU.md).
  struct int4_shape {
    const char* name;
    int64_t rows, k, n;
  };
  std::vector<int4_shape> int4_shapes;
  for (int64_t rows : {1, 2, 4, 8, 16, 32, 64, 256, 4096}) int4_shapes.push_back({"gate_up", rows, 3584, 2 * 18944});
  for (int64_t rows : {1, 8}) {  // the other layers of a decode step: the small ones show launch and tail costs
    int4_shapes.push_back({"qkv", rows, 3584, 4608});
    int4_shapes.push_back({"o_proj", rows, 3584, 3584});
    int4_shapes.push_back({"down", rows, 18944, 3584});
  }
  for (const auto& [layer, rows, h, n] : int4_shapes) {
    const int64_t group = 128;
    auto x = gpu.alloc(t, {rows, h});
    auto words = gpu.alloc(dtype::i32, {n, h / 8});
    auto scales = gpu.alloc(t, {n, h / group});
    auto zeros = gpu.alloc(t, {n, h / group});
    auto out = gpu.alloc(t, {rows, n});
    fill(gpu, x);
    fill(gpu, scales);
    {
      std::vector<int32_t> w(static_cast<size_t>(n * h / 8));
      uint64_t r = rng();
      for (auto& v : w) r ^= r << 13, r ^= r >> 7, r ^= r << 17, v = static_cast<int32_t>(r);
      gpu.upload_raw(words, w.data());
      std::vector<float> z(static_cast<size_t>(n * h / group));
      for (auto& v : z) r ^= r << 13, r ^= r >> 7, r ^= r << 17, v = static_cast<float>(r % 16);
      gpu.upload(zeros, z);
    }
    const int4_device_weight w{words, scales, zeros, static_cast<int32_t>(group)};
    const double ms = time_ms(gpu, [&] { gpu.linear_int4(x, w, tensor{}, out); });
    const double bytes = n * h / 2.0 + 2.0 * 2 * n * (h / group) + 2.0 * rows * (h + n);
    const double tflop = 2.0 * rows * h * n / 1e12;
    std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s, %.1f TFLOP/s", ms, bytes / 1e9 / (ms / 1e3), tflop / (ms / 1e3));
    inform(std::string("time linear_int4 ") + layer, t, "T,K,N=" + dims({rows, h, n}) + " G128", buf);
  }
}

} // namespace gpu_check
