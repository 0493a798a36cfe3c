// The startup check of a multi-process job (runtime/model/job_fingerprint): ranks with the same checkpoint
// agree; a different config, tokenizer or weight file is named with both values; flags compare the same way.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "runtime/model/job_fingerprint.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

class job_fingerprint_test : public ::testing::Test {
protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() / ("troupe_fingerprint_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    for (const char* copy : {"a", "b"})
      fs::copy(fs::path(TROUPE_TEST_DATA) / "reference" / "qwen2_sharded_bf16", root_ / copy, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(root_); }

  static job_fingerprint of(const fs::path& dir) {
    job_fingerprint f;
    f.add("--max-model-len", "256");
    add_checkpoint_identity(f, dir);
    return f;
  }
  fs::path root_;
};

} // namespace

TEST_F(job_fingerprint_test, two_copies_of_one_checkpoint_agree) {
  const job_fingerprint a = of(root_ / "a"), b = of(root_ / "b");
  EXPECT_EQ(first_difference(a, 0, b, 1), "");
  EXPECT_GT(a.items.size(), 5u);  // three json files, the count, and the sharded checkpoint's files
}

TEST_F(job_fingerprint_test, a_changed_config_is_named_with_both_digests) {
  std::ofstream(root_ / "b" / "config.json", std::ios::app) << " ";
  const std::string why = first_difference(of(root_ / "a"), 0, of(root_ / "b"), 1);
  EXPECT_EQ(why.rfind("rank 1 differs from rank 0 in checkpoint config.json: digest ", 0), 0u) << why;
  EXPECT_NE(why.find(" on rank 1, digest "), std::string::npos) << why;
}

TEST_F(job_fingerprint_test, a_weight_file_with_another_header_is_named) {
  fs::path first;
  for (const auto& e : fs::directory_iterator(root_ / "b"))
    if (e.path().extension() == ".safetensors" && (first.empty() || e.path() < first)) first = e.path();
  ASSERT_FALSE(first.empty());
  {
    std::fstream f(first, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);  // inside the header's JSON
    char c = 0;
    f.read(&c, 1);
    f.seekp(10);
    f.put(c == 'a' ? 'b' : 'a');
  }
  const std::string why = first_difference(of(root_ / "a"), 0, of(root_ / "b"), 1);
  EXPECT_EQ(why.rfind("rank 1 differs from rank 0 in checkpoint " + first.filename().string() + ": size ", 0), 0u) << why;
}

TEST_F(job_fingerprint_test, a_missing_weight_file_and_a_flag_are_differences_too) {
  job_fingerprint a = of(root_ / "a"), b = of(root_ / "b");
  b.items[0].second = "512";
  EXPECT_EQ(first_difference(a, 0, b, 3), "rank 3 differs from rank 0 in --max-model-len: 512 on rank 3, 256 on rank 0");
  for (const auto& e : fs::directory_iterator(root_ / "b"))
    if (e.path().extension() == ".safetensors") {
      fs::remove(e.path());
      break;
    }
  const std::string why = first_difference(of(root_ / "a"), 0, of(root_ / "b"), 2);
  EXPECT_NE(why.find("in checkpoint weight files: "), std::string::npos) << why;
}

TEST(job_fingerprint, serializes_and_parses_back_values_with_tabs_and_newlines) {
  job_fingerprint f;
  f.add("a\tb", "line\nnext\\");
  f.add("", "");
  const job_fingerprint back = job_fingerprint::parse(f.serialize());
  EXPECT_EQ(back.items, f.items);
  EXPECT_THROW(job_fingerprint::parse("no tab\n"), std::invalid_argument);
  EXPECT_THROW(job_fingerprint::parse("k\tv"), std::invalid_argument);
}
