#pragma once
// Checks a command's arguments before the parser sees them: flags the command knows pass; with the vLLM
// table (troupe serve), a vLLM flag that cannot apply is taken out (with its values) and noted, one troupe
// refuses is an error saying why; any other unknown flag is an error naming it and the command's closest
// flag. So every command-line error is one line that says what to change.

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct checked_args {
  std::vector<std::string> args;   // for the parser: the no-effect flags and their values taken out
  std::vector<std::string> notes;  // one line per flag taken out: "--swap-space 4 has no effect: ..."
};

// args: what follows the command's name ("troupe serve"), as typed. known_flags: the command's own flag
// names ("--port", "-q"). with_vllm_flags: read find_vllm_flag for names the command does not know.
// Throws user_error for a refused or unknown flag (its message names the command, as `command`).
checked_args check_flags(std::span<const std::string> args, std::span<const std::string> known_flags,
                         bool with_vllm_flags, std::string_view command);

// The candidate nearest to `name` in edit distance (the first of equals); empty when there are none.
std::string closest_flag(std::string_view name, std::span<const std::string> candidates);

// Levenshtein distance: insertions, deletions and substitutions of one character.
size_t edit_distance(std::string_view a, std::string_view b);

} // namespace troupe
