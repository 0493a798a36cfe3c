#pragma once
// troupe_gpu_check's op checks, shared by their files (gpu_check_ops.cpp, gpu_check_attention.cpp): one tensor on
// both backends (twin), the checker that makes, poisons and compares them, and the FP8 KV caches checked.

#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "tools/gpu_check.hpp"

namespace gpu_check {

using namespace troupe;

inline std::vector<float> random_values(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The values as the GPU stores them in `t`.
inline std::vector<float> rounded(std::vector<float> v, troupe::dtype t) {
  for (auto& x : v) x = rounded_to(t, x);
  return v;
}

// One tensor on both backends with equal contents: fp32 on the CPU, `type` on the GPU.
struct twin {
  device_buffer cpu, gpu;
  dtype type;
  std::vector<int64_t> shape;
};

class checker {
public:
  explicit checker(cuda_ops& gpu) : gpu(gpu) {}
  cpu_ops cpu;
  cuda_ops& gpu;

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
  // The GPU tensor's bytes as they are.
  bytes gpu_bytes(const twin& w) {
    bytes b(w.gpu.get().num_bytes());
    gpu.download_raw(b.data(), w.gpu);
    return b;
  }

  // An FP8 KV cache on both backends with the same codes: normal values of standard deviation `sd`, over
  // `scale`, rounded (so code × scale has that spread, as a cache rope_write_kv filled).
  twin fp8_cache(dtype kv, std::initializer_list<int64_t> shape, float scale, float sd = 1.0f) {
    twin w{cpu.alloc(kv, shape), gpu.alloc(kv, shape), kv, shape};
    const auto encode = kv == dtype::f8_e4m3 ? f32_to_f8_e4m3 : f32_to_f8_e5m2;
    const std::vector<float> values = random_values(static_cast<size_t>(w.cpu.get().numel()), sd);
    std::vector<uint8_t> codes(values.size());
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = encode(values[i] / scale);
    cpu.upload_raw(w.cpu, codes.data());
    gpu.upload_raw(w.gpu, codes.data());
    return w;
  }
  // How many bytes of an FP8 twin differ between the backends.
  size_t differing_bytes(const twin& w) {
    std::vector<uint8_t> a(w.cpu.get().num_bytes()), b(a.size());
    cpu.download_raw(a.data(), w.cpu);
    gpu.download_raw(b.data(), w.gpu);
    size_t n = 0;
    for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n;
  }
};

// The FP8 KV caches checked: each format with scales of 1.0, and with others (k's small enough that large
// keys saturate, v's large enough that small values go subnormal).
struct fp8_kv_case {
  dtype kv;
  float k_scale, v_scale;
};
inline const fp8_kv_case fp8_kv_cases[] = {
    {dtype::f8_e4m3, 1.0f, 1.0f}, {dtype::f8_e4m3, 0.011f, 2.5f}, {dtype::f8_e5m2, 1.0f, 1.0f}, {dtype::f8_e5m2, 0.011f, 2.5f}};

inline std::string fp8_note(const fp8_kv_case& f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " kv=%s ks,vs=%g,%g", f.kv == dtype::f8_e4m3 ? "e4m3" : "e5m2", f.k_scale, f.v_scale);
  return buf;
}

// The checks of rope_write_kv and paged attention (gpu_check_attention.cpp): in the tensors' dtypes, and with an FP8
// cache on both kernels (check_attention_fp8), its F16 form and that form's Direct decode (check_attention_fp8_f16).
void check_rope(checker& c, troupe::dtype t, std::optional<fp8_kv_case> kv = std::nullopt);
void check_attention_all(checker& c, troupe::dtype t);
void check_attention_fp8(checker& c, troupe::dtype t);
void check_attention_fp8_f16(checker& c, troupe::dtype t);

} // namespace gpu_check
