// troupe_gpu_check, the custom all-reduce (issue 16; kernels/cuda/custom_all_reduce.hpp): NEEDS A GPU.
//
// 1. 2 and 4 ranks sharing GPU 0 (threads, each with its own CUDA backend and stream), the custom all-reduce
//    around the shared-GPU communicator. Every sum below, in f32, bf16 and f16, must give every rank the CPU
//    twin's bits (sum_in_rank_order: rank order, f32, rounded once), and run the kernel (its call count grows
//    by one) exactly when custom_all_reduce_takes says so: 0 and 1 elements, 7 and 13 (no whole 16-byte unit),
//    3584 (batch 1 at hidden 3584: 7 KiB in bf16), 1000003, 256 x 3584 (1.75 MiB in bf16), the 8 MiB buffer
//    exactly, and one element over (the wrapped communicator's). Also: one rank's tensor 2 or 4 bytes off a
//    16-byte boundary; 24 sums of mixed sizes in a row with no host wait between them (fallbacks among them);
//    a sum on a capturing stream, refused (ranks sharing a GPU run the kernel eagerly only), then an eager one.
// 2. With 2 or more GPUs: NCCL ranks one per GPU (threads of this process: raw pointers and peer access), the
//    same checks, but two sums captured in a CUDA graph on every rank, replayed 5 times on new inputs; the fallback sums are NCCL's, whose order is its own (an informative row).
// 3. Timings (informative): us per bf16 all_reduce_sum of [1, 3584] and [256, 3584], the wrapped communicator
//    against the custom kernel, back to back and waiting for each: 2 ranks sharing GPU 0 and, with 2 or more
//    GPUs, NCCL one rank per GPU. A table, then one row each in the results.
// 4. --custom-all-reduce-mpi, under mpirun: every process is a rank on GPU (local rank % GPUs), and its peers'
//    buffers arrive as CUDA IPC handles (the path of `mpirun -np N troupe serve`). Two processes on ONE GPU
//    work too (the GPU time-slices between them, so their timings mean nothing there):
//      mpirun -np 2 troupe_gpu_check --custom-all-reduce-mpi
//    Each rank checks sums of 1, 7, 3584, 1000003 and 256 x 3584 elements in f32, bf16 and f16 against the CPU
//    twin, 20 in a row, and a graph replayed 3 times; the wrapped communicator is NCCL when every process has a
//    GPU of its own (and then, of 2 ranks, a 10 MiB sum in the row takes it), else MPI's (whose fallback sums
//    are not run: MPI needs host memory).

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/backend_factory.hpp"
#include "kernels/cpu/collective_rules.hpp"
#include "kernels/cpu/mpi_communicator.hpp"
#include "kernels/cuda/custom_all_reduce.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#include "tests/support/split_model.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
using troupe::testing::first_error;
using troupe::testing::on_rank_threads;

namespace gpu_check {

std::vector<std::unique_ptr<communicator>> with_custom_all_reduce(std::vector<std::unique_ptr<communicator>> comms,
                                                                  const std::vector<ops*>& backends, std::string* why_not,
                                                                  const custom_all_reduce_options& options) {
  const int size = static_cast<int>(comms.size());
  in_process_exchange board(size);
  std::vector<std::string> why(static_cast<size_t>(size));
  const std::string error = first_error(on_rank_threads(size, [&](int r) {
    comms[r] = make_custom_all_reduce(std::move(comms[r]), *backends[r], board.for_rank(r), options,
                                      &why[static_cast<size_t>(r)], board.launch_gate());
  }));
  if (!error.empty()) throw std::runtime_error("setting up the custom all-reduce: " + error);
  if (why_not) *why_not = why[0];
  return comms;
}

namespace {

const dtype kTypes[] = {dtype::f32, dtype::bf16, dtype::f16};
const int64_t kCols = 3584;  // Qwen2.5-7B's hidden size
constexpr size_t kBuffer = custom_all_reduce_options{}.buffer_bytes;

// A group of GPU ranks wrapped in the custom all-reduce (comms[r] on gpus[r]).
struct group {
  std::string label;
  std::vector<std::unique_ptr<cuda_ops>> owned;
  std::vector<cuda_ops*> gpus;
  std::vector<std::unique_ptr<communicator>> comms;
  bool exact_fallback = true;  // the wrapped communicator sums in rank order too (shared GPU, not NCCL)
  bool shared_gpu = true;      // every rank on GPU 0: the custom kernel runs eagerly only
  int size() const { return static_cast<int>(comms.size()); }
};

std::vector<ops*> as_ops(const std::vector<cuda_ops*>& gpus) { return {gpus.begin(), gpus.end()}; }

// `size` ranks on GPU 0 (shared) or on GPUs 0 .. size-1 (nccl), their communicators wrapped or not.
group make_group(int size, bool nccl, bool custom, std::string* why_not = nullptr,
                 const custom_all_reduce_options& options = {}) {
  group g;
  g.label = nccl ? "nccl " + std::to_string(size) + " GPUs" : "shared ranks=" + std::to_string(size);
  g.exact_fallback = !nccl;
  g.shared_gpu = !nccl;
  for (int r = 0; r < size; ++r) g.owned.push_back(std::make_unique<cuda_ops>(nccl ? r : 0));
  for (const auto& o : g.owned) g.gpus.push_back(o.get());
  if (nccl) {
    const nccl_unique_id id = make_nccl_unique_id();
    g.comms.resize(static_cast<size_t>(size));
    const std::string error = first_error(on_rank_threads(size, [&](int r) {
      g.comms[r] = make_nccl_communicator(id, r, size, *g.gpus[r]);
    }));
    if (!error.empty()) throw std::runtime_error("NCCL: " + error);
  } else {
    g.comms = make_shared_gpu_communicators(as_ops(g.gpus));
  }
  if (custom) g.comms = with_custom_all_reduce(std::move(g.comms), as_ops(g.gpus), why_not, options);
  return g;
}

// The CPU twin's sum of every rank's `n` elements.
bytes twin_sum(const std::vector<bytes>& inputs, dtype t, int64_t n) {
  bytes out(static_cast<size_t>(n) * size_in_bytes(t));
  std::vector<const void*> ptrs;
  for (const bytes& b : inputs) ptrs.push_back(b.data());
  if (n > 0) sum_in_rank_order(ptrs, t, 0, n, out.data());
  return out;
}

// A [1, n] tensor of `t` inside `whole`, `pad` elements past its start (a 16-byte-aligned allocation).
tensor view_of(const device_buffer& whole, dtype t, int64_t n, int64_t pad) {
  return tensor(static_cast<std::byte*>(whole.get().data) + pad * static_cast<int64_t>(size_in_bytes(t)), t, {1, n});
}

struct sums {
  std::vector<bytes> out;             // per rank
  std::vector<int64_t> kernel_calls;  // per rank: the kernel's runs during the sums
  std::string error;
};

// Each rank sums its inputs[k][r] for every k, one after the other with no host wait between them, then
// downloads them all. Rank `odd_rank` puts its tensors one element off a 16-byte boundary.
sums sum_in_a_row(group& g, dtype t, const std::vector<int64_t>& counts, const std::vector<std::vector<bytes>>& inputs,
                  int odd_rank = -1) {
  const int size = g.size();
  const size_t elem = size_in_bytes(t);
  sums s;
  s.out.resize(static_cast<size_t>(size) * counts.size());
  s.kernel_calls.assign(static_cast<size_t>(size), 0);
  s.error = first_error(on_rank_threads(size, [&](int r) {
    const int64_t pad = r == odd_rank ? 1 : 0;
    std::vector<device_buffer> held;
    std::vector<tensor> xs;
    for (size_t k = 0; k < counts.size(); ++k) {
      held.push_back(g.gpus[r]->alloc(t, {counts[k] + pad + 1}));
      xs.push_back(view_of(held.back(), t, counts[k], pad));
      if (counts[k] > 0) g.gpus[r]->upload_raw(xs.back(), inputs[k][r].data());
    }
    const int64_t before = custom_all_reduce_calls(*g.comms[r]);
    for (const tensor& x : xs) g.comms[r]->all_reduce_sum(x);
    for (size_t k = 0; k < counts.size(); ++k) {
      bytes& out = s.out[k * size + r];
      out = poison(static_cast<size_t>(counts[k]) * elem);
      if (counts[k] > 0) g.gpus[r]->download_raw(out.data(), xs[k]);
    }
    g.gpus[r]->synchronize();
    s.kernel_calls[r] = custom_all_reduce_calls(*g.comms[r]) - before;
  }));
  return s;
}

std::vector<bytes> random_inputs(int size, dtype t, int64_t n) {
  std::vector<bytes> in;
  for (int r = 0; r < size; ++r) in.push_back(random_bits(t, n));
  return in;
}

// Elements of every rank's k-th result that differ from the twin's.
int64_t differing(const sums& s, size_t k, int size, const bytes& want, dtype t) {
  int64_t d = 0;
  for (int r = 0; r < size; ++r) d += differing_elements(s.out[k * size + r], want, size_in_bytes(t));
  return d;
}

int64_t expected_calls(const std::vector<int64_t>& counts, dtype t) {
  int64_t n = 0;
  for (int64_t c : counts) n += custom_all_reduce_takes(c * static_cast<int64_t>(size_in_bytes(t)), t, kBuffer);
  return n;
}

std::string calls_note(const sums& s, int64_t want) {
  for (int64_t c : s.kernel_calls)
    if (c != want) return "the kernel ran " + std::to_string(c) + " times, not " + std::to_string(want);
  return "";
}

// One row per size and dtype: every rank's bits against the twin's, and the kernel run exactly when it takes the sum.
void check_sizes(group& g) {
  for (const dtype t : kTypes) {
    const int64_t elem = static_cast<int64_t>(size_in_bytes(t));
    const int64_t buffer = static_cast<int64_t>(kBuffer) / elem;
    for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{13}, kCols, int64_t{1000003}, 256 * kCols, buffer,
                            buffer + 1}) {
      const std::vector<bytes> in = random_inputs(g.size(), t, n);
      const sums s = sum_in_a_row(g, t, {n}, {in});
      const bool custom = custom_all_reduce_takes(n * elem, t, kBuffer);
      const std::string shape = g.label + " " + dims({1, n}) + (custom ? " custom" : " fallback");
      if (!s.error.empty()) {
        report("custom all_reduce_sum", t, shape, INFINITY, 0, "threw: " + s.error);
        continue;
      }
      const int64_t d = differing(s, 0, g.size(), twin_sum(in, t, n), t);
      const std::string calls = calls_note(s, custom ? 1 : 0);
      if (!custom && !g.exact_fallback) {
        inform("custom all_reduce_sum", t, shape,
               std::to_string(d) + " elements differ from rank order (NCCL's own order)" + (calls.empty() ? "" : "; " + calls));
        continue;
      }
      report("custom all_reduce_sum", t, shape, static_cast<double>(d) + (calls.empty() ? 0 : 1), 0,
             !calls.empty() ? calls
             : d == 0       ? "the CPU twin's bits on every rank"
                            : std::to_string(d) + " elements differ from the CPU twin's");
    }
  }
}

// A tensor off a 16-byte boundary on one rank, and sums of mixed sizes in a row.
void check_odd_and_in_a_row(group& g) {
  for (const dtype t : {dtype::bf16, dtype::f32}) {
    for (const int64_t n : {int64_t{13}, kCols, 256 * kCols + 5}) {
      const std::vector<bytes> in = random_inputs(g.size(), t, n);
      const sums s = sum_in_a_row(g, t, {n}, {in}, g.size() - 1);
      const int64_t d = s.error.empty() ? differing(s, 0, g.size(), twin_sum(in, t, n), t) : -1;
      const std::string calls = s.error.empty() ? calls_note(s, 1) : s.error;
      report("custom all_reduce_sum", t, g.label + " " + dims({1, n}) + " last rank unaligned",
             d < 0 ? INFINITY : static_cast<double>(d) + (calls.empty() ? 0 : 1), 0,
             !calls.empty() ? calls : d == 0 ? "the CPU twin's bits on every rank" : std::to_string(d) + " elements differ");
    }
  }
  const dtype t = dtype::bf16;
  const int64_t over = static_cast<int64_t>(kBuffer) / 2 + 1;  // the wrapped communicator's
  std::vector<int64_t> counts;
  for (int i = 0; i < 4; ++i)
    for (const int64_t n : {kCols, int64_t{7}, 256 * kCols, int64_t{1}, int64_t{100003}, over}) counts.push_back(n);
  std::vector<std::vector<bytes>> in;
  for (const int64_t n : counts) in.push_back(random_inputs(g.size(), t, n));
  const sums s = sum_in_a_row(g, t, counts, in);
  int64_t d = 0;
  if (s.error.empty())
    for (size_t k = 0; k < counts.size(); ++k)
      if (g.exact_fallback || custom_all_reduce_takes(counts[k] * 2, t, kBuffer))
        d += differing(s, k, g.size(), twin_sum(in[k], t, counts[k]), t);
  const std::string calls = s.error.empty() ? calls_note(s, expected_calls(counts, t)) : s.error;
  report("custom all_reduce_sum", t, g.label + " " + std::to_string(counts.size()) + " mixed sums in a row",
         !s.error.empty() ? INFINITY : static_cast<double>(d) + (calls.empty() ? 0 : 1), 0,
         !calls.empty() ? calls : d == 0 ? "the CPU twin's bits for every sum on every rank" : std::to_string(d) + " elements differ");
}

// Two sums captured in a CUDA graph on every rank, replayed on new inputs: the kernel's counts live on the GPU.
void check_graph(group& g, int replays) {
  const int size = g.size();
  const dtype t = dtype::bf16;
  const std::vector<int64_t> counts = {256 * kCols, kCols};
  // Made on each rank's thread (allocating makes its GPU current there) and freed after every thread is done.
  std::vector<std::vector<device_buffer>> held(static_cast<size_t>(size));
  std::vector<std::vector<tensor>> xs(static_cast<size_t>(size));
  std::vector<std::vector<std::vector<bytes>>> in(static_cast<size_t>(replays));  // [replay][sum][rank]
  for (auto& rep : in)
    for (const int64_t n : counts) rep.push_back(random_inputs(size, t, n));
  std::vector<std::vector<std::vector<bytes>>> out(
      static_cast<size_t>(replays), std::vector<std::vector<bytes>>(counts.size(), std::vector<bytes>(static_cast<size_t>(size))));
  std::barrier<> meet(size);
  std::vector<int64_t> calls(static_cast<size_t>(size));
  std::atomic<bool> recorded = true;
  const std::string error = first_error(on_rank_threads(size, [&](int r) {
    for (const int64_t n : counts) {
      held[r].push_back(g.gpus[r]->alloc(t, {1, n}));
      xs[r].push_back(held[r].back());
    }
    g.gpus[r]->synchronize();
    const int64_t before = custom_all_reduce_calls(*g.comms[r]);
    meet.arrive_and_wait();  // no rank allocates or waits on the device while another captures
    const bool capturing = g.gpus[r]->begin_capture();
    if (capturing)
      for (const tensor& x : xs[r]) g.comms[r]->all_reduce_sum(x);
    const int32_t graph = capturing ? g.gpus[r]->end_capture() : -1;
    meet.arrive_and_wait();
    if (!capturing) {
      recorded = false;
      return;
    }
    for (int k = 0; k < replays; ++k) {
      for (size_t i = 0; i < counts.size(); ++i) g.gpus[r]->upload_raw(xs[r][i], in[k][i][r].data());
      g.gpus[r]->replay(graph);
      for (size_t i = 0; i < counts.size(); ++i) {
        out[k][i][r] = poison(xs[r][i].num_bytes());
        g.gpus[r]->download_raw(out[k][i][r].data(), xs[r][i]);
      }
    }
    g.gpus[r]->release_graph(graph);
    calls[r] = custom_all_reduce_calls(*g.comms[r]) - before;
  }));
  const std::string shape = g.label + " graph of 2 sums replayed " + std::to_string(replays) + " times";
  if (!recorded) return report("custom all_reduce_sum", t, shape, INFINITY, 0, "the backend records no graphs (TROUPE_CUDA_PROFILE set?)");
  if (!error.empty()) return report("custom all_reduce_sum", t, shape, INFINITY, 0, "threw: " + error);
  int64_t d = 0;
  for (int k = 0; k < replays; ++k)
    for (size_t i = 0; i < counts.size(); ++i) {
      const bytes want = twin_sum(in[k][i], t, counts[i]);
      for (int r = 0; r < size; ++r) d += differing_elements(out[k][i][r], want, 2);
    }
  bool counted = true;  // captured once, so counted once per sum
  for (int64_t c : calls) counted = counted && c == static_cast<int64_t>(counts.size());
  report("custom all_reduce_sum", t, shape, static_cast<double>(d) + (counted ? 0 : 1), 0,
         !counted ? "the kernel was not what the capture recorded" : d == 0 ? "the CPU twin's bits on every replay and rank"
                                                                            : std::to_string(d) + " elements differ");
}

// Ranks sharing one GPU: a sum on a capturing stream is refused (custom_all_reduce.hpp says why), the kernel
// not counted, and the stream left fit to end its (empty) capture and go on summing eagerly.
void check_graph_refused(group& g) {
  const int size = g.size();
  const dtype t = dtype::bf16;
  std::vector<device_buffer> held(static_cast<size_t>(size));
  std::vector<std::vector<bytes>> in = {random_inputs(size, t, kCols)};
  std::vector<bytes> out(static_cast<size_t>(size));
  std::barrier<> meet(size);
  std::atomic<int> refused = 0, counted_wrongly = 0;
  std::atomic<bool> recorded = true;
  const std::string error = first_error(on_rank_threads(size, [&](int r) {
    held[r] = g.gpus[r]->alloc(t, {1, kCols});
    g.gpus[r]->synchronize();
    const int64_t before = custom_all_reduce_calls(*g.comms[r]);
    meet.arrive_and_wait();
    const bool capturing = g.gpus[r]->begin_capture();
    if (capturing) {
      try {
        g.comms[r]->all_reduce_sum(held[r]);
      } catch (const std::invalid_argument&) {
        ++refused;
      }
      g.gpus[r]->release_graph(g.gpus[r]->end_capture());
    } else {
      recorded = false;
    }
    if (custom_all_reduce_calls(*g.comms[r]) != before) ++counted_wrongly;
    meet.arrive_and_wait();
    g.gpus[r]->upload_raw(held[r], in[0][r].data());
    g.comms[r]->all_reduce_sum(held[r]);  // eagerly, after the refusal: still the twin's bits
    out[r] = poison(held[r].get().num_bytes());
    g.gpus[r]->download_raw(out[r].data(), held[r]);
  }));
  const std::string shape = g.label + " sum on a capturing stream refused, then eager";
  if (!recorded) return report("custom all_reduce_sum", t, shape, INFINITY, 0, "the backend records no graphs (TROUPE_CUDA_PROFILE set?)");
  if (!error.empty()) return report("custom all_reduce_sum", t, shape, INFINITY, 0, "threw: " + error);
  const bytes want = twin_sum(in[0], t, kCols);
  int64_t d = 0;
  for (int r = 0; r < size; ++r) d += differing_elements(out[r], want, 2);
  const int wrong = (size - refused.load()) + counted_wrongly.load();
  report("custom all_reduce_sum", t, shape, static_cast<double>(d + wrong), 0,
         wrong ? std::to_string(size - refused.load()) + " ranks not refused, " + std::to_string(counted_wrongly.load()) +
                     " counted a kernel"
         : d == 0 ? "every rank refused with invalid_argument; the eager sum after it the CPU twin's bits"
                  : std::to_string(d) + " elements differ after the refusal");
}

void check_group(group& g, const std::string& why_not) {
  report("custom all-reduce set-up", dtype::f32, g.label, why_not.empty() ? 0 : 1, 0,
         why_not.empty() ? "on" : "off: " + why_not);
  if (!why_not.empty()) return;
  check_sizes(g);
  check_odd_and_in_a_row(g);
  if (g.shared_gpu)
    check_graph_refused(g);
  else
    check_graph(g, 5);
}

// us per sum of [rows, kCols] bf16 on every rank: back to back (host time of `reps` calls ending with the
// last result in place) and waiting for each.
std::pair<double, double> time_sums(group& g, int64_t rows) {
  const int size = g.size(), reps = 200;
  std::barrier<> meet(size);
  double back_to_back = 0, waited = 0;
  using clock = std::chrono::steady_clock;
  const std::string error = first_error(on_rank_threads(size, [&](int r) {
    device_buffer x = g.gpus[r]->alloc(dtype::bf16, {rows, kCols});  // zeros: the values do not change the time
    for (int i = 0; i < 20; ++i) g.comms[r]->all_reduce_sum(x);
    g.gpus[r]->synchronize();
    meet.arrive_and_wait();
    auto begin = clock::now();
    for (int i = 0; i < reps; ++i) g.comms[r]->all_reduce_sum(x);
    g.gpus[r]->synchronize();
    if (r == 0) back_to_back = std::chrono::duration<double, std::micro>(clock::now() - begin).count() / reps;
    meet.arrive_and_wait();
    begin = clock::now();
    for (int i = 0; i < reps; ++i) {
      g.comms[r]->all_reduce_sum(x);
      g.gpus[r]->synchronize();
    }
    if (r == 0) waited = std::chrono::duration<double, std::micro>(clock::now() - begin).count() / reps;
  }));
  if (!error.empty()) throw std::runtime_error("timing " + g.label + ": " + error);
  return {back_to_back, waited};
}

std::string us_pair(std::pair<double, double> us) {
  char s[64];
  std::snprintf(s, sizeof s, "%.1f / %.1f", us.first, us.second);
  return s;
}

} // namespace

void check_custom_all_reduce() {
  watchdog deadline("the custom all-reduce checks", 300);
  for (const int size : {2, 4})
    guarded("custom all-reduce, shared GPU", [&] {
      std::string why;
      group g = make_group(size, false, true, &why);
      check_group(g, why);
    });
  const int gpus = device_count("cuda");
  if (gpus < 2 || !nccl_available()) {
    inform("custom all-reduce", dtype::bf16, "nccl one rank per GPU",
           gpus < 2 ? "not run: " + std::to_string(gpus) + " GPU visible" : "not run: this troupe was built without NCCL");
    return;
  }
  for (const int size : {2, 4, 8})
    if (size <= gpus)
      guarded("custom all-reduce, nccl", [&] {
        std::string why;
        group g = make_group(size, true, true, &why);
        check_group(g, why);
      });
}

void time_custom_all_reduce() {
  watchdog deadline("the custom all-reduce timings", 180);
  struct setup {
    int size;
    bool nccl;
  };
  std::vector<setup> setups = {{2, false}};
  const int gpus = device_count("cuda");
  if (nccl_available())
    for (const int size : {2, 4, 8})
      if (size <= gpus) setups.push_back({size, true});
  std::printf("\ncustom all-reduce: us per bf16 all_reduce_sum, back to back / waiting for each (rank 0's host time)\n");
  std::printf("%-20s %-12s %-9s %20s %20s\n", "setup", "shape", "bytes", "wrapped alone", "custom");
  for (const setup& s : setups)
    guarded("custom all-reduce timings", [&] {
      group plain = make_group(s.size, s.nccl, false);
      std::string why;
      group custom = make_group(s.size, s.nccl, true, &why);
      for (const int64_t rows : {int64_t{1}, int64_t{256}}) {
        const auto wrapped_us = time_sums(plain, rows);
        const auto custom_us = time_sums(custom, rows);
        const std::string shape = dims({rows, kCols});
        std::printf("%-20s %-12s %-9lld %20s %20s%s\n", plain.label.c_str(), shape.c_str(),
                    static_cast<long long>(rows * kCols * 2), us_pair(wrapped_us).c_str(), us_pair(custom_us).c_str(),
                    why.empty() ? "" : ("  (custom off: " + why + ")").c_str());
        inform("custom all_reduce time", dtype::bf16, plain.label + " " + shape,
               "wrapped " + us_pair(wrapped_us) + " us, custom " + us_pair(custom_us) + " us (back to back / each waited)");
      }
      if (!s.nccl) return;
      // The grid the kernel launches on GPUs of their own (default 36 blocks), for tuning: 1.75 MiB at other caps.
      for (const int blocks : {8, 16, 64}) {
        custom_all_reduce_options o;
        o.max_blocks = blocks;
        group tuned = make_group(s.size, true, true, nullptr, o);
        const auto us = time_sums(tuned, 256);
        std::printf("%-20s %-12s %-9lld %20s %20s  (at most %d blocks)\n", plain.label.c_str(), dims({256, kCols}).c_str(),
                    static_cast<long long>(256 * kCols * 2), "", us_pair(us).c_str(), blocks);
        inform("custom all_reduce time", dtype::bf16, plain.label + " " + dims({256, kCols}) + " " + std::to_string(blocks) + " blocks",
               "custom " + us_pair(us) + " us (back to back / each waited)");
      }
    });
}

// 4. One rank per process under mpirun.
int check_custom_all_reduce_mpi(uint64_t seed) {
  mpi_session mpi;
  const int gpus = device_count("cuda");
  if (gpus < 1) {
    std::fprintf(stderr, "rank %d: no GPU\n", mpi.rank());
    return 1;
  }
  const int device = mpi.local_rank() % gpus;
  cuda_ops gpu(device);
  const bool own_gpu = mpi.local_size() <= gpus && nccl_available();
  const auto exchange = [&](const std::string& mine) { return mpi.all_gather_string(mine); };
  // The wrapped communicator: NCCL when each process has its own GPU, else MPI's (host memory: its sums never run).
  auto wrapped = [&]() -> std::unique_ptr<communicator> {
    if (!own_gpu) return mpi.make_world_communicator();
    nccl_unique_id id;
    if (mpi.rank() == 0) id = make_nccl_unique_id();
    std::vector<std::byte> b(id.bytes.size());
    std::memcpy(b.data(), id.bytes.data(), b.size());
    mpi.broadcast_bytes(b, 0);
    std::memcpy(id.bytes.data(), b.data(), b.size());
    return make_nccl_communicator(id, mpi.rank(), mpi.size(), gpu);
  };
  std::string why;
  std::unique_ptr<communicator> comm = make_custom_all_reduce(wrapped(), gpu, exchange, custom_all_reduce_options{}, &why);
  const std::string where = "rank " + std::to_string(mpi.rank()) + " of " + std::to_string(mpi.size()) + " (GPU " +
                            std::to_string(device) + ", wrapping " + (own_gpu ? "NCCL" : "MPI") + ")";
  std::vector<std::string> failures;
  int checks = 0;
  auto row = [&](const std::string& what, bool pass, const std::string& note) {
    ++checks;
    std::printf("%s: %-44s %s  %s\n", where.c_str(), what.c_str(), pass ? "pass" : "FAIL", note.c_str());
    if (!pass) failures.push_back(what);
  };
  row("set-up", why.empty(), why.empty() ? "custom all-reduce on (CUDA IPC handles)" : "off: " + why);
  if (why.empty()) {
    // Every process draws every rank's inputs from the same seed, so each can compute the twin's sum alone.
    uint64_t case_seed = seed * 1000003;
    auto inputs_for = [&](dtype t, int64_t n) {
      rng.seed(++case_seed);
      return random_inputs(mpi.size(), t, n);
    };
    auto sum_and_compare = [&](dtype t, const std::vector<int64_t>& counts, bool in_graph, int replays) {
      std::vector<device_buffer> xs;
      for (const int64_t n : counts) xs.push_back(gpu.alloc(t, {1, n}));
      int32_t graph = -1;
      if (in_graph) {
        gpu.synchronize();
        if (!gpu.begin_capture()) return std::string("the backend records no graphs");
        for (const device_buffer& x : xs) comm->all_reduce_sum(x);
        graph = gpu.end_capture();
      }
      int64_t d = 0;
      for (int k = 0; k < replays; ++k) {
        std::vector<std::vector<bytes>> in;
        for (size_t i = 0; i < counts.size(); ++i) {
          in.push_back(inputs_for(t, counts[i]));
          gpu.upload_raw(xs[i], in.back()[static_cast<size_t>(mpi.rank())].data());
        }
        if (in_graph) gpu.replay(graph);
        else
          for (const device_buffer& x : xs) comm->all_reduce_sum(x);
        for (size_t i = 0; i < counts.size(); ++i) {
          bytes out = poison(xs[i].get().num_bytes());
          gpu.download_raw(out.data(), xs[i]);
          d += differing_elements(out, twin_sum(in[i], t, counts[i]), size_in_bytes(t));
        }
      }
      if (in_graph) gpu.release_graph(graph);
      return d == 0 ? std::string() : std::to_string(d) + " elements differ from the CPU twin's";
    };
    for (const dtype t : kTypes)
      for (const int64_t n : {int64_t{1}, int64_t{7}, kCols, int64_t{1000003}, 256 * kCols}) {
        const std::string e = sum_and_compare(t, {n}, false, 1);
        row(std::string(name(t)) + " " + dims({1, n}), e.empty(), e.empty() ? "the CPU twin's bits" : e);
      }
    std::vector<int64_t> mixed;
    for (int i = 0; i < 4; ++i)
      for (const int64_t n : {kCols, int64_t{7}, 256 * kCols, int64_t{1}, int64_t{100003}}) mixed.push_back(n);
    // NCCL's, 10 MiB: of 2 ranks its sum is a + b, one f32 addition, so rank order's bits too.
    if (own_gpu && mpi.size() == 2) mixed.push_back(static_cast<int64_t>(kBuffer) / 4 + (1 << 19));
    std::string e = sum_and_compare(dtype::f32, mixed, false, 1);
    row(std::to_string(mixed.size()) + " f32 sums in a row", e.empty(), e.empty() ? "the CPU twin's bits" : e);
    e = sum_and_compare(dtype::bf16, {256 * kCols, kCols}, true, 3);
    row("bf16 graph of 2 sums replayed 3 times", e.empty(), e.empty() ? "the CPU twin's bits" : e);
    // Timings: meaningful when each process has a GPU of its own.
    for (const int64_t rows : {int64_t{1}, int64_t{256}}) {
      device_buffer x = gpu.alloc(dtype::bf16, {rows, kCols});
      for (int i = 0; i < 10; ++i) comm->all_reduce_sum(x);
      gpu.synchronize();
      const int reps = own_gpu ? 200 : 20;
      const auto begin = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) comm->all_reduce_sum(x);
      gpu.synchronize();
      const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - begin).count() / reps;
      char note[96];
      std::snprintf(note, sizeof note, "%.1f us per all_reduce_sum back to back%s", us,
                    own_gpu ? "" : " (one GPU time-sliced between processes: not a timing)");
      row("bf16 time " + dims({rows, kCols}), true, note);
    }
  }
  comm.reset();  // before MPI ends
  const std::vector<std::string> all = mpi.all_gather_string(std::to_string(failures.size()));
  int failed = 0;
  for (const std::string& f : all) failed += std::stoi(f);
  if (mpi.rank() == 0)
    std::printf("custom all-reduce under mpirun: %d ranks, %d checks each, %d failures in all\n", mpi.size(), checks, failed);
  return failed == 0 ? 0 : 1;
}

} // namespace gpu_check
