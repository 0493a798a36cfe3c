// The native client API against a real `troupe serve` process over loopback.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <troupe/client.hpp>

#include "tests/support/server_process.hpp"

using troupe::testing::server_process;

TEST(client_api, the_example_completes_90_jobs_cancels_10_and_the_block_pool_returns_to_its_start) {
  server_process server("--max-num-seqs 64");
  const std::string cmd = std::string(TROUPE_EXAMPLES_DIR) + "/client_jobs 127.0.0.1 " + std::to_string(server.port());
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  const int status = ::pclose(pipe);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("completed 90, cancelled 10, other 0"), std::string::npos) << out;
  // Checked again here, from a client of our own.
  auto c = troupe::client::connect("127.0.0.1", server.port());
  const auto s = c->stats();
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_free_blocks, s.num_blocks);
  EXPECT_EQ(server.terminate(), 0);
}

TEST(client_api, streams_tokens_as_events_and_the_result_equals_their_sum) {
  server_process server("--max-num-seqs 64");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::job j;
  j.prompt = "Hello";
  j.max_tokens = 12;
  j.ignore_eos = true;
  j.temperature = 0;
  std::vector<int32_t> streamed;
  std::string text;
  const uint64_t id = c->submit(j, [&](const troupe::job_event& e) {
    streamed.insert(streamed.end(), e.token_ids.begin(), e.token_ids.end());
    text += e.text;
  });
  const troupe::job_result r = c->wait(id);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.token_ids.size(), 12u);
  EXPECT_EQ(streamed, r.token_ids);
  EXPECT_EQ(text, r.text);
  EXPECT_GT(r.num_prompt_tokens, 0);
}

TEST(client_api, a_refused_job_throws_the_servers_reason) {
  server_process server("--max-num-seqs 64 --max-model-len 64");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::job j;
  j.prompt_token_ids = std::vector<int32_t>(100, 5);
  try {
    c->submit(j);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()),
              "The prompt (total length 100) is too long to fit into the model (context length 64). Make sure that "
              "`max_model_len` is no smaller than the number of text tokens.");
  }
  j.prompt_token_ids = {1, 2, 3};
  j.temperature = -1;
  EXPECT_THROW(c->submit(j), std::runtime_error);
  j.temperature = 0;
  EXPECT_EQ(c->wait(c->submit(j)).finish_reason.empty(), false);  // the server still serves
}

TEST(client_api, a_client_that_vanishes_has_its_jobs_aborted_and_their_blocks_freed) {
  server_process server("--max-num-seqs 64");
  {
    auto vanishing = troupe::client::connect("127.0.0.1", server.port());
    troupe::job j;
    j.prompt = "A long story";
    j.max_tokens = 100000;
    j.ignore_eos = true;
    for (int i = 0; i < 8; ++i) vanishing->submit(j);
  }  // disconnects with 8 jobs running
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::server_stats s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    s = c->stats();
  } while ((s.num_running > 0 || s.num_free_blocks != s.num_blocks) && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_free_blocks, s.num_blocks);
}

TEST(client_api, connecting_where_no_server_listens_says_where) {
  try {
    troupe::client::connect("127.0.0.1", 1);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("cannot reach a troupe server at 127.0.0.1:1", 0), 0u) << e.what();
  }
}
