// vLLM's --generation-config and --override-generation-config: which sampling defaults a server takes from
// a model's generation_config.json, another folder's, none, and an override on top.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "runtime/error.hpp"
#include "runtime/model/generation_config.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

// A temporary folder holding one generation_config.json with `json`, removed at the end.
class config_folder {
public:
  explicit config_folder(const std::string& json) : dir_(fs::temp_directory_path() / ("troupe_gen_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    fs::create_directories(dir_);
    if (!json.empty()) std::ofstream(dir_ / "generation_config.json") << json;
  }
  ~config_folder() { fs::remove_all(dir_); }
  const fs::path& path() const { return dir_; }

private:
  static inline int counter_ = 0;
  fs::path dir_;
};

std::string error_of(const fs::path& dir, const std::string& mode, const std::string& override_json) {
  try {
    resolve_generation_defaults(dir, mode, override_json);
  } catch (const user_error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(generation_config, auto_takes_the_models_sampling_defaults_and_max_new_tokens) {
  config_folder model(R"({"do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0,
                          "repetition_penalty": 1.05, "max_new_tokens": 300, "eos_token_id": [1, 2]})");
  const generation_defaults d = resolve_generation_defaults(model.path(), "auto", "");
  EXPECT_EQ(d.temperature, 0.6);
  EXPECT_EQ(d.top_p, 0.95);
  EXPECT_EQ(d.top_k, 20);
  EXPECT_EQ(d.min_p, 0.0);
  EXPECT_EQ(d.repetition_penalty, 1.05);
  EXPECT_EQ(d.max_tokens, 300);
  EXPECT_EQ(d.describe(), "repetition_penalty=1.05, temperature=0.6, top_k=20, top_p=0.95, min_p=0, max_tokens=300");
}

TEST(generation_config, values_equal_to_transformers_defaults_are_no_defaults_as_to_diff_dict_drops_them) {
  config_folder model(R"({"temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0})");
  EXPECT_TRUE(resolve_generation_defaults(model.path(), "auto", "").empty());
}

TEST(generation_config, vllm_ignores_the_models_file_and_a_folder_supplies_its_own) {
  config_folder model(R"({"temperature": 0.6})");
  config_folder other(R"({"temperature": 0.3, "top_k": 5})");
  EXPECT_TRUE(resolve_generation_defaults(model.path(), "vllm", "").empty());
  const generation_defaults d = resolve_generation_defaults(model.path(), other.path().string(), "");
  EXPECT_EQ(d.temperature, 0.3);
  EXPECT_EQ(d.top_k, 5);
  // A folder without the file (and a model without one) gives no defaults.
  config_folder bare("");
  EXPECT_TRUE(resolve_generation_defaults(model.path(), bare.path().string(), "").empty());
  EXPECT_TRUE(resolve_generation_defaults(bare.path(), "auto", "").empty());
}

TEST(generation_config, the_override_is_merged_on_top_a_null_removing_a_key_even_under_vllm) {
  config_folder model(R"({"temperature": 0.6, "top_p": 0.95})");
  const generation_defaults d =
      resolve_generation_defaults(model.path(), "auto", R"({"temperature": 0.2, "top_p": null, "top_k": 50})");
  EXPECT_EQ(d.temperature, 0.2);
  EXPECT_FALSE(d.top_p.has_value());
  EXPECT_EQ(d.top_k, 50);  // the override's value counts even where it equals transformers' default
  EXPECT_EQ(resolve_generation_defaults(model.path(), "vllm", R"({"max_new_tokens": 7})").max_tokens, 7);
}

TEST(generation_config, an_offline_run_takes_the_defaults_of_the_flags_it_was_not_given) {
  config_folder model(R"({"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.1, "repetition_penalty": 1.05,
                          "max_new_tokens": 300})");
  const generation_defaults all = resolve_generation_defaults(model.path(), "auto", "");
  const generation_defaults none_given = defaults_for_flags_not_given(all, [](std::string_view) { return false; });
  EXPECT_EQ(none_given.describe(), all.describe());
  const generation_defaults some_given = defaults_for_flags_not_given(
      all, [](std::string_view flag) { return flag == "--temperature" || flag == "--max-tokens" || flag == "--top-k"; });
  EXPECT_EQ(some_given.describe(), "repetition_penalty=1.05, top_p=0.95, min_p=0.1");
  EXPECT_TRUE(defaults_for_flags_not_given(all, [](std::string_view) { return true; }).empty());
}

TEST(generation_config, a_missing_folder_a_non_number_or_bad_json_is_refused_naming_the_flag_or_file) {
  config_folder model(R"({"temperature": "hot"})");
  EXPECT_EQ(error_of(model.path(), "/no/such/folder", ""),
            "--generation-config /no/such/folder: no such folder (give auto, vllm, or a folder holding "
            "generation_config.json)");
  EXPECT_EQ(error_of(model.path(), "auto", ""),
            (model.path() / "generation_config.json").string() + ": temperature must be a number, got \"hot\"");
  EXPECT_EQ(error_of(model.path(), "vllm", "temperature=0.5"),
            "--override-generation-config must be a JSON object, as '{\"temperature\": 0.5}', got 'temperature=0.5'");
  EXPECT_EQ(error_of(model.path(), "vllm", R"({"top_k": 2.5})"),
            "--override-generation-config: top_k must be an integer, got 2.5");
}

} // namespace
} // namespace troupe
