#include "runtime/engine/step_plan_codec.hpp"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace troupe {

// NOTE: the codec writes every field by hand, so a field added to these structs and forgotten here would
// silently not reach the other ranks. These sizes (LP64) change when a field is added: encode and decode
// the new field, then update the size.
static_assert(sizeof(void*) != 8 || sizeof(sampling_params) == 200,
              "sampling_params changed: update step_plan_codec.cpp (encode, decode, tests), then this size");
static_assert(sizeof(void*) != 8 || sizeof(scheduled_seq) == 312,
              "scheduled_seq changed: update step_plan_codec.cpp (encode, decode, tests), then this size");
static_assert(sizeof(void*) != 8 || sizeof(step_plan) == 56,
              "step_plan changed: update step_plan_codec.cpp (encode, decode, tests), then this size");

namespace {

// message > seqs > seq > params > stop strings (or the structured spec): no container nests deeper.
constexpr size_t max_depth = 5;
constexpr size_t continuing_seq_fields = 6;
constexpr size_t new_seq_fields = 10;
constexpr size_t params_fields = 17;
constexpr uint8_t max_structured_kind = static_cast<uint8_t>(structured_output::kind::grammar);

// ---- encoding ----

// The packer's stream: writes over the caller's buffer from its start, growing it geometrically (a reused
// buffer is written over without being cleared or zero-filled first); finish() cuts it to what was written.
struct byte_sink {
  std::vector<std::byte>* out;
  size_t size = 0;
  // Inlined into each of the packer's writes, whose lengths are mostly constants: the copy becomes a move.
  [[gnu::always_inline]] void write(const char* data, size_t n) {
    if (out->size() - size < n) [[unlikely]] grow(n);
    std::memcpy(out->data() + size, data, n);
    size += n;
  }
  [[gnu::noinline]] void grow(size_t n) { out->resize(std::max(2 * out->size(), size + n + 1024)); }
  void finish() { out->resize(size); }
};
using packer = msgpack::packer<byte_sink>;

// A float as a float32, always: msgpack-c's pack_float writes integral values as integers (and -0 as 0).
// Five bytes, exact bits, one type for the decoder to accept.
void pack_f32(byte_sink& sink, float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  const char b[5] = {static_cast<char>(0xca), static_cast<char>(bits >> 24), static_cast<char>(bits >> 16),
                     static_cast<char>(bits >> 8), static_cast<char>(bits)};
  sink.write(b, sizeof b);
}

uint32_t count(size_t n, const char* what) {
  if (n > std::numeric_limits<uint32_t>::max())
    throw std::invalid_argument(std::string("step plan: ") + what + " is longer than msgpack allows (2^32-1)");
  return static_cast<uint32_t>(n);
}

// An int32 list as one bin of little-endian int32s: one value for the parser however long the list (a
// prompt of thousands of tokens is one copy, not thousands of callbacks).
void pack_ints(packer& pk, byte_sink& sink, const std::vector<int32_t>& v, const char* what) {
  const uint32_t num_bytes = count(v.size() * sizeof(int32_t), what);
  pk.pack_bin(num_bytes);
  if (v.empty()) return;
  if constexpr (std::endian::native == std::endian::little) {
    sink.write(reinterpret_cast<const char*>(v.data()), num_bytes);
  } else {
    for (int32_t x : v) {
      const auto u = static_cast<uint32_t>(x);
      const char b[4] = {static_cast<char>(u), static_cast<char>(u >> 8), static_cast<char>(u >> 16), static_cast<char>(u >> 24)};
      sink.write(b, sizeof b);
    }
  }
}

void pack_params(packer& pk, byte_sink& sink, const sampling_params& p) {
  pk.pack_array(params_fields);
  pack_f32(sink, p.temperature);
  pack_f32(sink, p.top_p);
  pk.pack_int32(p.top_k);
  pack_f32(sink, p.min_p);
  pack_f32(sink, p.repetition_penalty);
  pack_f32(sink, p.presence_penalty);
  pack_f32(sink, p.frequency_penalty);
  if (p.seed) pk.pack_uint64(*p.seed); else pk.pack_nil();
  pk.pack_int32(p.max_tokens);
  pk.pack_int32(p.min_tokens);
  if (p.ignore_eos) pk.pack_true(); else pk.pack_false();
  pk.pack_array(count(p.stop.size(), "stop"));
  for (const std::string& s : p.stop) {
    pk.pack_str(count(s.size(), "a stop string"));
    pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  pack_ints(pk, sink, p.stop_token_ids, "stop_token_ids");
  if (p.include_stop_str_in_output) pk.pack_true(); else pk.pack_false();
  pk.pack_array(count(2 * p.logit_bias.size(), "logit_bias"));
  for (const auto& [id, bias] : p.logit_bias) {
    pk.pack_int32(id);
    pack_f32(sink, bias);
  }
  if (p.logprobs) pk.pack_int32(*p.logprobs); else pk.pack_nil();
  if (p.structured) {
    pk.pack_array(2);
    pk.pack_uint8(static_cast<uint8_t>(p.structured->type));
    pk.pack_str(count(p.structured->text.size(), "a structured output spec"));
    pk.pack_str_body(p.structured->text.data(), static_cast<uint32_t>(p.structured->text.size()));
  } else {
    pk.pack_nil();
  }
}

void pack_seq(packer& pk, byte_sink& sink, const scheduled_seq& s) {
  if (!s.is_new) {
    static const sampling_params default_params;
    if (!s.all_token_ids.empty() || s.num_prompt_tokens != 0 || s.seed != 0 || !(s.params == default_params))
      throw std::invalid_argument("step plan: continuing sequence " + std::to_string(s.id) +
                                  " carries sampling fields, which only a new sequence sends");
  }
  pk.pack_array(s.is_new ? new_seq_fields : continuing_seq_fields);
  pk.pack_uint64(s.id);
  if (s.is_new) pk.pack_true(); else pk.pack_false();
  pk.pack_int32(s.start_position);
  pack_ints(pk, sink, s.token_ids, "token_ids");
  pack_ints(pk, sink, s.block_ids, "block_ids");
  if (s.sample) pk.pack_true(); else pk.pack_false();
  if (!s.is_new) return;
  pack_ints(pk, sink, s.all_token_ids, "all_token_ids");
  pk.pack_int32(s.num_prompt_tokens);
  pack_params(pk, sink, s.params);
  pk.pack_uint64(s.seed);
}

void pack_plan(const step_plan& plan, std::vector<std::byte>& out) {
  byte_sink sink{&out};
  packer pk(sink);
  pk.pack_array(5);
  pk.pack_uint32(step_plan_format_version);
  pk.pack_uint8(static_cast<uint8_t>(rank_message::kind::plan));
  pk.pack_uint64(plan.step);
  pk.pack_array(count(plan.seqs.size(), "seqs"));
  for (const scheduled_seq& s : plan.seqs) pack_seq(pk, sink, s);
  pk.pack_array(count(plan.released.size(), "released"));
  for (request_id id : plan.released) pk.pack_uint64(id);
  sink.finish();
}

void pack_stop_order(std::vector<std::byte>& out) {
  byte_sink sink{&out};
  packer pk(sink);
  pk.pack_array(2);
  pk.pack_uint32(step_plan_format_version);
  pk.pack_uint8(static_cast<uint8_t>(rank_message::kind::stop));
  sink.finish();
}

// ---- decoding ----

// One pass of msgpack-c's parser, whose visitor gets a callback per value, straight into the plan: no object
// tree and no second pass. Each callback checks its value against what the layout expects at its position,
// so only arrays where the layout has an array open a level (the nesting stays within max_depth), and an
// array claiming more elements than the message has bytes is refused before anything is reserved for it.

using msgpack::type::object_type;

// Where the parser is: the arrays open around it.
enum class level : uint8_t { root, seqs, seq, params, stop, logit_bias, structured, released };
struct frame {
  level what;
  uint32_t size;
  uint32_t index = 0;  // of the element being read
};

const char* const root_fields[] = {"the format version", "the message kind", "step", "seqs", "released"};
const char* const seq_fields[] = {"id", "is_new", "start_position", "token_ids", "block_ids", "sample",
                                  "all_token_ids", "num_prompt_tokens", "params", "seed"};
const char* const params_field_names[] = {
    "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed",
    "max_tokens", "min_tokens", "ignore_eos", "stop", "stop_token_ids", "include_stop_str_in_output", "logit_bias",
    "logprobs", "structured"};
static_assert(std::size(seq_fields) == new_seq_fields && std::size(params_field_names) == params_fields);

// A value as the parser delivered it, enough to check it and to describe it in a message.
struct value {
  object_type type;
  uint64_t u = 0;  // POSITIVE_INTEGER
  int64_t i = 0;   // NEGATIVE_INTEGER
  float f = 0;     // FLOAT32
  bool b = false;  // BOOLEAN
  std::string_view str = {};  // STR, BIN
  uint32_t size = 0;          // ARRAY, MAP: the elements claimed; BIN: its bytes
};

std::string describe(const value& v) {
  switch (v.type) {
    case object_type::NIL: return "nil";
    case object_type::BOOLEAN: return v.b ? "true" : "false";
    case object_type::POSITIVE_INTEGER: return std::to_string(v.u);
    case object_type::NEGATIVE_INTEGER: return std::to_string(v.i);
    case object_type::FLOAT32: return "a float32";
    case object_type::FLOAT64: return "a float64";
    case object_type::STR: return "a string";
    case object_type::BIN: return "binary data of " + std::to_string(v.size) + " bytes";
    case object_type::ARRAY: return "an array of " + std::to_string(v.size);
    case object_type::MAP: return "a map";
    case object_type::EXT: return "an extension object";
  }
  return "an unknown object";
}

bool as_u64(const value& v, uint64_t& out) {
  if (v.type != object_type::POSITIVE_INTEGER) return false;
  out = v.u;
  return true;
}

bool as_i32(const value& v, int32_t& out) {
  if (v.type == object_type::POSITIVE_INTEGER && v.u <= uint64_t(std::numeric_limits<int32_t>::max())) {
    out = static_cast<int32_t>(v.u);
    return true;
  }
  if (v.type == object_type::NEGATIVE_INTEGER && v.i >= std::numeric_limits<int32_t>::min()) {
    out = static_cast<int32_t>(v.i);
    return true;
  }
  return false;
}

// Only float32: the encoder writes nothing else.
bool as_f32(const value& v, float& out) {
  if (v.type != object_type::FLOAT32) return false;
  out = v.f;
  return true;
}

bool as_bool(const value& v, bool& out) {
  if (v.type != object_type::BOOLEAN) return false;
  out = v.b;
  return true;
}

// A bin of little-endian int32s (pack_ints).
bool as_ints(const value& v, std::vector<int32_t>& out) {
  if (v.type != object_type::BIN || v.size % sizeof(int32_t) != 0) return false;
  out.resize(v.size / sizeof(int32_t));
  if (out.empty()) return true;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out.data(), v.str.data(), v.size);
  } else {
    const auto* b = reinterpret_cast<const unsigned char*>(v.str.data());
    for (size_t i = 0; i < out.size(); ++i, b += 4)
      out[i] = static_cast<int32_t>(uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24);
  }
  return true;
}

// Gives a continuing seq's sampling fields their defaults, as a fresh one has them (a copy from defaults:
// vectors are cleared, keeping their capacity, and nothing is allocated).
[[gnu::noinline]] void forget_sampling(scheduled_seq& s) {
  static const sampling_params default_params;
  s.all_token_ids.clear();
  s.num_prompt_tokens = 0;
  s.seed = 0;
  s.params = default_params;
}

class plan_reader : public msgpack::null_visitor {
 public:
  plan_reader(rank_message& out, size_t num_bytes) : out_(out), num_bytes_(num_bytes) {}

  bool visit_nil() { return scalar({object_type::NIL}); }
  bool visit_boolean(bool b) { return scalar({.type = object_type::BOOLEAN, .b = b}); }
  bool visit_positive_integer(uint64_t u) { return scalar({.type = object_type::POSITIVE_INTEGER, .u = u}); }
  bool visit_negative_integer(int64_t i) { return scalar({.type = object_type::NEGATIVE_INTEGER, .i = i}); }
  bool visit_float32(float f) { return scalar({.type = object_type::FLOAT32, .f = f}); }
  bool visit_float64(double) { return scalar({object_type::FLOAT64}); }
  bool visit_str(const char* p, uint32_t n) { return scalar({.type = object_type::STR, .str = {p, n}}); }
  bool visit_bin(const char* p, uint32_t n) { return scalar({.type = object_type::BIN, .str = {p, n}, .size = n}); }
  bool visit_ext(const char*, uint32_t) { return scalar({object_type::EXT}); }
  bool start_array(uint32_t n);
  bool end_array_item() {
    ++stack_[depth_ - 1].index;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool start_map(uint32_t n) { return wrong_here({.type = object_type::MAP, .size = n}); }
  void parse_error(size_t, size_t at) { error = "the message is not valid msgpack (a bad byte at offset " + std::to_string(at) + ")"; }
  void insufficient_bytes(size_t, size_t) {
    error = "the message is truncated: " + std::to_string(num_bytes_) + " bytes end inside it";
  }

  std::string error;  // why the parse stopped, when it stopped early

 private:
  bool scalar(const value& v);
  bool push(level what, uint32_t size) {
    if (depth_ == max_depth) return fail("the message nests deeper than " + std::to_string(max_depth) + " levels");
    stack_[depth_++] = frame{what, size, 0};
    return true;
  }
  // The name of the value being read: "seqs[3].params.stop[1]".
  std::string here() const;
  // Refuses the value at the parser's position: it is not what the layout has there.
  bool wrong_here(const value& v);
  bool fail(std::string message) {
    error = std::move(message);
    return false;
  }
  scheduled_seq& seq() { return out_.plan.seqs[stack_[1].index]; }

  rank_message& out_;
  const size_t num_bytes_;
  frame stack_[max_depth];
  size_t depth_ = 0;
};

std::string plan_reader::here() const {
  std::string name;
  for (size_t d = 0; d < depth_; ++d) {
    const frame& f = stack_[d];
    switch (f.what) {
      case level::root: name += root_fields[std::min<size_t>(f.index, std::size(root_fields) - 1)]; break;
      case level::seq: name += std::string(".") + seq_fields[f.index]; break;
      case level::params: name += std::string(".") + params_field_names[f.index]; break;
      default: name += "[" + std::to_string(f.index) + "]"; break;
    }
  }
  return name;
}

bool plan_reader::wrong_here(const value& v) {
  if (depth_ == 0) return fail("the message must be an array [version, kind, ...], got " + describe(v));
  const frame& f = stack_[depth_ - 1];
  const char* const int32s = "int32s (binary data of 4-byte little-endian values)";
  const char* expected = "";
  switch (f.what) {
    case level::root:
      expected = f.index == 0 ? "an unsigned integer"
               : f.index == 1 ? "0 (a step plan) or 1 (a stop order)"
               : f.index == 2 ? "an unsigned 64-bit integer"
                              : "an array";
      break;
    case level::seqs: expected = "an array of 6 (continuing) or 10 (new) fields"; break;
    case level::seq:
      switch (f.index) {
        case 0: case 9: expected = "an unsigned 64-bit integer"; break;
        case 1: case 5: expected = "true or false"; break;
        case 2: case 7: expected = "a 32-bit integer"; break;
        case 8: expected = "an array of 17 (sampling parameters)"; break;
        default: expected = int32s; break;
      }
      break;
    case level::params:
      switch (f.index) {
        case 0: case 1: case 3: case 4: case 5: case 6: expected = "a float32"; break;
        case 2: case 8: case 9: expected = "a 32-bit integer"; break;
        case 7: expected = "nil or an unsigned 64-bit integer"; break;
        case 10: case 13: expected = "true or false"; break;
        case 12: expected = int32s; break;
        case 14: expected = "an array of (id, bias) pairs, so of even length"; break;
        case 15: expected = "nil or a 32-bit integer"; break;
        case 16: expected = "nil or an array of 2 (kind, text)"; break;
        default: expected = "an array"; break;
      }
      break;
    case level::stop: expected = "a string"; break;
    case level::logit_bias: expected = f.index % 2 == 0 ? "a 32-bit token id" : "a float32"; break;
    case level::structured:
      expected = f.index == 0 ? "a structured output kind (0 to 4)" : "a string";
      break;
    case level::released: expected = "a request id"; break;
  }
  return fail(here() + " must be " + expected + ", got " + describe(v));
}

bool plan_reader::start_array(uint32_t n) {
  const value as_value{.type = object_type::ARRAY, .size = n};
  if (depth_ == 0) {
    if (n < 2) return wrong_here(as_value);
    return push(level::root, n);
  }
  // Every element takes a byte at least, a sequence nine ([id, false, start, bin, bin, sample]): more than
  // that cannot be there.
  const frame& f = stack_[depth_ - 1];
  const bool seqs = f.what == level::root && f.index == 3;
  if (size_t(n) > (seqs ? num_bytes_ / 9 : num_bytes_))
    return fail("the message is truncated: " + here() + " claims " + std::to_string(n) + " elements, but the whole message is " +
                std::to_string(num_bytes_) + " bytes");
  step_plan& plan = out_.plan;
  switch (f.what) {
    case level::root:
      if (f.index == 3) {
        // Kept seqs are reused (their vectors' capacity too): each is reset as it is read.
        plan.seqs.resize(n);
        return push(level::seqs, n);
      }
      if (f.index == 4) {
        plan.released.clear();
        plan.released.reserve(n);
        return push(level::released, n);
      }
      break;
    case level::seqs:
      if (n != continuing_seq_fields && n != new_seq_fields) break;
      return push(level::seq, n);
    case level::seq:
      if (f.index == 8 && n == params_fields) return push(level::params, n);
      break;
    case level::params: {
      sampling_params& p = seq().params;
      if (f.index == 11) {
        p.stop.resize(n);
        return push(level::stop, n);
      }
      if (f.index == 14 && n % 2 == 0) {
        p.logit_bias.resize(n / 2);
        return push(level::logit_bias, n);
      }
      if (f.index == 16 && n == 2) {
        p.structured.emplace();
        return push(level::structured, n);
      }
      break;
    }
    default: break;
  }
  return wrong_here(as_value);
}

bool plan_reader::scalar(const value& v) {
  if (depth_ == 0) return wrong_here(v);
  frame& f = stack_[depth_ - 1];
  step_plan& plan = out_.plan;
  bool ok = false;
  switch (f.what) {
    case level::root:
      switch (f.index) {
        case 0:
          if (v.type == object_type::POSITIVE_INTEGER && v.u != step_plan_format_version)
            return fail("the message is in step plan format version " + std::to_string(v.u) +
                        ", but this build reads version " + std::to_string(step_plan_format_version) +
                        ": every rank must run the same troupe build");
          ok = v.type == object_type::POSITIVE_INTEGER;
          break;
        case 1:
          if (v.type != object_type::POSITIVE_INTEGER || v.u > 1) break;
          out_.what = static_cast<rank_message::kind>(v.u);
          if (out_.what == rank_message::kind::stop && f.size != 2)
            return fail("a stop order must be an array of 2 (version, kind), got an array of " + std::to_string(f.size));
          if (out_.what == rank_message::kind::plan && f.size != 5)
            return fail("a step plan must be an array of 5 (version, kind, step, seqs, released), got an array of " +
                        std::to_string(f.size));
          ok = true;
          break;
        case 2: ok = as_u64(v, plan.step); break;
      }
      break;
    case level::seq: {
      scheduled_seq& s = seq();
      switch (f.index) {
        case 0: ok = as_u64(v, s.id); break;
        case 1:
          if (!as_bool(v, s.is_new)) break;
          if (!s.is_new) forget_sampling(s);  // a reused seq may hold a new one's fields
          if (f.size != (s.is_new ? new_seq_fields : continuing_seq_fields))
            return fail(here() + " is " + (s.is_new ? "true" : "false") + ", so the sequence must have " +
                        std::to_string(s.is_new ? new_seq_fields : continuing_seq_fields) + " fields, got " +
                        std::to_string(f.size));
          ok = true;
          break;
        case 2: ok = as_i32(v, s.start_position); break;
        case 3: ok = as_ints(v, s.token_ids); break;
        case 4: ok = as_ints(v, s.block_ids); break;
        case 5: ok = as_bool(v, s.sample); break;
        case 6: ok = as_ints(v, s.all_token_ids); break;
        case 7: ok = as_i32(v, s.num_prompt_tokens); break;
        case 9: ok = as_u64(v, s.seed); break;
      }
      break;
    }
    case level::params: {
      sampling_params& p = seq().params;
      switch (f.index) {
        case 0: ok = as_f32(v, p.temperature); break;
        case 1: ok = as_f32(v, p.top_p); break;
        case 2: ok = as_i32(v, p.top_k); break;
        case 3: ok = as_f32(v, p.min_p); break;
        case 4: ok = as_f32(v, p.repetition_penalty); break;
        case 5: ok = as_f32(v, p.presence_penalty); break;
        case 6: ok = as_f32(v, p.frequency_penalty); break;
        case 7:
          if (v.type == object_type::NIL) p.seed.reset(), ok = true;
          else if (v.type == object_type::POSITIVE_INTEGER) p.seed = v.u, ok = true;
          break;
        case 8: ok = as_i32(v, p.max_tokens); break;
        case 9: ok = as_i32(v, p.min_tokens); break;
        case 10: ok = as_bool(v, p.ignore_eos); break;
        case 12: ok = as_ints(v, p.stop_token_ids); break;
        case 13: ok = as_bool(v, p.include_stop_str_in_output); break;
        case 15: {
          int32_t n = 0;
          if (v.type == object_type::NIL) p.logprobs.reset(), ok = true;
          else if (as_i32(v, n)) p.logprobs = n, ok = true;
          break;
        }
        case 16:
          if (v.type == object_type::NIL) p.structured.reset(), ok = true;
          break;
      }
      break;
    }
    case level::stop:
      if (v.type == object_type::STR) seq().params.stop[f.index].assign(v.str), ok = true;
      break;
    case level::logit_bias: {
      auto& pair = seq().params.logit_bias[f.index / 2];
      ok = f.index % 2 == 0 ? as_i32(v, pair.first) : as_f32(v, pair.second);
      break;
    }
    case level::structured: {
      structured_output& so = *seq().params.structured;
      if (f.index == 0 && v.type == object_type::POSITIVE_INTEGER && v.u <= max_structured_kind)
        so.type = static_cast<structured_output::kind>(v.u), ok = true;
      else if (f.index == 1 && v.type == object_type::STR)
        so.text.assign(v.str), ok = true;
      break;
    }
    case level::released: {
      uint64_t id = 0;
      ok = as_u64(v, id);
      if (ok) plan.released.push_back(id);
      break;
    }
    case level::seqs: break;
  }
  return ok || wrong_here(v);
}

// Reads one whole message into `out`, reusing its vectors.
void decode_into(std::span<const std::byte> bytes, rank_message& out) {
  if (bytes.empty()) throw std::invalid_argument("the message is empty");
  out.what = rank_message::kind::plan;
  plan_reader reader(out, bytes.size());
  size_t off = 0;
  bool complete = false;
  try {
    complete = msgpack::parse(reinterpret_cast<const char*>(bytes.data()), bytes.size(), off, reader);
  } catch (const std::exception& e) {  // msgpack's size_overflow for an ext of 2^32-1 bytes
    throw std::invalid_argument(std::string("the message is not valid msgpack (") + e.what() + ")");
  }
  if (!complete) throw std::invalid_argument(reader.error);
  if (off != bytes.size())
    throw std::invalid_argument("the message has " + std::to_string(bytes.size() - off) + " bytes after its end (at offset " +
                                std::to_string(off) + ")");
  if (out.what == rank_message::kind::stop) out.plan = step_plan{};
}

} // namespace

void encode_step_plan(const step_plan& plan, std::vector<std::byte>& out) { pack_plan(plan, out); }

std::vector<std::byte> encode_step_plan(const step_plan& plan) {
  std::vector<std::byte> out;
  pack_plan(plan, out);
  return out;
}

void encode_stop_order(std::vector<std::byte>& out) { pack_stop_order(out); }

void encode_rank_message(const rank_message& message, std::vector<std::byte>& out) {
  if (message.what == rank_message::kind::stop) pack_stop_order(out);
  else pack_plan(message.plan, out);
}

void decode_rank_message(std::span<const std::byte> bytes, rank_message& out) {
  try {
    decode_into(bytes, out);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("malformed step plan message: ") + e.what());
  }
}

rank_message decode_rank_message(std::span<const std::byte> bytes) {
  rank_message m;
  decode_rank_message(bytes, m);
  return m;
}

step_plan decode_step_plan(std::span<const std::byte> bytes) {
  rank_message m = decode_rank_message(bytes);
  if (m.what != rank_message::kind::plan)
    throw std::invalid_argument("expected a step plan message, got a stop order");
  return std::move(m.plan);
}

} // namespace troupe
