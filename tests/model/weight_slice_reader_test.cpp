// Reading one rank's slice of a checkpoint tensor (runtime/model/weight_slice_reader): rows, strided
// columns and padded vocabulary rows, in every dtype a weight may have, equal to the same part of the whole
// tensor read as before; the ranks' slices put back together give the whole tensor; a slice that does not
// fit its tensor is refused naming it. Also kernels/model_loader's sharded_weight_source, which serves them,
// and its dummy weights, made on the host or by the backend in place.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/model_loader.hpp"
#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/weight_names.hpp"
#include "runtime/model/weight_slice_reader.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

// A fresh folder per test, removed afterwards.
class weight_slice_reader_test : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("troupe_slices_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// `values` stored as `type` (F32, BF16 or F16), little-endian.
std::vector<std::byte> encode(dtype type, const std::vector<float>& values) {
  std::vector<std::byte> bytes(values.size() * size_in_bytes(type));
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == dtype::f32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else {
      const uint16_t bits = type == dtype::bf16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      std::memcpy(&bytes[i * 2], &bits, 2);
    }
  }
  return bytes;
}

// Writes one tensor [rows, cols] holding 0, 1, 2, ... (exact in every dtype) as `type` into `dir`.
void write_counting(const fs::path& dir, dtype type, int64_t rows, int64_t cols) {
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  const std::vector<std::byte> bytes = encode(type, values);
  const std::vector<tensor_to_write> tensors = {{"w", type, {rows, cols}, bytes}};
  write_safetensors(dir / "model.safetensors", tensors);
}

// Every tensor of `config` with reproducible random values, stored as `type`, over several shard files.
void write_model(const fs::path& dir, const model_config& config, dtype type) {
  std::vector<std::vector<std::byte>> storage;
  std::vector<tensor_to_write> tensors;
  const std::vector<weight_spec> specs = hf_weight_specs(config);
  storage.reserve(specs.size());
  for (const weight_spec& spec : specs) {
    std::vector<float> values;
    random_weight_values(spec, 7, values);
    storage.push_back(encode(type, values));
    tensors.push_back({spec.name, type, spec.shape, storage.back()});
  }
  write_sharded_safetensors(dir, tensors, 4096);
}

model_config tiny(architecture arch, int64_t heads, int64_t kv_heads, int64_t vocab) {
  model_config c;
  c.arch = arch;
  c.num_layers = 2;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 4;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.vocab_size = vocab;
  return c;
}

// While alive, the pages of tensor `t`'s mapped data that hold none of `kept` (byte ranges [first, second)
// from t.data) are unreadable: a read of them kills the process, so a reader that survives touched only
// `kept`'s pages.
class pages_unreadable_outside {
public:
  pages_unreadable_outside(const tensor_info& t, const std::vector<std::pair<size_t, size_t>>& kept) {
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto data = reinterpret_cast<uintptr_t>(t.data);
    for (uintptr_t p = data / page * page; p < data + t.num_bytes; p += page) {
      const bool holds_kept = std::any_of(kept.begin(), kept.end(), [&](const auto& r) {
        return data + r.first < p + page && p < data + r.second;
      });
      if (holds_kept) continue;
      EXPECT_EQ(::mprotect(reinterpret_cast<void*>(p), page, PROT_NONE), 0);
      protected_.push_back(p);
    }
    page_ = page;
  }
  ~pages_unreadable_outside() {
    for (const uintptr_t p : protected_) ::mprotect(reinterpret_cast<void*>(p), page_, PROT_READ);
  }
  size_t num_unreadable() const { return protected_.size(); }

private:
  std::vector<uintptr_t> protected_;
  uintptr_t page_ = 0;
};

std::string out_of_range_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::out_of_range& e) {
    return e.what();
  }
  return "<no error>";
}

} // namespace

// `slice` of tensor "w" [slice.shape] holding 0, 1, 2, ..., written as `type` into a folder of its own.
std::vector<float> slice_of_counting(const fs::path& dir, dtype type, const weight_slice& slice) {
  fs::create_directories(dir);
  write_counting(dir, type, slice.shape[0], slice.shape[1]);
  std::vector<float> out;
  read_slice_f32(checkpoint::open(dir), slice, out);
  return out;
}

TEST_F(weight_slice_reader_test, reads_rows_of_dim_0_in_every_dtype) {
  for (const dtype type : {dtype::f32, dtype::bf16, dtype::f16}) {
    EXPECT_EQ(slice_of_counting(dir_ / name(type), type, {"w", {4, 3}, 0, 1, 2, {2, 3}, true}),
              (std::vector<float>{3, 4, 5, 6, 7, 8})) << name(type);
  }
}

TEST_F(weight_slice_reader_test, reads_a_column_slice_as_one_span_per_row_in_every_dtype) {
  for (const dtype type : {dtype::f32, dtype::bf16, dtype::f16}) {
    EXPECT_EQ(slice_of_counting(dir_ / name(type), type, {"w", {3, 4}, 1, 1, 2, {3, 2}, true}),
              (std::vector<float>{1, 2, 5, 6, 9, 10})) << name(type);
  }
}

// An FP8 weight's codes as stored: rows, or one span of columns per row, byte for byte; a tensor of another shape
// than the slice's is refused.
TEST_F(weight_slice_reader_test, reads_the_stored_bytes_of_a_slice_for_fp8_codes) {
  std::vector<uint8_t> codes(12);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(0x30 + i);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::f8_e4m3, {3, 4}, std::as_bytes(std::span(codes))}};
  write_safetensors(dir_ / "model.safetensors", tensors);
  const checkpoint ckpt = checkpoint::open(dir_);
  std::vector<std::byte> out;
  read_slice_bytes(*ckpt.find("w"), {"w", {3, 4}, 1, 1, 2, {3, 2}, true}, out);
  EXPECT_EQ(out, (std::vector<std::byte>{std::byte{0x31}, std::byte{0x32}, std::byte{0x35}, std::byte{0x36},
                                         std::byte{0x39}, std::byte{0x3A}}));
  read_slice_bytes(*ckpt.find("w"), {"w", {3, 4}, 0, 2, 1, {1, 4}, true}, out);
  EXPECT_EQ(out, (std::vector<std::byte>{std::byte{0x38}, std::byte{0x39}, std::byte{0x3A}, std::byte{0x3B}}));
  EXPECT_THROW(read_slice_bytes(*ckpt.find("w"), {"w", {4, 3}, 0, 0, 1, {1, 3}, true}, out), std::invalid_argument);
}

// A column slice of a [4, 8192] f32 tensor (32 KiB rows, 8 pages each) reads 1024 columns per row: with
// every other page of the tensor unreadable it still reads, while converting the whole tensor dies.
TEST_F(weight_slice_reader_test, touches_only_the_pages_of_its_rows_or_columns) {
  write_counting(dir_, dtype::f32, 4, 8192);
  const checkpoint ckpt = checkpoint::open(dir_);
  const tensor_info& t = *ckpt.find("w");
  std::vector<float> out;
  {
    std::vector<std::pair<size_t, size_t>> columns;  // each row's columns [2048, 3072)
    for (size_t r = 0; r < 4; ++r) columns.emplace_back((r * 8192 + 2048) * 4, (r * 8192 + 3072) * 4);
    const pages_unreadable_outside guard(t, columns);
    EXPECT_GE(guard.num_unreadable(), 4u * 6u);
    read_slice_f32(ckpt, {"w", {4, 8192}, 1, 2048, 1024, {4, 1024}, true}, out);
    EXPECT_DEATH(ckpt.read_f32("w", t.shape, out), "");
  }
  EXPECT_EQ(out[0], 2048.0f);
  EXPECT_EQ(out[1023], 3071.0f);
  EXPECT_EQ(out[3 * 1024], 3 * 8192 + 2048.0f);
  {
    const pages_unreadable_outside guard(t, {{2 * 8192 * 4, 3 * 8192 * 4}});  // row 2 alone
    read_slice_f32(ckpt, {"w", {4, 8192}, 0, 2, 1, {1, 8192}, true}, out);
  }
  EXPECT_EQ(out[0], 2 * 8192.0f);
  EXPECT_EQ(out[8191], 3 * 8192 - 1.0f);
}

TEST_F(weight_slice_reader_test, zero_fills_the_padded_vocabulary_rows_past_the_checkpoint) {
  write_counting(dir_, dtype::bf16, 3, 2);
  const checkpoint ckpt = checkpoint::open(dir_);
  std::vector<float> out(3, 9.0f);  // stale values must not survive
  read_slice_f32(ckpt, {"w", {3, 2}, 0, 2, 1, {4, 2}, true}, out);
  EXPECT_EQ(out, (std::vector<float>{4, 5, 0, 0, 0, 0, 0, 0}));
  // A rank whose vocabulary rows are all padding reads nothing and holds zeros.
  read_slice_f32(ckpt, {"w", {3, 2}, 0, 3, 0, {2, 2}, true}, out);
  EXPECT_EQ(out, (std::vector<float>{0, 0, 0, 0}));
}

TEST_F(weight_slice_reader_test, refuses_a_slice_outside_its_tensor_naming_the_tensor) {
  write_counting(dir_, dtype::f32, 3, 4);
  const checkpoint ckpt = checkpoint::open(dir_);
  std::vector<float> out;
  EXPECT_EQ(out_of_range_message([&] { read_slice_f32(ckpt, {"w", {3, 4}, 1, 3, 2, {3, 2}, true}, out); }),
            "slice of tensor 'w' (shape [3, 4], dim 1, [3, 3 + 2), local shape [3, 2]): the range is outside "
            "the tensor");
  EXPECT_EQ(out_of_range_message([&] { read_slice_f32(ckpt, {"w", {3, 4}, 0, -1, 2, {2, 4}, true}, out); }),
            "slice of tensor 'w' (shape [3, 4], dim 0, [-1, -1 + 2), local shape [2, 4]): the range is outside "
            "the tensor");
  EXPECT_EQ(out_of_range_message([&] { read_slice_f32(ckpt, {"w", {3, 4}, 2, 0, 1, {3, 1}, true}, out); }),
            "slice of tensor 'w' (shape [3, 4], dim 2, [0, 0 + 1), local shape [3, 1]): only dims 0 and 1 can be "
            "sliced");
  EXPECT_EQ(out_of_range_message([&] { read_slice_f32(ckpt, {"w", {3, 4}, 0, 0, 2, {1, 4}, true}, out); }),
            "slice of tensor 'w' (shape [3, 4], dim 0, [0, 0 + 2), local shape [1, 4]): the local shape cannot "
            "hold the slice");
  // A slice whose shape is not the checkpoint's is the checkpoint's mismatch, reported as require() does.
  EXPECT_THROW(read_slice_f32(ckpt, {"w", {4, 3}, 0, 0, 1, {1, 3}, true}, out), checkpoint_error);
}

// For every rank of every tensor-parallel size: each slice is exactly its part of the whole tensor read the
// old way (zeros past it), whole-tensor slices are the whole tensor, and the ranks' slices together cover it.
TEST_F(weight_slice_reader_test, every_ranks_slices_are_their_part_of_the_whole_and_reassemble_it) {
  model_config llama = tiny(architecture::llama, 4, 2, 100);  // vocab 100 pads to 128: padding rows
  llama.qkv_bias = llama.o_bias = true;
  model_config qwen2 = tiny(architecture::qwen2, 8, 2, 64);   // 8 ranks: KV heads replicated 4 ways
  qwen2.qkv_bias = true;
  qwen2.tie_word_embeddings = true;
  int checked_slices = 0, padded_slices = 0, column_slices = 0;
  for (const model_config& config : {llama, qwen2}) {
    for (const dtype type : {dtype::f32, dtype::bf16, dtype::f16}) {
      const fs::path dir = dir_ / (std::to_string(config.num_heads) + std::string(name(type)));
      write_model(dir, config, type);
      const checkpoint ckpt = checkpoint::open(dir);
      ASSERT_GT(ckpt.files().size(), 1u);
      for (const int64_t n : valid_tensor_parallel_sizes(config)) {
        std::vector<sharding_plan> plans;
        for (int64_t r = 0; r < n; ++r) plans.push_back(sharding_plan::make(config, n, r));
        for (size_t i = 0; i < plans[0].slices.size(); ++i) {
          const weight_slice& first = plans[0].slices[i];
          std::vector<float> whole;
          ckpt.read_f32(first.name, first.shape, whole);
          std::vector<float> assembled(whole.size(), -1.0f);
          std::vector<int> times_covered(whole.size(), 0);
          for (const sharding_plan& plan : plans) {
            const weight_slice& s = plan.slices[i];
            std::vector<float> local;
            read_slice_f32(ckpt, s, local);
            const auto d = static_cast<size_t>(s.dim);
            int64_t outer = 1, inner = 1;
            for (size_t k = 0; k < d; ++k) outer *= s.shape[k];
            for (size_t k = d + 1; k < s.shape.size(); ++k) inner *= s.shape[k];
            ASSERT_EQ(local.size(), static_cast<size_t>(outer * s.local_shape[d] * inner)) << s.name;
            for (int64_t o = 0; o < outer; ++o) {
              for (int64_t j = 0; j < s.local_shape[d]; ++j) {
                for (int64_t k = 0; k < inner; ++k) {
                  const float got = local[static_cast<size_t>((o * s.local_shape[d] + j) * inner + k)];
                  if (j >= s.length) {
                    ASSERT_EQ(got, 0.0f) << s.name << " rank " << plan.rank << " padding row " << j;
                    continue;
                  }
                  const auto at = static_cast<size_t>((o * s.shape[d] + s.begin + j) * inner + k);
                  ASSERT_EQ(got, whole[at]) << s.name << " rank " << plan.rank << " of " << n << " " << name(type);
                  assembled[at] = got;
                  ++times_covered[at];
                }
              }
            }
            if (!s.split && s.local_shape == s.shape) {  // norms, row biases (replicated KV is one head)
              EXPECT_EQ(local, whole) << s.name;
            }
            padded_slices += s.local_shape[d] > s.length;
            column_slices += s.dim == 1;
            ++checked_slices;
          }
          EXPECT_EQ(assembled, whole) << first.name << " over " << n << " ranks";
          if (first.split && config.num_kv_heads >= n) {
            // Split n ways without replication: every element is read by exactly one rank.
            EXPECT_EQ(std::count(times_covered.begin(), times_covered.end(), 1),
                      static_cast<std::ptrdiff_t>(whole.size())) << first.name;
          }
        }
      }
    }
  }
  // The loops above did meet padded vocabulary rows and column slices.
  EXPECT_GT(padded_slices, 0);
  EXPECT_GT(column_slices, 0);
  EXPECT_GT(checked_slices, 100);
}

TEST_F(weight_slice_reader_test, sharded_weight_source_serves_each_tensor_as_the_ranks_slice) {
  const model_config config = tiny(architecture::llama, 4, 2, 100);
  write_model(dir_, config, dtype::bf16);
  const checkpoint ckpt = checkpoint::open(dir_);
  const sharding_plan plan = sharding_plan::make(config, 2, 1);
  const weight_source source = sharded_weight_source(ckpt, config, plan);
  for (const weight_spec& spec : hf_weight_specs(config)) {
    std::vector<float> served, expected;
    source(spec, served);
    read_slice_f32(ckpt, plan.slice(spec.name), expected);
    EXPECT_EQ(served, expected) << spec.name;
  }
  std::vector<float> q;
  source({"model.layers.0.self_attn.q_proj.weight", {16, 16}}, q);
  EXPECT_EQ(q.size(), 8u * 16u);  // rank 1's 2 of 4 heads: rows [8, 16)
}

// --load-format dummy on a rank: each slice made alone equals the same slice of the whole random tensor
// (written to a checkpoint in f32 with the same seed and read back as a slice), padding rows included.
TEST_F(weight_slice_reader_test, sharded_dummy_weights_are_the_slices_of_the_whole_dummy_tensors) {
  model_config config = tiny(architecture::llama, 4, 2, 100);  // vocab 100 pads to 128
  config.qkv_bias = config.o_bias = true;
  write_model(dir_, config, dtype::f32);  // random_weight_values with seed 7
  const checkpoint ckpt = checkpoint::open(dir_);
  int compared = 0;
  for (const int64_t n : {2, 4}) {
    for (int64_t r = 0; r < n; ++r) {
      const sharding_plan plan = sharding_plan::make(config, n, r);
      const weight_source made = sharded_dummy_weight_source(7, plan);
      for (const weight_spec& spec : hf_weight_specs(config)) {
        std::vector<float> got, expected;
        made(spec, got);
        read_slice_f32(ckpt, plan.slice(spec.name), expected);
        ASSERT_EQ(got, expected) << spec.name << " rank " << r << " of " << n;
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 6 * static_cast<int>(hf_weight_specs(config).size()));
}

namespace {

// Every dense tensor of a loaded model, as floats, in a fixed order.
std::vector<std::vector<float>> downloaded(ops& backend, const model_weights& w) {
  std::vector<const device_buffer*> all = {&w.embed, &w.final_norm, &w.lm_head};
  for (const layer_weights& l : w.layers)
    for (const device_buffer* b : {&l.input_norm, &l.qkv, &l.qkv_bias, &l.o_proj, &l.o_bias, &l.post_norm, &l.gate_up, &l.down})
      all.push_back(b);
  std::vector<std::vector<float>> out;
  for (const device_buffer* b : all) {
    std::vector<float> v(b->empty() ? 0 : static_cast<size_t>(b->get().numel()));
    if (!b->empty()) backend.download(v, *b);
    out.push_back(std::move(v));
  }
  return out;
}

} // namespace

// --load-format dummy made by the backend in place (ops::fill_random, here the CPU twin of the CUDA kernel):
// every tensor of every rank at 1, 2 and 4 ranks — padded vocabulary rows, column slices, replicated KV heads,
// biases, the fused q/k/v and gate/up rows — holds the host source's values bit for bit.
TEST_F(weight_slice_reader_test, dummy_weights_filled_by_the_backend_are_the_host_sources_values) {
  model_config config = tiny(architecture::llama, 4, 2, 100);  // vocab 100 pads to 128; KV replicated at 4
  config.qkv_bias = config.o_bias = true;
  cpu_ops cpu;
  int compared = 0;
  for (const int64_t n : {1, 2, 4}) {
    for (int64_t r = 0; r < n; ++r) {
      const sharding_plan plan = sharding_plan::make(config, n, r);
      const model_config local = n > 1 ? local_config(config, plan) : config;
      const weight_source host = n > 1 ? sharded_dummy_weight_source(7, plan) : dummy_weight_source(7);
      const weight_fill fill = dummy_weight_fill(7, n > 1 ? &plan : nullptr, std::nullopt);
      ASSERT_TRUE(fill);
      // Each tensor alone, into storage that starts non-zero (padding rows must be written too).
      for (const weight_spec& spec : hf_weight_specs(local)) {
        std::vector<float> expected;
        host(spec, expected);
        tensor t(nullptr, dtype::f32, {static_cast<int64_t>(expected.size())});
        std::vector<float> got(expected.size(), -9.0f);
        t.data = got.data();
        if (spec.shape.size() == 2) t = t.view({spec.shape[0], spec.shape[1]});
        ASSERT_TRUE(fill(spec, cpu, t));
        ASSERT_EQ(got, expected) << spec.name << " rank " << r << " of " << n;
        ++compared;
      }
      // And through the loader, which fills fused tensors part by part.
      const model_weights from_host = load_model_weights(local, cpu, dtype::f32, host);
      const model_weights filled = load_model_weights(local, cpu, dtype::f32, host, {}, {}, fill);
      EXPECT_EQ(downloaded(cpu, filled), downloaded(cpu, from_host)) << "rank " << r << " of " << n;
    }
  }
  EXPECT_EQ(compared, 7 * static_cast<int>(hf_weight_specs(config).size()));
}

// With a quantized config the backend makes only what the quantization leaves alone (embeddings, norms, biases,
// the LM head, a module not converted), bit for bit the host source's; the quantized linear weights it declines,
// so the host rounds them — at 1 and 2 ranks, in rtn and FP8, and through the loader.
TEST_F(weight_slice_reader_test, quantized_dummy_weights_leave_only_the_quantized_linears_to_the_host) {
  model_config config = tiny(architecture::llama, 4, 2, 100);
  config.qkv_bias = true;
  quantization_config rtn, fp8;
  rtn.method = quant_method::rtn;
  rtn.modules_to_not_convert = {"layers.1.mlp"};
  fp8.method = quant_method::fp8;
  cpu_ops cpu;
  for (const quantization_config& q : {rtn, fp8}) {
    SCOPED_TRACE(std::string(name(q.method)));
    for (const int64_t n : {1, 2}) {
      const sharding_plan plan = sharding_plan::make(config, n, n - 1);
      const model_config local = n > 1 ? local_config(config, plan) : config;
      const weight_source host = n > 1 ? sharded_dummy_weight_source(7, plan, q) : dummy_weight_source(7, q);
      const weight_fill fill = dummy_weight_fill(7, n > 1 ? &plan : nullptr, q);
      ASSERT_TRUE(fill);
      int made = 0, declined = 0;
      for (const weight_spec& spec : hf_weight_specs(local)) {
        std::vector<float> expected;
        host(spec, expected);
        std::vector<float> got(expected.size(), -9.0f);
        tensor t(got.data(), dtype::f32, {static_cast<int64_t>(expected.size())});
        if (spec.shape.size() == 2) t = t.view({spec.shape[0], spec.shape[1]});
        const bool filled = fill(spec, cpu, t);
        EXPECT_EQ(filled, !q.quantizes(spec.name)) << spec.name;
        if (filled) {
          EXPECT_EQ(got, expected) << spec.name << " rank " << n - 1 << " of " << n;
          ++made;
        } else {
          EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float v) { return v == -9.0f; })) << spec.name << " was written";
          ++declined;
        }
      }
      EXPECT_GT(made, 0);
      EXPECT_EQ(declined, q.method == quant_method::rtn ? 7 * 2 - 3 : 7 * 2);  // layer 1's gate/up/down not converted
      const model_weights from_host = load_model_weights(local, cpu, dtype::f32, host);
      const model_weights filled = load_model_weights(local, cpu, dtype::f32, host, {}, {}, fill);
      EXPECT_EQ(downloaded(cpu, filled), downloaded(cpu, from_host)) << n << " ranks";
    }
  }
}
