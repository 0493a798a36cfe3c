#include "kernels/cuda/custom_all_reduce.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu/collective_rules.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#include "kernels/cuda/launchers.hpp"

namespace troupe {
namespace {

static_assert(kCustomAllReduceMaxRanks == cuda::kCustomAllReduceRanks, "the kernel's rank limit is the rules'");
static_assert(sizeof(cudaIpcMemHandle_t) == sizeof(custom_all_reduce_peer::ipc_handle), "a record holds an IPC handle");

// This rank's buffer and its view of every rank's. Frees and closes what it holds.
struct peer_buffers {
  int device = 0;
  void* own = nullptr;                // cudaMalloc'd: signals, then data
  std::vector<void*> opened;          // IPC mappings of other processes' buffers
  cuda::custom_all_reduce_buffers view;

  ~peer_buffers() {
    cudaSetDevice(device);
    for (void* p : opened) cudaIpcCloseMemHandle(p);
    if (own) cudaFree(own);
  }
};

class custom_all_reduce final : public communicator {
public:
  custom_all_reduce(std::unique_ptr<communicator> wrapped, cuda_context& ctx, std::unique_ptr<peer_buffers> buffers,
                    size_t capacity, int max_blocks, uint64_t timeout_ns, std::shared_ptr<std::barrier<>> gate)
      : wrapped_(std::move(wrapped)), ctx_(ctx), buffers_(std::move(buffers)), capacity_(capacity),
        max_blocks_(max_blocks), timeout_ns_(timeout_ns), gate_(std::move(gate)) {}

  // Peers may still read this rank's buffer until its last kernel ends.
  ~custom_all_reduce() override {
    cudaSetDevice(ctx_.device);
    cudaStreamSynchronize(ctx_.stream);
  }

  int rank() const override { return wrapped_->rank(); }
  int size() const override { return wrapped_->size(); }
  bool capturable() const override { return wrapped_->capturable(); }

  void all_reduce_sum(const tensor& t) override {
    const int64_t bytes = static_cast<int64_t>(t.num_bytes());
    if (!custom_all_reduce_takes(bytes, t.type, capacity_)) return wrapped_->all_reduce_sum(t);
    const collective_call mine = make_collective_call(collective::all_reduce_sum, t, {}, 0);
    if (std::string why = collective_call_error(mine, rank(), size()); !why.empty()) throw std::invalid_argument(why);
    make_current(ctx_);
    if (gate_) {
      refuse_capture();
      gate_->arrive_and_wait();  // no rank of this GPU is inside a device-wide wait
    }
    try {
      cuda::launch_custom_all_reduce(buffers_->view, t.data, t.numel(), t.type,
                                     custom_all_reduce_blocks(bytes, max_blocks_), timeout_ns_, ctx_.stream);
    } catch (...) {
      if (gate_) gate_->arrive_and_drop();  // the peers' kernels trap at their deadline; this rank reports now
      throw;
    }
    if (gate_) gate_->arrive_and_wait();  // every rank's kernel launched before any may wait for the device
    calls_.fetch_add(1, std::memory_order_relaxed);
  }

  void all_gather_last_dim(const tensor& in, const tensor& out) override { wrapped_->all_gather_last_dim(in, out); }
  void broadcast(const tensor& t, int root) override { wrapped_->broadcast(t, root); }

  int64_t calls() const { return calls_.load(std::memory_order_relaxed); }

private:
  // Ranks sharing one GPU need their kernels resident at once, which only the launch gate around an eager
  // launch arranges: a replayed graph's kernels reach the GPU's work queues with no gate, and two ranks'
  // streams may share a queue (CUDA_DEVICE_MAX_CONNECTIONS), leaving one rank's kernel queued behind a peer
  // that spins for it until the deadline traps (seen on the H200 after ~1,000 other checks had made streams).
  void refuse_capture() const {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(ctx_.stream, &status) == cudaSuccess && status == cudaStreamCaptureStatusNone) return;
    throw std::invalid_argument("the custom all-reduce of ranks sharing one GPU runs eagerly only, never inside a CUDA "
                                "graph (their kernels must run at once, which a replayed graph cannot promise); "
                                "capture on ranks with a GPU each, or run this group without graphs");
  }

  std::unique_ptr<communicator> wrapped_;
  cuda_context& ctx_;
  std::unique_ptr<peer_buffers> buffers_;
  size_t capacity_;
  int max_blocks_;
  uint64_t timeout_ns_;
  std::shared_ptr<std::barrier<>> gate_;  // ranks of this process sharing a GPU (custom_all_reduce.hpp says why); else null
  std::atomic<int64_t> calls_{0};
};

std::string cuda_error(cudaError_t e) {
  cudaGetLastError();  // clears a non-sticky error, so the next call does not report it again
  return cudaGetErrorString(e);
}

// This rank's view of `peer`'s buffer (rank r), or why it cannot have one.
std::string reach(peer_buffers& b, const custom_all_reduce_peer& mine, const custom_all_reduce_peer& peer, int r) {
  if (std::string why = custom_all_reduce_host_refusal(mine, peer, r); !why.empty()) return why;
  int device = -1;
  if (cudaError_t e = cudaDeviceGetByPCIBusId(&device, peer.pci_bus_id.c_str()); e != cudaSuccess)
    return "rank " + std::to_string(r) + "'s GPU " + peer.pci_bus_id + " is not visible to this process (" +
           cuda_error(e) + "; CUDA_VISIBLE_DEVICES?)";
  if (device != b.device) {
    int can = 0;
    if (cudaError_t e = cudaDeviceCanAccessPeer(&can, b.device, device); e != cudaSuccess)  // a verdict, not a throw:
      return "cudaDeviceCanAccessPeer failed: " + cuda_error(e);  // the peers go on to the second exchange
    if (!can)
      return "GPU " + std::to_string(b.device) + " cannot access rank " + std::to_string(r) + "'s GPU " +
             std::to_string(device) + " peer to peer (no NVLink or PCIe peer access between them)";
  }
  if (peer.process == mine.process) {
    if (device != b.device) {
      const cudaError_t e = cudaDeviceEnablePeerAccess(device, 0);
      if (e != cudaSuccess && e != cudaErrorPeerAccessAlreadyEnabled)
        return "enabling peer access from GPU " + std::to_string(b.device) + " to GPU " + std::to_string(device) +
               " failed: " + cuda_error(e);
      if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();
    }
    b.view.bases[r] = reinterpret_cast<void*>(static_cast<uintptr_t>(peer.address));
    return "";
  }
  cudaIpcMemHandle_t handle;
  std::memcpy(&handle, peer.ipc_handle.data(), sizeof handle);
  void* p = nullptr;
  if (cudaError_t e = cudaIpcOpenMemHandle(&p, handle, cudaIpcMemLazyEnablePeerAccess); e != cudaSuccess)
    return "opening rank " + std::to_string(r) + "'s CUDA IPC handle failed: " + cuda_error(e);
  b.opened.push_back(p);
  b.view.bases[r] = p;
  return "";
}

} // namespace

std::unique_ptr<communicator> make_custom_all_reduce(std::unique_ptr<communicator> wrapped, ops& cuda_backend,
                                                     const exchange_strings& exchange,
                                                     const custom_all_reduce_options& options, std::string* why_not,
                                                     std::shared_ptr<std::barrier<>> launch_gate) {
  const int size = wrapped->size(), rank = wrapped->rank();
  auto fallback = [&](std::string why) {
    if (why_not) *why_not = std::move(why);
    return std::move(wrapped);
  };
  if (why_not) why_not->clear();
  if (std::string why = custom_all_reduce_unused(options, size); !why.empty()) return fallback(why);
  auto* gpu = dynamic_cast<cuda_ops*>(&cuda_backend);
  if (!gpu)
    throw std::invalid_argument("the custom all-reduce needs the cuda backend, not '" + cuda_backend.name() + "'");
  cuda_context& ctx = gpu->context();
  make_current(ctx);
  cuda::load_custom_all_reduce_kernels(size);  // before any peer's kernel can spin for this rank's first launch

  // This rank's buffer, its flags zeroed before any peer can see it.
  auto b = std::make_unique<peer_buffers>();
  b->device = ctx.device;
  b->view.rank = rank;
  b->view.size = size;
  const size_t capacity = (options.buffer_bytes + 15) / 16 * 16;
  cuda::check(cudaMalloc(&b->own, cuda::kCustomAllReduceSignalBytes + capacity), "custom all-reduce buffer");
  cuda::check(cudaMemsetAsync(b->own, 0, cuda::kCustomAllReduceSignalBytes, ctx.stream), "custom all-reduce buffer");
  cuda::check(cudaStreamSynchronize(ctx.stream), "custom all-reduce buffer");
  b->view.bases[rank] = b->own;

  custom_all_reduce_peer mine;
  mine.host = custom_all_reduce_host_id();
  mine.process = custom_all_reduce_process_id();
  char pci[64] = {};
  cuda::check(cudaDeviceGetPCIBusId(pci, sizeof pci, ctx.device), "cudaDeviceGetPCIBusId");
  mine.pci_bus_id = pci;
  mine.address = reinterpret_cast<uintptr_t>(b->own);
  cudaIpcMemHandle_t handle{};
  if (cudaIpcGetMemHandle(&handle, b->own) == cudaSuccess) std::memcpy(mine.ipc_handle.data(), &handle, sizeof handle);
  else cudaGetLastError();  // an all-zero handle: peers in other processes refuse it when it does not open

  std::vector<custom_all_reduce_peer> peers;
  for (const std::string& record : exchange(encode_custom_all_reduce_peer(mine)))
    peers.push_back(decode_custom_all_reduce_peer(record));
  if (static_cast<int>(peers.size()) != size)
    throw std::logic_error("the custom all-reduce's exchange gave " + std::to_string(peers.size()) + " records for " +
                           std::to_string(size) + " ranks");
  std::string verdict;
  for (int r = 0; r < size && verdict.empty(); ++r)
    if (r != rank) verdict = reach(*b, mine, peers[static_cast<size_t>(r)], r);
  // Ranks decide together: one that cannot reach a peer turns the kernel off for all.
  if (std::string why = custom_all_reduce_group_refusal(exchange(verdict)); !why.empty()) return fallback(why);

  // Ranks on one GPU (the same bus id on one host) must all fit on it at once: the same grid cap on every rank;
  // threads of one process on one GPU pass the launch gate.
  bool shared = false, gated = false;
  for (size_t i = 0; i < peers.size(); ++i)
    for (size_t j = i + 1; j < peers.size(); ++j) {
      const bool one_gpu = peers[i].host == peers[j].host && peers[i].pci_bus_id == peers[j].pci_bus_id;
      shared = shared || one_gpu;
      gated = gated || (one_gpu && peers[i].process == peers[j].process);
    }
  if (gated && !launch_gate)
    throw std::invalid_argument("the custom all-reduce: ranks of this process share a GPU, so they need a launch gate "
                                "(in_process_exchange::launch_gate)");
  const int max_blocks =
      std::min(custom_all_reduce_max_blocks(options.max_blocks, shared), cuda::kCustomAllReduceMaxBlocks);
  const uint64_t timeout_ns = options.timeout_s > 0 ? static_cast<uint64_t>(options.timeout_s * 1e9) : 0;
  return std::make_unique<custom_all_reduce>(std::move(wrapped), ctx, std::move(b), capacity, max_blocks, timeout_ns,
                                             gated ? launch_gate : nullptr);
}

int64_t custom_all_reduce_calls(const communicator& comm) {
  const auto* custom = dynamic_cast<const custom_all_reduce*>(&comm);
  return custom ? custom->calls() : -1;
}

} // namespace troupe
