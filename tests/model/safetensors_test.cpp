#include "runtime/error.hpp"
#include "runtime/model/safetensors.hpp"
#include "runtime/model/safetensors_detail.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace troupe {
namespace {

namespace fs = std::filesystem;

const fs::path reference_dir = fs::path(TROUPE_TEST_DATA) / "reference";

// A fresh folder per test, removed afterwards.
class safetensors_test : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("troupe_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path path(const std::string& name) const { return dir_ / name; }

  // Writes `bytes` as they are.
  fs::path write_raw(const std::string& name, const std::string& bytes) const {
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  }

  // A file made by hand: the 8-byte length of `header`, `header`, then `data`.
  fs::path write_file(const std::string& name, const std::string& header, const std::string& data = "") const {
    std::string bytes(8, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    return write_raw(name, bytes + header + data);
  }

  fs::path dir_;
};

// The message of the checkpoint_error that `f` throws, or "<no error>".
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const checkpoint_error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string open_error(const fs::path& p) {
  return error_of([&] { safetensors_file::open(p); });
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span(v));
}

const std::string damaged = "; the file is damaged or not a safetensors file, download or convert it again";
const std::string truncated = "; the file is truncated, download it again";

// ---- writing and reading back ----

TEST_F(safetensors_test, writes_and_reads_back_names_dtypes_shapes_data_and_metadata) {
  const std::vector<float> w = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const std::vector<std::uint16_t> b = {0x3F80, 0xC000};
  const std::vector<std::int64_t> ids = {7};
  const std::vector<tensor_to_write> tensors = {
      {"w", dtype::f32, {2, 3}, bytes_of(w)},
      {"b", dtype::bf16, {2}, bytes_of(b)},
      {"step", dtype::i64, {}, bytes_of(ids)},
  };
  write_safetensors(path("m.safetensors"), tensors, {{"format", "pt"}});

  const auto f = safetensors_file::open(path("m.safetensors"));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "b");  // sorted by name
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  const tensor_info* t = f.find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, dtype::f32);
  EXPECT_EQ(t->shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(t->num_elements(), 6);
  EXPECT_EQ(t->num_bytes, 24u);
  EXPECT_EQ(*t->file, path("m.safetensors"));
  EXPECT_EQ(std::memcmp(t->data, w.data(), 24), 0);
  EXPECT_EQ(f.find("step")->num_elements(), 1);  // a scalar
  EXPECT_EQ(f.find("step")->shape.size(), 0u);
  EXPECT_EQ(f.find("nope"), nullptr);
  for (const auto& ti : f.tensors()) {
    EXPECT_EQ(ti.file_offset % size_in_bytes(ti.type), 0u) << ti.name << " is not aligned to its element size";
    EXPECT_EQ(ti.data, f.bytes().data() + ti.file_offset);
  }
}

TEST_F(safetensors_test, writes_the_header_in_the_reference_writers_order_padded_to_eight_bytes) {
  const std::vector<float> b = {1.0f, 2.0f};
  const std::vector<std::uint16_t> a = {0x3F80};
  const std::vector<tensor_to_write> tensors = {{"a", dtype::bf16, {1}, bytes_of(a)}, {"b", dtype::f32, {2}, bytes_of(b)}};
  const auto bytes = serialize_safetensors(tensors, {{"format", "pt"}});
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, n);
  // F32 before BF16 (wider first keeps both aligned), then by name; fields as the Python package writes them.
  EXPECT_EQ(header,
            R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("a":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]}}    )");
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 10);
}

TEST_F(safetensors_test, leaves_metadata_out_of_the_header_when_there_is_none) {
  const auto bytes = serialize_safetensors({});
  const std::string all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  EXPECT_EQ(all.substr(8), "{}      ");
  EXPECT_EQ(safetensors_file::parse(bytes, "empty").tensors().size(), 0u);
}

TEST_F(safetensors_test, rewrites_files_made_by_python_safetensors_byte_for_byte) {
  for (const char* model : {"llama_f32", "llama3_rope_bf16", "mistral_head_dim"}) {
    const fs::path file = reference_dir / model / "model.safetensors";
    const auto original = safetensors_file::open(file);
    std::vector<tensor_to_write> tensors;
    for (const auto& t : original.tensors()) tensors.push_back({t.name, t.type, t.shape, t.bytes()});
    const auto rewritten = serialize_safetensors(tensors, original.metadata());
    ASSERT_EQ(rewritten.size(), original.bytes().size()) << model;
    EXPECT_EQ(std::memcmp(rewritten.data(), original.bytes().data(), rewritten.size()), 0) << model;
  }
}

TEST_F(safetensors_test, accepts_gaps_between_tensors_empty_tensors_and_unknown_entry_keys) {
  const auto p = write_file("gaps.safetensors",
                            R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2],"extra":[1,{"x":null}]},)"
                            R"("e":{"dtype":"F32","shape":[3,0],"data_offsets":[1,1]},)"
                            R"("b":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}}  )",
                            "ab...c");
  const auto f = safetensors_file::open(p);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.find("b")->data), 1), "c");
  EXPECT_EQ(f.find("e")->num_bytes, 0u);
  EXPECT_EQ(f.find("e")->num_elements(), 0);
}

// ---- what a broken or hostile file gets ----

TEST_F(safetensors_test, rejects_a_file_shorter_than_the_header_length) {
  const auto p = write_raw("short.safetensors", "abcde");
  EXPECT_EQ(open_error(p), p.string() + ": file is 5 bytes, shorter than the 8-byte header length" + damaged);
  const auto empty = write_raw("empty.safetensors", "");
  EXPECT_EQ(open_error(empty), empty.string() + ": file is 0 bytes, shorter than the 8-byte header length" + damaged);
}

TEST_F(safetensors_test, rejects_a_header_length_above_the_limit_before_reading_it) {
  std::string bytes(16, ' ');
  const std::uint64_t n = 100'000'001;
  std::memcpy(bytes.data(), &n, 8);
  const auto p = write_raw("huge.safetensors", bytes);
  EXPECT_EQ(open_error(p),
            p.string() + ": header length 100000001 is larger than the 100000000-byte limit" + damaged);
  const std::uint64_t max = UINT64_MAX;
  std::memcpy(bytes.data(), &max, 8);
  const auto q = write_raw("max.safetensors", bytes);
  EXPECT_EQ(open_error(q),
            q.string() + ": header length 18446744073709551615 is larger than the 100000000-byte limit" + damaged);
}

TEST_F(safetensors_test, rejects_a_truncated_file_whose_header_runs_past_its_end) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string bytes(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  const auto p = write_raw("cut.safetensors", bytes + header.substr(0, 20));
  EXPECT_EQ(open_error(p), p.string() + ": header length 54 runs past the end of the file (20 bytes follow the length)" +
                               truncated);
}

TEST_F(safetensors_test, rejects_a_truncated_data_area) {
  const auto p = write_file("cut.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234");
  EXPECT_EQ(open_error(p),
            p.string() + ": tensor 'a' has data_offsets [0, 8] beyond the data area (4 bytes)" + truncated);
}

TEST_F(safetensors_test, rejects_a_header_that_is_not_json) {
  const auto p = write_file("bad.safetensors", R"({"a":)");
  EXPECT_EQ(open_error(p), p.string() +
                               ": header is not valid JSON (parse error at line 1, column 6: syntax error while "
                               "parsing value - unexpected end of input; expected '[', '{', or a literal)" +
                               damaged);
}

TEST_F(safetensors_test, rejects_a_header_with_invalid_utf8) {
  const auto p = write_file("utf8.safetensors", "{\"a\xff\":{}}");
  EXPECT_EQ(open_error(p), p.string() +
                               ": header is not valid JSON (parse error at line 1, column 4: syntax error while "
                               "parsing object key - invalid string: ill-formed UTF-8 byte; last read: '\"a\\xff'; "
                               "expected string literal)" +
                               damaged);
}

TEST_F(safetensors_test, rejects_a_header_that_is_not_an_object) {
  const auto p = write_file("array.safetensors", "[1, 2]");
  EXPECT_EQ(open_error(p), p.string() + ": header is an array, not an object mapping tensor names to entries" + damaged);
}

TEST_F(safetensors_test, rejects_deeply_nested_json_before_building_it) {
  const auto p = write_file("deep.safetensors", std::string(1000, '[') + std::string(1000, ']'));
  EXPECT_EQ(open_error(p), p.string() + ": header nests containers more than 16 deep" + damaged);
}

TEST_F(safetensors_test, rejects_an_entry_that_is_not_an_object_or_lacks_a_field) {
  const auto p = write_file("entry.safetensors", R"({"a":"F32"})");
  EXPECT_EQ(open_error(p),
            p.string() + ": tensor 'a' is a string, not an object with dtype, shape and data_offsets" + damaged);
  const auto q = write_file("field.safetensors", R"({"a":{"dtype":"F32","shape":[1]}})", "1234");
  EXPECT_EQ(open_error(q), q.string() + ": tensor 'a' has no \"data_offsets\"" + damaged);
}

TEST_F(safetensors_test, rejects_an_unknown_dtype_string) {
  const auto p = write_file("dtype.safetensors", R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", "1234");
  EXPECT_EQ(open_error(p),
            p.string() + ": tensor 'a' has unknown dtype 'F33' (supported: BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, "
                         "I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64)" +
                damaged);
  const auto q = write_file("num.safetensors", R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "1234");
  EXPECT_EQ(open_error(q), q.string() + ": tensor 'a' has dtype 4, not a string such as \"BF16\"" + damaged);
  const auto r = write_file("f4.safetensors", R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", "1");
  EXPECT_EQ(open_error(r), r.string() +
                               ": tensor 'a' has dtype F4, a sub-byte type troupe does not load; convert the "
                               "checkpoint to BF16, F16 or F32");
}

TEST_F(safetensors_test, rejects_a_size_that_does_not_match_dtype_times_shape) {
  const auto p = write_file("size.safetensors", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                            std::string(12, 'x'));
  EXPECT_EQ(open_error(p), p.string() +
                               ": tensor 'a' has data_offsets [0, 12] (12 bytes), but dtype F32 and shape [2, 2] "
                               "need 16 bytes" +
                               damaged);
}

TEST_F(safetensors_test, rejects_negative_fractional_and_overflowing_dimensions) {
  const auto p = write_file("neg.safetensors", R"({"a":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,0]}})");
  EXPECT_EQ(open_error(p),
            p.string() + ": tensor 'a' has shape dimension 1 = -1, not an integer in [0, 2^63)" + damaged);
  const auto q = write_file("frac.safetensors", R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})");
  EXPECT_EQ(open_error(q),
            q.string() + ": tensor 'a' has shape dimension 0 = 1.5, not an integer in [0, 2^63)" + damaged);
  const auto r = write_file("big.safetensors",
                            R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})");
  EXPECT_EQ(open_error(r), r.string() +
                               ": tensor 'a' has shape [4294967296, 4294967296], more elements than fit in 64 bits" +
                               damaged);
  // Elements fit in 63 bits, bytes do not: must not wrap around to a small size.
  const auto s = write_file("wrap.safetensors",
                            R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})");
  EXPECT_EQ(open_error(s), s.string() +
                               ": tensor 'a' has data_offsets [0, 0] (0 bytes), but dtype F64 and shape "
                               "[2305843009213693952] need more than 2^64 bytes" +
                               damaged);
}

TEST_F(safetensors_test, rejects_data_offsets_that_are_not_two_increasing_integers) {
  const auto p = write_file("three.safetensors", R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "xx");
  EXPECT_EQ(open_error(p),
            p.string() + ": tensor 'a' has data_offsets [0,1,2], not two non-negative integers [begin, end]" + damaged);
  const auto q = write_file("neg.safetensors", R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", "xx");
  EXPECT_EQ(open_error(q),
            q.string() + ": tensor 'a' has data_offsets [-1,0], not two non-negative integers [begin, end]" + damaged);
  const auto r = write_file("back.safetensors", R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}})", "xx");
  EXPECT_EQ(open_error(r), r.string() + ": tensor 'a' has data_offsets [2, 1], which end before they begin" + damaged);
}

TEST_F(safetensors_test, rejects_overlapping_tensors) {
  const auto p = write_file("overlap.safetensors",
                            R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                            R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                            std::string(24, 'x'));
  EXPECT_EQ(open_error(p), p.string() +
                               ": tensors 'a' (data_offsets [0, 16]) and 'b' (data_offsets [8, 24]) overlap" +
                               damaged);
}

TEST_F(safetensors_test, rejects_a_tensor_named_twice) {
  const auto p = write_file("twice.safetensors",
                            R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                            R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                            "xy");
  EXPECT_EQ(open_error(p), p.string() + ": tensor 'a' appears twice in the header" + damaged);
  const auto q = write_file("field.safetensors", R"({"a":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})",
                            "x");
  EXPECT_EQ(open_error(q), q.string() + ": tensor 'a' has the key 'dtype' twice" + damaged);
}

TEST_F(safetensors_test, rejects_metadata_that_is_not_an_object_of_strings) {
  const auto p = write_file("meta.safetensors", R"({"__metadata__":{"format":"pt","n":3}})");
  EXPECT_EQ(open_error(p), p.string() + ": __metadata__ entry 'n' is a number, not a string" + damaged);
  const auto q = write_file("meta2.safetensors", R"({"__metadata__":[]})");
  EXPECT_EQ(open_error(q), q.string() + ": __metadata__ is an array, not an object of strings" + damaged);
}

TEST_F(safetensors_test, keeps_control_characters_in_names_out_of_the_one_line_message) {
  const auto p = write_file("ctl.safetensors", R"({"a\nb":{"dtype":"X","shape":[],"data_offsets":[0,0]}})");
  const std::string message = open_error(p);
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_NE(message.find("tensor 'a\\x0ab' has unknown dtype 'X'"), std::string::npos) << message;
}

TEST_F(safetensors_test, rejects_a_folder_a_fifo_or_a_missing_path_as_a_file) {
  EXPECT_EQ(open_error(dir_), dir_.string() + ": not a regular file; point at a .safetensors file or a model folder");
  ASSERT_EQ(::mkfifo(path("fifo.safetensors").c_str(), 0600), 0);
  EXPECT_EQ(open_error(path("fifo.safetensors")),  // without a writer, a blocking open would hang here
            path("fifo.safetensors").string() + ": not a regular file; point at a .safetensors file or a model folder");
  EXPECT_EQ(open_error(path("none.safetensors")),
            path("none.safetensors").string() + ": cannot open (No such file or directory); check the path and permissions");
}

// ---- a model folder ----

TEST_F(safetensors_test, require_returns_a_float_tensor_of_the_expected_shape) {
  const std::vector<std::uint16_t> w(6, 0x3F80);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::bf16, {2, 3}, bytes_of(w)}};
  write_safetensors(path("model.safetensors"), tensors);
  const auto c = checkpoint::open(dir_);
  const std::int64_t shape[] = {2, 3};
  const tensor_info& t = c.require("w", shape);
  std::vector<float> values(6);
  checkpoint::to_f32(t, values);
  EXPECT_EQ(values, std::vector<float>(6, 1.0f));
  std::vector<float> read;
  c.read_f32("w", shape, read);
  EXPECT_EQ(read, std::vector<float>(6, 1.0f));
  EXPECT_EQ(c.names(), std::vector<std::string>{"w"});
  EXPECT_EQ(c.files().size(), 1u);
}

TEST_F(safetensors_test, require_names_the_folder_and_a_missing_tensor) {
  const std::vector<float> w(2);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::f32, {2}, bytes_of(w)}};
  write_safetensors(path("model.safetensors"), tensors);
  const auto c = checkpoint::open(dir_);
  const std::int64_t shape[] = {96, 64};
  EXPECT_EQ(error_of([&] { c.require("model.layers.0.mlp.up_proj.weight", shape); }),
            dir_.string() +
                ": tensor 'model.layers.0.mlp.up_proj.weight' is missing; the checkpoint does not match config.json");
}

TEST_F(safetensors_test, require_names_the_file_and_both_shapes_when_they_differ) {
  const std::vector<float> w(6);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::f32, {2, 3}, bytes_of(w)}};
  write_safetensors(path("model.safetensors"), tensors);
  const auto c = checkpoint::open(dir_);
  const std::int64_t shape[] = {3, 2};
  EXPECT_EQ(error_of([&] { c.require("w", shape); }),
            path("model.safetensors").string() +
                ": tensor 'w' has shape [2, 3], but the config needs [3, 2]; the checkpoint does not match config.json");
}

TEST_F(safetensors_test, require_rejects_a_tensor_that_is_not_f32_f16_or_bf16) {
  const std::vector<std::int32_t> w(2);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::i32, {2}, bytes_of(w)}};
  write_safetensors(path("model.safetensors"), tensors);
  const auto c = checkpoint::open(dir_);
  const std::int64_t shape[] = {2};
  EXPECT_EQ(error_of([&] { c.require("w", shape); }),
            path("model.safetensors").string() +
                ": tensor 'w' has dtype I32, but troupe needs F32, F16 or BF16 here; convert the checkpoint to bf16");
  std::vector<float> out(2);
  EXPECT_EQ(error_of([&] { checkpoint::to_f32(*c.find("w"), out); }),
            path("model.safetensors").string() + ": tensor 'w' has dtype I32, which cannot be converted to f32");
}

TEST_F(safetensors_test, round_trips_a_sharded_checkpoint_through_its_index) {
  std::vector<std::vector<float>> values;
  for (int i = 0; i < 5; ++i) values.push_back(std::vector<float>(4, static_cast<float>(i)));
  std::vector<tensor_to_write> tensors;
  for (int i = 0; i < 5; ++i) tensors.push_back({"t" + std::to_string(i), dtype::f32, {2, 2}, bytes_of(values[i])});
  write_sharded_safetensors(dir_, tensors, 40);  // two 16-byte tensors per shard

  for (const char* f : {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                        "model-00003-of-00003.safetensors", "model.safetensors.index.json"}) {
    EXPECT_TRUE(fs::exists(path(f))) << f;
  }
  EXPECT_FALSE(fs::exists(path("model.safetensors")));
  std::ifstream in(path("model.safetensors.index.json"));
  std::stringstream index;
  index << in.rdbuf();
  EXPECT_EQ(index.str(), R"({
  "metadata": {
    "total_size": 80
  },
  "weight_map": {
    "t0": "model-00001-of-00003.safetensors",
    "t1": "model-00001-of-00003.safetensors",
    "t2": "model-00002-of-00003.safetensors",
    "t3": "model-00002-of-00003.safetensors",
    "t4": "model-00003-of-00003.safetensors"
  }
}
)");

  const auto c = checkpoint::open(dir_);
  EXPECT_EQ(c.files().size(), 3u);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"t0", "t1", "t2", "t3", "t4"}));
  for (int i = 0; i < 5; ++i) {
    const std::int64_t shape[] = {2, 2};
    const auto& t = c.require("t" + std::to_string(i), shape);
    std::vector<float> out(4);
    checkpoint::to_f32(t, out);
    EXPECT_EQ(out, values[i]);
    EXPECT_EQ(t.file->filename(), "model-0000" + std::to_string(i / 2 + 1) + "-of-00003.safetensors");
  }
  EXPECT_EQ(c.files()[0].metadata().at("format"), "pt");
}

TEST_F(safetensors_test, writes_a_single_model_file_when_everything_fits_one_shard) {
  const std::vector<float> w(4);
  const std::vector<tensor_to_write> tensors = {{"a", dtype::f32, {4}, bytes_of(w)}, {"b", dtype::f32, {4}, bytes_of(w)}};
  write_sharded_safetensors(dir_, tensors, 1000);
  EXPECT_TRUE(fs::exists(path("model.safetensors")));
  EXPECT_FALSE(fs::exists(path("model.safetensors.index.json")));
  EXPECT_EQ(checkpoint::open(dir_).names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(safetensors_test, reads_checkpoints_written_by_transformers) {
  const auto single = checkpoint::open(reference_dir / "llama_f32");
  EXPECT_EQ(single.names().size(), 21u);
  const std::int64_t embed[] = {384, 64};
  EXPECT_EQ(single.require("model.embed_tokens.weight", embed).type, dtype::f32);

  const auto sharded = checkpoint::open(reference_dir / "qwen2_sharded_bf16");
  EXPECT_EQ(sharded.files().size(), 5u);
  std::size_t total = 0;
  for (const auto& name : sharded.names()) total += sharded.find(name)->num_bytes;
  EXPECT_EQ(total, 272000u);  // the index's metadata.total_size
}

TEST_F(safetensors_test, prefers_model_safetensors_over_an_index_next_to_it) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> tensors = {{"a", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("model.safetensors"), tensors);
  write_raw("model.safetensors.index.json", "not even json");
  EXPECT_EQ(checkpoint::open(dir_).names(), std::vector<std::string>{"a"});
}

TEST_F(safetensors_test, opens_every_safetensors_file_when_there_is_no_index) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> a = {{"a", dtype::f32, {1}, bytes_of(w)}};
  const std::vector<tensor_to_write> b = {{"b", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("x.safetensors"), a);
  write_safetensors(path("y.safetensors"), b);
  EXPECT_EQ(checkpoint::open(dir_).names(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(safetensors_test, opens_a_single_file_given_instead_of_a_folder_and_skips_hidden_files) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> a = {{"a", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("weights.safetensors"), a);
  write_raw("._weights.safetensors", "macOS resource fork");
  EXPECT_EQ(checkpoint::open(path("weights.safetensors")).names(), std::vector<std::string>{"a"});
  EXPECT_EQ(checkpoint::open(dir_).names(), std::vector<std::string>{"a"});
}

TEST_F(safetensors_test, rejects_the_same_tensor_in_two_files) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> a = {{"a", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("x.safetensors"), a);
  write_safetensors(path("y.safetensors"), a);
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            dir_.string() + ": tensor 'a' is in both " + path("x.safetensors").string() + " and " +
                path("y.safetensors").string() + "; remove the stale file or download the checkpoint again");
}

TEST_F(safetensors_test, rejects_an_index_that_names_a_missing_shard) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> a = {{"a", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("model-00001-of-00002.safetensors"), a);
  write_raw("model.safetensors.index.json",
            R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})");
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            path("model.safetensors.index.json").string() +
                ": names shard 'model-00002-of-00002.safetensors' (holding tensor 'b'), which is missing from " +
                dir_.string() + "; download the missing shard");
}

TEST_F(safetensors_test, rejects_an_index_that_puts_a_tensor_in_the_wrong_shard) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> a = {{"a", dtype::f32, {1}, bytes_of(w)}};
  const std::vector<tensor_to_write> b = {{"b", dtype::f32, {1}, bytes_of(w)}};
  write_safetensors(path("one.safetensors"), a);
  write_safetensors(path("two.safetensors"), b);
  write_raw("model.safetensors.index.json", R"({"weight_map":{"a":"one.safetensors","b":"one.safetensors"}})");
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            path("model.safetensors.index.json").string() +
                ": says tensor 'b' is in 'one.safetensors', but that file has no such tensor; the index does not "
                "match the shards, download them again");
}

TEST_F(safetensors_test, rejects_an_index_that_lists_a_tensor_twice_or_leaves_the_folder) {
  write_raw("model.safetensors.index.json", R"({"weight_map":{"a":"x.safetensors","a":"y.safetensors"}})");
  const std::string index = path("model.safetensors.index.json").string();
  const std::string index_damaged = "; the index is damaged, download it again";
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }), index + ": lists tensor 'a' twice" + index_damaged);
  write_raw("model.safetensors.index.json", R"({"weight_map":{"a":"../x.safetensors"}})");
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            index + ": maps tensor 'a' to '../x.safetensors', which is not a file in the model folder" + index_damaged);
  write_raw("model.safetensors.index.json", R"({"weight_map":{"a":"/etc/passwd"}})");
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            index + ": maps tensor 'a' to '/etc/passwd', which is not a file in the model folder" + index_damaged);
  write_raw("model.safetensors.index.json", R"({"metadata":{}})");
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }), index + ": has no \"weight_map\" object" + index_damaged);
}

TEST_F(safetensors_test, names_a_folder_without_weights) {
  EXPECT_EQ(error_of([&] { checkpoint::open(dir_); }),
            dir_.string() +
                ": has no model.safetensors, model.safetensors.index.json or *.safetensors file; point --model at "
                "a Hugging Face model folder with safetensors weights");
  EXPECT_EQ(error_of([&] { checkpoint::open(path("nope")); }),
            path("nope").string() + ": no such folder; point --model at a Hugging Face model folder");
}

// ---- the writer refuses what a reader would reject ----

TEST_F(safetensors_test, refuses_to_write_bytes_that_do_not_match_dtype_and_shape) {
  const std::vector<float> w(3);
  const std::vector<tensor_to_write> tensors = {{"w", dtype::f32, {2, 2}, bytes_of(w)}};
  EXPECT_EQ(error_of([&] { write_safetensors(path("m.safetensors"), tensors); }),
            path("m.safetensors").string() +
                ": cannot write tensor 'w': it has 12 bytes, but dtype F32 and shape [2, 2] need 16");
  EXPECT_FALSE(fs::exists(path("m.safetensors")));
}

TEST_F(safetensors_test, refuses_to_write_duplicate_reserved_or_non_utf8_names) {
  const std::vector<float> w(1);
  const std::vector<tensor_to_write> twice = {{"w", dtype::f32, {1}, bytes_of(w)}, {"w", dtype::f32, {1}, bytes_of(w)}};
  EXPECT_EQ(error_of([&] { serialize_safetensors(twice); }), "<memory>: cannot write tensor 'w': the name appears twice");
  const std::vector<tensor_to_write> reserved = {{"__metadata__", dtype::f32, {1}, bytes_of(w)}};
  EXPECT_EQ(error_of([&] { serialize_safetensors(reserved); }),
            "<memory>: cannot write tensor '__metadata__': the name is reserved for the header's metadata");
  const std::vector<tensor_to_write> bad = {{"a\xff", dtype::f32, {1}, bytes_of(w)}};
  EXPECT_EQ(error_of([&] { serialize_safetensors(bad); }), "<memory>: cannot write tensor 'a\\xff': the name is not valid UTF-8");
}

TEST_F(safetensors_test, parses_bytes_in_memory_without_a_file) {
  const std::vector<float> w = {1.5f};
  const std::vector<tensor_to_write> tensors = {{"w", dtype::f32, {1}, bytes_of(w)}};
  const auto bytes = serialize_safetensors(tensors);
  const auto f = safetensors_file::parse(bytes, "in-memory");
  EXPECT_EQ(f.path(), "in-memory");
  float v;
  std::memcpy(&v, f.find("w")->data, 4);
  EXPECT_EQ(v, 1.5f);
  EXPECT_EQ(error_of([&] { safetensors_file::parse(std::span(bytes).first(4), "in-memory"); }),
            "in-memory: file is 4 bytes, shorter than the 8-byte header length" + damaged);
}

// The fuzzer's seeds must mean what their names say, or the fuzzer starts from the wrong places.
TEST_F(safetensors_test, accepts_every_valid_fuzz_seed_and_rejects_every_invalid_one) {
  const fs::path corpus = fs::path(TROUPE_TEST_DATA).parent_path().parent_path() / "fuzz" / "corpus" / "safetensors";
  std::size_t count = 0;
  for (const auto& entry : fs::directory_iterator(corpus)) {
    const std::string name = entry.path().filename().string();
    const std::string error = open_error(entry.path());
    if (name.starts_with("valid_")) {
      EXPECT_EQ(error, "<no error>") << name;
    } else {
      EXPECT_NE(error, "<no error>") << name;
    }
    ++count;
  }
  EXPECT_GE(count, 10u);

  count = 0;
  for (const auto& entry : fs::directory_iterator(corpus.parent_path() / "safetensors_index")) {
    const std::string name = entry.path().filename().string();
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string error = error_of([&] { safetensors_detail::parse_weight_map(text, entry.path()); });
    if (name.starts_with("valid_")) {
      EXPECT_EQ(error, "<no error>") << name;
    } else {
      EXPECT_NE(error, "<no error>") << name;
    }
    ++count;
  }
  EXPECT_GE(count, 5u);
}

} // namespace
} // namespace troupe
