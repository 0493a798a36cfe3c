// The native client API against a real `troupe serve` process over loopback: jobs, keys and tenants,
// admission, hostile clients, the port's address, and shutdown.

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <troupe/client.hpp>

#include "client/wire.hpp"
#include "tests/support/server_process.hpp"

using troupe::testing::server_process;
using troupe::testing::shell;
using clock_type = std::chrono::steady_clock;

namespace {

troupe::client_options with_key(const std::string& key) {
  troupe::client_options o;
  o.api_key = key;
  return o;
}

troupe::job long_job() {
  troupe::job j;
  j.prompt_token_ids = {1, 2, 3};
  j.max_tokens = 100000;
  j.ignore_eos = true;
  return j;
}

troupe::job short_job(int32_t max_tokens) {
  troupe::job j;
  j.prompt_token_ids = {1, 2, 3};
  j.max_tokens = max_tokens;
  j.ignore_eos = true;
  j.temperature = 0;
  return j;
}

// Waits (up to 30 s) until a job has streamed its first tokens.
class first_tokens {
public:
  std::function<void(const troupe::job_event&)> on_event() {
    return [this](const troupe::job_event&) {
      std::lock_guard lock(mutex_);
      seen_ = true;
      cv_.notify_all();
    };
  }
  bool wait() {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return seen_; });
  }

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool seen_ = false;
};

std::string refusal_of(troupe::client& c, const troupe::job& j, std::string* type = nullptr) {
  try {
    c.submit(j);
  } catch (const troupe::job_refused& e) {
    if (type) *type = e.type;
    return e.what();
  }
  return "admitted";
}

std::string connect_error(uint16_t port, const troupe::client_options& o) {
  try {
    troupe::client::connect("127.0.0.1", port, o);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "connected";
}

std::filesystem::path write_tenants(const std::string& name, const std::string& json) {
  const auto path = std::filesystem::temp_directory_path() / ("troupe_client_api_" + name + "_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << json;
  return path;
}

// A raw TCP connection to the native port, for clients that do not follow the protocol.
class raw_socket {
public:
  explicit raw_socket(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~raw_socket() { ::close(fd_); }
  void send(const std::vector<char>& bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  // The server's next message, as text: "error: ...", "welcome", "eof" (closed), "other".
  std::string next() {
    char header[4];
    if (!read(header, 4)) return "eof";
    const auto n = troupe::wire::frame_length(std::span<const char, 4>(header, 4));
    if (!n) return "bad frame";
    std::vector<char> body(*n);
    if (!read(body.data(), body.size())) return "eof";
    const auto m = troupe::wire::parse_server_message(body);
    if (auto* e = std::get_if<troupe::wire::error>(&m)) return "error: " + e->message;
    if (std::holds_alternative<troupe::wire::welcome>(m)) return "welcome";
    return "other";
  }

private:
  bool read(char* p, size_t n) {
    while (n > 0) {
      const ssize_t got = ::recv(fd_, p, n, 0);
      if (got <= 0) return false;
      p += got;
      n -= static_cast<size_t>(got);
    }
    return true;
  }
  int fd_;
};

std::vector<char> bytes(std::initializer_list<int> values) {
  std::vector<char> out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

// GET /health: the status and the seconds it took.
std::pair<std::string, double> health(const server_process& s) {
  const std::string out = shell("curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total}' " + s.url("/health"));
  std::istringstream in(out);
  std::string code;
  double seconds = 99;
  in >> code >> seconds;
  return {code, seconds};
}

int64_t vm_peak_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmPeak:", 0) == 0) return std::stoll(line.substr(7));
  return -1;
}

// The addresses a process listens on over TCP, as "127.0.0.1:8001" (IPv4 sockets only).
std::set<std::string> listening(pid_t pid) {
  std::set<std::string> inodes;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<std::string> out;
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // header
  while (std::getline(tcp, line)) {
    std::istringstream in(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    in >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
    if (state != "0A" || !inodes.count(inode)) continue;  // 0A: LISTEN
    const uint32_t ip = static_cast<uint32_t>(std::stoul(local.substr(0, 8), nullptr, 16));
    const unsigned port = static_cast<unsigned>(std::stoul(local.substr(9), nullptr, 16));
    char text[INET_ADDRSTRLEN];
    in_addr a{ip};  // /proc prints the address as a host-order word of the network-order bytes
    ::inet_ntop(AF_INET, &a, text, sizeof text);
    out.insert(std::string(text) + ":" + std::to_string(port));
  }
  return out;
}

std::string at(const std::string& host, uint16_t port) { return host + ":" + std::to_string(port); }

} // namespace

TEST(client_api, the_example_with_its_key_completes_90_jobs_cancels_10_and_the_block_pool_returns_to_its_start) {
  server_process server("--max-num-seqs 64 --api-key sesame");
  int exit_code = -1;
  const std::string out = shell(std::string(TROUPE_EXAMPLES_DIR) + "/client_jobs 127.0.0.1 " + std::to_string(server.port()) +
                                    " --api-key sesame 2>&1",
                                &exit_code);
  EXPECT_EQ(exit_code, 0) << out;
  EXPECT_NE(out.find("completed 90, cancelled 10, other 0"), std::string::npos) << out;
  // Checked again here, from a client of our own.
  auto c = troupe::client::connect("127.0.0.1", server.port(), with_key("sesame"));
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

TEST(client_api, a_job_carries_logit_bias_logprobs_stop_strings_and_a_cache_salt_as_the_openai_layer_does) {
  server_process server("--max-num-seqs 64");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  // A bias of 100 on token 150: greedy decoding takes it every time. Each token comes with its logprob and 2
  // alternatives (of the raw model output).
  troupe::job j = short_job(6);
  j.logit_bias = {{150, 100.0f}};
  j.logprobs = 2;
  std::vector<troupe::job_event> events;
  const troupe::job_result r = c->wait(c->submit(j, [&](const troupe::job_event& e) { events.push_back(e); }));
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.token_ids, std::vector<int32_t>(6, 150));
  EXPECT_EQ(r.stop_token, std::nullopt);
  ASSERT_FALSE(events.empty());
  for (const troupe::job_event& e : events) {
    ASSERT_TRUE(e.logprob.has_value());
    EXPECT_LE(*e.logprob, 0.0f);
    EXPECT_EQ(e.top_ids.size(), 2u);
    EXPECT_EQ(e.top_logprobs.size(), 2u);
  }
  // Without logprobs, none.
  std::vector<troupe::job_event> plain;
  c->wait(c->submit(short_job(2), [&](const troupe::job_event& e) { plain.push_back(e); }));
  for (const troupe::job_event& e : plain) EXPECT_FALSE(e.logprob.has_value());

  // Token 150 as a stop token: the job ends at once, saying which token ended it.
  troupe::job stop_token = short_job(6);
  stop_token.ignore_eos = false;
  stop_token.logit_bias = {{150, 100.0f}};
  stop_token.stop_token_ids = {150};
  const troupe::job_result st = c->wait(c->submit(stop_token));
  EXPECT_EQ(st.finish_reason, "stop");
  EXPECT_EQ(st.stop_token, 150);

  // Its text as a stop string, kept in the output (include_stop_str_in_output) and named in the result.
  ASSERT_FALSE(r.text.empty());
  ASSERT_EQ(r.text.size() % 6, 0u);
  const std::string t = r.text.substr(0, r.text.size() / 6);
  troupe::job stop_string = short_job(6);
  stop_string.logit_bias = {{150, 100.0f}};
  stop_string.stop = {t};
  stop_string.include_stop_str_in_output = true;
  const troupe::job_result ss = c->wait(c->submit(stop_string));
  EXPECT_EQ(ss.finish_reason, "stop");
  EXPECT_EQ(ss.stop_string, t);
  EXPECT_EQ(ss.text, t);
  stop_string.include_stop_str_in_output = false;
  EXPECT_EQ(c->wait(c->submit(stop_string)).text, "");

  // The prefix cache serves a prompt's full blocks (3 of 16 tokens; the last token is always computed) only
  // to jobs with the same salt.
  troupe::job salted = short_job(1);
  salted.prompt_token_ids.clear();
  for (int32_t i = 0; i < 64; ++i) salted.prompt_token_ids.push_back(100 + i);
  salted.cache_salt = "tenant-a";
  EXPECT_EQ(c->wait(c->submit(salted)).num_cached_tokens, 0);
  EXPECT_EQ(c->wait(c->submit(salted)).num_cached_tokens, 48);
  salted.cache_salt = "tenant-b";
  EXPECT_EQ(c->wait(c->submit(salted)).num_cached_tokens, 0);
}

TEST(client_api, a_callback_may_cancel_its_own_job) {
  server_process server;
  auto c = troupe::client::connect("127.0.0.1", server.port());
  uint64_t id = 0;
  std::mutex mutex;
  bool cancelled = false;
  {
    std::lock_guard lock(mutex);  // the first event may come before submit() has returned the id
    id = c->submit(long_job(), [&](const troupe::job_event&) {
      std::lock_guard l(mutex);
      if (!cancelled) cancelled = c->cancel(id);
    });
  }
  const troupe::job_result r = c->wait(id);
  EXPECT_TRUE(cancelled);
  EXPECT_EQ(r.finish_reason, "abort");
}

TEST(client_api, a_refused_job_throws_the_servers_reason) {
  server_process server("--max-num-seqs 64 --max-model-len 64");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::job j;
  j.prompt_token_ids = std::vector<int32_t>(100, 5);
  std::string type;
  EXPECT_EQ(refusal_of(*c, j, &type),
            "The prompt (total length 100) is too long to fit into the model (context length 64). Make sure that "
            "`max_model_len` is no smaller than the number of text tokens.");
  EXPECT_EQ(type, "BadRequestError");
  j.prompt_token_ids = {1, 2, 3};
  j.temperature = -1;
  EXPECT_THROW(c->submit(j), troupe::job_refused);
  j.temperature = 0;
  EXPECT_EQ(c->wait(c->submit(j)).finish_reason.empty(), false);  // the server still serves
}

TEST(client_api, a_client_that_vanishes_has_its_jobs_aborted_and_their_blocks_freed) {
  server_process server("--max-num-seqs 64");
  {
    auto vanishing = troupe::client::connect("127.0.0.1", server.port());
    for (int i = 0; i < 8; ++i) vanishing->submit(long_job());
  }  // disconnects with 8 jobs running
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::server_stats s;
  const auto deadline = clock_type::now() + std::chrono::seconds(20);
  do {
    s = c->stats();
  } while ((s.num_running > 0 || s.num_free_blocks != s.num_blocks) && clock_type::now() < deadline);
  EXPECT_EQ(s.num_running, 0);
  EXPECT_EQ(s.num_free_blocks, s.num_blocks);
}

TEST(client_api, connecting_where_no_server_listens_says_where) {
  EXPECT_EQ(connect_error(1, {}).rfind("cannot reach a troupe server at 127.0.0.1:1", 0), 0u) << connect_error(1, {});
}

TEST(client_api, a_connection_without_the_right_key_is_refused_with_the_servers_reason) {
  server_process server("--api-key sesame");
  const std::string where = "the troupe server at 127.0.0.1:" + std::to_string(server.port()) + " refused the connection: ";
  EXPECT_EQ(connect_error(server.port(), {}),
            where + "Missing API key: this server requires one (--api-key or --tenants-file); pass it in "
                    "client_options::api_key");
  EXPECT_EQ(connect_error(server.port(), with_key("wrong")), where + "Invalid API key");
  // Without the handshake nothing is taken: a job sent first closes the connection.
  raw_socket raw(server.port());
  raw.send(troupe::wire::frame(troupe::wire::client_message{troupe::wire::job{}}));
  EXPECT_EQ(raw.next(), "error: the first message must be hello (with the API key)");
  EXPECT_EQ(raw.next(), "eof");
  auto c = troupe::client::connect("127.0.0.1", server.port(), with_key("sesame"));
  EXPECT_EQ(c->wait(c->submit(short_job(2))).finish_reason, "length");
}

TEST(client_api, a_tenant_over_its_token_rate_has_its_next_job_refused) {
  const auto tenants = write_tenants("rate", R"({"tenants": [{"name": "a", "api_keys": ["ka"], "tokens_per_minute": 100}]})");
  server_process server("--tenants-file " + tenants.string());
  auto c = troupe::client::connect("127.0.0.1", server.port(), with_key("ka"));
  EXPECT_EQ(c->wait(c->submit(short_job(60))).finish_reason, "length");  // 63 of 100 tokens
  std::string type;
  const std::string refusal = refusal_of(*c, short_job(60), &type);
  EXPECT_EQ(refusal.rfind("Tenant 'a' is over its token rate (100 tokens per minute); retry in ", 0), 0u) << refusal;
  EXPECT_EQ(type, "RateLimitError");
  std::filesystem::remove(tenants);
}

TEST(client_api, a_tenants_max_concurrent_counts_native_and_http_jobs_and_a_cancelled_job_frees_its_seat) {
  const auto tenants = write_tenants("concurrent", R"({"tenants": [{"name": "a", "api_keys": ["ka"], "max_concurrent": 1}]})");
  server_process server("--tenants-file " + tenants.string());
  auto c = troupe::client::connect("127.0.0.1", server.port(), with_key("ka"));
  const uint64_t running = c->submit(long_job());
  EXPECT_EQ(refusal_of(*c, short_job(2)), "Tenant 'a' already has 1 requests in flight, its limit; retry when one finishes");
  const std::string http = shell("curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer ka' -H 'Content-Type: "
                                 "application/json' -d '{\"prompt\": [1, 2, 3], \"max_tokens\": 2}' " +
                                 server.url("/v1/completions"));
  EXPECT_EQ(http, "429");
  EXPECT_TRUE(c->cancel(running));
  EXPECT_EQ(c->wait(running).finish_reason, "abort");
  EXPECT_EQ(c->wait(c->submit(short_job(2))).finish_reason, "length");
  // A job the engine refuses gives its seat back.
  troupe::job invalid = short_job(2);
  invalid.temperature = -1;
  EXPECT_THROW(c->submit(invalid), troupe::job_refused);
  // So does a client that vanishes mid-job (once the server has seen it go).
  troupe::client::connect("127.0.0.1", server.port(), with_key("ka"))->submit(long_job());
  std::string refusal;
  const auto deadline = clock_type::now() + std::chrono::seconds(10);
  do {
    refusal = refusal_of(*c, short_job(2));
  } while (refusal != "admitted" && clock_type::now() < deadline);
  EXPECT_EQ(refusal, "admitted");
  std::filesystem::remove(tenants);
}

TEST(client_api, the_queue_cap_counts_native_jobs_waiting_for_a_seat_and_http_requests_alike) {
  server_process server("--max-num-seqs 1 --max-queue-len 1");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  first_tokens started;
  c->submit(long_job(), started.on_event());
  ASSERT_TRUE(started.wait());  // running: out of the queue
  c->submit(long_job());        // waits for the one seat
  std::string type;
  EXPECT_EQ(refusal_of(*c, short_job(2), &type), "The server's queue is full (1 requests waiting); retry later");
  EXPECT_EQ(type, "RateLimitError");
  const std::string http = shell("curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "
                                 "'{\"prompt\": [1, 2, 3], \"max_tokens\": 2}' " + server.url("/v1/completions"));
  EXPECT_EQ(http, "429");
}

TEST(client_api, max_tokens_over_the_servers_limit_is_refused) {
  server_process server("--max-tokens-limit 8");
  auto c = troupe::client::connect("127.0.0.1", server.port());
  std::string type;
  EXPECT_EQ(refusal_of(*c, short_job(256), &type), "max_tokens must be at most 8 on this server, got 256. Request fewer output tokens.");
  EXPECT_EQ(type, "BadRequestError");
  EXPECT_EQ(c->wait(c->submit(short_job(8))).token_ids.size(), 8u);
}

TEST(client_api, hostile_frames_drop_only_their_connection_while_health_and_other_clients_go_on) {
  server_process server("--api-key sesame");
  auto good = troupe::client::connect("127.0.0.1", server.port(), with_key("sesame"));
  first_tokens started;
  const uint64_t running = good->submit(long_job(), started.on_event());
  ASSERT_TRUE(started.wait());
  const int64_t peak_before = vm_peak_kib(server.pid());

  const uint16_t port = server.port();
  {  // 4 bytes announcing 4 GB, before any handshake
    raw_socket s(port);
    s.send(bytes({0xff, 0xff, 0xff, 0xff}));
    EXPECT_EQ(s.next(), "error: a frame of 4294967295 bytes is over the limit of 65536 bytes");
    EXPECT_EQ(s.next(), "eof");
  }
  {  // the same after a valid handshake
    raw_socket s(port);
    s.send(troupe::wire::frame(troupe::wire::client_message{troupe::wire::hello{troupe::wire::protocol_version, "sesame"}}));
    EXPECT_EQ(s.next(), "welcome");
    s.send(bytes({0xff, 0xff, 0xff, 0xff}));
    EXPECT_EQ(s.next(), "error: a frame of 4294967295 bytes is over the limit of 8388608 bytes");
    EXPECT_EQ(s.next(), "eof");
  }
  {  // an HTTP request on the wrong port
    raw_socket s(port);
    const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    s.send(std::vector<char>(get.begin(), get.end()));
    EXPECT_EQ(s.next(), "error: a frame of 1195725856 bytes is over the limit of 65536 bytes");
  }
  {  // a frame of garbage
    raw_socket s(port);
    s.send(bytes({0, 0, 0, 3, 0xc1, 0xc1, 0xc1}));
    EXPECT_EQ(s.next(), "error: malformed message: the message is not valid msgpack");
  }
  {  // a client that vanishes in the middle of a frame
    raw_socket s(port);
    s.send(bytes({0, 0, 1, 0, 0x92, 1}));
  }
  const auto [code, seconds] = health(server);
  EXPECT_EQ(code, "200");
  EXPECT_LT(seconds, 0.1);
  EXPECT_LT(vm_peak_kib(server.pid()) - peak_before, 256 * 1024) << "the server reserved memory for a frame it refused";
  const troupe::job_result r = good->wait(good->submit(short_job(20)));
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(r.token_ids.size(), 20u);
  EXPECT_TRUE(good->cancel(running));  // it ran through all of the above
  EXPECT_EQ(good->wait(running).finish_reason, "abort");
}

TEST(client_api, a_client_cannot_cancel_another_clients_job) {
  server_process server;
  auto owner = troupe::client::connect("127.0.0.1", server.port());
  auto other = troupe::client::connect("127.0.0.1", server.port());
  const uint64_t id = owner->submit(long_job());
  EXPECT_FALSE(other->cancel(id));
  EXPECT_FALSE(owner->cancel(id + 1));
  EXPECT_TRUE(owner->cancel(id));
  EXPECT_EQ(owner->wait(id).finish_reason, "abort");
  EXPECT_FALSE(owner->cancel(id));  // over
}

TEST(client_api, client_port_minus_1_leaves_only_the_http_port_listening) {
  server_process server("--client-port -1");
  EXPECT_EQ(listening(server.pid()), (std::set<std::string>{at("127.0.0.1", server.http_port())}));
}

TEST(client_api, the_native_port_listens_on_loopback_even_when_http_listens_everywhere) {
  server_process server("--host 0.0.0.0");
  EXPECT_EQ(server.client_host(), "127.0.0.1");
  EXPECT_EQ(listening(server.pid()),
            (std::set<std::string>{at("0.0.0.0", server.http_port()), at("127.0.0.1", server.port())}));
}

TEST(client_api, a_second_server_on_a_taken_client_port_fails_at_start_naming_the_flag) {
  server_process first;
  int exit_code = -1;
  const std::string port = std::to_string(first.port());
  const std::string out = shell(std::string(TROUPE_BINARY) + " serve --host 127.0.0.1 --port 0 --client-port " + port + " 2>&1",
                                &exit_code);
  EXPECT_EQ(exit_code, 1);
  EXPECT_NE(out.find("cannot listen for native clients on 127.0.0.1:" + port +
                     ": Address already in use (another troupe server? give this one another --client-port, or "
                     "--client-port -1 to turn the native client API off)"),
            std::string::npos)
      << out;
}

TEST(client_api, sigterm_with_a_native_client_mid_job_exits_0_within_the_timeout_and_the_clients_calls_return_an_error) {
  server_process server("--shutdown-timeout 1");
  auto busy = troupe::client::connect("127.0.0.1", server.port());
  auto idle = troupe::client::connect("127.0.0.1", server.port());
  first_tokens started;
  const uint64_t id = busy->submit(long_job(), started.on_event());
  ASSERT_TRUE(started.wait());
  const auto t0 = clock_type::now();
  server.signal(SIGTERM);
  const troupe::job_result r = busy->wait(id);
  EXPECT_EQ(r.finish_reason, "error");
  EXPECT_EQ(r.error, "The server shut down before the request finished (--shutdown-timeout 1 s)");
  EXPECT_EQ(server.wait(), 0);
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  EXPECT_LT(seconds, 1.25) << "the shutdown timeout is 1 s";
  EXPECT_THROW(idle->stats(), std::runtime_error);
  EXPECT_THROW(busy->submit(short_job(2)), std::runtime_error);
}

TEST(client_api, a_text_prompt_of_invalid_utf8_is_tokenized_as_bytes_and_the_server_goes_on) {
  server_process server;
  auto c = troupe::client::connect("127.0.0.1", server.port());
  troupe::job j = short_job(2);
  j.prompt_token_ids.clear();
  j.prompt = std::string("\xff\xfe\xc3(\x80", 5);
  std::string outcome;
  try {
    outcome = c->wait(c->submit(j)).finish_reason;
  } catch (const troupe::job_refused& e) {
    outcome = e.type;
  }
  EXPECT_EQ(outcome, "length");  // the byte-level tokenizer takes any bytes
  EXPECT_EQ(c->wait(c->submit(short_job(2))).finish_reason, "length");
}
