// /dashboard in a real browser: headless Chromium (Debian's chromium-headless-shell, which scripts/setup.sh
// installs) loads the page of a live `troupe serve` under load, and a page whose server then dies. The
// test reads the page's DOM as the browser left it and looks at the screenshots' pixels; it keeps the
// screenshots (the paths are printed) for a person to look at:
//   build/dashboard.png        under load: the figures and the plots of the last minutes
//   build/dashboard_stale.png  the server gone: the page says so and blanks its figures
//
// The browser runs on virtual time (--virtual-time-budget): the page's 2 s polls and 1 s redraws go by
// as fast as the answers come. A missing browser is a failure that says to run scripts/setup.sh.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/support/child_process.hpp"
#include "tests/support/png.hpp"
#include "tests/support/server_process.hpp"

using json = nlohmann::json;
using troupe::testing::read_png;
using troupe::testing::rgba_image;
using troupe::testing::server_process;
using troupe::testing::shell;
using troupe::testing::shell_quote;
namespace fs = std::filesystem;

namespace {

const fs::path build_dir = fs::path(TROUPE_BINARY).parent_path();
constexpr int width = 1280, height = 1150;

// The headless browser: Debian's chromium-headless-shell, else a full chromium in headless mode; "" if neither.
std::string browser() {
  if (!shell("command -v chromium-headless-shell 2>/dev/null").empty()) return "chromium-headless-shell";
  if (!shell("command -v chromium 2>/dev/null").empty()) return "chromium --headless";
  return "";
}

// Runs the browser on url for `virtual_ms` of page time; `what` is --screenshot=FILE or --dump-dom.
// Returns its standard output (the DOM for --dump-dom).
std::string run_browser(const std::string& url, int virtual_ms, const std::string& what) {
  const fs::path profile = fs::temp_directory_path() / ("troupe_chromium_" + std::to_string(::getpid()));
  const std::string out = shell(browser() + " --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars "
                                "--user-data-dir=" + profile.string() + " --window-size=" + std::to_string(width) + "," +
                                std::to_string(height) + " --virtual-time-budget=" + std::to_string(virtual_ms) + " " +
                                what + " " + shell_quote(url) + " 2>/dev/null");
  std::error_code ec;
  fs::remove_all(profile, ec);
  return out;
}

// Pixels of exactly this colour.
size_t count_color(const rgba_image& img, uint8_t r, uint8_t g, uint8_t b) {
  size_t n = 0;
  for (size_t i = 0; i < img.pixels.size(); i += 4)
    n += img.pixels[i] == r && img.pixels[i + 1] == g && img.pixels[i + 2] == b;
  return n;
}

// Share of pixels that are not (nearly) white.
double inked_share(const rgba_image& img) {
  size_t n = 0;
  for (size_t i = 0; i < img.pixels.size(); i += 4) n += img.pixels[i] < 240 || img.pixels[i + 1] < 240 || img.pixels[i + 2] < 240;
  return static_cast<double>(n) / static_cast<double>(img.width * img.height);
}

// A dumped DOM without its <script> elements: what the page shows, not the code that draws it.
std::string rendered(std::string dom) {
  for (size_t at = dom.find("<script"); at != std::string::npos; at = dom.find("<script", at)) {
    const size_t end = dom.find("</script>", at);
    dom.erase(at, end == std::string::npos ? std::string::npos : end + 9 - at);
  }
  return dom;
}

// The text of the element with this id in a dumped DOM ("" when absent).
std::string text_of(const std::string& dom, const std::string& id) {
  const std::regex element("id=\"" + id + "\"[^>]*>([^<]*)<");
  std::smatch m;
  return std::regex_search(dom, m, element) ? m[1].str() : "";
}

std::string body_class(const std::string& dom) {
  std::smatch m;
  return std::regex_search(dom, m, std::regex("<body class=\"([^\"]*)\"")) ? m[1].str() : "";
}

json dashboard_json(const server_process& s) { return json::parse(shell("curl -s " + shell_quote(s.url("/dashboard.json")))); }

// Sends completions of mixed lengths on `threads` connections until `seconds` have passed, and a few
// invalid ones (counted as rejected).
class load {
public:
  load(const server_process& s, int threads, std::chrono::milliseconds length) {
    const auto until = std::chrono::steady_clock::now() + length;
    for (int t = 0; t < threads; ++t)
      workers_.emplace_back([&s, t, until] {
        for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
          const bool invalid = t == 0 && i % 10 == 9;
          const std::string body = invalid ? R"({"prompt": "x", "max_tokens": -1})"
                                           : R"({"prompt": "Tell me more", "ignore_eos": true, "max_tokens": )" +
                                                 std::to_string(16 + 48 * ((t + i) % 4)) + "}";
          shell("curl -s -m 20 -o /dev/null " + shell_quote(s.url("/v1/completions")) +
                " -H 'Content-Type: application/json' -d " + shell_quote(body));
        }
      });
  }
  ~load() {
    for (auto& w : workers_) w.join();
  }

private:
  std::vector<std::thread> workers_;
};

TEST(dashboard_screenshot, under_load_the_page_plots_every_figure_and_says_it_is_live) {
  ASSERT_FALSE(browser().empty()) << "no headless Chromium: run scripts/setup.sh, which installs Debian's chromium-headless-shell";
  server_process s("--client-port -1 --dashboard-interval 0.5");
  {
    load traffic(s, 6, std::chrono::milliseconds(9000));
    // Samples of the load for the plots, then the browser while the load goes on.
    for (int i = 0; i < 200 && dashboard_json(s)["history"][0]["t"].size() < 12; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const fs::path png = build_dir / "dashboard.png";
    fs::remove(png);
    run_browser(s.url("/dashboard"), 3000, "--screenshot=" + png.string());
    const std::string dom = rendered(run_browser(s.url("/dashboard"), 3000, "--dump-dom"));
    std::cout << "dashboard screenshot under load: " << fs::absolute(png).string() << "\n";

    EXPECT_EQ(body_class(dom), "live");
    EXPECT_EQ(text_of(dom, "status").rfind("live · ", 0), 0u) << text_of(dom, "status");
    EXPECT_EQ(text_of(dom, "model"), "troupe-default");
    // tokens/s in / out as the page's num() writes them: two decimals below 10, one below 100, none above.
    EXPECT_TRUE(std::regex_match(text_of(dom, "tps"), std::regex(R"(\d+(\.\d{1,2})? / \d+(\.\d{1,2})?)"))) << text_of(dom, "tps");
    EXPECT_TRUE(std::regex_match(text_of(dom, "ttft"), std::regex(R"([\d.]+ ms / [\d.]+ ms)"))) << text_of(dom, "ttft");
    EXPECT_NE(text_of(dom, "rej"), "0");  // the invalid requests
    // Eight panels, seven of them plots with a line per figure (12 lines), none marked as without data.
    for (const char* panel : {"ttft", "itl", "tokens", "requests", "kv", "batch", "trouble", "batches"})
      EXPECT_NE(dom.find("id=\"plot-" + std::string(panel) + "\""), std::string::npos) << panel;
    size_t lines = 0;
    for (size_t at = dom.find("<path d=\"M"); at != std::string::npos; at = dom.find("<path d=\"M", at + 1)) ++lines;
    EXPECT_EQ(lines, 12u);
    EXPECT_EQ(dom.find(">no data</text>"), std::string::npos);
    EXPECT_NE(dom.find(" steps</td>"), std::string::npos);  // the batch-size distribution

    ASSERT_TRUE(fs::exists(png));
    EXPECT_GT(fs::file_size(png), 30'000u);  // a blank page of this size is about 5 kB
    const rgba_image img = read_png(png);
    EXPECT_EQ(img.width, uint32_t(width));
    EXPECT_EQ(img.height, uint32_t(height));
    EXPECT_GT(inked_share(img), 0.03);
    // The plotted lines, in their two colours, and no red banner.
    EXPECT_GT(count_color(img, 0x1f, 0x77, 0xb4), 300u);
    EXPECT_GT(count_color(img, 0xd6, 0x27, 0x28), 300u);
    EXPECT_LT(count_color(img, 0xfd, 0xec, 0xea), 100u);
  }
}

// A stand-in for a server that dies: it serves the page, answers dashboard.json `answers` times with
// what the real server said, then stops listening, so the page's next polls find the port closed.
class dying_server {
public:
  dying_server(std::string page, std::string figures, int answers)
      : page_(std::move(page)), figures_(std::move(figures)), answers_(answers) {
    // NOTE: close-on-exec, or the browser (a child of this process) inherits the socket and keeps the
    // port listening after this server has "died".
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("dying_server: cannot listen");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~dying_server() {
    stop_ = true;
    thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

private:
  void run() {
    while (!stop_ && answers_ > 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string request;
      char buf[4096];
      pollfd cp{c, POLLIN, 0};
      while (request.find("\r\n\r\n") == std::string::npos && ::poll(&cp, 1, 2000) > 0) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      // "GET /path HTTP/1.1"
      const std::string path = request.size() > 4 ? request.substr(4, request.find(' ', 4) - 4) : std::string();
      std::string status = "200 OK", type = "application/json", body;
      if (path.rfind("/dashboard.json", 0) == 0) body = figures_, --answers_;
      else if (path == "/dashboard") body = page_, type = "text/html; charset=utf-8";
      else status = "404 Not Found";
      const std::string response = "HTTP/1.1 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " +
                                   std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      ::send(c, response.data(), response.size(), MSG_NOSIGNAL);
      ::close(c);
    }
    ::close(fd_);  // dead: connections are refused from now on
    fd_ = -1;
  }

  std::string page_, figures_;
  int answers_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_ = false;
  std::thread thread_;
};

TEST(dashboard_screenshot, a_dead_server_s_page_says_so_and_blanks_its_figures) {
  ASSERT_FALSE(browser().empty()) << "no headless Chromium: run scripts/setup.sh, which installs Debian's chromium-headless-shell";
  std::string page, figures;
  {
    server_process s("--client-port -1 --dashboard-interval 0.2");
    load traffic(s, 2, std::chrono::milliseconds(1500));
    for (int i = 0; i < 200 && dashboard_json(s)["history"][0]["t"].size() < 8; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    page = shell("curl -s " + shell_quote(s.url("/dashboard")));
    figures = shell("curl -s " + shell_quote(s.url("/dashboard.json")));
  }
  const json recorded = json::parse(figures);
  ASSERT_GT(recorded["tokens_out_per_s"].get<double>(), 0);

  // Two answers, then nothing: 15 s of page time later the page has had no answer for about 11 s.
  std::string dom;
  {
    dying_server gone(page, figures, 2);
    dom = rendered(run_browser(gone.url("/dashboard"), 15000, "--dump-dom"));
  }
  EXPECT_EQ(body_class(dom), "stale");
  EXPECT_EQ(text_of(dom, "status"), "STALE — no data");
  EXPECT_TRUE(std::regex_search(text_of(dom, "banner"), std::regex(R"(^No answer from the server for \d+ s \(last answer at \d\d:\d\d:\d\d;)")))
      << text_of(dom, "banner");
  for (const char* card : {"ttft", "itl", "tps", "rps", "seqs", "kv", "pre", "rej", "tp"}) EXPECT_EQ(text_of(dom, card), "–") << card;
  EXPECT_NE(dom.find(">no data</text>"), std::string::npos);  // the plots mark where the data ends

  const fs::path png = build_dir / "dashboard_stale.png";
  fs::remove(png);
  {
    dying_server gone(page, figures, 2);
    run_browser(gone.url("/dashboard"), 15000, "--screenshot=" + png.string());
  }
  std::cout << "dashboard screenshot of a dead server: " << fs::absolute(png).string() << "\n";
  const rgba_image img = read_png(png);
  EXPECT_GT(count_color(img, 0xfd, 0xec, 0xea), 5000u);  // the banner's red background
}

TEST(dashboard_screenshot, a_routers_page_plots_the_fleet_and_each_worker_and_marks_the_one_that_left) {
  ASSERT_FALSE(browser().empty()) << "no headless Chromium: run scripts/setup.sh, which installs Debian's chromium-headless-shell";
  auto w0 = std::make_unique<server_process>("--disable-log-requests");
  auto w1 = std::make_unique<server_process>("--disable-log-requests");
  auto worker = [](const server_process& w) {
    return " --worker http://127.0.0.1:" + std::to_string(w.http_port()) + ",native=" + std::to_string(w.port());
  };
  const std::string dead = "http://127.0.0.1:" + std::to_string(w1->http_port());
  server_process router("--disable-log-requests --health-interval 0.1 --dashboard-interval 0.5" + worker(*w0) + worker(*w1), "", "",
                        "router");
  for (int i = 0; i < 200 && shell("curl -s -o /dev/null -w '%{http_code}' " + shell_quote(router.url("/health"))) != "200"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    load traffic(router, 4, std::chrono::milliseconds(8000));
    // Samples of both workers under load, then worker 1 dies while the load goes on.
    for (int i = 0; i < 200 && dashboard_json(router)["history"][2]["t"].size() < 8; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    w1.reset();
    for (int i = 0; i < 200 && dashboard_json(router)["history"][2].value("state", "") == "in rotation"; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const fs::path png = build_dir / "dashboard_router.png";
    fs::remove(png);
    run_browser(router.url("/dashboard"), 3000, "--screenshot=" + png.string());
    const std::string dom = rendered(run_browser(router.url("/dashboard"), 3000, "--dump-dom"));
    std::cout << "router dashboard screenshot, one worker gone: " << fs::absolute(png).string() << "\n";

    EXPECT_EQ(body_class(dom), "live");
    // tokens/s in / out as the page's num() writes them: two decimals below 10, one below 100, none above.
    EXPECT_TRUE(std::regex_match(text_of(dom, "tps"), std::regex(R"(\d+(\.\d{1,2})? / \d+(\.\d{1,2})?)"))) << text_of(dom, "tps");
    // The workers' line: one of two in rotation, and why the other is not.
    EXPECT_NE(dom.find("<b>Workers: 1 of 2 in rotation</b>"), std::string::npos) << dom;
    EXPECT_TRUE(std::regex_search(dom, std::regex(dead + R"( <span class="out">out of rotation: [^<]+</span>)"))) << dom;
    // The fleet's lines (TTFT and ITL p50/p95, tokens in/out, running/waiting, KV, rejections and preemptions:
    // 11; no batch, which is the workers') and each worker's (up to 7: TTFT and ITL p95, tokens in/out,
    // running, waiting, KV), the gone one's ending where it left, its legend saying why.
    size_t lines = 0;
    for (size_t at = dom.find("<path d=\"M"); at != std::string::npos; at = dom.find("<path d=\"M", at + 1)) ++lines;
    EXPECT_GE(lines, 11u + 2 * 5);
    EXPECT_LE(lines, 11u + 2 * 7);
    EXPECT_NE(dom.find("fleet · p95"), std::string::npos);
    EXPECT_NE(dom.find(dead + " · p95 <span class=\"old\">– (out of rotation)</span>"), std::string::npos);
    EXPECT_NE(dom.find("no steps here: batches are the workers"), std::string::npos);

    const rgba_image img = read_png(png);
    EXPECT_GT(inked_share(img), 0.03);
    EXPECT_GT(count_color(img, 0x1f, 0x77, 0xb4), 300u);
    EXPECT_LT(count_color(img, 0xfd, 0xec, 0xea), 100u);  // no banner: the router answers
  }
}

} // namespace
