#pragma once
// runtime/cli/: the command line's decisions, without a parser: the table of vLLM's `vllm serve` flags and
// what troupe does with each (this file), the check of a command line against it and against a command's
// own flags (command_line.hpp), and the environment variables vLLM users set (environment.hpp). May
// include runtime/error.hpp.
//
// Every flag of `vllm serve --help` in vLLM 0.11.0, in one table that the parser (launch/main.cpp),
// `troupe serve --help`, docs/vllm_flags.md and the tests read: a flag either works with vLLM's meaning
// (troupe's serve command has it), or cannot apply to troupe and is accepted with one log line saying
// why (no_effect), or is refused naming why and what to do instead.

#include <span>
#include <string_view>

namespace troupe {

// The vLLM release the table describes.
inline constexpr std::string_view compared_vllm_version = "0.11.0";

enum class flag_class { works, no_effect, refused };
// "works", "no effect", "refused".
std::string_view to_string(flag_class c);

// What follows a flag on the command line: nothing (a switch, as --trust-remote-code), one value, or
// values up to the next flag (argparse's nargs="+").
enum class flag_arity { none, one, many };

struct vllm_flag {
  std::string_view name;        // "--swap-space"
  std::string_view short_name;  // "-tp", or empty
  flag_arity arity = flag_arity::one;
  flag_class what = flag_class::refused;
  // works: what troupe does, where it differs in a detail; no_effect: why it cannot apply; refused: why,
  // and what to do instead. Reads after "--flag has no effect: " or "--flag is not supported: ".
  std::string_view why;
  // Refused flags only: values that ask for what troupe does anyway ("1" for --pipeline-parallel-size),
  // accepted as no_effect; comma-separated, compared exactly.
  std::string_view harmless_values = {};
};

// The whole table, in the order of vLLM's help (its argument groups).
std::span<const vllm_flag> vllm_serve_flags();

// The entry of a long or short flag name ("--swap-space", "-pp"), or of the --no- form of a switch whose
// plain form is listed; null when vLLM 0.11.0 has no such flag.
const vllm_flag* find_vllm_flag(std::string_view name);

// Whether `value` is one of a refused flag's harmless values.
bool is_harmless_value(const vllm_flag& flag, std::string_view value);

} // namespace troupe
