// Fuzz target for the safetensors reader: any byte string must either parse into tensors that lie inside the
// input and agree with their dtype and shape, or throw checkpoint_error. Nothing else: no crash, no other
// exception, no read outside the input (ASan), no undefined behaviour (UBSan).
// A file that parses must also survive a round trip through the writer unchanged, every 4-bit layer in it
// (a "<module>.qweight" with its qzeros, scales, g_idx) must dequantize or throw one checkpoint_error line, and
// so must every FP8 layer (a "<module>.weight" with its weight_scale and input_scale), whole and in slices.
//
// Built two ways (fuzz/CMakeLists.txt): with clang's libFuzzer (TROUPE_FUZZ=ON), and with any compiler into a
// replay driver that runs the seed corpus as ctest tests.

#include "fuzz/fuzz_check.hpp"
#include "runtime/error.hpp"
#include "runtime/model/fp8_formats.hpp"
#include "runtime/model/int4_formats.hpp"
#include "runtime/model/sharding_plan.hpp"
#include "runtime/model/safetensors.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(TROUPE_FUZZ_MUTATOR)
#include <random>
#endif

namespace {

void check_file(const troupe::safetensors_file& file, std::span<const std::byte> input) {
  const std::byte* begin = input.data();
  const std::byte* end = input.data() + input.size();
  unsigned checksum = 0;
  const troupe::tensor_info* previous = nullptr;
  for (const auto& t : file.tensors()) {
    FUZZ_CHECK(!previous || previous->name < t.name);  // sorted, no duplicates
    previous = &t;
    FUZZ_CHECK(file.find(t.name) == &t);
    FUZZ_CHECK(t.file == &file.path());
    std::uint64_t elements = 1;
    for (const auto d : t.shape) {
      FUZZ_CHECK(d >= 0);
      elements *= static_cast<std::uint64_t>(d);
    }
    FUZZ_CHECK(static_cast<std::uint64_t>(t.num_elements()) == elements);
    FUZZ_CHECK(t.num_bytes == elements * troupe::size_in_bytes(t.type));
    FUZZ_CHECK(t.num_bytes == 0 || (t.data >= begin && t.num_bytes <= static_cast<std::size_t>(end - t.data)));
    FUZZ_CHECK(t.num_bytes == 0 || t.data == begin + t.file_offset);
    // Touch every byte: ASan reports any that lie outside the input.
    for (const auto b : t.bytes()) checksum += static_cast<unsigned>(b);
    if (troupe::is_floating(t.type)) {
      std::vector<float> values(static_cast<std::size_t>(elements));
      troupe::checkpoint::to_f32(t, values);
    }
  }
  volatile unsigned sink = checksum;
  (void)sink;
}

// What parsed must be written back and parse to the same tensors and metadata.
void check_round_trip(const troupe::safetensors_file& file) {
  std::vector<troupe::tensor_to_write> tensors;
  for (const auto& t : file.tensors()) tensors.push_back({t.name, t.type, t.shape, t.bytes()});
  std::vector<std::byte> bytes;
  try {
    bytes = troupe::serialize_safetensors(tensors, file.metadata());
  } catch (const troupe::checkpoint_error& e) {
    std::fprintf(stderr, "the writer refused what the reader accepted: %s\n", e.what());
    std::abort();
  }
  const auto again = troupe::safetensors_file::parse(bytes, "round-trip");
  FUZZ_CHECK(again.metadata() == file.metadata());
  FUZZ_CHECK(again.tensors().size() == file.tensors().size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& a = file.tensors()[i];
    const auto& b = again.tensors()[i];
    FUZZ_CHECK(a.name == b.name && a.type == b.type && a.shape == b.shape && a.num_bytes == b.num_bytes);
    FUZZ_CHECK(a.num_bytes == 0 || std::memcmp(a.data, b.data, a.num_bytes) == 0);
    FUZZ_CHECK(b.file_offset % troupe::size_in_bytes(b.type) == 0);  // the writer aligns every tensor
  }
}

// Dequantizes each "<module>.qweight" as an AWQ and as a GPTQ layer of the sizes its shape implies, with the
// group size its scales imply, symmetric or not: values of that size, or one checkpoint_error line.
void check_packed_layers(const troupe::safetensors_file& file) {
  std::vector<float> values;
  for (const auto& t : file.tensors()) {
    if (!t.name.ends_with(".qweight") || t.shape.size() != 2) continue;
    const std::string module = t.name.substr(0, t.name.size() - 8);
    const troupe::packed_linear p{&t, file.find(module + ".qzeros"), file.find(module + ".scales"),
                                  file.find(module + ".g_idx")};
    for (const auto method : {troupe::quant_method::awq, troupe::quant_method::gptq}) {
      const bool awq = method == troupe::quant_method::awq;
      const std::int64_t in = awq ? t.shape[0] : t.shape[0] * 8, out = awq ? t.shape[1] * 8 : t.shape[1];
      troupe::quantization_config q;
      q.method = method;
      const std::int64_t groups = p.scales && p.scales->shape.size() == 2 ? p.scales->shape[0] : 0;
      q.group_size = groups > 0 && in / groups > 0 ? in / groups : -1;
      for (const bool symmetric : {false, true}) {
        q.symmetric = symmetric;
        try {
          troupe::dequantize_linear(module, p, q, out, in, "fuzz-input", values);
          FUZZ_CHECK(values.size() == static_cast<std::size_t>(out * in));
        } catch (const troupe::checkpoint_error& e) {
          FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);
        }
      }
    }
  }
}

// Reads each 2-D "<module>.weight" that has a "<module>.weight_scale" as an FP8 layer of its shape under every
// FP8 config (fp8 and compressed-tensors, per tensor and per channel, dynamic and static activations), whole and
// as the first half of its rows and of its columns: codes of the slice's size, or one checkpoint_error line.
void check_fp8_layers(const troupe::safetensors_file& file) {
  for (const auto& t : file.tensors()) {
    if (!t.name.ends_with(".weight") || t.shape.size() != 2) continue;
    const std::string module = t.name.substr(0, t.name.size() - 7);
    const troupe::fp8_linear layer{&t, file.find(module + ".weight_scale"), file.find(module + ".input_scale")};
    if (!layer.weight_scale) continue;
    for (const auto method : {troupe::quant_method::fp8, troupe::quant_method::compressed_tensors})
      for (const bool channel : {false, true})
        for (const bool static_input : {false, true}) {
          troupe::quantization_config q;
          q.method = method;
          q.fp8_serialized = true;
          q.fp8_channel_scales = channel;
          q.fp8_static_input = static_input;
          for (int cut = 0; cut < 3; ++cut) {
            troupe::weight_slice s;
            s.name = t.name;
            s.shape = s.local_shape = t.shape;
            s.dim = cut == 2 ? 1 : 0;
            s.length = cut == 0 ? t.shape[0] : t.shape[static_cast<std::size_t>(s.dim)] / 2;
            s.local_shape[static_cast<std::size_t>(s.dim)] = s.length;
            try {
              const troupe::fp8_weight w = troupe::read_fp8_linear(module, layer, q, s, "fuzz-input");
              FUZZ_CHECK(w.codes.size() == static_cast<std::size_t>(s.local_shape[0] * s.local_shape[1]));
              FUZZ_CHECK(w.scales.size() == static_cast<std::size_t>(s.local_shape[0]));
              std::vector<float> values;
              troupe::dequantize(w, values);
            } catch (const troupe::checkpoint_error& e) {
              FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);
            }
          }
        }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto file = troupe::safetensors_file::parse(input, "fuzz-input");
    check_file(file, input);
    check_round_trip(file);
    check_packed_layers(file);
    check_fp8_layers(file);
  } catch (const troupe::checkpoint_error& e) {
    FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);  // messages are one line
  }
  return 0;
}

#if defined(TROUPE_FUZZ_MUTATOR)
extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);

// Random edits to the JSON almost always break the 8-byte length in front of it, so most inputs would die at
// the first check. This mutator edits the header or the data area on their own and rewrites the length to
// match; one time in four it mutates the raw bytes, so broken lengths are still tried.
extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned int seed) {
  std::minstd_rand rng(seed);
  std::uint64_t header_size = 0;
  if (size >= 8) std::memcpy(&header_size, data, 8);
  if (size < 8 || header_size == 0 || header_size > size - 8 || rng() % 4 == 0) {
    return LLVMFuzzerMutate(data, size, max_size);
  }
  std::vector<std::uint8_t> header(data + 8, data + 8 + header_size);
  std::vector<std::uint8_t> rest(data + 8 + header_size, data + size);
  if (!rest.empty() && rng() % 4 == 0) {
    const std::size_t room = max_size - 8 - header.size();
    const std::size_t used = rest.size();
    rest.resize(room);
    rest.resize(LLVMFuzzerMutate(rest.data(), used, room));
  } else {
    const std::size_t room = max_size - 8 - rest.size();
    header.resize(room);
    header.resize(LLVMFuzzerMutate(header.data(), static_cast<std::size_t>(header_size), room));
  }
  const std::uint64_t new_size = header.size();
  std::memcpy(data, &new_size, 8);
  std::memcpy(data + 8, header.data(), header.size());
  if (!rest.empty()) std::memcpy(data + 8 + header.size(), rest.data(), rest.size());
  return 8 + header.size() + rest.size();
}
#endif
