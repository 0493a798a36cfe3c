#pragma once
// Reads tool calls out of JSON text as it arrives, character by character: a call object
// {"name": ..., "arguments": {...}} (hermes, llama3_json) or an array of them (mistral, tool_choice
// "required"). Each call's arguments come out re-printed as Python's json.dumps(value, ensure_ascii=False)
// prints the value json.loads makes of them (", " and ": " separators, strings re-escaped, numbers as
// Python prints them), as soon as each character is decided: what vLLM's parsers send as the arguments
// string, streamed. The reader refuses what json.loads refuses (control characters in strings, trailing
// commas, leading zeros, ...), from the first character that makes the text invalid.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class json_call_reader {
public:
  struct call {
    std::string name;
    bool has_name = false;   // the name string is complete
    std::string arguments;   // re-printed so far
    bool has_arguments = false;  // an arguments value began
    bool arguments_done = false;
    bool done = false;       // the call object closed
  };

  // in_array: the text is an array of calls, else one call object. argument_keys: the keys whose value
  // is the arguments (llama3_json takes "arguments" or "parameters").
  json_call_reader(bool in_array, std::vector<std::string> argument_keys);

  // Reads text; returns how many bytes it took: all of it, unless the root value ended (or the text
  // went wrong) before it, when what follows is not the reader's. Whitespace after the root is left.
  size_t feed(std::string_view text);
  // The text ended: a number in progress ends with it.
  void finish();

  bool done() const { return state_ == st::done; }    // the root value is complete
  bool failed() const { return state_ == st::failed; }
  const std::vector<call>& calls() const { return calls_; }

private:
  enum class st : uint8_t { value, key, colon, after_value, string, escape, unicode, number, literal, done, failed };
  struct frame {
    bool object = false;
    bool empty = true;     // no member or element yet
    std::string key;       // call objects only: the member being read
  };

  void step(char c);
  void begin_value(char c);
  void end_value();
  void end_number();
  void fail() { state_ = st::failed; }
  // Output routing: the arguments of the current call while its arguments value is being read.
  void emit(std::string_view s);
  void emit_char(uint32_t cp);  // a decoded string character, re-escaped
  bool at_call_level() const { return stack_.size() == (in_array_ ? 2u : 1u) && stack_.back().object; }

  bool in_array_;
  std::vector<std::string> argument_keys_;
  std::vector<call> calls_;
  std::vector<frame> stack_;
  st state_ = st::value;
  bool string_is_key_ = false;
  std::string key_;               // a key being read at the call level (decoded)
  std::string number_;            // a number's characters so far
  std::string_view literal_;      // the literal being matched
  size_t literal_pos_ = 0;
  uint32_t unicode_ = 0;          // \uXXXX digits so far
  int unicode_digits_ = 0;
  uint32_t high_surrogate_ = 0;   // waiting for the low half of a pair
  enum class target : uint8_t { none, name, arguments } target_ = target::none;
  size_t arguments_depth_ = 0;    // stack depth at which the arguments value began
};

} // namespace troupe
