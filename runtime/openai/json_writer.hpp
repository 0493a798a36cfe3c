#pragma once
// A compact JSON writer for response bodies, written for exactness and speed on the streaming path.
// vLLM serializes a body either with Python's json.dumps (whole responses, errors) or with
// pydantic-core (stream chunks); the two agree on everything but how floats are written, so the
// writer takes the float style. Strings are escaped as both do with ensure_ascii off: '"', '\\' and
// control characters only; text that is not UTF-8 is repaired (U+FFFD) so the output always is.

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

enum class float_style : uint8_t {
  python,   // json.dumps: repr(float), "1e-05"
  pydantic, // model_dump_json: ryu, "0.00001", "1e-6"
};

class json_writer {
public:
  explicit json_writer(float_style style = float_style::python) : style_(style) {}

  json_writer& begin_object();
  json_writer& end_object();
  json_writer& begin_array();
  json_writer& end_array();
  json_writer& key(std::string_view k);  // then exactly one value
  json_writer& value(std::string_view s);
  json_writer& value(const char* s) { return value(std::string_view(s)); }
  json_writer& value(int64_t v);
  json_writer& value(int32_t v) { return value(static_cast<int64_t>(v)); }
  json_writer& value(double v);
  json_writer& value(bool v);
  json_writer& null();
  json_writer& raw(std::string_view json);  // an already serialized value

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

private:
  void separate();

  std::string out_;
  float_style style_;
  bool need_comma_ = false;
};

// s as a JSON string literal, quotes included.
std::string json_quote(std::string_view s);

} // namespace troupe
