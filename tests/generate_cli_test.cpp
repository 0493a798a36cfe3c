// `troupe generate`, `troupe bench throughput` and `troupe make-model` as a user runs them.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/support/run_command.hpp"

namespace fs = std::filesystem;

namespace {

using run_result = troupe::testing::command_result;

run_result run_troupe(const std::string& args) { return troupe::testing::run_command(std::string(TROUPE_BINARY) + " " + args); }

std::string reference_dir(const std::string& name) { return std::string(TROUPE_TEST_DATA) + "/reference/" + name; }

std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

class temp_dir {
public:
  temp_dir() : path_(fs::temp_directory_path() / ("troupe_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++))) {
    fs::create_directories(path_);
  }
  ~temp_dir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

private:
  static inline int counter_ = 0;
  fs::path path_;
};

} // namespace

TEST(generate_cli, greedy_json_output_equals_the_transformers_continuation) {
  std::ifstream in(reference_dir("qwen2_sharded_bf16") + "/reference.json");
  const auto ref = nlohmann::json::parse(in);
  const auto prompt = ref["prompts"][2].get<std::vector<int32_t>>();
  const auto expected = ref["greedy"][2].get<std::vector<int32_t>>();
  const auto r = run_troupe("generate --model " + reference_dir("qwen2_sharded_bf16") + " --prompt-token-ids " +
                            join(prompt) + " --max-tokens 32 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["prompt_token_ids"].get<std::vector<int32_t>>(), prompt);
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), expected);
  EXPECT_EQ(j["finish_reason"], "length");
}

TEST(generate_cli, a_seeded_sampled_run_repeats_exactly_and_another_seed_differs) {
  const std::string args = "generate --model " + reference_dir("llama_f32") +
                           " --prompt-token-ids 5,6,7,8 --max-tokens 24 --temperature 1.0 --ignore-eos --json --seed ";
  const auto a = run_troupe(args + "7"), b = run_troupe(args + "7"), c = run_troupe(args + "8");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["token_ids"], nlohmann::json::parse(b.out)["token_ids"]);
  EXPECT_NE(nlohmann::json::parse(a.out)["token_ids"], nlohmann::json::parse(c.out)["token_ids"]);
}

TEST(generate_cli, make_model_writes_a_folder_that_generate_reads_from_text) {
  temp_dir dir;
  const auto made = run_troupe("make-model --out " + dir.path().string() +
                               " --architecture llama --hidden-size 32 --num-layers 2 --num-heads 4 --num-kv-heads 1"
                               " --intermediate-size 64 --max-shard-bytes 20000 --dtype float32");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_TRUE(fs::exists(dir.path() / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir.path() / "tokenizer.json"));
  const auto r = run_troupe("generate --model " + dir.path().string() +
                            " --prompt 'Hello world' --max-tokens 8 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["token_ids"].size(), 8u);
  EXPECT_FALSE(j["prompt_token_ids"].empty());
}

TEST(generate_cli, takes_the_generation_configs_defaults_for_the_flags_not_given) {
  temp_dir config;
  std::ofstream(config.path() / "generation_config.json") << R"({"temperature": 0.0, "max_new_tokens": 3})";
  const std::string base = "generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 5,6,7,8 --ignore-eos --json --seed 7";
  const auto token_ids = [](const run_result& r) { return nlohmann::json::parse(r.out)["token_ids"].get<std::vector<int32_t>>(); };
  const auto defaults = run_troupe(base + " --generation-config " + config.path().string());
  ASSERT_EQ(defaults.exit_code, 0) << defaults.err;
  const auto greedy = run_troupe(base + " --max-tokens 3 --temperature 0");  // the reference folder's config has no defaults
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  EXPECT_EQ(token_ids(defaults), token_ids(greedy));  // temperature 0 and 3 tokens, from the file
  EXPECT_NE(defaults.err.find("default sampling parameters, from the generation config: temperature=0, max_tokens=3"),
            std::string::npos)
      << defaults.err;
  // Flags given win; the override goes over the file; vllm reads none.
  const auto flags = run_troupe(base + " --generation-config " + config.path().string() + " --max-tokens 5 --temperature 1");
  const auto sampled = run_troupe(base + " --max-tokens 5 --temperature 1");
  EXPECT_EQ(token_ids(flags), token_ids(sampled));
  const auto longer_greedy = run_troupe(base + " --max-tokens 5 --temperature 0");
  EXPECT_NE(token_ids(flags), token_ids(longer_greedy));
  const auto overridden = run_troupe(base + " --generation-config " + config.path().string() +
                                     R"( --override-generation-config '{"max_new_tokens": 2}')");
  EXPECT_EQ(token_ids(overridden).size(), 2u);
  EXPECT_EQ(token_ids(run_troupe(base + " --generation-config vllm")).size(), 16u);  // --max-tokens' own default
}

TEST(bench_cli, throughput_takes_the_generation_configs_sampling_but_keeps_its_output_length) {
  temp_dir config;
  std::ofstream(config.path() / "generation_config.json") << R"({"temperature": 0.0, "max_new_tokens": 1})";
  const std::string report = (config.path() / "report.json").string();
  const std::string base = "bench throughput --model " + reference_dir("llama_f32") +
                           " --num-prompts 2 --input-len 4 --output-len 3 --output-json " + report +
                           " --generation-config " + config.path().string();
  const auto read_report = [&] {
    std::ifstream in(report);
    return nlohmann::json::parse(in);
  };
  const auto r = run_troupe(base);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = read_report();
  EXPECT_EQ(j["temperature"], 0.0);
  EXPECT_EQ(std::lround(j["tokens_per_step"].get<double>() * j["num_steps"].get<double>()), 2 * 4 + 2 * 3);
  ASSERT_EQ(run_troupe(base + " --temperature 0.5").exit_code, 0);
  EXPECT_EQ(read_report()["temperature"], 0.5);

  // Not asked: the model's own generation_config.json is left alone, as vLLM's bench (temperature 1) does.
  temp_dir model;
  for (const auto& entry : fs::directory_iterator(reference_dir("llama_f32")))
    fs::copy_file(entry.path(), model.path() / entry.path().filename());
  fs::copy_file(config.path() / "generation_config.json", model.path() / "generation_config.json",
                fs::copy_options::overwrite_existing);
  ASSERT_EQ(run_troupe("bench throughput --model " + model.path().string() +
                       " --num-prompts 2 --input-len 4 --output-len 3 --output-json " + report).exit_code, 0);
  EXPECT_EQ(read_report()["temperature"], 1.0);
  ASSERT_EQ(run_troupe("bench throughput --model " + model.path().string() +
                       " --num-prompts 2 --input-len 4 --output-len 3 --generation-config auto --output-json " + report)
                .exit_code, 0);
  EXPECT_EQ(read_report()["temperature"], 0.0);
}

TEST(generate_cli, dummy_weights_need_only_the_config) {
  temp_dir dir;
  fs::copy_file(reference_dir("llama_f32") + "/config.json", dir.path() / "config.json");
  const auto r = run_troupe("generate --model " + dir.path().string() +
                            " --load-format dummy --prompt-token-ids 1,2,3 --max-tokens 4 --ignore-eos --json --seed 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["token_ids"].size(), 4u);
}

TEST(generate_cli, a_truncated_checkpoint_gives_one_error_line_and_exit_code_1) {
  temp_dir dir;
  for (const char* f : {"config.json", "generation_config.json"})
    fs::copy_file(reference_dir("llama_f32") + "/" + f, dir.path() / f);
  fs::copy_file(reference_dir("llama_f32") + "/model.safetensors", dir.path() / "model.safetensors");
  fs::resize_file(dir.path() / "model.safetensors", fs::file_size(dir.path() / "model.safetensors") / 2);
  const auto r = run_troupe("generate --model " + dir.path().string() + " --prompt-token-ids 1,2,3 --json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(generate_cli, bad_flags_say_what_to_change) {
  const auto no_prompt = run_troupe("generate --model " + reference_dir("llama_f32"));
  EXPECT_EQ(no_prompt.exit_code, 1);
  EXPECT_NE(no_prompt.err.find("give exactly one of --prompt TEXT, --prompt-token-ids 1,2,3, --prompts-file FILE or "
                               "--num-prompts N --input-len L"),
            std::string::npos)
      << no_prompt.err;
  const auto bad_ids = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1,x");
  EXPECT_EQ(bad_ids.exit_code, 1);
  EXPECT_NE(bad_ids.err.find("'x' is not a token id"), std::string::npos) << bad_ids.err;
  const auto big_id = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 99999");
  EXPECT_NE(big_id.err.find("Token id 99999 is out of vocabulary (vocabulary size 384)"), std::string::npos) << big_id.err;
  const auto temp = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1 --temperature -1");
  EXPECT_EQ(temp.exit_code, 1);
  EXPECT_NE(temp.err.find("temperature"), std::string::npos) << temp.err;
  const auto kv = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1 --kv-cache-dtype fp16");
  EXPECT_EQ(kv.exit_code, 1);
  EXPECT_NE(kv.err.find("[error] --kv-cache-dtype must be auto, fp8, fp8_e4m3 or fp8_e5m2, got 'fp16'\n"), std::string::npos)
      << kv.err;
  EXPECT_EQ(std::count(kv.err.begin(), kv.err.end(), '\n'), 1) << kv.err;
  const auto missing = run_troupe("generate --model /nonexistent/model --prompt-token-ids 1");
  EXPECT_NE(missing.err.find("/nonexistent/model: no such folder"), std::string::npos) << missing.err;
}

// A KV cache larger than the machine (found on the H200: a cache planned on memory another process gave back died
// in its allocation; on the CPU the same flag aborted in std::bad_alloc): one error line with the figures, exit 1.
TEST(generate_cli, a_kv_cache_too_large_for_memory_or_for_block_ids_says_which_flag_to_lower) {
  const std::string base = "generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1,2 --max-tokens 2";
  const auto huge = run_troupe(base + " --num-gpu-blocks-override 2000000000");
  EXPECT_EQ(huge.exit_code, 1);
  EXPECT_NE(huge.err.find("[error] a KV cache of 2000000000 blocks of 16 tokens ("), std::string::npos) << huge.err;
  EXPECT_NE(huge.err.find("does not fit in the cpu backend's memory: lower --num-gpu-blocks-override"), std::string::npos)
      << huge.err;
  EXPECT_EQ(std::count(huge.err.begin(), huge.err.end(), '\n'), 1) << huge.err;
  const auto ids = run_troupe(base + " --num-gpu-blocks-override 3000000000");
  EXPECT_EQ(ids.exit_code, 1);
  EXPECT_NE(ids.err.find("--num-gpu-blocks-override must be between 1 and 2147483647"), std::string::npos) << ids.err;
  const auto memory = run_troupe(base + " --kv-cache-memory 9000000000000000000");
  EXPECT_EQ(memory.exit_code, 1);
  EXPECT_NE(memory.err.find("more than the 2147483647 a block table can name"), std::string::npos) << memory.err;
  // What fits still runs.
  const auto fits = run_troupe(base + " --num-gpu-blocks-override 64 --json");
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
}

TEST(generate_cli, a_prompts_file_gives_one_json_line_per_prompt_in_order) {
  temp_dir dir;
  std::ofstream(dir.path() / "prompts.txt") << "Hello world\nThe quick brown fox\n\nOnce upon a time\n";
  const auto r = run_troupe("generate --prompts-file " + (dir.path() / "prompts.txt").string() +
                            " --max-tokens 5 --temperature 0 --ignore-eos --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> objects;
  for (std::string line; std::getline(lines, line);) objects.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(objects.size(), 3u);
  // The same prompt alone gives the same tokens as inside the batch.
  const auto alone = run_troupe("generate --prompt 'The quick brown fox' --max-tokens 5 --temperature 0 --ignore-eos --json");
  EXPECT_EQ(objects[1]["token_ids"], nlohmann::json::parse(alone.out)["token_ids"]);
  for (const auto& o : objects) EXPECT_EQ(o["token_ids"].size(), 5u);
}

// A prompt one token over the step budget, and one many times it, as the only request: the steps
// that prefill them sample nothing (the issue-9 crash); the output equals the unchunked run's.
TEST(generate_cli, prompts_over_the_step_budget_give_the_unchunked_output) {
  for (const int len : {17, 100}) {
    std::vector<int32_t> ids(static_cast<size_t>(len));
    for (int i = 0; i < len; ++i) ids[i] = (i * 31 + 7) % 250;
    const std::string args = "generate --model " + reference_dir("llama_f32") + " --prompt-token-ids " + join(ids) +
                             " --temperature 0 --max-tokens 8 --json";
    const run_result whole = run_troupe(args);
    const run_result chunked = run_troupe(args + " --max-num-batched-tokens 16");
    ASSERT_EQ(whole.exit_code, 0) << whole.err;
    ASSERT_EQ(chunked.exit_code, 0) << chunked.err;
    const auto expected = nlohmann::json::parse(whole.out), got = nlohmann::json::parse(chunked.out);
    EXPECT_EQ(expected["token_ids"].size(), 8u);
    EXPECT_EQ(got["token_ids"], expected["token_ids"]) << "prompt of " << len;
  }
}

// -tp N splits the model over N CPU shards (threads joined by the thread communicator): greedy and seeded
// sampled outputs equal one shard's, with a checkpoint's slices read by each shard and with dummy weights
// each shard makes alone; prompts chunked over several steps included.
TEST(generate_cli, tensor_parallel_shards_give_the_single_shard_output) {
  std::vector<int32_t> ids(40);
  for (int i = 0; i < 40; ++i) ids[i] = (i * 13 + 5) % 300;
  temp_dir dummy;
  fs::copy_file(reference_dir("llama3_rope_bf16") + "/config.json", dummy.path() / "config.json");
  const std::vector<std::string> runs = {
      "generate --model " + reference_dir("qwen2_sharded_bf16") + " --temperature 0",
      "generate --model " + reference_dir("mistral_head_dim") + " --temperature 0.8 --top-k 50 --seed 11",
      "generate --model " + dummy.path().string() + " --load-format dummy --seed 3 --temperature 0"};
  for (const auto& run : runs) {
    const std::string args = run + " --prompt-token-ids " + join(ids) +
                             " --max-tokens 12 --ignore-eos --json --max-num-batched-tokens 16";
    const run_result one = run_troupe(args);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const auto expected = nlohmann::json::parse(one.out)["token_ids"];
    EXPECT_EQ(expected.size(), 12u);
    for (const std::string tp : {"--tensor-parallel-size 2", "-tp 4"}) {
      const run_result split = run_troupe(args + " " + tp);
      ASSERT_EQ(split.exit_code, 0) << split.err;
      EXPECT_EQ(nlohmann::json::parse(split.out)["token_ids"], expected) << run << " " << tp;
    }
  }
}

TEST(generate_cli, a_tensor_parallel_size_the_heads_cannot_take_names_the_sizes_that_can) {
  const auto r = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1,2 -tp 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--tensor-parallel-size 3 does not divide the 4 attention heads of this model; 1, 2 or 4 would"),
            std::string::npos)
      << r.err;
  const auto zero = run_troupe("generate --model " + reference_dir("llama_f32") + " --prompt-token-ids 1,2 -tp 0");
  EXPECT_NE(zero.exit_code, 0);
  EXPECT_NE(zero.err.find("--tensor-parallel-size"), std::string::npos) << zero.err;
}
