// Reading one safetensors file: map it, then check every header value before anything is derived from it.

#include "runtime/model/safetensors.hpp"

#include "runtime/error.hpp"
#include "runtime/model/safetensors_detail.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace troupe {

using safetensors_detail::damaged;
using safetensors_detail::format_shape;
using safetensors_detail::printable;
using safetensors_detail::truncated;
using json = nlohmann::json;

std::int64_t tensor_info::num_elements() const {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

struct safetensors_file::impl {
  std::filesystem::path path;
  const std::byte* base = nullptr;
  std::size_t size = 0;
  bool mapped = false;  // false when parse() borrowed the caller's bytes
  std::vector<tensor_info> tensors;
  std::map<std::string, std::string> metadata;

  impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  ~impl() {
    if (mapped) ::munmap(const_cast<std::byte*>(base), size);
  }
};

namespace {

std::uint64_t load_le64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);  // little-endian host (asserted in dtype.cpp)
  return v;
}

// Builds "<file>: tensor '<name>' <problem><remedy>".
class header_checker {
public:
  explicit header_checker(const std::filesystem::path& path) : file_(printable(path.string(), 400)) {}

  [[noreturn]] void fail(std::string_view problem, std::string_view remedy = damaged) const {
    throw checkpoint_error(file_ + ": " + std::string(problem) + std::string(remedy));
  }
  [[noreturn]] void fail_tensor(std::string_view tensor, std::string_view problem,
                                std::string_view remedy = damaged) const {
    fail("tensor '" + printable(tensor) + "' " + std::string(problem), remedy);
  }
  const std::string& file() const { return file_; }

private:
  std::string file_;
};

// A JSON value shown inside a message: short and on one line.
std::string show(const json& j) { return printable(j.dump(), 80); }

// "a number", "an object": for "<x> is a number, not ...".
std::string a_type(const json& j) {
  const std::string t = j.type_name();
  return (t == "array" || t == "object") ? "an " + t : "a " + t;
}

// A JSON integer in [0, max], or false.
bool get_count(const json& j, std::uint64_t max, std::uint64_t& out) {
  if (!j.is_number_unsigned()) return false;  // negative integers are number_integer, fractions number_float
  out = j.get<std::uint64_t>();
  return out <= max;
}

std::vector<std::int64_t> parse_shape(const header_checker& check, const std::string& name, const json& j) {
  if (!j.is_array()) check.fail_tensor(name, "has shape " + show(j) + ", not an array of dimensions");
  std::vector<std::int64_t> shape;
  shape.reserve(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    std::uint64_t d;
    if (!get_count(j[i], std::numeric_limits<std::int64_t>::max(), d)) {
      check.fail_tensor(name, "has shape dimension " + std::to_string(i) + " = " + show(j[i]) +
                                  ", not an integer in [0, 2^63)");
    }
    shape.push_back(static_cast<std::int64_t>(d));
  }
  std::int64_t elements = 1;
  for (const auto d : shape) {
    if (__builtin_mul_overflow(elements, d, &elements)) {
      check.fail_tensor(name, "has shape " + format_shape(shape) + ", more elements than fit in 64 bits");
    }
  }
  return shape;
}

dtype parse_dtype(const header_checker& check, const std::string& name, const json& j) {
  if (!j.is_string()) check.fail_tensor(name, "has dtype " + show(j) + ", not a string such as \"BF16\"");
  const auto& s = j.get_ref<const std::string&>();
  if (const auto t = dtype_from_safetensors(s)) return *t;
  if (s == "F4" || s == "F6_E2M3" || s == "F6_E3M2") {
    check.fail_tensor(name, "has dtype " + s + ", a sub-byte type troupe does not load",
                      "; convert the checkpoint to BF16, F16 or F32");
  }
  check.fail_tensor(name,
                    "has unknown dtype '" + printable(s, 40) + "' (supported: " +
                        std::string(supported_dtype_names()) + ")");
}

void parse_metadata(const header_checker& check, const json& j, std::map<std::string, std::string>& out) {
  if (!j.is_object()) check.fail("__metadata__ is " + a_type(j) + ", not an object of strings");
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      check.fail("__metadata__ entry '" + printable(key) + "' is " + a_type(value) + ", not a string");
    }
    out.emplace(key, value.get<std::string>());
  }
}

tensor_info parse_entry(const header_checker& check, const std::string& name, const json& entry,
                        const std::byte* data_area, std::uint64_t data_size, std::uint64_t data_start) {
  if (!entry.is_object()) {
    check.fail_tensor(name, "is " + a_type(entry) + ", not an object with dtype, shape and data_offsets");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(field)) check.fail_tensor(name, std::string("has no \"") + field + "\"");
  }
  const dtype type = parse_dtype(check, name, entry.at("dtype"));
  std::vector<std::int64_t> shape = parse_shape(check, name, entry.at("shape"));

  const json& offsets = entry.at("data_offsets");
  std::uint64_t begin = 0, end = 0;
  if (!offsets.is_array() || offsets.size() != 2 || !get_count(offsets[0], UINT64_MAX, begin) ||
      !get_count(offsets[1], UINT64_MAX, end)) {
    check.fail_tensor(name, "has data_offsets " + show(offsets) + ", not two non-negative integers [begin, end]");
  }
  const std::string offsets_text = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (begin > end) check.fail_tensor(name, "has data_offsets " + offsets_text + ", which end before they begin");
  if (end > data_size) {
    check.fail_tensor(name,
                      "has data_offsets " + offsets_text + " beyond the data area (" + std::to_string(data_size) +
                          " bytes)",
                      truncated);
  }

  // Elements cannot overflow (parse_shape checked); elements × size still can.
  std::uint64_t elements = 1;
  for (const auto d : shape) elements *= static_cast<std::uint64_t>(d);
  std::uint64_t needed;
  const bool overflow = __builtin_mul_overflow(elements, size_in_bytes(type), &needed);
  if (overflow || needed != end - begin) {
    check.fail_tensor(name, "has data_offsets " + offsets_text + " (" + std::to_string(end - begin) +
                                " bytes), but dtype " + std::string(troupe::name(type)) + " and shape " +
                                format_shape(shape) + " need " +
                                (overflow ? std::string("more than 2^64") : std::to_string(needed)) + " bytes");
  }
  return tensor_info{name, type, std::move(shape), data_area + begin, static_cast<std::size_t>(end - begin),
                     data_start + begin, nullptr};
}

// Tensors may leave gaps (other writers pad), but two tensors may never share a byte.
void check_no_overlap(const header_checker& check, const std::vector<tensor_info>& tensors,
                      std::uint64_t data_start) {
  std::vector<const tensor_info*> by_offset;
  for (const auto& t : tensors) {
    if (t.num_bytes) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const tensor_info* a, const tensor_info* b) { return a->file_offset < b->file_offset; });
  // As the header spells them: relative to the data area.
  auto where = [&](const tensor_info& t) {
    const std::uint64_t begin = t.file_offset - data_start;
    return "'" + printable(t.name) + "' (data_offsets [" + std::to_string(begin) + ", " +
           std::to_string(begin + t.num_bytes) + "])";
  };
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const tensor_info& prev = *by_offset[i - 1];
    const tensor_info& next = *by_offset[i];
    if (next.file_offset < prev.file_offset + prev.num_bytes) {
      check.fail("tensors " + where(prev) + " and " + where(next) + " overlap");
    }
  }
}

struct parsed_header {
  std::vector<tensor_info> tensors;  // sorted by name; tensor_info::file not set yet
  std::map<std::string, std::string> metadata;
};

parsed_header parse_file_bytes(const std::byte* base, std::size_t size, const std::filesystem::path& path) {
  const header_checker check(path);
  if (size < 8) {
    check.fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length", damaged);
  }
  const std::uint64_t header_size = load_le64(base);
  if (header_size > max_safetensors_header_bytes) {
    check.fail("header length " + std::to_string(header_size) + " is larger than the " +
               std::to_string(max_safetensors_header_bytes) + "-byte limit");
  }
  if (header_size > size - 8) {
    check.fail("header length " + std::to_string(header_size) + " runs past the end of the file (" +
                   std::to_string(size - 8) + " bytes follow the length)",
               truncated);
  }
  const std::uint64_t data_start = 8 + header_size;
  const std::uint64_t data_size = size - data_start;
  const std::string_view text(reinterpret_cast<const char*>(base + 8), header_size);

  auto [header, repeated] = safetensors_detail::parse_json_checked(text, check.file() + ": header", damaged);
  if (!header.is_object()) {
    check.fail("header is " + a_type(header) + ", not an object mapping tensor names to entries");
  }
  if (!repeated.empty()) {
    if (repeated.size() == 1) check.fail_tensor(repeated[0], "appears twice in the header");
    std::string key;
    for (std::size_t i = 1; i < repeated.size(); ++i) key += (i > 1 ? "." : "") + repeated[i];
    if (repeated[0] == "__metadata__") check.fail("__metadata__ has the key '" + printable(key) + "' twice");
    check.fail_tensor(repeated[0], "has the key '" + printable(key) + "' twice");
  }

  parsed_header out;
  out.tensors.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      parse_metadata(check, entry, out.metadata);
    } else {
      out.tensors.push_back(parse_entry(check, name, entry, base + data_start, data_size, data_start));
    }
  }
  check_no_overlap(check, out.tensors, data_start);
  // json objects iterate in key order, so the tensors are already sorted by name (find() relies on it).
  return out;
}

} // namespace

safetensors_file::safetensors_file(std::unique_ptr<impl> state) : impl_(std::move(state)) {
  for (auto& t : impl_->tensors) t.file = &impl_->path;
}
safetensors_file::safetensors_file(safetensors_file&&) noexcept = default;
safetensors_file& safetensors_file::operator=(safetensors_file&&) noexcept = default;
safetensors_file::~safetensors_file() = default;

safetensors_file safetensors_file::open(const std::filesystem::path& path) {
  const std::string file = printable(path.string(), 400);
  // O_NONBLOCK: a FIFO named like a checkpoint must fail the regular-file check below, not hang in open().
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    throw checkpoint_error(file + ": cannot open (" + std::strerror(errno) + "); check the path and permissions");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw checkpoint_error(file + ": not a regular file; point at a .safetensors file or a model folder");
  }
  auto state = std::make_unique<impl>();
  state->path = path;
  state->size = static_cast<std::size_t>(st.st_size);
  if (state->size >= 8) {  // mmap cannot map nothing; parse_file_bytes reports the short file
    void* p = ::mmap(nullptr, state->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw checkpoint_error(file + ": cannot map " + std::to_string(state->size) + " bytes (" +
                             std::strerror(err) + "); check free address space and memory limits");
    }
    state->base = static_cast<const std::byte*>(p);
    state->mapped = true;
  }
  ::close(fd);  // the mapping keeps the file alive
  auto [tensors, metadata] = parse_file_bytes(state->base, state->size, path);
  state->tensors = std::move(tensors);
  state->metadata = std::move(metadata);
  return safetensors_file(std::move(state));
}

safetensors_file safetensors_file::parse(std::span<const std::byte> bytes, const std::filesystem::path& name) {
  auto state = std::make_unique<impl>();
  state->path = name;
  state->base = bytes.data();
  state->size = bytes.size();
  auto [tensors, metadata] = parse_file_bytes(state->base, state->size, name);
  state->tensors = std::move(tensors);
  state->metadata = std::move(metadata);
  return safetensors_file(std::move(state));
}

const tensor_info* safetensors_file::find(std::string_view name) const {
  const auto& ts = impl_->tensors;
  const auto it = std::lower_bound(ts.begin(), ts.end(), name,
                                   [](const tensor_info& t, std::string_view n) { return t.name < n; });
  return (it != ts.end() && it->name == name) ? &*it : nullptr;
}

const std::vector<tensor_info>& safetensors_file::tensors() const { return impl_->tensors; }
const std::map<std::string, std::string>& safetensors_file::metadata() const { return impl_->metadata; }
const std::filesystem::path& safetensors_file::path() const { return impl_->path; }
std::span<const std::byte> safetensors_file::bytes() const { return {impl_->base, impl_->size}; }

} // namespace troupe
