#include "kernels/custom_all_reduce_rules.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

namespace troupe {
namespace {

constexpr const char* kRecordHeader = "custom_all_reduce 1";
constexpr int64_t kUnit = 16;             // bytes one thread moves per access
constexpr int64_t kThreadsPerBlock = 512;  // as the kernel launches (custom_all_reduce.cu)

std::string hex(const std::array<uint8_t, 64>& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : bytes) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

[[noreturn]] void bad_record(const std::string& why) {
  throw std::invalid_argument("a custom all-reduce peer record " + why + " (are all ranks the same troupe build?)");
}

template <class Int>
Int number(const std::map<std::string, std::string>& fields, const std::string& key) {
  const std::string& text = fields.at(key);
  size_t used = 0;
  try {
    const unsigned long long v = std::stoull(text, &used);
    if (used == text.size() && !text.empty() && text[0] != '-') return static_cast<Int>(v);
  } catch (const std::exception&) {
  }
  bad_record("has " + key + " '" + text + "', not a number");
}

} // namespace

std::string custom_all_reduce_unused(const custom_all_reduce_options& options, int size) {
  if (!options.enabled) return "turned off (--disable-custom-all-reduce)";
  if (size < 2) return "a group of one rank has nothing to sum";
  if (size > kCustomAllReduceMaxRanks)
    return "it joins 2 to " + std::to_string(kCustomAllReduceMaxRanks) + " ranks, not " + std::to_string(size);
  return "";
}

bool custom_all_reduce_takes(int64_t bytes, dtype type, size_t buffer_bytes) {
  if (type != dtype::f32 && type != dtype::bf16 && type != dtype::f16) return false;
  if (bytes <= 0) return false;
  const int64_t rounded = (bytes + kUnit - 1) / kUnit * kUnit;
  return static_cast<uint64_t>(rounded) <= buffer_bytes;
}

int custom_all_reduce_max_blocks(int requested, bool ranks_share_a_gpu) {
  if (requested > 0) return requested;
  return ranks_share_a_gpu ? 16 : 36;
}

int custom_all_reduce_blocks(int64_t bytes, int max_blocks) {
  const int64_t units = (std::max<int64_t>(bytes, 0) + kUnit - 1) / kUnit;
  const int64_t wanted = (units + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(std::clamp<int64_t>(wanted, 1, std::max(max_blocks, 1)));
}

std::string encode_custom_all_reduce_peer(const custom_all_reduce_peer& p) {
  std::ostringstream s;
  s << kRecordHeader << "\nhost " << p.host << "\nprocess " << p.process << "\npci " << p.pci_bus_id << "\naddress " << p.address
    << "\nipc " << hex(p.ipc_handle) << "\n";
  return s.str();
}

custom_all_reduce_peer decode_custom_all_reduce_peer(const std::string& record) {
  std::istringstream in(record);
  std::string line;
  if (!std::getline(in, line) || line != kRecordHeader)
    bad_record("starts with '" + line + "', not '" + kRecordHeader + "'");
  std::map<std::string, std::string> fields;
  while (std::getline(in, line)) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) bad_record("has a line without a value: '" + line + "'");
    fields[line.substr(0, space)] = line.substr(space + 1);
  }
  for (const char* key : {"host", "process", "pci", "address", "ipc"})
    if (!fields.count(key)) bad_record(std::string("lacks its ") + key);
  custom_all_reduce_peer p;
  p.host = fields["host"];
  p.process = fields["process"];
  p.pci_bus_id = fields["pci"];
  p.address = number<uint64_t>(fields, "address");
  const std::string& handle = fields["ipc"];
  if (handle.size() != 2 * p.ipc_handle.size())
    bad_record("has an ipc handle of " + std::to_string(handle.size()) + " hex digits, not " +
               std::to_string(2 * p.ipc_handle.size()));
  for (size_t i = 0; i < p.ipc_handle.size(); ++i) {
    const int hi = hex_digit(handle[2 * i]), lo = hex_digit(handle[2 * i + 1]);
    if (hi < 0 || lo < 0) bad_record("has an ipc handle that is not lowercase hex");
    p.ipc_handle[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return p;
}

std::string custom_all_reduce_host_id() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  std::string id = name;
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  std::string boot_id;
  if (boot && std::getline(boot, boot_id) && !boot_id.empty()) id += "/" + boot_id;
  return id;
}

std::string custom_all_reduce_process_id() {
  static const std::string id = [] {
    std::random_device entropy;
    std::ostringstream s;
    s << getpid() << "-" << std::hex << ((uint64_t{entropy()} << 32) | entropy());
    return s.str();
  }();
  return id;
}

std::string custom_all_reduce_host_refusal(const custom_all_reduce_peer& mine, const custom_all_reduce_peer& peer,
                                           int peer_rank) {
  if (mine.host == peer.host) return "";
  return "rank " + std::to_string(peer_rank) + " runs on host " + peer.host + ", this rank on " + mine.host +
         ": GPU memory is shared within one host only";
}

std::string custom_all_reduce_group_refusal(const std::vector<std::string>& verdicts) {
  for (size_t r = 0; r < verdicts.size(); ++r)
    if (!verdicts[r].empty()) return "rank " + std::to_string(r) + ": " + verdicts[r];
  return "";
}

} // namespace troupe
