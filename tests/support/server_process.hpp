#pragma once
// A `troupe serve` (or `troupe router`) child process for end-to-end tests: it listens on free ports (--port 0,
// --client-port 0) and the test learns them from the lines the server prints when ready.

#include <cstdio>
#include <stdexcept>
#include <string>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace troupe::testing {

class server_process {
public:
  // extra_args may set --host, --client-host or --client-port itself (--client-port -1: no native port).
  // shell_prefix: shell commands run first in the server's shell, e.g. "ulimit -n 64; ".
  // launcher: a command the server runs under, e.g. "mpirun -np 2" or "taskset -c 1" (then pid() is the launcher's
  // unless it execs). command: "serve", or "router" (which has no native client port).
  explicit server_process(const std::string& extra_args = "", const std::string& shell_prefix = "",
                          const std::string& launcher = "", const std::string& command = "serve") {
    const bool own_host = extra_args.find("--host ") != std::string::npos;
    const bool serve = command == "serve";
    const bool own_client_port = !serve || extra_args.find("--client-port ") != std::string::npos;
    const bool native = serve && extra_args.find("--client-port -1") == std::string::npos;
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      const std::string cmd = shell_prefix + "exec " + launcher + (launcher.empty() ? "" : " ") + TROUPE_BINARY + " " + command + " " + (own_host ? "" : "--host 127.0.0.1 ") +
                              "--port 0 " + (own_client_port ? "" : "--client-port 0 ") + extra_args;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
    char line[512];
    // "troupe: <what> listening on HOST:PORT"; HOST may hold colons (IPv6), the port follows the last one.
    auto port_after = [](const std::string& l, const std::string& what, std::string& host) -> uint16_t {
      const std::string prefix = "troupe: " + what + " listening on ";
      if (l.rfind(prefix, 0) != 0) return 0;
      const size_t colon = l.rfind(':');
      host = l.substr(prefix.size(), colon - prefix.size());
      return static_cast<uint16_t>(std::stoul(l.substr(colon + 1)));
    };
    while (((native && client_port_ == 0) || http_port_ == 0) && std::fgets(line, sizeof line, out_)) {
      std::string host;
      if (uint16_t p = port_after(line, "native client API", host)) client_port_ = p, client_host_ = host;
      if (uint16_t p = port_after(line, "HTTP API", host)) http_port_ = p;
    }
    if ((native && client_port_ == 0) || http_port_ == 0) throw std::runtime_error("troupe serve did not start");
  }
  server_process(const server_process&) = delete;
  ~server_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_) std::fclose(out_);
  }
  uint16_t port() const { return client_port_; }
  const std::string& client_host() const { return client_host_; }  // as the server printed it
  pid_t pid() const { return pid_; }
  uint16_t http_port() const { return http_port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(http_port_) + path; }
  void signal(int sig) { ::kill(pid_, sig); }
  // Waits for the process to end and returns its exit code.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Sends SIGTERM and returns the exit code.
  int terminate() {
    signal(SIGTERM);
    return wait();
  }

private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  uint16_t client_port_ = 0, http_port_ = 0;
  std::string client_host_;
};

// s as one word of a shell command line: in single quotes, each ' written as '\''.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs a shell command and returns its standard output.
inline std::string shell(const std::string& cmd, int* exit_code = nullptr) {
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  if (exit_code) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

} // namespace troupe::testing
