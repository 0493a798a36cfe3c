#pragma once
// troupe's log: lines on stderr (stdout carries results such as --json), each with a timestamp and a level,
// "2026-12-07 10:00:00.123 [info] message"; the level from --log-level, else TROUPE_LOGGING_LEVEL, else
// vLLM's VLLM_LOGGING_LEVEL, else info.

#include <string>

namespace troupe {

// Makes the stderr logger with the pattern and the environment's level. Throws user_error for a bad level
// (the logger is made first, so the error is logged like any other).
void init_logging();

// A level as parse_log_level returns it ("debug", "warning", ...).
void set_log_level(const std::string& level);

// Text every line carries after its level, e.g. "[rank 1] " under mpirun (which interleaves ranks' stderr).
void set_log_prefix(const std::string& prefix);

} // namespace troupe
