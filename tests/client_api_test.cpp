// The native client API against a real `troupe serve` process over loopback.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <troupe/client.hpp>

namespace {

// A `troupe serve` child process; learns its port from the line it prints when ready.
class server_process {
public:
  explicit server_process(const std::string& extra_args = "") {
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      const std::string cmd = std::string("exec ") + TROUPE_BINARY +
                              " serve --host 127.0.0.1 --port 0 --client-port 0 --max-num-seqs 64 " + extra_args;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
    char line[512];
    while (std::fgets(line, sizeof line, out_)) {
      unsigned port = 0;
      if (std::sscanf(line, "troupe: native client API listening on 127.0.0.1:%u", &port) == 1) {
        port_ = static_cast<uint16_t>(port);
        break;
      }
    }
    if (port_ == 0) throw std::runtime_error("troupe serve did not start");
  }
  ~server_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_) std::fclose(out_);
  }
  uint16_t port() const { return port_; }
  // Sends SIGTERM and returns the exit code.
  int terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  uint16_t port_ = 0;
};

} // namespace

TEST(client_api, the_example_completes_90_jobs_cancels_10_and_the_block_pool_returns_to_its_start) {
  server_process server;
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
  server_process server;
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
  server_process server("--max-model-len 64");
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
  server_process server;
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
