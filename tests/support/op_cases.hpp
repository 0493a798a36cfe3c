#pragma once
// Every op of the interface (kernels/ops.hpp) on a step of `rows` rows, on any backend: one table that
// the CPU test (tests/op_rows_test.cpp) and the GPU check (tools/gpu_check_rows.cpp) both run.
//
// Each case writes into outputs preset to known values, through views of a step of `rows` rows (at most
// kCapacity). Inputs depend only on (row, column), never on `rows`, so:
// - at 0 rows an op must leave every output as it was (and must not fail);
// - what a 1-row step writes, a kCapacity-row step writes too, with the same values (no row reads
//   another row's inputs);
// - two backends given the same case agree.
// Outputs come back as fp32 (integer outputs converted), as they were before the op and after it.

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/ops.hpp"
#include "kernels/sampling_inputs.hpp"

namespace troupe::testing {

inline constexpr int64_t kCapacity = 3;

// A value in [-1, 1) that depends only on (tensor tag, row, column).
inline float op_case_value(uint32_t tag, int64_t row, int64_t col) {
  uint64_t x = (uint64_t{tag} << 48) ^ (static_cast<uint64_t>(row) << 24) ^ static_cast<uint64_t>(col);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<float>(x >> 40) / static_cast<float>(1 << 23) - 1.0f;
}

struct op_case_output {
  std::string name;
  std::vector<float> before, after;  // the whole output tensor
};

struct op_case {
  std::string name;
  // Runs the op on `rows` rows (0 ≤ rows ≤ kCapacity), floats in `type` (the CPU takes f32 only).
  std::function<std::vector<op_case_output>(ops& backend, int64_t rows, dtype type)> run;
};

namespace op_case_detail {

// A [kCapacity, width] tensor (or [n] when width is 0) of `type` filled from op_case_value(tag, ...).
inline device_buffer filled(ops& b, dtype type, uint32_t tag, int64_t n, int64_t width, float scale = 1.0f) {
  const int64_t w = width == 0 ? 1 : width;
  std::vector<float> v(static_cast<size_t>(n * w));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < w; ++c) v[static_cast<size_t>(r * w + c)] = scale * op_case_value(tag, r, c);
  device_buffer t = width == 0 ? b.alloc(type, {n}) : b.alloc(type, {n, width});
  b.upload(t, v);
  return t;
}

template <class I> device_buffer ints(ops& b, const std::vector<I>& values) {
  device_buffer t = b.alloc(sizeof(I) == 4 ? dtype::i32 : dtype::i64, {static_cast<int64_t>(values.size())});
  b.upload_raw(t, values.data());
  return t;
}

// A [n, width] FP8 tensor of `type` holding op_case_value(tag, ...) / scale, rounded: a KV cache as
// rope_write_kv leaves it with that scale.
inline device_buffer filled_fp8(ops& b, dtype type, uint32_t tag, int64_t n, int64_t width, float scale) {
  const auto encode = type == dtype::f8_e4m3 ? f32_to_f8_e4m3 : f32_to_f8_e5m2;
  std::vector<uint8_t> codes(static_cast<size_t>(n * width));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < width; ++c) codes[static_cast<size_t>(r * width + c)] = encode(op_case_value(tag, r, c) / scale);
  device_buffer t = b.alloc(type, {n, width});
  b.upload_raw(t, codes.data());
  return t;
}

// Like filled, with values on a grid of 1/128 that f32, bf16 and f16 all hold exactly: both backends then
// start from the same numbers (what an FP8 cache's bytes are compared on).
inline device_buffer filled_exact(ops& b, dtype type, uint32_t tag, int64_t n, int64_t width) {
  std::vector<float> v(static_cast<size_t>(n * width));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < width; ++c) v[static_cast<size_t>(r * width + c)] = std::round(op_case_value(tag, r, c) * 128.0f) / 128.0f;
  device_buffer t = b.alloc(type, {n, width});
  b.upload(t, v);
  return t;
}

inline std::vector<float> read(ops& b, const tensor& t) {
  std::vector<float> values(static_cast<size_t>(t.numel()));
  if (t.type == dtype::f8_e4m3 || t.type == dtype::f8_e5m2) {  // FP8 codes as the values they stand for
    std::vector<uint8_t> codes(values.size());
    b.download_raw(codes.data(), t);
    for (size_t i = 0; i < codes.size(); ++i)
      values[i] = t.type == dtype::f8_e4m3 ? f8_e4m3_to_f32(codes[i]) : f8_e5m2_to_f32(codes[i]);
  } else if (t.type == dtype::i32) {
    std::vector<int32_t> v(values.size());
    b.download_raw(v.data(), t);
    for (size_t i = 0; i < v.size(); ++i) values[i] = static_cast<float>(v[i]);
  } else {
    b.download(values, t);
  }
  return values;
}

// Reads the named outputs, runs the op, reads them again.
inline std::vector<op_case_output> observe(ops& b, const std::vector<std::pair<std::string, tensor>>& outputs,
                                           const std::function<void()>& op) {
  std::vector<op_case_output> o;
  for (const auto& [name, t] : outputs) o.push_back({name, read(b, t), {}});
  op();
  b.synchronize();
  for (size_t i = 0; i < outputs.size(); ++i) o[i].after = read(b, outputs[i].second);
  return o;
}

// The same storage seen as [rows, width] for a [kCapacity, width] (or [kCapacity]) tensor.
inline tensor first(const tensor& t, int64_t rows) { return t.rows(0, rows); }

} // namespace op_case_detail

// The table: every op, with small shapes (H 16, K 24, N 20, vocabulary 40, 2 query heads over 1 KV head
// of 8, blocks of 4 tokens); the attention ops also over FP8 KV caches.
inline std::vector<op_case> op_cases() {
  using namespace op_case_detail;
  constexpr int64_t H = 16, K = 24, N = 20, V = 40, I = 12, nH = 2, nKV = 1, D = 8, BS = 4, NB = 6, MAXPOS = 32;
  constexpr int64_t QKV = (nH + 2 * nKV) * D;
  const attention_shape shape{nH, nKV, D, BS, 1.0f / std::sqrt(float(D))};
  // Row r of a rope or attention case is sequence r, whose context sits in block r + 1 (block 0 unused,
  // so a stray write to block 0 shows): its keys at positions [0, 4) and, for rope, the new token's slot.
  std::vector<op_case> cases;
  cases.push_back({"embedding", [=](ops& b, int64_t rows, dtype t) {
                     auto table = filled(b, t, 1, V, H);
                     std::vector<int32_t> ids(kCapacity);
                     for (int64_t r = 0; r < kCapacity; ++r) ids[r] = static_cast<int32_t>((7 * r + 3) % V);
                     auto idt = ints(b, ids);
                     auto out = filled(b, t, 2, kCapacity, H);
                     return observe(b, {{"out", out}}, [&] {
                       b.embedding(first(idt, rows), table, first(out, rows));
                     });
                   }});
  cases.push_back({"gather_rows", [=](ops& b, int64_t rows, dtype t) {
                     auto x = filled(b, t, 3, 5, H);
                     auto idt = ints(b, std::vector<int32_t>{4, 0, 2});
                     auto out = filled(b, t, 4, kCapacity, H);
                     return observe(b, {{"out", out}}, [&] {
                       b.gather_rows(x, first(idt, rows), first(out, rows));
                     });
                   }});
  cases.push_back({"embedding_shard", [=](ops& b, int64_t rows, dtype t) {
                     // The shard holds vocabulary rows [2, 5): ids 3 and 4 are its own, 0 is another shard's.
                     auto table = filled(b, t, 17, 3, H);
                     auto idt = ints(b, std::vector<int32_t>{3, 0, 4});
                     auto out = filled(b, t, 18, kCapacity, H);
                     return observe(b, {{"out", out}}, [&] {
                       b.embedding_shard(first(idt, rows), table, 2, first(out, rows));
                     });
                   }});
  cases.push_back({"copy_columns", [=](ops& b, int64_t rows, dtype t) {
                     auto x = filled(b, t, 19, kCapacity, H + 5);
                     auto out = filled(b, t, 20, kCapacity, H);
                     return observe(b, {{"out", out}}, [&] { b.copy_columns(first(x, rows), first(out, rows)); });
                   }});
  cases.push_back({"rms_norm", [=](ops& b, int64_t rows, dtype t) {
                     auto x = filled(b, t, 5, kCapacity, H);
                     auto w = filled(b, t, 6, H, 0);
                     auto out = filled(b, t, 7, kCapacity, H);
                     return observe(b, {{"out", out}}, [&] {
                       b.rms_norm(first(x, rows), w, 1e-6f, first(out, rows));
                     });
                   }});
  cases.push_back({"add_rms_norm", [=](ops& b, int64_t rows, dtype t) {
                     auto x = filled(b, t, 8, kCapacity, H);
                     auto res = filled(b, t, 9, kCapacity, H, 4.0f);
                     auto w = filled(b, t, 10, H, 0);
                     return observe(b, {{"x", x}, {"residual", res}}, [&] {
                       b.add_rms_norm(first(x, rows), first(res, rows), w, 1e-5f);
                     });
                   }});
  cases.push_back({"qk_norm", [=](ops& b, int64_t rows, dtype t) {
                     auto qkv = filled(b, t, 36, kCapacity, QKV, 3.0f);
                     auto qw = filled(b, t, 37, D, 0), kw = filled(b, t, 38, D, 0);
                     return observe(b, {{"qkv", qkv}}, [&] { b.qk_norm(first(qkv, rows), qw, kw, shape, 1e-6f); });
                   }});
  for (const bool accumulate : {false, true})
    cases.push_back({accumulate ? "linear +=" : "linear +bias", [=](ops& b, int64_t rows, dtype t) {
                       auto x = filled(b, t, 11, kCapacity, K);
                       auto w = filled(b, t, 12, N, K, 0.2f);
                       auto bias = filled(b, t, 13, N, 0);
                       auto out = filled(b, t, 14, kCapacity, N);
                       return observe(b, {{"out", out}}, [&] {
                         b.linear(first(x, rows), w, accumulate ? tensor{} : bias.get(), first(out, rows), accumulate);
                       });
                     }});
  // 4-bit weights: K 64 in groups of 32 (CUDA's fused kernel), and K 24 in groups of 8 (its dequantize-then-
  // GEMM path). Nibbles and whole-number zero points from op_case_value; weight 8i + j in the nibble the backend keeps
  // it in (ops::int4_nibble: CUDA pairs them apart, and read in the CPU's order every GPU path was wrong by ~50%).
  for (const auto& [k4, group] : {std::pair<int64_t, int32_t>{64, 32}, {24, 8}}) {
    cases.push_back({"linear_int4 K" + std::to_string(k4) + " G" + std::to_string(group), [=](ops& b, int64_t rows, dtype t) {
                       auto x = filled(b, t, 21, kCapacity, k4);
                       std::vector<int32_t> words(static_cast<size_t>(N * k4 / 8));
                       for (size_t i = 0; i < words.size(); ++i) {
                         uint32_t word = 0;
                         for (uint32_t j = 0; j < 8; ++j) {
                           const float u = op_case_value(22, static_cast<int64_t>(i), j);  // [-1, 1)
                           word |= (static_cast<uint32_t>((u + 1.0f) * 8.0f) & 15u) << (4 * b.int4_nibble(static_cast<int>(j)));
                         }
                         words[i] = static_cast<int32_t>(word);
                       }
                       auto qweight = ints(b, words);
                       auto scales = filled(b, t, 23, N, k4 / group, 0.05f);
                       std::vector<float> zero_values(static_cast<size_t>(N * (k4 / group)));
                       for (size_t i = 0; i < zero_values.size(); ++i)
                         zero_values[i] = static_cast<float>(static_cast<int>((op_case_value(24, 0, static_cast<int64_t>(i)) + 1.0f) * 8.0f) & 15);
                       device_buffer zeros = b.alloc(t, {N, k4 / group});
                       b.upload(zeros, zero_values);
                       auto bias = filled(b, t, 25, N, 0);
                       auto out = filled(b, t, 26, kCapacity, N);
                       const int4_device_weight w{tensor(qweight.get().data, dtype::i32, {N, k4 / 8}), scales, zeros, group};
                       return observe(b, {{"out", out}}, [&] { b.linear_int4(first(x, rows), w, bias, first(out, rows)); });
                     }});
  }
  // FP8 weights: K 32 and N 32 (CUDA's cuBLASLt paths), and the table's K 24 and N 20 (its CUDA-core path); dynamic
  // per-token activation scales with a bias, and a static one. Codes of op_case_value / 0.01 (some saturate at
  // 448), a scale per output channel.
  for (const auto& [k8, n8, static_input] : {std::tuple<int64_t, int64_t, bool>{32, 32, false}, {24, 20, false}, {32, 32, true}}) {
    cases.push_back({"linear_fp8 K" + std::to_string(k8) + " N" + std::to_string(n8) + (static_input ? " static" : " +bias"),
                     [=](ops& b, int64_t rows, dtype t) {
                       auto x = filled(b, t, 31, kCapacity, k8, 3.0f);
                       auto weight = filled_fp8(b, dtype::f8_e4m3, 32, n8, k8, 0.01f);
                       std::vector<float> scale_values(static_cast<size_t>(n8));
                       for (int64_t j = 0; j < n8; ++j) scale_values[static_cast<size_t>(j)] = 0.001f * (1.5f + op_case_value(33, 0, j));
                       device_buffer scale = b.alloc(dtype::f32, {n8});
                       b.upload_raw(scale, scale_values.data());
                       const float input_scale_value = 0.02f;
                       device_buffer input_scale = b.alloc(dtype::f32, {1});
                       b.upload_raw(input_scale, &input_scale_value);
                       auto bias = filled(b, t, 34, n8, 0);
                       auto out = filled(b, t, 35, kCapacity, n8);
                       const fp8_device_weight w{weight, scale, static_input ? input_scale.get() : tensor{}};
                       return observe(b, {{"out", out}}, [&] {
                         b.linear_fp8(first(x, rows), w, static_input ? tensor{} : bias.get(), first(out, rows));
                       });
                     }});
  }
  cases.push_back({"silu_and_mul", [=](ops& b, int64_t rows, dtype t) {
                     auto x = filled(b, t, 15, kCapacity, 2 * I, 2.0f);
                     auto out = filled(b, t, 16, kCapacity, I);
                     return observe(b, {{"out", out}}, [&] {
                       b.silu_and_mul(first(x, rows), first(out, rows));
                     });
                   }});
  // Each of rope_write_kv and paged attention with the caches in the activation dtype, and in FP8 of either
  // kind with scales other than 1.0 (k 0.5, v 2.0).
  for (const dtype kv : {dtype::f32, dtype::f8_e4m3, dtype::f8_e5m2}) {
    const bool fp8 = kv != dtype::f32;
    const std::string suffix = kv == dtype::f8_e4m3 ? " fp8_e4m3" : kv == dtype::f8_e5m2 ? " fp8_e5m2" : "";
    attention_shape kv_shape = shape;
    if (fp8) kv_shape.k_scale = 0.5f, kv_shape.v_scale = 2.0f;
    // A cache of NB blocks: in the activation dtype, or FP8 codes of the same values over the scale.
    auto cache = [=](ops& b, dtype t, uint32_t tag, float scale) {
      return fp8 ? filled_fp8(b, kv, tag, NB * BS, nKV * D, scale) : filled(b, t, tag, NB * BS, nKV * D);
    };
    cases.push_back({"rope_write_kv" + suffix, [=](ops& b, int64_t rows, dtype t) {
                       // FP8: inputs both backends hold exactly, so that they write the same bytes.
                       auto qkv = fp8 ? filled_exact(b, t, 17, kCapacity, QKV) : filled(b, t, 17, kCapacity, QKV);
                       std::vector<float> table(static_cast<size_t>(MAXPOS * D));
                       for (int64_t p = 0; p < MAXPOS; ++p)
                         for (int64_t i = 0; i < D / 2; ++i) {
                           const double a = double(p) * std::pow(10000.0, -2.0 * double(i) / double(D));
                           table[p * D + i] = static_cast<float>(std::cos(a));
                           table[p * D + D / 2 + i] = static_cast<float>(std::sin(a));
                         }
                       device_buffer cos_sin = b.alloc(dtype::f32, {MAXPOS, D});
                       b.upload(cos_sin, table);
                       std::vector<int32_t> positions(kCapacity);
                       std::vector<int64_t> slots(kCapacity);
                       for (int64_t r = 0; r < kCapacity; ++r) {
                         positions[r] = static_cast<int32_t>(5 + 3 * r);
                         slots[r] = (r + 1) * BS + 2;
                       }
                       auto pos = ints(b, positions);
                       auto slot = ints(b, slots);
                       auto k = cache(b, t, 18, 1.0f), v = cache(b, t, 19, 1.0f);
                       const tensor kc = k.get().view({NB, BS, nKV, D}), vc = v.get().view({NB, BS, nKV, D});
                       return observe(b, {{"qkv", qkv}, {"k_cache", k}, {"v_cache", v}}, [&] {
                         b.rope_write_kv(first(qkv, rows), first(pos, rows), cos_sin, first(slot, rows), kc, vc, kv_shape);
                       });
                     }});
    // Decode: sequence r has one new token over a context of 2 + r tokens (block r + 1).
    cases.push_back({"paged_attention decode" + suffix, [=](ops& b, int64_t rows, dtype t) {
                       auto qkv = filled(b, t, 20, kCapacity, QKV);
                       auto k = cache(b, t, 21, kv_shape.k_scale), v = cache(b, t, 22, kv_shape.v_scale);
                       std::vector<int32_t> starts, lens, tables;
                       for (int64_t r = 0; r <= kCapacity; ++r) starts.push_back(static_cast<int32_t>(r));
                       for (int64_t r = 0; r < kCapacity; ++r) {
                         lens.push_back(static_cast<int32_t>(2 + r));
                         tables.push_back(static_cast<int32_t>(r + 1));
                       }
                       auto qs = ints(b, starts), sl = ints(b, lens), bt = ints(b, tables);
                       attention_metadata meta;
                       meta.query_start = first(qs, rows + 1);
                       meta.seq_lens = first(sl, rows);
                       meta.block_tables = first(bt, rows).view({rows, 1});
                       meta.num_seqs = static_cast<int32_t>(rows);
                       meta.max_query_len = rows > 0 ? 1 : 0;
                       meta.max_seq_len = static_cast<int32_t>(rows > 0 ? 1 + rows : 0);
                       auto out = filled(b, t, 23, kCapacity, nH * D);
                       return observe(b, {{"out", out}}, [&] {
                         b.paged_attention(first(qkv, rows), k.get().view({NB, BS, nKV, D}), v.get().view({NB, BS, nKV, D}),
                                           meta, kv_shape, first(out, rows));
                       });
                     }});
    // Prefill: one sequence with `rows` new tokens after 3 cached ones (blocks 1 and 2): row r sits at
    // position 3 + r and sees positions [0, 3 + r] whatever the step's length.
    cases.push_back({"paged_attention prefill" + suffix, [=](ops& b, int64_t rows, dtype t) {
                       auto qkv = filled(b, t, 24, kCapacity, QKV);
                       auto k = cache(b, t, 25, kv_shape.k_scale), v = cache(b, t, 26, kv_shape.v_scale);
                       auto qs = ints(b, std::vector<int32_t>{0, static_cast<int32_t>(rows)});
                       auto sl = ints(b, std::vector<int32_t>{static_cast<int32_t>(3 + rows)});
                       auto bt = ints(b, std::vector<int32_t>{1, 2});
                       attention_metadata meta;
                       meta.query_start = qs;
                       meta.seq_lens = sl;
                       meta.block_tables = bt.get().view({1, 2});
                       meta.num_seqs = 1;
                       meta.max_query_len = static_cast<int32_t>(rows);
                       meta.max_seq_len = static_cast<int32_t>(3 + rows);
                       auto out = filled(b, t, 27, kCapacity, nH * D);
                       return observe(b, {{"out", out}}, [&] {
                         b.paged_attention(first(qkv, rows), k.get().view({NB, BS, nKV, D}), v.get().view({NB, BS, nKV, D}),
                                           meta, kv_shape, first(out, rows));
                       });
                     }});
  }
  cases.push_back({"argmax", [=](ops& b, int64_t rows, dtype) {
                     auto logits = filled(b, dtype::f32, 28, kCapacity, V);
                     auto out = ints(b, std::vector<int32_t>(kCapacity, -7));
                     return observe(b, {{"out", out}}, [&] {
                       b.argmax(first(logits, rows), first(out, rows));
                     });
                   }});
  // Sampling: row r is a seeded draw at temperature 0.8 with top-k 10 and a repetition penalty.
  cases.push_back({"sample", [=](ops& b, int64_t rows, dtype) {
                     auto logits = filled(b, dtype::f32, 29, kCapacity, V, 3.0f);
                     auto out = ints(b, std::vector<int32_t>(kCapacity, -7));
                     sampling_params p;
                     p.temperature = 0.8f;
                     p.top_k = 10;
                     p.repetition_penalty = 1.3f;
                     const std::vector<int32_t> prompt{1, 2, 3}, output{5, 5};
                     std::vector<sample_request> reqs;
                     for (int64_t r = 0; r < rows; ++r) reqs.push_back({&p, prompt, output, 1000 + static_cast<uint64_t>(r), {}, {}});
                     sampling_inputs in;
                     in.build(reqs, static_cast<int32_t>(V));
                     std::vector<int32_t> packed(in.packed_bytes() / 4 + 1);
                     in.pack(packed.data());
                     auto block = ints(b, packed);
                     return observe(b, {{"out", out}}, [&] {
                       b.sample(first(logits, rows), in.view(block.get().data), first(out, rows));
                     });
                   }});
  return cases;
}

} // namespace troupe::testing
