// troupe_gpu_check, communicators (issue 11): NEEDS A GPU.
//
// 1. The shared-GPU communicator, 2 and 4 ranks on GPU 0 (each rank a thread with its own CUDA backend and
//    stream): all_reduce_sum, all_gather_last_dim and broadcast on random [1, 3584] and [256, 3584] in
//    f32, bf16 and f16 must give, on every rank, the bits the CPU thread communicator gives for the same
//    inputs (rank-order sums, f32 accumulation rounded once). Also: ranks that disagree on a shape all
//    throw and the group stays usable; a call inside a graph capture throws.
// 2. The NCCL communicator of size 1 (its own unique id, rank 0): each collective (a sum of one tensor is
//    itself, a gather of one is a copy), then one all_reduce_sum, a linear and an all_gather captured in
//    a CUDA graph, replayed on new inputs and compared with the same ops run eagerly.
// 3. Timings (informative): µs per all_reduce_sum of bf16 [1, 3584] and [256, 3584] with 2 and 4 ranks
//    sharing the GPU and with NCCL of size 1.
//
// A rank that fails inside a collective leaves the others at a barrier for good, so a watchdog ends the
// program after a deadline rather than letting it hold the GPU session.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/collective_group.hpp"
#include "kernels/cpu/thread_communicator.hpp"
#include "kernels/cuda/nccl_communicator.hpp"
#include "kernels/cuda/shared_gpu_communicator.hpp"
#include "tests/support/split_model.hpp"
#include "tools/gpu_check.hpp"

using namespace troupe;
using troupe::testing::first_error;
using troupe::testing::on_rank_threads;

namespace gpu_check {
namespace {

const int64_t kCols = 3584;               // Qwen2.5-7B's hidden size
const int64_t kRowCounts[] = {1, 256};    // a decode step of 1 and of 256 sequences
const dtype kTypes[] = {dtype::f32, dtype::bf16, dtype::f16};
const int kSharedSizes[] = {2, 4};

// Where rank r's tensors live: alloc(r, dtype, shape) makes one; upload and download move bytes as they are.
struct rank_io {
  std::function<device_buffer(int, dtype, std::initializer_list<int64_t>)> alloc;
  std::function<void(int, const tensor&, const void*)> upload;
  std::function<void(int, void*, const tensor&)> download;
};

// Runs collective `c` on `rows` x kCols of `t` on every rank through `comms` (element r on thread r) and
// returns each rank's result bytes (the tensor itself, or the gather's output); `error` names the first
// rank that threw.
std::vector<bytes> run_collective(collective c, std::vector<std::unique_ptr<communicator>>& comms, const rank_io& io,
                                  dtype t, int64_t rows, const std::vector<bytes>& inputs, std::string& error) {
  const int size = static_cast<int>(comms.size());
  const size_t elem = size_in_bytes(t);
  const int64_t out_cols = c == collective::all_gather_last_dim ? kCols * size : kCols;
  std::vector<bytes> results(size, poison(static_cast<size_t>(rows * out_cols) * elem));
  error = first_error(on_rank_threads(size, [&](int r) {
    device_buffer x = io.alloc(r, t, {rows, kCols});
    io.upload(r, x, inputs[r].data());
    switch (c) {
      case collective::all_reduce_sum:
        comms[r]->all_reduce_sum(x);
        io.download(r, results[r].data(), x);
        break;
      case collective::all_gather_last_dim: {
        device_buffer out = io.alloc(r, t, {rows, out_cols});
        io.upload(r, out, results[r].data());  // poisoned
        comms[r]->all_gather_last_dim(x, out);
        io.download(r, results[r].data(), out);
        break;
      }
      case collective::broadcast:
        comms[r]->broadcast(x, size - 1);  // the last rank as root: not the default
        io.download(r, results[r].data(), x);
        break;
    }
  }));
  return results;
}

rank_io host_io() {
  rank_io io;
  io.alloc = [](int, dtype t, std::initializer_list<int64_t> shape) {
    tensor v(nullptr, t, shape);
    v.data = new std::byte[std::max<size_t>(v.num_bytes(), 1)];
    return device_buffer(v, [](void* q) { delete[] static_cast<std::byte*>(q); });
  };
  io.upload = [](int, const tensor& dst, const void* src) { std::memcpy(dst.data, src, dst.num_bytes()); };
  io.download = [](int, void* dst, const tensor& src) { std::memcpy(dst, src.data, src.num_bytes()); };
  return io;
}

// Rank r's tensors live on gpus[r].
rank_io gpu_io(const std::vector<cuda_ops*>& gpus) {
  rank_io io;
  io.alloc = [gpus](int r, dtype t, std::initializer_list<int64_t> shape) { return gpus[r]->alloc(t, shape); };
  io.upload = [gpus](int r, const tensor& dst, const void* src) { gpus[r]->upload_raw(dst, src); };
  io.download = [gpus](int r, void* dst, const tensor& src) { gpus[r]->download_raw(dst, src); };
  return io;
}

// Every collective, shape and dtype through `gpu_comms` (rank r on gpus[r]) and through the thread
// communicator with the same inputs: one row per case, failing unless every rank's bits are equal.
void compare_with_threads(const std::string& label, std::vector<std::unique_ptr<communicator>>& gpu_comms,
                          const std::vector<cuda_ops*>& gpus) {
  const int size = static_cast<int>(gpu_comms.size());
  auto cpu_comms = make_thread_communicators(size);
  for (const int64_t rows : kRowCounts)
    for (const dtype t : kTypes)
      for (const collective c :
           {collective::all_reduce_sum, collective::all_gather_last_dim, collective::broadcast}) {
        std::vector<bytes> inputs;
        for (int r = 0; r < size; ++r) inputs.push_back(random_bits(t, rows * kCols));
        std::string cpu_error, gpu_error;
        const std::vector<bytes> want = run_collective(c, cpu_comms, host_io(), t, rows, inputs, cpu_error);
        const std::vector<bytes> got = run_collective(c, gpu_comms, gpu_io(gpus), t, rows, inputs, gpu_error);
        const std::string shape = label + " " + dims({rows, kCols});
        if (!cpu_error.empty() || !gpu_error.empty()) {
          report(collective_name(c), t, shape, INFINITY, 0, "threw: " + (gpu_error.empty() ? "cpu " + cpu_error : gpu_error));
          continue;
        }
        int64_t differ = 0, total = 0;
        for (int r = 0; r < size; ++r) {
          differ += differing_elements(got[r], want[r], size_in_bytes(t));
          total += static_cast<int64_t>(want[r].size() / size_in_bytes(t));
        }
        report(collective_name(c), t, shape, static_cast<double>(differ), 0,
               differ == 0 ? "the thread communicator's bits on every rank"
                           : std::to_string(differ) + " of " + std::to_string(total) + " elements differ from the CPU's");
      }
}

// `size` CUDA backends on GPU 0, each with its own stream: the ranks sharing the GPU.
std::vector<std::unique_ptr<cuda_ops>> shared_backends(int size) {
  std::vector<std::unique_ptr<cuda_ops>> gpus;
  for (int r = 0; r < size; ++r) gpus.push_back(std::make_unique<cuda_ops>(0));
  return gpus;
}

std::vector<cuda_ops*> pointers(const std::vector<std::unique_ptr<cuda_ops>>& gpus) {
  std::vector<cuda_ops*> p;
  for (const auto& g : gpus) p.push_back(g.get());
  return p;
}

// 1. The shared-GPU communicator.
void check_shared_gpu(int size) {
  const auto owned = shared_backends(size);
  const std::vector<cuda_ops*> gpus = pointers(owned);
  auto comms = make_shared_gpu_communicators({gpus.begin(), gpus.end()});
  const std::string label = "shared ranks=" + std::to_string(size);
  report("capturable", dtype::f32, label, comms[0]->capturable() ? 1 : 0, 0, "false: the host waits in each collective");
  compare_with_threads(label, comms, gpus);

  // Ranks that disagree on a shape all throw the same message; the group then still sums.
  std::vector<std::string> messages(size);
  std::vector<float> after(size, 0.0f);
  std::string error = first_error(on_rank_threads(size, [&](int r) {
    device_buffer x = gpus[r]->alloc(dtype::f32, {r == size - 1 ? 1 : 2, 8});
    try {
      comms[r]->all_reduce_sum(x);
    } catch (const std::invalid_argument& e) {
      messages[r] = e.what();
    }
    device_buffer one = gpus[r]->alloc(dtype::f32, {1});
    const float v = 1.0f;
    gpus[r]->upload_raw(one, &v);
    comms[r]->all_reduce_sum(one);
    gpus[r]->download_raw(&after[r], one);
  }));
  const std::string want = "all_reduce_sum: rank 0 has [2, 8] F32 but rank " + std::to_string(size - 1) +
                           " has [1, 8] F32: every rank must pass the same shape and dtype";
  bool agreed = error.empty();
  for (int r = 0; r < size; ++r) agreed = agreed && messages[r] == want && after[r] == float(size);
  report("disagreeing shapes", dtype::f32, label, agreed ? 0 : 1, 0,
         agreed ? "every rank throws the same message, then sums again" : error.empty() ? "rank 0: " + messages[0] : error);

  // Inside a graph capture every rank refuses before waiting on anything. The tensors are made before and
  // freed after every capture: cudaFree waits for the device, which breaks a capture on it in any thread.
  std::vector<std::string> refusals(size);
  std::vector<device_buffer> xs;
  for (int r = 0; r < size; ++r) xs.push_back(gpus[r]->alloc(dtype::f32, {1, 8}));
  for (cuda_ops* g : gpus) g->synchronize();
  error = first_error(on_rank_threads(size, [&](int r) {
    if (!gpus[r]->begin_capture()) return;
    try {
      comms[r]->all_reduce_sum(xs[r]);
    } catch (const std::logic_error& e) {
      refusals[r] = e.what();
    }
    try {
      gpus[r]->release_graph(gpus[r]->end_capture());
    } catch (const std::exception&) {  // an empty graph: only leaving the capture matters
    }
  }));
  xs.clear();
  bool refused = error.empty();
  for (const std::string& m : refusals) refused = refused && m.find("capture") != std::string::npos;
  report("inside a capture", dtype::f32, label, refused ? 0 : 1, 0,
         refused ? "every rank throws std::logic_error" : error.empty() ? "rank 0: '" + refusals[0] + "'" : error);
}

// 2. The NCCL communicator of size 1.
void check_nccl_size_1(cuda_ops& gpu) {
  if (!nccl_available()) {
    report("nccl", dtype::f32, "size=1", INFINITY, 0, "this troupe was built without NCCL");
    return;
  }
  std::vector<std::unique_ptr<communicator>> comms;
  comms.push_back(make_nccl_communicator(make_nccl_unique_id(), 0, 1, gpu));
  communicator& comm = *comms[0];
  report("capturable", dtype::f32, "nccl size=1", comm.capturable() ? 0 : 1, 0, "true: collectives only enqueue");
  // Against the thread communicator of size 1: a sum of one tensor is itself, a gather of one a copy.
  compare_with_threads("nccl size=1", comms, {&gpu});

  // One all_reduce_sum, a linear and an all_gather (through the staging buffer: 256 rows) captured in a
  // graph; replayed on new inputs, it must give what the same ops give run eagerly.
  const dtype t = dtype::bf16;
  const int64_t rows = 256, n = 512;
  device_buffer x = gpu.alloc(t, {rows, kCols}), w = gpu.alloc(t, {n, kCols});
  device_buffer y = gpu.alloc(t, {rows, n}), z = gpu.alloc(t, {rows, n});
  gpu.upload_raw(w, random_bits(t, n * kCols).data());
  gpu.upload_raw(x, random_bits(t, rows * kCols).data());
  auto step = [&] {
    comm.all_reduce_sum(x);
    gpu.linear(x, w, tensor{}, y, false);
    comm.all_gather_last_dim(y, z);
  };
  step();  // eagerly first: NCCL connects and the gather's staging buffer grows outside the capture
  gpu.synchronize();
  if (!gpu.begin_capture()) {
    report("graph replay", t, "nccl size=1", INFINITY, 0, "the backend records no graphs (TROUPE_CUDA_PROFILE set?)");
    return;
  }
  try {
    step();
  } catch (...) {
    try {
      gpu.end_capture();
    } catch (const std::exception&) {  // the first error is the one to report
    }
    throw;
  }
  const int32_t graph = gpu.end_capture();
  const bytes fresh = random_bits(t, rows * kCols);
  bytes replayed(z.get().num_bytes()), eager(z.get().num_bytes());
  gpu.upload_raw(x, fresh.data());
  gpu.replay(graph);
  gpu.download_raw(replayed.data(), z);
  gpu.upload_raw(x, fresh.data());
  step();
  gpu.download_raw(eager.data(), z);
  gpu.release_graph(graph);
  const int64_t differ = differing_elements(replayed, eager, size_in_bytes(t));
  report("graph replay", t, "nccl size=1 all_reduce+linear+all_gather " + dims({rows, kCols}) + "x" + dims({n, kCols}),
         static_cast<double>(differ), 0,
         differ == 0 ? "the eager bits" : std::to_string(differ) + " elements differ from the eager run");
}

std::string microseconds(double us) {
  char s[64];
  std::snprintf(s, sizeof s, "%.1f us per all_reduce_sum", us);
  return s;
}

} // namespace

bytes random_bits(dtype t, int64_t n) {
  std::normal_distribution<float> d(0.0f, 4.0f);
  bytes b(static_cast<size_t>(n) * size_in_bytes(t));
  for (int64_t i = 0; i < n; ++i) {
    const float v = d(rng);
    if (t == dtype::f32) std::memcpy(b.data() + i * 4, &v, 4);
    else {
      const uint16_t h = t == dtype::bf16 ? f32_to_bf16(v) : f32_to_f16(v);
      std::memcpy(b.data() + i * 2, &h, 2);
    }
  }
  return b;
}

bytes poison(size_t n) { return bytes(n, std::byte{0xff}); }

int64_t differing_elements(const bytes& a, const bytes& b, size_t elem) {
  if (a.size() != b.size()) return static_cast<int64_t>(std::max(a.size(), b.size()) / elem);
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); i += elem) n += std::memcmp(a.data() + i, b.data() + i, elem) != 0;
  return n;
}

void check_communicators(cuda_ops& gpu) {
  watchdog deadline("the communicator checks", 300);
  for (const int size : kSharedSizes) guarded("shared-GPU communicator", [&] { check_shared_gpu(size); });
  guarded("nccl communicator", [&] { check_nccl_size_1(gpu); });
}

void time_communicators(cuda_ops& gpu) {
  watchdog deadline("the communicator timings", 120);
  const dtype t = dtype::bf16;
  const int reps = 200;
  using clock = std::chrono::steady_clock;
  for (const int size : kSharedSizes) {
    const auto owned = shared_backends(size);
    const std::vector<cuda_ops*> gpus = pointers(owned);
    auto comms = make_shared_gpu_communicators({gpus.begin(), gpus.end()});
    for (const int64_t rows : kRowCounts) {
      double us = 0;
      const std::string error = first_error(on_rank_threads(size, [&](int r) {
        device_buffer x = gpus[r]->alloc(t, {rows, kCols});  // zeros: the values do not change the time
        for (int i = 0; i < 10; ++i) comms[r]->all_reduce_sum(x);
        const auto begin = clock::now();
        for (int i = 0; i < reps; ++i) comms[r]->all_reduce_sum(x);  // each returns with its result in place
        if (r == 0) us = std::chrono::duration<double, std::micro>(clock::now() - begin).count() / reps;
      }));
      inform("all_reduce_sum time", t, "shared ranks=" + std::to_string(size) + " " + dims({rows, kCols}),
             error.empty() ? microseconds(us) : "threw: " + error);
    }
  }
  if (!nccl_available()) return;
  auto comm = make_nccl_communicator(make_nccl_unique_id(), 0, 1, gpu);
  for (const int64_t rows : kRowCounts) {
    device_buffer x = gpu.alloc(t, {rows, kCols});
    for (int i = 0; i < 10; ++i) comm->all_reduce_sum(x);
    gpu.synchronize();
    const auto begin = clock::now();
    for (int i = 0; i < reps; ++i) comm->all_reduce_sum(x);
    gpu.synchronize();
    const double back_to_back = std::chrono::duration<double, std::micro>(clock::now() - begin).count() / reps;
    const double waited = 1000 * time_ms(gpu, [&] { comm->all_reduce_sum(x); }, reps);
    inform("all_reduce_sum time", t, "nccl size=1 " + dims({rows, kCols}),
           microseconds(back_to_back) + " enqueued back to back; " + microseconds(waited) + " waiting for each");
  }
}

} // namespace gpu_check
