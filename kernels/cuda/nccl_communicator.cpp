#include "kernels/cuda/nccl_communicator.hpp"

#include <stdexcept>
#include <string>

#include "runtime/error.hpp"

#if TROUPE_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/cpu/collective_rules.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_context.hpp"
#include "kernels/cuda/cuda_ops.hpp"
#endif

namespace troupe {

#if TROUPE_HAVE_NCCL

namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(nccl_unique_id::bytes), "nccl_unique_id must hold an ncclUniqueId");

// "NCCL: ncclAllReduce: unhandled system error (run with NCCL_DEBUG=INFO for details): <NCCL's last message>"
std::string nccl_message(const char* what, ncclResult_t r, ncclComm_t comm) {
  std::string s = std::string("NCCL: ") + what + ": " + ncclGetErrorString(r);
  if (const char* last = ncclGetLastError(comm); last && *last) s += ": " + std::string(last);
  return s;
}

void check_nccl(ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r != ncclSuccess) throw std::runtime_error(nccl_message(what, r, comm));
}

ncclDataType_t sum_type(dtype t) {
  switch (t) {
    case dtype::f32: return ncclFloat32;
    case dtype::bf16: return ncclBfloat16;
    case dtype::f16: return ncclFloat16;
    default: break;
  }
  throw std::logic_error("sum_type: unchecked dtype");  // collective_call_error refused it first
}

class nccl_communicator final : public communicator {
public:
  nccl_communicator(ncclComm_t comm, int rank, int size, cuda_context& ctx)
      : comm_(comm), rank_(rank), size_(size), ctx_(ctx) {}

  ~nccl_communicator() override {
    // Teardown errors are not reported: a destructor must not throw. After a failure the peers may be gone,
    // and a plain destroy would wait for them forever.
    cudaSetDevice(ctx_.device);
    if (failed_) {
      ncclCommAbort(comm_);
    } else {
      cudaStreamSynchronize(ctx_.stream);
      ncclCommDestroy(comm_);
    }
    for (void* p : staging_) cudaFree(p);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool capturable() const override { return true; }

  void all_reduce_sum(const tensor& t) override {
    enter(make_collective_call(collective::all_reduce_sum, t, {}, 0));
    if (t.numel() == 0) return;
    call(ncclAllReduce(t.data, t.data, static_cast<size_t>(t.numel()), sum_type(t.type), ncclSum, comm_, ctx_.stream),
         "ncclAllReduce");
  }

  // ncclAllGather concatenates along the first dimension: [size, rows, cols] into a staging buffer, then
  // one strided copy per rank puts rank c's rows into columns [c * cols, (c + 1) * cols) of out. A single
  // row needs no rearranging, so it is gathered straight into out (the decode step's logits at batch 1).
  void all_gather_last_dim(const tensor& in, const tensor& out) override {  // in [rows, cols], out [rows, cols * size]
    enter(make_collective_call(collective::all_gather_last_dim, in, out, 0));
    const size_t piece = in.num_bytes();
    if (piece == 0) return;
    const size_t rows = static_cast<size_t>(in.numel() / in.dim(-1));
    if (rows == 1) {
      call(ncclAllGather(in.data, out.data, piece, ncclUint8, comm_, ctx_.stream), "ncclAllGather");
      return;
    }
    std::byte* gathered = staging(piece * static_cast<size_t>(size_));
    call(ncclAllGather(in.data, gathered, piece, ncclUint8, comm_, ctx_.stream), "ncclAllGather");
    const size_t row_bytes = piece / rows;
    auto* dst = static_cast<std::byte*>(out.data);
    for (int c = 0; c < size_; ++c)
      cuda::check(cudaMemcpy2DAsync(dst + c * row_bytes, row_bytes * size_, gathered + c * piece, row_bytes, row_bytes,
                                    rows, cudaMemcpyDeviceToDevice, ctx_.stream),
                  "all_gather_last_dim");
  }

  void broadcast(const tensor& t, int root) override {
    enter(make_collective_call(collective::broadcast, t, {}, root));
    if (t.numel() == 0) return;
    call(ncclBroadcast(t.data, t.data, t.num_bytes(), ncclUint8, root, comm_, ctx_.stream), "ncclBroadcast");
  }

  std::string async_error() {
    ncclResult_t state = ncclSuccess;
    if (const ncclResult_t r = ncclCommGetAsyncError(comm_, &state); r != ncclSuccess) state = r;
    if (state == ncclSuccess || state == ncclInProgress) return "";
    failed_ = true;
    return nccl_message("asynchronous error", state, comm_);
  }

private:
  // Checks this rank's own arguments (the only ones it sees), that NCCL has not failed in the background,
  // and makes the backend's device current for the copies.
  void enter(const collective_call& mine) {
    if (std::string why = collective_call_error(mine, rank_, size_); !why.empty()) throw std::invalid_argument(why);
    if (std::string why = async_error(); !why.empty()) throw std::runtime_error(why);
    make_current(ctx_);
  }

  void call(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return;
    failed_ = true;
    throw std::runtime_error(nccl_message(what, r, comm_));
  }

  // A device buffer of at least `bytes`. Buffers are kept until destruction, since a captured graph may
  // hold the address of an outgrown one; growth doubles, so they add up to less than twice the largest.
  std::byte* staging(size_t bytes) {
    if (bytes <= staging_bytes_) return static_cast<std::byte*>(staging_.back());
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cuda::check(cudaStreamIsCapturing(ctx_.stream, &capture), "all_gather_last_dim");
    if (capture != cudaStreamCaptureStatusNone)
      throw std::logic_error("all_gather_last_dim: gathering " + std::to_string(bytes) +
                             " bytes needs a larger staging buffer, which cannot be allocated inside a CUDA graph "
                             "capture; run the largest gather once before capturing");
    const size_t grown = std::max(bytes, 2 * staging_bytes_);
    void* p = nullptr;
    cuda::check(cudaMalloc(&p, grown), "all_gather_last_dim staging buffer");
    staging_.push_back(p);
    staging_bytes_ = grown;
    return static_cast<std::byte*>(p);
  }

  ncclComm_t comm_;
  int rank_, size_;
  cuda_context& ctx_;
  std::atomic<bool> failed_{false};  // also set by a watchdog's nccl_async_error
  std::vector<void*> staging_;       // the last is the one in use
  size_t staging_bytes_ = 0;
};

} // namespace

bool nccl_available() { return true; }

nccl_unique_id make_nccl_unique_id() {
  ncclUniqueId id;
  check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  nccl_unique_id out;
  std::memcpy(out.bytes.data(), &id, sizeof id);
  return out;
}

std::unique_ptr<communicator> make_nccl_communicator(const nccl_unique_id& id, int rank, int size, ops& cuda_backend) {
  if (size < 1 || rank < 0 || rank >= size)
    throw std::invalid_argument("an NCCL communicator needs 0 <= rank < size, got rank " + std::to_string(rank) +
                                " of " + std::to_string(size));
  auto* gpu = dynamic_cast<cuda_ops*>(&cuda_backend);
  if (!gpu)
    throw std::invalid_argument("the NCCL communicator needs the cuda backend, not '" + cuda_backend.name() + "'");
  cuda_context& ctx = gpu->context();
  cuda::check(cudaSetDevice(ctx.device), "cudaSetDevice");
  ncclUniqueId nccl_id;
  std::memcpy(&nccl_id, id.bytes.data(), sizeof nccl_id);
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, size, nccl_id, rank),
             ("ncclCommInitRank (rank " + std::to_string(rank) + " of " + std::to_string(size) +
              "; NCCL_DEBUG=INFO says why)").c_str());
  return std::make_unique<nccl_communicator>(comm, rank, size, ctx);
}

std::string nccl_async_error(communicator& comm) {
  auto* nccl = dynamic_cast<nccl_communicator*>(&comm);
  if (!nccl) throw std::invalid_argument("nccl_async_error: the communicator is not NCCL's");
  return nccl->async_error();
}

#else  // built with CUDA, without NCCL

namespace {
[[noreturn]] void no_nccl() {
  throw user_error("the NCCL communicator: NCCL was not found when this troupe was built (it looks for libnccl.so "
                   "and nccl.h in the CUDA toolkit's folders, such as /usr/local/cuda/lib64); install NCCL and rebuild");
}
} // namespace

bool nccl_available() { return false; }
nccl_unique_id make_nccl_unique_id() { no_nccl(); }
std::unique_ptr<communicator> make_nccl_communicator(const nccl_unique_id&, int, int, ops&) { no_nccl(); }
std::string nccl_async_error(communicator&) {
  throw std::invalid_argument("nccl_async_error: the communicator is not NCCL's (this build has no NCCL)");
}

#endif

} // namespace troupe
