// Reading a Hugging Face model folder: which files hold the weights, and the checks across files.

#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/safetensors_detail.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace troupe {

namespace fs = std::filesystem;
using safetensors_detail::format_shape;
using safetensors_detail::printable;

namespace {

constexpr std::string_view index_damaged = "; the index is damaged, download it again";

std::string show_path(const fs::path& p) { return printable(p.string(), 400); }

std::string file_of(const tensor_info& t) { return t.file ? show_path(*t.file) : std::string("<unknown file>"); }

// A weight_map value must stay inside the model folder: a hostile index must not make us map other files.
bool is_inside_folder(const fs::path& shard) {
  if (shard.empty() || shard.is_absolute() || shard.has_root_path()) return false;
  if (shard.native().find('\0') != std::string::npos) return false;  // the OS would see only the part before it
  for (const auto& part : shard) {
    if (part == "..") return false;
  }
  return true;
}

std::string read_index(const fs::path& index_path) {
  std::error_code ec;
  const auto size = fs::file_size(index_path, ec);
  if (ec) throw checkpoint_error(show_path(index_path) + ": cannot read (" + ec.message() + ")");
  if (size > max_safetensors_header_bytes) {
    throw checkpoint_error(show_path(index_path) + ": is " + std::to_string(size) + " bytes, more than the " +
                           std::to_string(max_safetensors_header_bytes) + "-byte limit" + std::string(index_damaged));
  }
  std::ifstream in(index_path, std::ios::binary);
  std::string text(static_cast<std::size_t>(size), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(size))) {
    throw checkpoint_error(show_path(index_path) + ": cannot read; check the permissions");
  }
  return text;
}

} // namespace

namespace safetensors_detail {

std::map<std::string, std::string> parse_weight_map(std::string_view text, const fs::path& index_path) {
  const std::string where = show_path(index_path);
  auto [index, repeated] = parse_json_checked(text, where, index_damaged);
  auto fail = [&](const std::string& problem) -> void {
    throw checkpoint_error(where + ": " + problem + std::string(index_damaged));
  };
  if (!index.is_object()) fail("is not an object with a weight_map");
  if (!repeated.empty()) {
    if (repeated.size() == 2 && repeated[0] == "weight_map") fail("lists tensor '" + printable(repeated[1]) + "' twice");
    std::string key;
    for (std::size_t i = 0; i < repeated.size(); ++i) key += (i ? "." : "") + repeated[i];
    fail("has the key '" + printable(key) + "' twice");
  }
  const auto it = index.find("weight_map");
  if (it == index.end() || !it->is_object()) fail("has no \"weight_map\" object");
  if (it->empty()) fail("has an empty weight_map");
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : it->items()) {
    if (!shard.is_string()) fail("maps tensor '" + printable(name) + "' to " + printable(shard.dump(), 80) +
                                 ", not a shard file name");
    const auto& file = shard.get_ref<const std::string&>();
    if (!is_inside_folder(file)) {
      fail("maps tensor '" + printable(name) + "' to '" + printable(file) + "', which is not a file in the model folder");
    }
    // Normalized so "./a.safetensors" and "a.safetensors" are one shard, opened once.
    weight_map.emplace(name, fs::path(file).lexically_normal().generic_string());
  }
  return weight_map;
}

} // namespace safetensors_detail

namespace {

std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  return safetensors_detail::parse_weight_map(read_index(index_path), index_path);
}

std::vector<safetensors_file> open_indexed_shards(const fs::path& dir, const fs::path& index_path) {
  const auto weight_map = read_weight_map(index_path);
  std::map<std::string, std::string> first_tensor_of;  // shard -> a tensor it should hold (for messages)
  for (const auto& [name, shard] : weight_map) first_tensor_of.emplace(shard, name);

  std::vector<safetensors_file> files;
  std::map<std::string, std::size_t> file_of_shard;
  for (const auto& [shard, tensor] : first_tensor_of) {
    const fs::path path = dir / shard;
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      throw checkpoint_error(show_path(index_path) + ": names shard '" + printable(shard) + "' (holding tensor '" +
                             printable(tensor) + "'), which is missing from " + show_path(dir) +
                             "; download the missing shard");
    }
    file_of_shard.emplace(shard, files.size());
    files.push_back(safetensors_file::open(path));
  }
  for (const auto& [name, shard] : weight_map) {
    if (!files[file_of_shard.at(shard)].find(name)) {
      throw checkpoint_error(show_path(index_path) + ": says tensor '" + printable(name) + "' is in '" +
                             printable(shard) +
                             "', but that file has no such tensor; the index does not match the shards, "
                             "download them again");
    }
  }
  return files;
}

std::vector<safetensors_file> open_all_in_folder(const fs::path& dir) {
  std::vector<fs::path> paths;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    // Hidden files are skipped as a shell glob would: macOS leaves "._model.safetensors" resource forks behind.
    const std::string name = entry.path().filename().string();
    if (!name.starts_with('.') && entry.path().extension() == ".safetensors" && entry.is_regular_file(ec)) {
      paths.push_back(entry.path());
    }
  }
  if (ec) throw checkpoint_error(show_path(dir) + ": cannot list the folder (" + ec.message() + ")");
  if (paths.empty()) {
    throw checkpoint_error(show_path(dir) +
                           ": has no model.safetensors, model.safetensors.index.json or *.safetensors file; "
                           "point --model at a Hugging Face model folder with safetensors weights");
  }
  std::sort(paths.begin(), paths.end());
  std::vector<safetensors_file> files;
  files.reserve(paths.size());
  for (const auto& p : paths) files.push_back(safetensors_file::open(p));
  return files;
}

} // namespace

checkpoint checkpoint::open(const fs::path& model_dir) {
  std::error_code ec;
  const auto status = fs::status(model_dir, ec);
  checkpoint c;
  if (fs::is_regular_file(status)) {
    c.directory_ = model_dir.parent_path();
    c.files_.push_back(safetensors_file::open(model_dir));
  } else if (fs::is_directory(status)) {
    c.directory_ = model_dir;
    const fs::path single = model_dir / "model.safetensors";
    const fs::path index = model_dir / "model.safetensors.index.json";
    // transformers' order: the single file wins over an index next to it.
    if (fs::exists(single, ec)) {
      c.files_.push_back(safetensors_file::open(single));
    } else if (fs::exists(index, ec)) {
      c.files_ = open_indexed_shards(model_dir, index);
    } else {
      c.files_ = open_all_in_folder(model_dir);
    }
  } else {
    throw checkpoint_error(show_path(model_dir) +
                           ": no such folder; point --model at a Hugging Face model folder");
  }

  for (const auto& f : c.files_) {
    for (const auto& t : f.tensors()) {
      const auto [it, inserted] = c.by_name_.emplace(t.name, &t);
      if (!inserted) {
        throw checkpoint_error(show_path(c.directory_) + ": tensor '" + printable(t.name) + "' is in both " +
                               file_of(*it->second) + " and " + file_of(t) +
                               "; remove the stale file or download the checkpoint again");
      }
    }
  }
  return c;
}

const tensor_info* checkpoint::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const tensor_info& checkpoint::require(std::string_view name, std::span<const std::int64_t> shape) const {
  const tensor_info* t = find(name);
  if (!t) {
    throw checkpoint_error(show_path(directory_) + ": tensor '" + printable(name) +
                           "' is missing; the checkpoint does not match config.json");
  }
  if (!std::equal(t->shape.begin(), t->shape.end(), shape.begin(), shape.end())) {
    throw checkpoint_error(file_of(*t) + ": tensor '" + printable(name) + "' has shape " + format_shape(t->shape) +
                           ", but the config needs " + format_shape(shape) +
                           "; the checkpoint does not match config.json");
  }
  if (t->type != dtype::f32 && t->type != dtype::f16 && t->type != dtype::bf16) {
    throw checkpoint_error(file_of(*t) + ": tensor '" + printable(name) + "' has dtype " +
                           std::string(troupe::name(t->type)) +
                           ", but troupe needs F32, F16 or BF16 here; convert the checkpoint to bf16");
  }
  return *t;
}

void checkpoint::read_f32(std::string_view name, std::span<const std::int64_t> shape, std::vector<float>& out) const {
  const tensor_info& t = require(name, shape);
  out.resize(static_cast<std::size_t>(t.num_elements()));
  to_f32(t, out);
}

void checkpoint::to_f32(const tensor_info& t, std::span<float> out) {
  if (!is_floating(t.type)) {
    throw checkpoint_error(file_of(t) + ": tensor '" + printable(t.name) + "' has dtype " +
                           std::string(troupe::name(t.type)) + ", which cannot be converted to f32");
  }
  if (out.size() != static_cast<std::uint64_t>(t.num_elements()) ||
      !convert_to_f32(t.type, t.bytes(), out)) {
    throw checkpoint_error(file_of(t) + ": tensor '" + printable(t.name) + "' has " +
                           std::to_string(t.num_elements()) + " elements, but the f32 buffer holds " +
                           std::to_string(out.size()));
  }
}

std::vector<std::string> checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(by_name_.size());
  for (const auto& [name, t] : by_name_) out.push_back(name);
  return out;
}

} // namespace troupe
