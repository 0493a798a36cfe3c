#pragma once
// Stop rules for one sequence: EOS, stop_token_ids, stop strings, max_tokens, max_model_len,
// min_tokens; and how much of the output text a streaming client may have so far.
//
// Rules, checked after each new token in this order (vLLM V1's check_stop, then its detokenizer):
//   - max_model_len: prompt + output tokens reaching it ends with "length" (a hard limit: the model
//     has no positions beyond it, so it applies even before min_tokens).
//   - Before min_tokens outputs nothing else stops, and stop strings are searched only in text that
//     tokens after the first min_tokens produced (a match may begin earlier).
//   - EOS (any of the model's EOS ids, unless ignore_eos) ends with "stop"; a stop_token_ids entry
//     ends with "stop" and is reported. Either way the token's text is dropped unless
//     include_stop_str_in_output.
//   - A stop string ends with "stop"; the text is cut before it (after it, with
//     include_stop_str_in_output). Among matches ending in the new text, the one that ends first
//     wins (then the one that starts first), so the result does not depend on how the text was split
//     into tokens.
//   - max_tokens outputs end with "length", unless the last token also stopped the sequence.
// Streaming: text that could be the start of a stop string is held back until it is ruled out; the
// released size never shrinks. With include_stop_str_in_output nothing needs holding back.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine/sampling_params.hpp"

namespace troupe {

enum class finish_reason : uint8_t { none, stop, length };

// The OpenAI name of a finish reason: "stop", "length"; "" for none (the JSON null).
std::string_view to_string(finish_reason reason);

struct stop_decision {
  finish_reason reason = finish_reason::none;
  std::string stop_string;            // the stop string that matched, else empty
  std::optional<int32_t> stop_token;  // the stop_token_ids entry that matched (EOS: empty, vLLM's null)
  size_t text_size = 0;        // bytes of the text that belong to the output (all but a cut stop string)
  size_t releasable_size = 0;  // bytes a streaming client may have by now; == text_size once finished
};

class stop_checker {
public:
  // eos_token_ids: every id that ends generation; num_prompt_tokens + outputs may not pass
  // max_model_len (> 0). Copies what it needs from params.
  stop_checker(const sampling_params& params, std::span<const int32_t> eos_token_ids, int32_t num_prompt_tokens,
               int32_t max_model_len);

  // Call once per generated token, after appending its text (possibly none yet, when the
  // detokenizer waits for the rest of a UTF-8 sequence). text: the whole output text so far; it only
  // grows between calls. Not to be called again once a decision has finished the sequence.
  stop_decision check(int32_t new_token, std::string_view text);

  // After check() finished the sequence with "length", the detokenizer releases the text it held
  // back (a last character left incomplete, shown as U+FFFD). A stop string ending in that text still
  // stops the sequence, so no output contains a stop string. text: the final output text (what
  // check() saw, then the flushed rest). Returns d, turned into a stop decision on a match.
  stop_decision check_flushed(stop_decision d, std::string_view text);

  int32_t num_output_tokens() const { return num_output_tokens_; }

private:
  // Bytes at the end of text that could begin a stop string.
  size_t held_back(std::string_view text) const;
  // Turns d into a stop decision when a stop string ends in text past new_begin (the first match to
  // end wins, then the first to start).
  void find_stop_string(std::string_view text, size_t new_begin, stop_decision& d) const;

  std::vector<int32_t> eos_token_ids_;
  std::vector<int32_t> stop_token_ids_;
  std::vector<std::string> stop_;
  int32_t min_tokens_;
  int32_t max_tokens_;
  int32_t num_prompt_tokens_;
  int32_t max_model_len_;
  bool ignore_eos_;
  bool include_stop_;

  int32_t num_output_tokens_ = 0;
  size_t scanned_size_ = 0;   // text size at the previous call: stop strings must end beyond it
  size_t released_size_ = 0;  // what has been released so far
};

} // namespace troupe
