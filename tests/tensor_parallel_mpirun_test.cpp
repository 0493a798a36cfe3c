// `mpirun -np N troupe ... --tensor-parallel-size N`: one process per CPU shard. The outputs equal one
// process's; ranks that disagree refuse to start; a rank that dies or stalls mid-generation is reported
// within 30 s, with an error to the request in flight and a non-zero exit — never a hang.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/quantized_copy.hpp"
#include "tests/support/raw_http.hpp"
#include "tests/support/run_command.hpp"
#include "tests/support/server_process.hpp"

namespace fs = std::filesystem;
using troupe::testing::raw_connection;
using troupe::testing::server_process;

namespace {

// Open MPI refuses to start as root unless told it may; CI's containers run as root.
const char* const allow_root = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ";

using run_result = troupe::testing::command_result;
using troupe::testing::run_command;

std::string mpirun(int np) {
  return std::string(allow_root) + TROUPE_MPIEXEC + " -np " + std::to_string(np) + " --oversubscribe ";
}

std::string reference_dir(const std::string& name) { return std::string(TROUPE_TEST_DATA) + "/reference/" + name; }

// The pid of the process of `rank` among the children of `launcher` (mpirun forks the local ranks).
pid_t rank_pid(pid_t launcher, int rank) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string pid, comm, state;
    pid_t ppid = 0;
    stat >> pid >> comm >> state >> ppid;
    if (ppid != launcher) continue;
    std::ifstream env(entry.path() / "environ");
    const std::string vars((std::istreambuf_iterator<char>(env)), {});
    if (vars.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') != std::string::npos)
      return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

// A streaming completion long enough to still be running when a rank is taken away; returns once its
// first tokens came.
std::unique_ptr<raw_connection> start_long_stream(uint16_t port) {
  auto c = std::make_unique<raw_connection>(port);
  const std::string body = R"({"prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": true, "stream": true})";
  c->send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_TRUE(c->wait_for_bytes(std::chrono::seconds(20)));
  return c;
}

} // namespace

// Every reference checkpoint greedily (KV heads split at 2 processes, replicated at 4; llama3's q/k/v/o
// biases, qwen2's tied embeddings), and one with seeded sampling; prompts chunked over several steps.
TEST(mpirun, two_and_four_processes_give_one_processs_tokens) {
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"llama_f32", " --temperature 0"},
      {"llama3_rope_bf16", " --temperature 0"},
      {"qwen2_sharded_bf16", " --temperature 0"},
      {"mistral_head_dim", " --temperature 0"},
      {"mistral_head_dim", " --temperature 0.9 --top-p 0.9 --seed 4"}};
  for (const auto& [checkpoint, sampling] : runs) {
    const std::string args = " generate --model " + reference_dir(checkpoint) +
                             " --prompt-token-ids 5,17,33,2,99,150,7,8,61,300,12,4 --max-tokens 16 --ignore-eos --json"
                             " --max-num-batched-tokens 8" + sampling;
    const run_result one = run_command(std::string(TROUPE_BINARY) + args);
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const auto expected = nlohmann::json::parse(one.out)["token_ids"];
    ASSERT_EQ(expected.size(), 16u);
    for (const int np : {2, 4}) {
      const run_result split = run_command(mpirun(np) + TROUPE_BINARY + args + " --tensor-parallel-size " + std::to_string(np));
      ASSERT_EQ(split.exit_code, 0) << split.err;
      // Only rank 0 prints the result.
      EXPECT_EQ(nlohmann::json::parse(split.out)["token_ids"], expected) << checkpoint << ", " << np << " processes," << sampling;
    }
  }
}

// Issue 17's launch on the CPU: eight processes, one per shard, as eight GPUs over nodes would run, on a
// model whose 8 query heads allow it (dummy weights, which every split makes alike), give one process's tokens.
TEST(mpirun, eight_processes_give_one_processs_tokens) {
  troupe::testing::temp_folder dir("tp8_shape");
  std::ofstream(dir.path() / "config.json")
      << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 192, "vocab_size": 500,
             "max_position_embeddings": 512, "torch_dtype": "float32"})";
  const std::string args = " generate --model " + dir.path().string() +
                           " --load-format dummy --prompt-token-ids 5,17,33,2,99,150,7,8,61,300,12,4 --max-tokens 12"
                           " --ignore-eos --json --temperature 0 --max-num-batched-tokens 8";
  const run_result one = run_command(std::string(TROUPE_BINARY) + args);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto expected = nlohmann::json::parse(one.out)["token_ids"];
  ASSERT_EQ(expected.size(), 12u);
  const run_result split = run_command(mpirun(8) + TROUPE_BINARY + args + " --tensor-parallel-size 8");
  ASSERT_EQ(split.exit_code, 0) << split.err;
  EXPECT_EQ(nlohmann::json::parse(split.out)["token_ids"], expected);
}

TEST(mpirun, a_rank_with_another_checkpoint_is_refused_naming_the_difference) {
  const std::string common = " generate --prompt-token-ids 1,2 --tensor-parallel-size 2";
  const run_result r = run_command(std::string(allow_root) + TROUPE_MPIEXEC + " --oversubscribe -np 1 " + TROUPE_BINARY +
                           common + " --model " + reference_dir("llama_f32") + " : -np 1 " + TROUPE_BINARY + common +
                           " --model " + reference_dir("mistral_head_dim"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the ranks of this mpirun job disagree: rank 1 differs from rank 0 in checkpoint config.json: "
                       "digest "),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");  // nothing was generated
}

TEST(mpirun, a_process_count_other_than_the_tensor_parallel_size_is_refused) {
  const run_result r = run_command(mpirun(2) + TROUPE_BINARY + " generate --model " + reference_dir("llama_f32") +
                           " --prompt-token-ids 1,2 --tensor-parallel-size 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("mpirun started 2 processes but --tensor-parallel-size is 4: start one process per shard "
                       "(mpirun -np 4)"),
            std::string::npos)
      << r.err;
}

TEST(mpirun, a_rank_killed_mid_generation_fails_the_request_and_ends_the_job_within_30_s) {
  const fs::path err = fs::temp_directory_path() / ("troupe_mpirun_kill_" + std::to_string(::getpid()));
  server_process server("--client-port -1 --tensor-parallel-size 2 2>" + err.string(), allow_root,
                        std::string(TROUPE_MPIEXEC) + " -np 2 --oversubscribe");
  auto stream = start_long_stream(server.http_port());
  const pid_t victim = rank_pid(server.pid(), 1);
  ASSERT_GT(victim, 0);
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(victim, SIGKILL);

  EXPECT_TRUE(stream->closed_by_server(std::chrono::seconds(30)));
  const int code = server.wait();
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, std::chrono::seconds(30));
  EXPECT_NE(code, 0);
  // The request in flight got an error event, not a silent end.
  EXPECT_NE(stream->buffered().find(R"("error":{"message":"the tensor-parallel job is ending)"), std::string::npos)
      << stream->buffered().substr(stream->buffered().size() > 600 ? stream->buffered().size() - 600 : 0);
  std::ifstream in(err);
  const std::string log((std::istreambuf_iterator<char>(in)), {});
  fs::remove(err);
  EXPECT_NE(log.find("process rank 1"), std::string::npos) << log;  // mpirun names the rank that died
}

TEST(mpirun, a_rank_that_stalls_is_reported_after_the_distributed_timeout_with_health_503_and_exit_3) {
  const fs::path err = fs::temp_directory_path() / ("troupe_mpirun_stall_" + std::to_string(::getpid()));
  server_process server("--client-port -1 --tensor-parallel-size 2 --distributed-timeout 2 2>" + err.string(),
                        allow_root, std::string(TROUPE_MPIEXEC) + " -np 2 --oversubscribe");
  auto stream = start_long_stream(server.http_port());
  const pid_t victim = rank_pid(server.pid(), 1);
  ASSERT_GT(victim, 0);
  const auto stopped_at = std::chrono::steady_clock::now();
  ::kill(victim, SIGSTOP);  // alive, but never enters another collective

  const auto deadline = stopped_at + std::chrono::seconds(30);
  while (stream->buffered().find("a tensor-parallel rank died or a collective stalled") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline && !stream->closed_by_server(std::chrono::milliseconds(50))) {
  }
  EXPECT_NE(stream->buffered().find("a tensor-parallel rank died or a collective stalled"), std::string::npos)
      << stream->buffered().substr(stream->buffered().size() > 600 ? stream->buffered().size() - 600 : 0);
  // The process lingers a second so that errors reach their clients; meanwhile /health says it is down.
  raw_connection probe(server.http_port());
  probe.send(troupe::testing::http_request("GET", "/health"));
  const auto health = probe.read_response();
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 503);
  const int code = server.wait();
  EXPECT_LT(std::chrono::steady_clock::now() - stopped_at, std::chrono::seconds(30));
  EXPECT_NE(code, 0);
  std::ifstream in(err);
  const std::string log((std::istreambuf_iterator<char>(in)), {});
  fs::remove(err);
  EXPECT_NE(log.find("did not finish within 2.00 s: a tensor-parallel rank died or a collective stalled"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("Exit code:    3"), std::string::npos) << log;  // mpirun reports rank 0's exit code
}
