#pragma once
// The safetensors checkpoint format: reading one file (memory-mapped, every header value checked before
// use), reading a Hugging Face model folder of one or more such files, and writing both.
//
// A file is: an 8-byte little-endian header length N, N bytes of JSON mapping tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional "__metadata__" object of strings),
// then the data area; offsets are relative to the start of the data area.
//
// NOTE: tensor data pointers point into the mapping and need not be aligned for their dtype (offsets are
// arbitrary); read elements with memcpy or convert with checkpoint::to_f32. Files written by troupe (and
// by the Python safetensors package) do align every tensor to its element size.
// NOTE: the mapping is read-only and private; a file truncated by another process while mapped still
// raises SIGBUS on access, which no reader can prevent.

#include "runtime/model/dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

// Headers above this are refused before anything is allocated for them (as the reference reader does).
inline constexpr std::size_t max_safetensors_header_bytes = 100'000'000;

struct tensor_info {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;  // every dimension >= 0; empty for a scalar
  const std::byte* data;            // num_bytes bytes inside the file's mapping (maybe unaligned)
  std::size_t num_bytes;            // == num_elements() * size_in_bytes(type), checked on open
  std::uint64_t file_offset;        // where data starts, from the start of the file (for direct I/O)
  const std::filesystem::path* file;  // the file it lives in; valid as long as that file is open

  // Product of the dimensions (1 for a scalar); cannot overflow, that was checked on open.
  std::int64_t num_elements() const;
  std::span<const std::byte> bytes() const { return {data, num_bytes}; }
};

// One safetensors file, memory-mapped (RAII, movable; unmapped in the destructor).
// A moved-from object may only be destroyed or assigned to.
class safetensors_file {
public:
  // Maps and validates the file at `path`; throws checkpoint_error (one line naming the file and, where
  // known, the tensor) when it is unreadable, truncated, or its header is malformed or inconsistent.
  static safetensors_file open(const std::filesystem::path& path);

  // Validates `bytes` as a whole safetensors file without copying them; `name` is used in error messages
  // and as tensor_info::file. The caller keeps `bytes` alive as long as the result. Throws as open() does.
  static safetensors_file parse(std::span<const std::byte> bytes, const std::filesystem::path& name);

  safetensors_file(safetensors_file&&) noexcept;
  safetensors_file& operator=(safetensors_file&&) noexcept;
  ~safetensors_file();

  // The tensor called `name`, or nullptr when the file has none.
  const tensor_info* find(std::string_view name) const;
  // Every tensor, sorted by name.
  const std::vector<tensor_info>& tensors() const;
  // The header's "__metadata__" (empty when absent).
  const std::map<std::string, std::string>& metadata() const;
  const std::filesystem::path& path() const;
  // The whole file as mapped.
  std::span<const std::byte> bytes() const;

private:
  struct impl;
  explicit safetensors_file(std::unique_ptr<impl> state);
  std::unique_ptr<impl> impl_;
};

// A Hugging Face model folder's weights: model.safetensors; else the shards that
// model.safetensors.index.json's weight_map lists; else every *.safetensors file in the folder.
// A tensor name may appear in only one file. Hidden files (".*") are skipped. A path to a single .safetensors
// file also works.
class checkpoint {
public:
  // Opens and validates every file of the checkpoint in `model_dir`; throws checkpoint_error when there is
  // none, when a file is bad, when the index names a missing shard or a tensor its shard lacks, or when
  // two files hold the same tensor.
  static checkpoint open(const std::filesystem::path& model_dir);

  // The tensor called `name`, or nullptr when no file has it.
  const tensor_info* find(std::string_view name) const;

  // The tensor `name` with exactly `shape` and a dtype of F32, F16 or BF16; throws checkpoint_error naming
  // the file and tensor when it is missing, has another shape, or another dtype.
  const tensor_info& require(std::string_view name, std::span<const std::int64_t> shape) const;

  // require(name, shape), then its values as f32 into `out` (resized to the element count): what a weight
  // loader needs per tensor. Throws as require() does.
  void read_f32(std::string_view name, std::span<const std::int64_t> shape, std::vector<float>& out) const;

  // Converts a tensor of any floating dtype (F64, F32, F16, BF16, F8_*) to f32 into `out`; throws
  // checkpoint_error when the dtype is not floating or out.size() != t.num_elements().
  static void to_f32(const tensor_info& t, std::span<float> out);

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  // The files, in the order they were opened (shards in file-name order).
  const std::vector<safetensors_file>& files() const { return files_; }
  const std::filesystem::path& directory() const { return directory_; }

private:
  std::filesystem::path directory_;
  std::vector<safetensors_file> files_;
  std::map<std::string, const tensor_info*, std::less<>> by_name_;
};

struct tensor_to_write {
  std::string name;
  dtype type;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;  // little-endian, num_elements * size_in_bytes(type) of them
};

// The bytes of a safetensors file holding `tensors`, byte-identical to what the Python safetensors package
// writes: data laid out by dtype (widest first, so every tensor is aligned to its element size) then name;
// the header lists "__metadata__" (only when `metadata` is not empty, keys sorted) then the tensors in data
// order, and is padded with spaces to a multiple of 8 bytes. Throws
// checkpoint_error (naming `path_for_errors` and the tensor) for a reserved or duplicate name,
// a name that is not UTF-8, a negative dimension, or bytes that do not match dtype × shape.
std::vector<std::byte> serialize_safetensors(std::span<const tensor_to_write> tensors,
                                             const std::map<std::string, std::string>& metadata = {},
                                             const std::filesystem::path& path_for_errors = "<memory>");

// Writes serialize_safetensors(...) to `path` (through a temporary file renamed into place, so a reader
// never sees half a file); throws checkpoint_error on invalid tensors or when the file cannot be written.
void write_safetensors(const std::filesystem::path& path, std::span<const tensor_to_write> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `tensors` into `dir` as transformers does: in the given order, a new shard whenever the next
// tensor would take the current one past max_shard_bytes (a bigger tensor gets a shard of its own), files
// model-00001-of-0000N.safetensors with metadata {"format": "pt"}, and model.safetensors.index.json with
// metadata.total_size and the weight_map. When everything fits in one shard it writes model.safetensors
// and no index, as transformers does. Throws checkpoint_error as write_safetensors does.
void write_sharded_safetensors(const std::filesystem::path& dir, std::span<const tensor_to_write> tensors,
                               std::size_t max_shard_bytes);

} // namespace troupe
