#include "runtime/cli/command_line.hpp"

#include <algorithm>
#include <cctype>
#include <numeric>

#include "runtime/cli/vllm_flags.hpp"
#include "runtime/error.hpp"

namespace troupe {
namespace {

// A flag, as opposed to a value: "--x", "-q", but not "-1" or "-0.5" (negative numbers are values).
bool is_flag(std::string_view token) {
  if (token.size() < 2 || token[0] != '-') return false;
  return !(std::isdigit(static_cast<unsigned char>(token[1])) || token[1] == '.');
}

} // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), size_t{0});
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string closest_flag(std::string_view name, std::span<const std::string> candidates) {
  std::string best;
  size_t best_distance = SIZE_MAX;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(name, c);
    if (d < best_distance) best = c, best_distance = d;
  }
  return best;
}

checked_args check_flags(std::span<const std::string> args, std::span<const std::string> known_flags,
                         bool with_vllm_flags, std::string_view command) {
  checked_args out;
  const auto known = [&](std::string_view name) {
    return std::find(known_flags.begin(), known_flags.end(), name) != known_flags.end();
  };
  // Long flags only are suggested: a one-letter flag is never the near miss of a long one.
  std::vector<std::string> suggestions;
  for (const std::string& f : known_flags)
    if (f.starts_with("--")) suggestions.push_back(f);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& token = args[i];
    if (token == "--") {  // the rest are values
      out.args.insert(out.args.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      break;
    }
    if (!is_flag(token)) {
      out.args.push_back(token);
      continue;
    }
    const size_t eq = token.find('=');
    const std::string name = token.substr(0, eq);
    if (known(name)) {
      out.args.push_back(token);
      continue;
    }
    const vllm_flag* f = with_vllm_flags ? find_vllm_flag(name) : nullptr;
    // argparse also takes a short flag's value attached: -O3, -pp2.
    std::string attached;
    if (!f && with_vllm_flags && !token.starts_with("--"))
      for (const vllm_flag& candidate : vllm_serve_flags())
        if (!candidate.short_name.empty() && token.size() > candidate.short_name.size() &&
            token.starts_with(candidate.short_name) && candidate.arity != flag_arity::none) {
          f = &candidate;
          attached = token.substr(candidate.short_name.size());
        }
    if (!f || f->what == flag_class::works) {
      // A flag that works is one the command knows; reaching here, the table and the command disagree.
      const std::string near = closest_flag(name, suggestions);
      throw user_error("unknown flag " + name + " for `" + std::string(command) + "`" +
                       (near.empty() ? std::string() : "; the closest troupe flag is " + near) +
                       " (`" + std::string(command) + " --help` lists them)");
    }
    // The flag's values: attached (--x=v, -O3), or the tokens that follow up to the next flag.
    std::vector<std::string> values;
    if (eq != std::string::npos) values.push_back(token.substr(eq + 1));
    else if (!attached.empty()) values.push_back(attached);
    else if (f->arity != flag_arity::none) {
      while (i + 1 < args.size() && !is_flag(args[i + 1]) && args[i + 1] != "--") {
        values.push_back(args[++i]);
        if (f->arity == flag_arity::one) break;
      }
    }
    std::string shown = attached.empty() ? name : std::string(f->short_name);
    for (const std::string& v : values) shown += " " + v;
    const bool harmless = f->what == flag_class::refused && values.size() == 1 && is_harmless_value(*f, values[0]);
    if (f->what == flag_class::refused && !harmless)
      throw user_error(shown + " is not supported: " + std::string(f->why));
    out.notes.push_back(shown + " has no effect: " + std::string(f->why));
  }
  return out;
}

} // namespace troupe
