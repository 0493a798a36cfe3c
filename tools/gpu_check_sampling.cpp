// troupe_gpu_check, sampling: the CUDA sample op against sample_cpu (kernels/cpu/sampler.hpp).
//
// Each case draws random logits and requests, samples them on the GPU (sampling_inputs, one upload,
// cuda_ops::sample) and with sample_cpu, and requires the same token ids. A mismatch is allowed, and
// counted apart, only where the CPU's computation sits within 1e-12 relative of a cut that summation
// order decides: a running sum against u·W (the draw) or top_p·total (top_p), or exp(v − m) against
// min_p. The GPU sums in another order, so there either side is right. Every GPU run is also repeated
// on the same inputs: the op must be deterministic.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <thread>
#include <vector>

#include "kernels/cpu/sampler.hpp"
#include "kernels/sampling_inputs.hpp"
#include "runtime/model/dtype.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;

namespace gpu_check {
namespace {

constexpr float neg_inf = -std::numeric_limits<float>::infinity();
constexpr double near_tie = 1e-12;

struct request_data {
  sampling_params params;
  std::vector<int32_t> prompt, output, eos;
  uint64_t seed = 0;
  std::vector<uint32_t> allowed;  // structured outputs' bitmask; empty: every token
};

std::vector<sample_request> requests_of(const std::vector<request_data>& data) {
  std::vector<sample_request> reqs;
  for (const auto& d : data) reqs.push_back({&d.params, d.prompt, d.output, d.seed, d.eos, d.allowed});
  return reqs;
}

template <class T> T pick(std::initializer_list<T> options) { return options.begin()[rng() % options.size()]; }

int32_t token(int32_t vocab) { return static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)); }

enum class spread {
  normal,  // N(0, scale)
  ties,    // N(0, scale) rounded to integers: long runs of equal logits
  bf16,    // N(0, scale) rounded to bf16, as a bf16 model's logits are
  peaked,  // N(0, scale) with a few tokens 8–14 above the rest, as a trained model's
};

std::vector<float> make_logits(size_t rows, int32_t vocab, spread s, float scale) {
  std::vector<float> v(rows * static_cast<size_t>(vocab));
  std::normal_distribution<float> normal(0.0f, scale);
  for (auto& x : v) {
    x = normal(rng);
    if (s == spread::ties) x = std::round(x);
    if (s == spread::bf16) x = bf16_to_f32(f32_to_bf16(x));
  }
  if (s == spread::peaked)
    for (size_t r = 0; r < rows; ++r)
      for (int k = 0; k < 5; ++k) v[r * vocab + token(vocab)] += 8.0f + static_cast<float>(rng() % 7);
  return v;
}

// sample_cpu, rows split over the machine's cores (each row's token depends on that row alone).
std::vector<int32_t> cpu_sample(std::vector<float> logits, int32_t vocab, const std::vector<sample_request>& reqs) {
  const size_t rows = reqs.size();
  std::vector<int32_t> out(rows);
  const size_t threads = std::max<size_t>(1, std::min<size_t>(std::thread::hardware_concurrency(), rows));
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const size_t begin = rows * t / threads, end = rows * (t + 1) / threads;
      if (begin == end) return;
      const auto ids = sample_cpu(std::span<float>(logits).subspan(begin * vocab, (end - begin) * vocab), vocab,
                                  std::span<const sample_request>(reqs).subspan(begin, end - begin));
      std::copy(ids.begin(), ids.end(), out.begin() + static_cast<std::ptrdiff_t>(begin));
    });
  for (auto& t : pool) t.join();
  return out;
}

// The CUDA op over fresh device copies; the output is poisoned first.
std::vector<int32_t> gpu_sample(cuda_ops& gpu, const std::vector<float>& logits, int32_t vocab,
                                const std::vector<sample_request>& reqs) {
  sampling_inputs in;
  in.build(reqs, vocab);
  std::vector<uint64_t> host(in.packed_bytes() / 8 + 1);
  in.pack(host.data());
  const int64_t rows = static_cast<int64_t>(reqs.size());
  device_buffer block = gpu.alloc(dtype::i32, {static_cast<int64_t>(host.size() * 2)});
  gpu.upload_raw(tensor(block.get().data, dtype::i32, {static_cast<int64_t>(in.packed_bytes() / 4)}), host.data());
  device_buffer l = gpu.alloc(dtype::f32, {rows, vocab});
  gpu.upload(l, logits);
  device_buffer out = gpu.alloc(dtype::i32, {rows});
  std::vector<int32_t> ids(static_cast<size_t>(rows), -7);
  gpu.upload_raw(out, ids.data());
  gpu.sample(l, in.view(block.get().data), out);
  gpu.download_raw(ids.data(), out);
  return ids;
}

// How close row `raw`'s CPU computation comes to a cut that summation order decides (see the top).
double closest_cut(std::vector<float> row, int32_t vocab, const sample_request& r) {
  const std::span<const sample_request> one(&r, 1);
  const sampling_params& p = *r.params;
  apply_allowed_tokens_cpu(row, vocab, one);
  apply_min_tokens_cpu(row, vocab, one);
  apply_logit_bias_cpu(row, vocab, one);
  apply_penalties_cpu(row, vocab, one);
  if (p.greedy()) return INFINITY;
  apply_temperature_cpu(row, vocab, one);
  double closest = INFINITY;
  auto max_of = [&] { return *std::max_element(row.begin(), row.end()); };
  auto closer = [&](double a, double b) {
    if (b > 0) closest = std::min(closest, std::abs(a - b) / b);
  };
  float m = max_of();
  if (m == neg_inf) return INFINITY;
  if (p.min_p > 0.0f)
    for (float x : row) closer(std::exp(static_cast<double>(x - m)), p.min_p);
  apply_min_p_cpu(row, vocab, one);
  apply_top_k_cpu(row, vocab, one);
  if (p.top_p < 1.0f) {
    double total = 0;
    for (float x : row) total += std::exp(static_cast<double>(x - m));
    std::vector<int32_t> ids;
    for (int32_t t = 0; t < vocab; ++t)
      if (row[t] != neg_inf) ids.push_back(t);
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
    double before = 0;
    const double target = static_cast<double>(p.top_p) * total;
    for (int32_t id : ids) {
      before += std::exp(static_cast<double>(row[id] - m));
      closer(before, target);
      if (before > target * (1 + 1e-9)) break;
    }
  }
  apply_top_p_cpu(row, vocab, one);
  m = max_of();
  double total = 0;
  for (float x : row) total += std::exp(static_cast<double>(x - m));
  const double target = sampling_uniform(r.seed, r.output_ids.size()) * total;
  double cum = 0;
  for (float x : row) {
    cum += std::exp(static_cast<double>(x - m));
    closer(cum, target);
  }
  return closest;
}

std::string describe(const sampling_params& p) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "T=%g k=%d p=%g min_p=%g rep=%g freq=%g pres=%g bias=%zu min_tokens=%d", p.temperature,
                p.top_k, p.top_p, p.min_p, p.repetition_penalty, p.frequency_penalty, p.presence_penalty,
                p.logit_bias.size(), p.min_tokens);
  return buf;
}

int printed_mismatches = 0;

// Runs one case on both backends and reports it.
void run_case(cuda_ops& gpu, const std::string& name, int rows, int32_t vocab, spread s, float scale,
              const std::function<void(request_data&, std::span<const float> row)>& set) {
  const std::vector<float> logits = make_logits(static_cast<size_t>(rows), vocab, s, scale);
  std::vector<request_data> data(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    request_data& d = data[r];
    for (int i = 0, n = static_cast<int>(rng() % 300); i < n; ++i) d.prompt.push_back(token(vocab));
    for (int i = 0, n = static_cast<int>(rng() % 60); i < n; ++i)
      d.output.push_back(rng() % 3 == 0 && !d.output.empty() ? d.output[rng() % d.output.size()] : token(vocab));
    d.eos = {vocab - 1};
    d.seed = rng();
    set(d, std::span<const float>(logits).subspan(static_cast<size_t>(r) * vocab, vocab));
  }
  const auto reqs = requests_of(data);
  const auto want = cpu_sample(logits, vocab, reqs);
  const auto got = gpu_sample(gpu, logits, vocab, reqs);
  const auto again = gpu_sample(gpu, logits, vocab, reqs);
  int wrong = 0, allowed = 0, sampled = 0;
  for (int r = 0; r < rows; ++r) {
    sampled += !data[r].params.greedy();
    if (got[r] == want[r]) continue;
    const double cut = closest_cut(std::vector<float>(logits.begin() + static_cast<std::ptrdiff_t>(r) * vocab,
                                                      logits.begin() + static_cast<std::ptrdiff_t>(r + 1) * vocab),
                                   vocab, reqs[r]);
    const bool ok = cut < near_tie && got[r] >= 0 && got[r] < vocab;
    (ok ? allowed : wrong) += 1;
    if (printed_mismatches++ < 12) {
      const auto raw = [&](int32_t id) { return id >= 0 && id < vocab ? logits[static_cast<size_t>(r) * vocab + id] : NAN; };
      std::printf("sample mismatch%s: %s R=%d V=%d row %d: cpu %d (logit %.9g) gpu %d (logit %.9g); %s; closest cut %.3g\n",
                  ok ? " (near tie, allowed)" : "", name.c_str(), rows, vocab, r, want[r], raw(want[r]), got[r],
                  raw(got[r]), describe(data[r].params).c_str(), cut);
    }
  }
  int unstable = 0;
  for (int r = 0; r < rows; ++r) unstable += got[r] != again[r];
  std::string note = std::to_string(sampled) + "/" + std::to_string(rows) + " rows sampled";
  if (allowed) note += ", " + std::to_string(allowed) + " near-tie differences allowed";
  if (unstable) note += ", " + std::to_string(unstable) + " rows differ between two GPU runs";
  report("sample " + name, dtype::f32, "R,V=" + std::to_string(rows) + "x" + std::to_string(vocab), wrong + unstable, 0.0,
         note + " (error: rows wrong)");
}

// Sets the stop ids of a min_tokens request to the row's likeliest tokens, so the mask decides.
void mask_top_tokens(request_data& d, std::span<const float> row, int n) {
  n = std::min(n, static_cast<int>(row.size()));
  std::vector<int32_t> ids(row.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  d.params.min_tokens = static_cast<int32_t>(d.output.size()) + 1 + static_cast<int32_t>(rng() % 3);
  d.params.max_tokens = d.params.min_tokens;
  d.eos = {ids[0]};
  d.params.stop_token_ids.assign(ids.begin() + 1, ids.begin() + n);
}

// Any mix of every parameter, greedy rows included.
void random_mix(request_data& d, std::span<const float> row) {
  const int32_t vocab = static_cast<int32_t>(row.size());
  sampling_params& p = d.params;
  p.temperature = pick({0.0f, 1.0f, 0.7f, 1.3f, 0.005f, 0.3f});
  p.top_k = pick({0, 0, -1, 1, 2, 50, 1000});
  p.top_p = pick({1.0f, 1.0f, 0.9f, 0.5f, 0.99f});
  p.min_p = pick({0.0f, 0.0f, 0.05f, 0.3f});
  p.repetition_penalty = pick({1.0f, 1.0f, 1.2f, 0.8f});
  p.frequency_penalty = pick({0.0f, 0.0f, 0.5f, -1.0f});
  p.presence_penalty = pick({0.0f, 0.0f, 0.7f, -2.0f});
  if (rng() % 3 == 0)
    for (int i = 0; i < 4; ++i) p.logit_bias.emplace_back(token(vocab), pick({5.0f, -100.0f, 250.0f, -0.5f}));
  std::sort(p.logit_bias.begin(), p.logit_bias.end());
  p.logit_bias.erase(std::unique(p.logit_bias.begin(), p.logit_bias.end(),
                                 [](const auto& a, const auto& b) { return a.first == b.first; }),
                     p.logit_bias.end());
  if (rng() % 4 == 0) mask_top_tokens(d, row, 3);
}

// A constrained row (structured outputs): a bitmask allowing about one token in `one_in`, over any mix.
void allow_some(request_data& d, std::span<const float> row, uint32_t one_in) {
  random_mix(d, row);
  const int32_t vocab = static_cast<int32_t>(row.size());
  d.allowed.assign(static_cast<size_t>((vocab + 31) / 32), 0u);
  for (int32_t t = 0; t < vocab; ++t)
    if (rng() % one_in == 0) d.allowed[static_cast<size_t>(t) / 32] |= 1u << (t % 32);
  // Bits past the vocabulary must not count.
  if (vocab % 32 != 0) d.allowed.back() |= ~((1u << (vocab % 32)) - 1u);
}

struct size_case {
  int rows;
  int32_t vocab;
};

} // namespace

void check_sampling(cuda_ops& gpu, bool quick) {
  using setter = std::function<void(request_data&, std::span<const float>)>;
  struct param_case {
    std::string name;
    spread s;
    float scale;
    setter set;
    bool full;  // also at 256 rows of the large vocabulary
  };
  const std::vector<param_case> cases = {
      {"temperature", spread::normal, 2.0f, [](request_data& d, auto) { d.params.temperature = pick({0.3f, 0.7f, 1.0f, 1.5f}); }, true},
      {"greedy", spread::normal, 2.0f, [](request_data& d, auto) { d.params.temperature = 0.0f; }, false},
      {"top_k", spread::normal, 2.0f, [](request_data& d, auto) { d.params.top_k = pick({1, 2, 50, 1000}); }, true},
      {"top_p", spread::normal, 2.0f, [](request_data& d, auto) { d.params.top_p = pick({0.9f, 0.5f, 0.99f, 0.1f}); }, true},
      {"min_p", spread::normal, 2.0f, [](request_data& d, auto) { d.params.min_p = pick({0.05f, 0.2f, 0.5f}); }, false},
      {"repetition", spread::normal, 2.0f, [](request_data& d, auto) { d.params.repetition_penalty = pick({1.3f, 0.8f, 2.0f}); }, false},
      {"frequency", spread::normal, 2.0f, [](request_data& d, auto) { d.params.frequency_penalty = pick({0.5f, -0.5f, 2.0f}); }, false},
      {"presence", spread::normal, 2.0f, [](request_data& d, auto) { d.params.presence_penalty = pick({0.7f, -1.0f, 2.0f}); }, false},
      {"logit_bias", spread::normal, 2.0f,
       [](request_data& d, std::span<const float> row) {
         for (int i = 0; i < 5; ++i) d.params.logit_bias.emplace_back(token(static_cast<int32_t>(row.size())) / 5 * 5 + i, pick({8.0f, -100.0f, 300.0f, 3.5f}));
       },
       false},
      {"min_tokens", spread::normal, 2.0f, [](request_data& d, std::span<const float> row) { mask_top_tokens(d, row, 4); }, false},
      {"greedy+penalties", spread::normal, 2.0f,
       [](request_data& d, std::span<const float> row) {
         d.params.temperature = 0.0f;
         d.params.repetition_penalty = 1.5f;
         d.params.presence_penalty = 1.0f;
         d.params.logit_bias = {{token(static_cast<int32_t>(row.size())), 6.0f}};
       },
       false},
      {"top_k+top_p", spread::normal, 2.0f,
       [](request_data& d, auto) {
         d.params.top_k = 50;
         d.params.top_p = 0.9f;
       },
       true},
      {"all combined", spread::normal, 2.0f, random_mix, true},
      {"ties top_k", spread::ties, 2.0f,
       [](request_data& d, auto) {
         d.params.top_k = pick({1, 3, 50, 1000, 30000});
         d.params.temperature = pick({1.0f, 0.7f});
       },
       false},
      {"ties top_p/min_p", spread::ties, 2.0f,
       [](request_data& d, auto) {
         d.params.top_p = pick({0.9f, 0.5f, 0.2f});
         d.params.min_p = pick({0.0f, 0.1f});
         d.params.top_k = pick({0, 0, 10});
       },
       false},
      {"bf16 top_k+top_p", spread::bf16, 3.0f,
       [](request_data& d, auto) {
         d.params.top_k = pick({20, 50});
         d.params.top_p = pick({0.8f, 0.95f});
         d.params.temperature = pick({0.6f, 1.0f});
       },
       true},
      {"peaked top_p", spread::peaked, 1.5f,
       [](request_data& d, auto) {
         d.params.top_p = pick({0.9f, 0.95f, 0.6f});
         d.params.temperature = pick({0.7f, 1.0f});
       },
       false},
      {"bf16 all combined", spread::bf16, 3.0f, random_mix, false},
      {"bitmask (1 in 20 allowed) + all combined", spread::normal, 2.0f,
       [](request_data& d, std::span<const float> row) { allow_some(d, row, 20); }, true},
      {"bitmask half the rows", spread::bf16, 3.0f,
       [](request_data& d, std::span<const float> row) {
         if (rng() % 2) allow_some(d, row, pick({2u, 1000u}));
         else random_mix(d, row);
       },
       true},
  };
  const std::vector<size_case> small = {{1, 1000}, {37, 1000}, {8, 1001}, {5, 3}};
  const std::vector<size_case> large = {{1, 152064}, {64, 152064}};
  const std::vector<size_case> tiny = {{4, 1000}, {3, 1001}};  // quick: few blocks, for compute-sanitizer
  for (const auto& c : cases) {
    for (const auto& sz : quick ? tiny : small) run_case(gpu, c.name, sz.rows, sz.vocab, c.s, c.scale, c.set);
    if (quick) continue;
    for (const auto& sz : large) run_case(gpu, c.name, sz.rows, sz.vocab, c.s, c.scale, c.set);
    if (c.full) run_case(gpu, c.name, 256, 152064, c.s, c.scale, c.set);
  }

  // Rows every step masks, or that hold one value only.
  const int32_t vocab = 1000;
  std::vector<float> logits(9 * vocab, 0.0f);
  std::fill(logits.begin(), logits.begin() + vocab, neg_inf);                  // row 0: all masked
  std::fill(logits.begin() + 2 * vocab, logits.begin() + 3 * vocab, neg_inf);  // row 2: one finite token
  logits[2 * vocab + 777] = 1.0f;
  std::vector<request_data> data(9);
  for (size_t r = 0; r < data.size(); ++r) data[r].seed = 1000 + r;
  for (size_t r = 6; r < 9; ++r) {
    data[r].allowed.assign((vocab + 31) / 32, 0u);
    data[r].eos = {998};
  }
  data[6].allowed[5] = 1u << 3;                  // one token allowed: id 163 whatever the draw
  data[7].params.temperature = 0.0f;             // nothing allowed, greedy: the end id 998
  logits[8 * vocab + 10] = 50.0f;                // nothing allowed, sampled: the end id, not the likely 10
  data[3].params.top_k = 5;     // equal logits: the five lowest ids
  data[4].params.top_p = 0.5f;  // equal logits: exactly half, the lower ids
  data[5].params.min_p = 1.0f;  // equal logits: min_p keeps them all
  const auto reqs = requests_of(data);
  const auto want = cpu_sample(logits, vocab, reqs), got = gpu_sample(gpu, logits, vocab, reqs);
  int wrong = 0;
  for (size_t r = 0; r < data.size(); ++r) {
    wrong += want[r] != got[r];
    if (want[r] != got[r]) std::printf("sample mismatch: edge row %zu: cpu %d gpu %d\n", r, want[r], got[r]);
  }
  report("sample edge rows", dtype::f32, "masked, one token, equal logits, bitmasks", wrong, 0.0, "rows wrong");
}

void time_sampling(cuda_ops& gpu) {
  const int64_t rows = 256;
  const int32_t vocab = 152064;
  const std::vector<float> values = make_logits(static_cast<size_t>(rows), vocab, spread::normal, 2.0f);
  device_buffer logits = gpu.alloc(dtype::f32, {rows, vocab});
  gpu.upload(logits, values);
  device_buffer out = gpu.alloc(dtype::i32, {rows});
  const double pass_gb = static_cast<double>(rows) * vocab * 4 / 1e9;
  char buf[160];
  {
    std::vector<float> host(static_cast<size_t>(rows) * vocab);
    const double ms = time_ms(gpu, [&] { gpu.download(host, logits); }, 5);
    std::snprintf(buf, sizeof buf, "%.3f ms (what each sampled step paid before, plus the CPU sampler)", ms);
    inform("time download logits", dtype::f32, "256x152064", buf);
    const double argmax = time_ms(gpu, [&] { gpu.argmax(logits, out); });
    std::snprintf(buf, sizeof buf, "%.3f ms, %.0f GB/s", argmax, pass_gb / (argmax / 1e3));
    inform("time argmax", dtype::f32, "256x152064", buf);
  }
  struct timing_case {
    const char* name;
    std::function<void(request_data&)> set;
  };
  const std::vector<timing_case> cases = {
      {"temperature 0.8", [](request_data& d) { d.params.temperature = 0.8f; }},
      {"top_k 50 + top_p 0.9", [](request_data& d) { d.params.top_k = 50; d.params.top_p = 0.9f; }},
      {"top_k 50", [](request_data& d) { d.params.top_k = 50; }},
      {"top_p 0.9", [](request_data& d) { d.params.top_p = 0.9f; }},
      {"min_p 0.05", [](request_data& d) { d.params.min_p = 0.05f; }},
      {"greedy + repetition 1.1", [](request_data& d) { d.params.temperature = 0.0f; d.params.repetition_penalty = 1.1f; }},
      {"T 0.7 + rep 1.1, 512 + 128 tokens", [](request_data& d) { d.params.temperature = 0.7f; d.params.repetition_penalty = 1.1f; }},
  };
  for (const auto& c : cases) {
    std::vector<request_data> data(static_cast<size_t>(rows));
    for (auto& d : data) {
      d.seed = rng();
      c.set(d);
      if (d.params.repetition_penalty != 1.0f) {
        for (int i = 0; i < 512; ++i) d.prompt.push_back(token(vocab));
        for (int i = 0; i < 128; ++i) d.output.push_back(token(vocab));
      }
    }
    sampling_inputs in;
    in.build(requests_of(data), vocab);
    std::vector<uint64_t> host(in.packed_bytes() / 8 + 1);
    in.pack(host.data());
    device_buffer block = gpu.alloc(dtype::i32, {static_cast<int64_t>(host.size() * 2)});
    gpu.upload_raw(tensor(block.get().data, dtype::i32, {static_cast<int64_t>(in.packed_bytes() / 4)}), host.data());
    const sampling_batch batch = in.view(block.get().data);
    const double ms = time_ms(gpu, [&] { gpu.sample(logits, batch, out); });
    std::snprintf(buf, sizeof buf, "%.3f ms per call (%.1f row passes at the argmax's rate)", ms,
                  ms / (time_ms(gpu, [&] { gpu.argmax(logits, out); }, 5)));
    inform(std::string("time sample ") + c.name, dtype::f32, "256x152064", buf);
    // The penalties edit the logits in place: restore them for the next case.
    if (!in.penalties().empty()) gpu.upload(logits, values);
  }
}

} // namespace gpu_check
