#include "runtime/engine/step_plan_codec.hpp"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include <bit>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

namespace troupe {

// NOTE: the codec writes every field by hand, so a field added to these structs and forgotten here would
// silently not reach the other ranks. These sizes (LP64) change when a field is added: encode and decode
// the new field, then update the size.
static_assert(sizeof(void*) != 8 || sizeof(sampling_params) == 152,
              "sampling_params changed: update step_plan_codec.cpp (encode, decode, tests), then this size");
static_assert(sizeof(void*) != 8 || sizeof(scheduled_seq) == 264,
              "scheduled_seq changed: update step_plan_codec.cpp (encode, decode, tests), then this size");
static_assert(sizeof(void*) != 8 || sizeof(step_plan) == 56,
              "step_plan changed: update step_plan_codec.cpp (encode, decode, tests), then this size");

namespace {

// message > seqs > seq > params > stop strings: no container nests deeper.
constexpr size_t max_depth = 5;
constexpr size_t continuing_seq_fields = 6;
constexpr size_t new_seq_fields = 10;
constexpr size_t params_fields = 16;

// ---- encoding ----

// The packer's stream: appends to the caller's buffer.
struct byte_sink {
  std::vector<std::byte>* out;
  void write(const char* data, size_t n) {
    // resize and copy rather than insert: g++ 12 warns falsely (-Warray-bounds) on an insert after clear().
    const size_t at = out->size();
    out->resize(at + n);
    std::memcpy(out->data() + at, data, n);
  }
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
    throw std::invalid_argument(std::string("step plan: ") + what + " has more than 2^32-1 elements");
  return static_cast<uint32_t>(n);
}

void pack_ints(packer& pk, const std::vector<int32_t>& v, const char* what) {
  pk.pack_array(count(v.size(), what));
  for (int32_t x : v) pk.pack_int32(x);
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
  pack_ints(pk, p.stop_token_ids, "stop_token_ids");
  if (p.include_stop_str_in_output) pk.pack_true(); else pk.pack_false();
  pk.pack_array(count(2 * p.logit_bias.size(), "logit_bias"));
  for (const auto& [id, bias] : p.logit_bias) {
    pk.pack_int32(id);
    pack_f32(sink, bias);
  }
  if (p.logprobs) pk.pack_int32(*p.logprobs); else pk.pack_nil();
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
  pack_ints(pk, s.token_ids, "token_ids");
  pack_ints(pk, s.block_ids, "block_ids");
  if (s.sample) pk.pack_true(); else pk.pack_false();
  if (!s.is_new) return;
  pack_ints(pk, s.all_token_ids, "all_token_ids");
  pk.pack_int32(s.num_prompt_tokens);
  pack_params(pk, sink, s.params);
  pk.pack_uint64(s.seed);
}

void pack_plan(const step_plan& plan, std::vector<std::byte>& out) {
  out.clear();
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
}

// ---- decoding ----

using msgpack::object;
namespace type = msgpack::type;

[[noreturn]] void fail(std::string message) { throw std::invalid_argument(std::move(message)); }

std::string describe(const object& o) {
  switch (o.type) {
    case type::NIL: return "nil";
    case type::BOOLEAN: return o.via.boolean ? "true" : "false";
    case type::POSITIVE_INTEGER: return std::to_string(o.via.u64);
    case type::NEGATIVE_INTEGER: return std::to_string(o.via.i64);
    case type::FLOAT32: return "a float32";
    case type::FLOAT64: return "a float64";
    case type::STR: return "a string";
    case type::BIN: return "binary data";
    case type::ARRAY: return "an array of " + std::to_string(o.via.array.size);
    case type::MAP: return "a map";
    case type::EXT: return "an extension object";
  }
  return "an unknown object";
}

[[noreturn]] void wrong(std::string_view name, std::string_view expected, const object& got) {
  fail(std::string(name) + " must be " + std::string(expected) + ", got " + describe(got));
}

std::string element(std::string_view name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

uint64_t read_u64(const object& o, std::string_view name) {
  if (o.type != type::POSITIVE_INTEGER) wrong(name, "an unsigned 64-bit integer", o);
  return o.via.u64;
}

// False when `o` is not an integer in int32 range.
bool as_i32(const object& o, int32_t& v) {
  if (o.type == type::POSITIVE_INTEGER && o.via.u64 <= uint64_t(std::numeric_limits<int32_t>::max())) {
    v = static_cast<int32_t>(o.via.u64);
    return true;
  }
  if (o.type == type::NEGATIVE_INTEGER && o.via.i64 >= std::numeric_limits<int32_t>::min()) {
    v = static_cast<int32_t>(o.via.i64);
    return true;
  }
  return false;
}

int32_t read_i32(const object& o, std::string_view name) {
  int32_t v = 0;
  if (!as_i32(o, v)) wrong(name, "a 32-bit integer", o);
  return v;
}

bool read_bool(const object& o, std::string_view name) {
  if (o.type != type::BOOLEAN) wrong(name, "true or false", o);
  return o.via.boolean;
}

// Only float32: the encoder writes nothing else, and a float64 would not round-trip.
float read_f32(const object& o, std::string_view name) {
  if (o.type != type::FLOAT32) wrong(name, "a float32", o);
  return static_cast<float>(o.via.f64);
}

// The array's elements; `size` when given is the only length accepted.
std::span<const object> read_array(const object& o, std::string_view name) {
  if (o.type != type::ARRAY) wrong(name, "an array", o);
  return {o.via.array.ptr, o.via.array.size};
}

std::span<const object> read_array(const object& o, std::string_view name, size_t size, std::string_view what) {
  const auto a = read_array(o, name);
  if (a.size() != size) wrong(name, "an array of " + std::to_string(size) + " (" + std::string(what) + ")", o);
  return a;
}

void read_ints(const object& o, std::vector<int32_t>& out, std::string_view name) {
  const auto a = read_array(o, name);
  out.resize(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (!as_i32(a[i], out[i])) wrong(element(name, i), "a 32-bit integer", a[i]);
}

// `f`: the params_fields sampling parameters.
void read_params(std::span<const object> f, sampling_params& p) {
  p.temperature = read_f32(f[0], "temperature");
  p.top_p = read_f32(f[1], "top_p");
  p.top_k = read_i32(f[2], "top_k");
  p.min_p = read_f32(f[3], "min_p");
  p.repetition_penalty = read_f32(f[4], "repetition_penalty");
  p.presence_penalty = read_f32(f[5], "presence_penalty");
  p.frequency_penalty = read_f32(f[6], "frequency_penalty");
  if (f[7].type == type::NIL) p.seed.reset();
  else if (f[7].type == type::POSITIVE_INTEGER) p.seed = f[7].via.u64;
  else wrong("seed", "nil or an unsigned 64-bit integer", f[7]);
  p.max_tokens = read_i32(f[8], "max_tokens");
  p.min_tokens = read_i32(f[9], "min_tokens");
  p.ignore_eos = read_bool(f[10], "ignore_eos");
  const auto stop = read_array(f[11], "stop");
  p.stop.resize(stop.size());
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].type != type::STR) wrong(element("stop", i), "a string", stop[i]);
    p.stop[i].assign(stop[i].via.str.ptr, stop[i].via.str.size);
  }
  read_ints(f[12], p.stop_token_ids, "stop_token_ids");
  p.include_stop_str_in_output = read_bool(f[13], "include_stop_str_in_output");
  const auto bias = read_array(f[14], "logit_bias");
  if (bias.size() % 2 != 0) wrong("logit_bias", "an array of (id, bias) pairs, so of even length", f[14]);
  p.logit_bias.resize(bias.size() / 2);
  for (size_t i = 0; i < p.logit_bias.size(); ++i) {
    if (!as_i32(bias[2 * i], p.logit_bias[i].first)) wrong(element("logit_bias", 2 * i), "a 32-bit token id", bias[2 * i]);
    if (bias[2 * i + 1].type != type::FLOAT32) wrong(element("logit_bias", 2 * i + 1), "a float32", bias[2 * i + 1]);
    p.logit_bias[i].second = static_cast<float>(bias[2 * i + 1].via.f64);
  }
  if (f[15].type == type::NIL) p.logprobs.reset();
  else p.logprobs = read_i32(f[15], "logprobs");
}

// `f`: the sequence's fields, continuing_seq_fields or new_seq_fields of them.
void read_seq(std::span<const object> f, scheduled_seq& s) {
  s.id = read_u64(f[0], "id");
  s.is_new = read_bool(f[1], "is_new");
  const size_t expected = s.is_new ? new_seq_fields : continuing_seq_fields;
  if (f.size() != expected)
    fail("is_new is " + std::string(s.is_new ? "true" : "false") + ", so the sequence must have " +
         std::to_string(expected) + " fields, got " + std::to_string(f.size()));
  s.start_position = read_i32(f[2], "start_position");
  read_ints(f[3], s.token_ids, "token_ids");
  read_ints(f[4], s.block_ids, "block_ids");
  s.sample = read_bool(f[5], "sample");
  if (!s.is_new) return;
  read_ints(f[6], s.all_token_ids, "all_token_ids");
  s.num_prompt_tokens = read_i32(f[7], "num_prompt_tokens");
  const auto params = read_array(f[8], "params", params_fields, "sampling parameters");
  try {
    read_params(params, s.params);
  } catch (const std::invalid_argument& e) {
    fail(std::string("params.") + e.what());
  }
  s.seed = read_u64(f[9], "seed");
}

void read_plan(std::span<const object> f, step_plan& plan) {
  plan.step = read_u64(f[2], "step");
  const auto seqs = read_array(f[3], "seqs");
  plan.seqs.resize(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const object& o = seqs[i];
    if (o.type != type::ARRAY || (o.via.array.size != continuing_seq_fields && o.via.array.size != new_seq_fields))
      wrong(element("seqs", i), "an array of " + std::to_string(continuing_seq_fields) + " (continuing) or " +
                                    std::to_string(new_seq_fields) + " (new) fields", o);
    try {
      read_seq({o.via.array.ptr, o.via.array.size}, plan.seqs[i]);
    } catch (const std::invalid_argument& e) {
      fail(element("seqs", i) + "." + e.what());
    }
  }
  const auto released = read_array(f[4], "released");
  plan.released.resize(released.size());
  for (size_t i = 0; i < released.size(); ++i) {
    if (released[i].type != type::POSITIVE_INTEGER) wrong(element("released", i), "a request id", released[i]);
    plan.released[i] = released[i].via.u64;
  }
}

// Walks the bytes without building anything: they must hold one complete msgpack object, nested no deeper
// than max_depth, and nothing after it. Once they do, every container announced is backed by bytes that
// are really there, so building the objects costs at most a small multiple of the input's size, whatever
// lengths it claims.
struct shape_check : msgpack::null_visitor {
  size_t depth = 0;
  bool too_deep = false;
  bool truncated = false;
  bool invalid = false;
  size_t error_offset = 0;
  bool open() {
    if (++depth > max_depth) too_deep = true;
    return !too_deep;
  }
  bool start_array(uint32_t) { return open(); }
  bool end_array() { --depth; return true; }
  bool start_map(uint32_t) { return open(); }
  bool end_map() { --depth; return true; }
  void parse_error(size_t, size_t at) { invalid = true; error_offset = at; }
  void insufficient_bytes(size_t, size_t) { truncated = true; }
};

msgpack::object_handle unpack_checked(std::span<const char> bytes) {
  if (bytes.empty()) fail("the message is empty");
  shape_check check;
  size_t off = 0;
  bool complete = false;
  try {
    complete = msgpack::parse(bytes.data(), bytes.size(), off, check);
  } catch (const std::exception& e) {  // msgpack's size_overflow for an ext of 2^32-1 bytes
    fail(std::string("the message is not valid msgpack (") + e.what() + ")");
  }
  if (check.too_deep) fail("the message nests deeper than " + std::to_string(max_depth) + " levels");
  if (check.invalid) fail("the message is not valid msgpack (a bad byte at offset " + std::to_string(check.error_offset) + ")");
  if (!complete)
    fail("the message is truncated: " + std::to_string(bytes.size()) + " bytes end inside it");
  if (off != bytes.size())
    fail("the message has " + std::to_string(bytes.size() - off) + " bytes after its end (at offset " +
         std::to_string(off) + ")");
  // Strings point into `bytes` rather than being copied: the objects live no longer than the decode.
  const auto reference = [](type::object_type, size_t, void*) { return true; };
  const msgpack::unpack_limit limit(/*array=*/bytes.size(), /*map=*/0, /*str=*/bytes.size(), /*bin=*/0, /*ext=*/0,
                                    max_depth);
  try {
    off = 0;
    return msgpack::unpack(bytes.data(), bytes.size(), off, reference, nullptr, limit);
  } catch (const msgpack::size_overflow& e) {
    fail(std::string("the message holds a map, binary data or an extension object, which it never does (") +
         e.what() + ")");
  } catch (const msgpack::unpack_error& e) {
    fail(std::string("the message is not valid msgpack (") + e.what() + ")");
  }
}

rank_message decode(std::span<const std::byte> bytes) {
  const msgpack::object_handle handle =
      unpack_checked(std::span<const char>(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  const object& root = handle.get();
  if (root.type != type::ARRAY || root.via.array.size < 2)
    wrong("the message", "an array [version, kind, ...]", root);
  const std::span<const object> f(root.via.array.ptr, root.via.array.size);
  if (f[0].type != type::POSITIVE_INTEGER) wrong("the format version", "an unsigned integer", f[0]);
  if (f[0].via.u64 != step_plan_format_version)
    fail("the message is in step plan format version " + std::to_string(f[0].via.u64) + ", but this build reads version " +
         std::to_string(step_plan_format_version) + ": every rank must run the same troupe build");
  if (f[1].type != type::POSITIVE_INTEGER || f[1].via.u64 > 1)
    wrong("the message kind", "0 (a step plan) or 1 (a stop order)", f[1]);
  rank_message m;
  m.what = static_cast<rank_message::kind>(f[1].via.u64);
  if (m.what == rank_message::kind::stop) {
    read_array(root, "a stop order", 2, "version, kind");
    return m;
  }
  read_array(root, "a step plan", 5, "version, kind, step, seqs, released");
  read_plan(f, m.plan);
  return m;
}

} // namespace

void encode_step_plan(const step_plan& plan, std::vector<std::byte>& out) { pack_plan(plan, out); }

std::vector<std::byte> encode_step_plan(const step_plan& plan) {
  std::vector<std::byte> out;
  pack_plan(plan, out);
  return out;
}

void encode_stop_order(std::vector<std::byte>& out) {
  out.clear();
  byte_sink sink{&out};
  packer pk(sink);
  pk.pack_array(2);
  pk.pack_uint32(step_plan_format_version);
  pk.pack_uint8(static_cast<uint8_t>(rank_message::kind::stop));
}

void encode_rank_message(const rank_message& message, std::vector<std::byte>& out) {
  if (message.what == rank_message::kind::stop) encode_stop_order(out);
  else pack_plan(message.plan, out);
}

rank_message decode_rank_message(std::span<const std::byte> bytes) {
  try {
    return decode(bytes);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("malformed step plan message: ") + e.what());
  }
}

step_plan decode_step_plan(std::span<const std::byte> bytes) {
  rank_message m = decode_rank_message(bytes);
  if (m.what != rank_message::kind::plan)
    throw std::invalid_argument("expected a step plan message, got a stop order");
  return std::move(m.plan);
}

} // namespace troupe
