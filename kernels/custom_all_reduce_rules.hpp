#pragma once
// What the custom all-reduce (kernels/cuda/custom_all_reduce.hpp) decides on the host, apart from CUDA so CI
// tests it: which sums take the custom kernel, how a rank describes its buffer to the others (a text record
// exchanged at startup), whether every rank can reach every other's buffer, and the kernel's grid.
//
// NOTE: in troupe_collective_rules, as collective_rules.hpp: the CUDA library uses it and must not link
// troupe_kernels.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.hpp"

namespace troupe {

// The most ranks the custom kernel joins (as vLLM's: 2 to 8 GPUs of one NVLink domain); larger groups keep
// the wrapped communicator.
constexpr int kCustomAllReduceMaxRanks = 8;

struct custom_all_reduce_options {
  bool enabled = true;                    // --disable-custom-all-reduce: false
  size_t buffer_bytes = size_t{8} << 20;  // each rank's buffer: the largest sum the kernel takes (vLLM: 8 MiB)
  // A peer that has not reached the kernel's barrier after this long traps the kernel (the process fails with
  // a CUDA error) instead of spinning for good.
  double timeout_s = 60;
  int max_blocks = 0;  // 0: custom_all_reduce_max_blocks's choice
};

// Why a group of `size` ranks with `options` has no use for the kernel before any rank looks at another ("" when
// it may): turned off, a group of one, or more ranks than the kernel joins.
std::string custom_all_reduce_unused(const custom_all_reduce_options& options, int size);

// Whether a sum of a tensor of `bytes` in `type` runs the custom kernel over buffers of `buffer_bytes` (else
// the wrapped communicator): f32, bf16 or f16, at least one element, fitting the buffer once rounded up to
// the kernel's 16-byte units.
bool custom_all_reduce_takes(int64_t bytes, dtype type, size_t buffer_bytes);

// The most blocks one kernel launches: `requested` when > 0, else 16 when ranks share a GPU (every rank's
// kernel must be resident at once, or the first spins while the others wait for room) and 36 when each
// rank has its own GPU (vLLM's default).
int custom_all_reduce_max_blocks(int requested, bool ranks_share_a_gpu);

// Blocks for a sum of `bytes`: one per 512 threads of 16-byte units, 1 to max_blocks. The same on every
// rank for the same sum, as the kernel's barriers pair block b of each rank with block b of the others.
int custom_all_reduce_blocks(int64_t bytes, int max_blocks);

// What one rank tells the others about its buffer.
struct custom_all_reduce_peer {
  std::string host;        // custom_all_reduce_host_id(): ranks on different hosts cannot share memory
  std::string process;     // custom_all_reduce_process_id(): ranks of one process pass raw pointers; of others, IPC handles
  std::string pci_bus_id;  // the GPU, as cudaDeviceGetPCIBusId names it (the same in every process)
  uint64_t address = 0;    // the buffer's device address in its own process
  std::array<uint8_t, 64> ipc_handle{};  // cudaIpcMemHandle_t of the buffer
};

// "custom_all_reduce 1\nhost ...\nprocess ...\npci ...\naddress ...\nipc <128 hex digits>\n".
std::string encode_custom_all_reduce_peer(const custom_all_reduce_peer& p);
// The record encode_custom_all_reduce_peer wrote. Throws std::invalid_argument naming what is wrong or
// missing (a record from another build, or a cut one).
custom_all_reduce_peer decode_custom_all_reduce_peer(const std::string& record);

// This machine: its host name and, where Linux tells it, its boot id (host names repeat across machines).
std::string custom_all_reduce_host_id();

// This process: its pid and a random number drawn once (pids repeat across containers that share a host name).
std::string custom_all_reduce_process_id();

// "" when `peer` (rank peer_rank) runs on the host of `mine`, else why its buffer is out of reach.
std::string custom_all_reduce_host_refusal(const custom_all_reduce_peer& mine, const custom_all_reduce_peer& peer,
                                           int peer_rank);

// The group's verdict from every rank's own ("" where that rank reaches every peer): "" when all are "",
// else "rank R: <why>" for the first that is not — the same on every rank that reads the same verdicts.
std::string custom_all_reduce_group_refusal(const std::vector<std::string>& verdicts);

} // namespace troupe
