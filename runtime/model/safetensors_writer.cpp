// Writing safetensors files that the Python safetensors package, transformers and our reader all accept.

#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/safetensors_detail.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

namespace troupe {

namespace fs = std::filesystem;
using json = nlohmann::json;
using safetensors_detail::format_shape;
using safetensors_detail::printable;

namespace {

struct file_plan {
  std::string header;                          // JSON padded with spaces to a multiple of 8 bytes
  std::vector<const tensor_to_write*> order;   // data area order
};

bool is_utf8(const std::string& s) {
  try {
    (void)json(s).dump();  // nlohmann refuses to serialize invalid UTF-8
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// Checks what a reader would reject, so troupe never writes a file it cannot read back.
void validate(std::span<const tensor_to_write> tensors, const fs::path& path) {
  const std::string file = printable(path.string(), 400);
  auto fail = [&](const std::string& name, const std::string& problem) {
    throw checkpoint_error(file + ": cannot write tensor '" + printable(name) + "': " + problem);
  };
  std::set<std::string_view> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail(t.name, "the name is reserved for the header's metadata");
    if (!is_utf8(t.name)) fail(t.name, "the name is not valid UTF-8");
    if (!seen.insert(t.name).second) fail(t.name, "the name appears twice");
    std::uint64_t elements = 1;
    for (const auto d : t.shape) {
      if (d < 0) fail(t.name, "shape " + format_shape(t.shape) + " has a negative dimension");
      if (__builtin_mul_overflow(elements, static_cast<std::uint64_t>(d), &elements)) {
        fail(t.name, "shape " + format_shape(t.shape) + " has more elements than fit in 64 bits");
      }
    }
    std::uint64_t needed;
    const bool overflow = __builtin_mul_overflow(elements, size_in_bytes(t.type), &needed);
    if (overflow || needed != t.bytes.size()) {
      fail(t.name, "it has " + std::to_string(t.bytes.size()) + " bytes, but dtype " + std::string(name(t.type)) +
                       " and shape " + format_shape(t.shape) + " need " +
                       (overflow ? std::string("more than 2^64") : std::to_string(needed)));
    }
  }
}

file_plan plan_file(std::span<const tensor_to_write> tensors, const std::map<std::string, std::string>& metadata,
                    const fs::path& path) {
  validate(tensors, path);
  file_plan plan;
  for (const auto& t : tensors) plan.order.push_back(&t);
  // The reference writer's order: dtype descending (its enum grows with alignment), then name. With the data
  // area 8-aligned, every tensor is then aligned to its element size.
  std::sort(plan.order.begin(), plan.order.end(), [](const tensor_to_write* a, const tensor_to_write* b) {
    return a->type != b->type ? a->type > b->type : a->name < b->name;
  });
  // Spelled out rather than built as a json object (whose keys would come out sorted) so the header matches
  // the reference writer's byte for byte: "__metadata__" first, then tensors in data order, fields in
  // dtype, shape, data_offsets order.
  std::string& h = plan.header;
  h = "{";
  if (!metadata.empty()) {
    try {
      h += "\"__metadata__\":" + json(metadata).dump();
    } catch (const json::exception&) {
      throw checkpoint_error(printable(path.string(), 400) + ": cannot write: the metadata is not valid UTF-8");
    }
  }
  std::uint64_t offset = 0;
  for (const auto* t : plan.order) {
    if (h.size() > 1) h += ',';
    h += json(t->name).dump();  // escapes as serde_json does; validate() made sure it is UTF-8
    h += ":{\"dtype\":\"";
    h += name(t->type);
    h += "\",\"shape\":[";
    for (std::size_t i = 0; i < t->shape.size(); ++i) h += (i ? "," : "") + std::to_string(t->shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t->bytes.size()) + "]}";
    offset += t->bytes.size();
  }
  h += '}';
  plan.header.append((8 - plan.header.size() % 8) % 8, ' ');
  return plan;
}

void append_le64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

// Writes `chunks` to `path` through "<path>.tmp" renamed into place.
template <typename WriteAll>
void write_atomically(const fs::path& path, WriteAll&& write_all) {
  const fs::path tmp = path.string() + ".tmp";
  auto fail = [&](int err) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw checkpoint_error(printable(path.string(), 400) + ": cannot write (" + std::strerror(err) +
                           "); check free disk space and permissions");
  };
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(errno);
  const bool wrote = write_all([&](const void* p, std::size_t n) { return n == 0 || std::fwrite(p, 1, n, f) == n; });
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !wrote) fail(wrote ? errno : write_errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(errno);
}

} // namespace

std::vector<std::byte> serialize_safetensors(std::span<const tensor_to_write> tensors,
                                             const std::map<std::string, std::string>& metadata,
                                             const fs::path& path_for_errors) {
  const file_plan plan = plan_file(tensors, metadata, path_for_errors);
  std::vector<std::byte> out;
  std::size_t total = 8 + plan.header.size();
  for (const auto* t : plan.order) total += t->bytes.size();
  out.reserve(total);
  append_le64(out, plan.header.size());
  const auto* h = reinterpret_cast<const std::byte*>(plan.header.data());
  out.insert(out.end(), h, h + plan.header.size());
  for (const auto* t : plan.order) out.insert(out.end(), t->bytes.begin(), t->bytes.end());
  return out;
}

void write_safetensors(const fs::path& path, std::span<const tensor_to_write> tensors,
                       const std::map<std::string, std::string>& metadata) {
  const file_plan plan = plan_file(tensors, metadata, path);
  write_atomically(path, [&](auto&& write) {
    std::vector<std::byte> length;
    append_le64(length, plan.header.size());
    if (!write(length.data(), length.size()) || !write(plan.header.data(), plan.header.size())) return false;
    for (const auto* t : plan.order) {
      if (!write(t->bytes.data(), t->bytes.size())) return false;
    }
    return true;
  });
}

void write_sharded_safetensors(const fs::path& dir, std::span<const tensor_to_write> tensors,
                               std::size_t max_shard_bytes) {
  validate(tensors, dir);  // once over all, so a name repeated in two shards is caught too
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw checkpoint_error(printable(dir.string(), 400) + ": cannot create the folder (" + ec.message() + ")");
  }
  const std::map<std::string, std::string> shard_metadata{{"format", "pt"}};

  std::vector<std::vector<tensor_to_write>> shards;
  std::size_t current = 0;
  std::uint64_t total_size = 0;
  for (const auto& t : tensors) {
    if (shards.empty() || (!shards.back().empty() && current + t.bytes.size() > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(t);
    current += t.bytes.size();
    total_size += t.bytes.size();
  }
  if (shards.size() <= 1) {
    write_safetensors(dir / "model.safetensors", shards.empty() ? std::span<const tensor_to_write>{} : shards[0],
                      shard_metadata);
    return;
  }

  json weight_map = json::object();
  for (std::size_t i = 0; i < shards.size(); ++i) {
    char file[64];
    std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors(dir / file, shards[i], shard_metadata);
    for (const auto& t : shards[i]) weight_map[t.name] = file;
  }
  const json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  const std::string text = index.dump(2) + "\n";
  write_atomically(dir / "model.safetensors.index.json",
                   [&](auto&& write) { return write(text.data(), text.size()); });
}

} // namespace troupe
