#pragma once
// Runs a shell command line for end-to-end tests of the `troupe` program, collecting its exit code,
// stdout and stderr.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace troupe::testing {

struct command_result {
  int exit_code = -1;  // -1 when it did not exit normally (a signal)
  std::string out;
  std::string err;
};

inline command_result run_command(const std::string& command_line) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path err_file =
      fs::temp_directory_path() / ("troupe_cmd_err_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  command_result r;
  FILE* pipe = ::popen((command_line + " 2>" + err_file.string()).c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.out.append(buf, n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_file);
  r.err.assign(std::istreambuf_iterator<char>(in), {});
  fs::remove(err_file);
  return r;
}

} // namespace troupe::testing
