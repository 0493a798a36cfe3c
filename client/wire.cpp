#include "wire.hpp"

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include <cstring>
#include <string_view>
#include <type_traits>

namespace troupe::wire {
namespace {

// Containers nested deeper than the deepest message ([kind, {outputs: [{token_ids: [...]}]}]) are refused.
constexpr size_t max_depth = 5;
// Beyond the frame cap, per-container caps: no message has more fields, and no list more elements.
constexpr size_t max_map_pairs = 64;
constexpr size_t max_array_elements = 1u << 20;

// Each message's fields, once, for packing and unpacking alike: f(name, member).
template <class F> void fields(hello& m, F&& f) { f("protocol", m.protocol); f("api_key", m.api_key); }
template <class F> void fields(welcome& m, F&& f) { f("protocol", m.protocol); }
template <class F> void fields(job& m, F&& f) {
  f("tag", m.tag); f("prompt", m.prompt); f("prompt_token_ids", m.prompt_token_ids); f("max_tokens", m.max_tokens);
  f("min_tokens", m.min_tokens); f("temperature", m.temperature); f("top_p", m.top_p); f("top_k", m.top_k);
  f("min_p", m.min_p); f("repetition_penalty", m.repetition_penalty); f("presence_penalty", m.presence_penalty);
  f("frequency_penalty", m.frequency_penalty); f("has_seed", m.has_seed); f("seed", m.seed);
  f("ignore_eos", m.ignore_eos); f("stop", m.stop); f("stop_token_ids", m.stop_token_ids); f("priority", m.priority);
  f("include_stop_str_in_output", m.include_stop_str_in_output); f("logit_bias_ids", m.logit_bias_ids);
  f("logit_bias_values", m.logit_bias_values); f("num_logprobs", m.num_logprobs); f("cache_salt", m.cache_salt);
  f("structured_kind", m.structured_kind); f("structured_text", m.structured_text);
}
template <class F> void fields(submitted& m, F&& f) {
  f("tag", m.tag); f("job_id", m.job_id); f("error", m.error); f("error_type", m.error_type);
  f("retry_after_s", m.retry_after_s); f("num_prompt_tokens", m.num_prompt_tokens);
}
template <class F> void fields(abort_job& m, F&& f) { f("tag", m.tag); f("job_id", m.job_id); }
template <class F> void fields(aborted& m, F&& f) { f("tag", m.tag); f("ok", m.ok); }
template <class F> void fields(stats_request& m, F&& f) { f("tag", m.tag); }
template <class F> void fields(stats& m, F&& f) {
  f("tag", m.tag); f("num_running", m.num_running); f("num_waiting", m.num_waiting);
  f("num_free_blocks", m.num_free_blocks); f("num_blocks", m.num_blocks); f("num_preemptions", m.num_preemptions);
}
template <class F> void fields(output& m, F&& f) {
  f("job_id", m.job_id); f("token_ids", m.token_ids); f("text", m.text); f("finished", m.finished);
  f("finish_reason", m.finish_reason); f("error", m.error); f("num_prompt_tokens", m.num_prompt_tokens);
  f("num_cached_tokens", m.num_cached_tokens); f("stop_string", m.stop_string); f("has_stop_token", m.has_stop_token);
  f("stop_token", m.stop_token); f("has_logprobs", m.has_logprobs); f("logprob", m.logprob); f("top_ids", m.top_ids);
  f("top_logprobs", m.top_logprobs);
}
template <class F> void fields(outputs& m, F&& f) { f("outputs", m.list); }
template <class F> void fields(error& m, F&& f) { f("message", m.message); }

template <class T> constexpr kind kind_of();
template <> constexpr kind kind_of<hello>() { return kind::hello; }
template <> constexpr kind kind_of<welcome>() { return kind::welcome; }
template <> constexpr kind kind_of<job>() { return kind::submit; }
template <> constexpr kind kind_of<submitted>() { return kind::submitted; }
template <> constexpr kind kind_of<abort_job>() { return kind::abort; }
template <> constexpr kind kind_of<aborted>() { return kind::aborted; }
template <> constexpr kind kind_of<stats_request>() { return kind::stats; }
template <> constexpr kind kind_of<stats>() { return kind::stats_reply; }
template <> constexpr kind kind_of<outputs>() { return kind::outputs; }
template <> constexpr kind kind_of<error>() { return kind::error; }

// ---- packing ----

using packer = msgpack::packer<msgpack::sbuffer>;

template <class T> void pack_map(packer& pk, const T& value);

template <class V> void pack_value(packer& pk, const V& v) {
  if constexpr (std::is_same_v<V, std::vector<output>>) {
    pk.pack_array(static_cast<uint32_t>(v.size()));
    for (const output& o : v) pack_map(pk, o);
  } else {
    pk.pack(v);
  }
}

template <class T> void pack_map(packer& pk, const T& value) {
  T& v = const_cast<T&>(value);  // fields() takes members by reference; packing only reads them
  uint32_t n = 0;
  fields(v, [&](const char*, auto&) { ++n; });
  pk.pack_map(n);
  fields(v, [&](const char* name, auto& member) {
    pk.pack(std::string_view(name));
    pack_value(pk, member);
  });
}

template <class Variant> std::vector<char> frame_of(const Variant& m) {
  msgpack::sbuffer buf;
  buf.write("\0\0\0\0", frame_header_bytes);
  packer pk(buf);
  std::visit(
      [&](const auto& body) {
        pk.pack_array(2);
        pk.pack(static_cast<uint8_t>(kind_of<std::decay_t<decltype(body)>>()));
        pack_map(pk, body);
      },
      m);
  const uint32_t n = static_cast<uint32_t>(buf.size() - frame_header_bytes);
  std::vector<char> out(buf.data(), buf.data() + buf.size());
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  return out;
}

// ---- unpacking ----

// Walks the payload without building anything: it must be one complete msgpack object, nested no
// deeper than max_depth. Once it is, every container it announces is backed by bytes that are really
// there, so building the objects costs at most a small multiple of the payload's size.
struct shape_check : msgpack::null_visitor {
  size_t depth = 0;
  bool too_deep = false;
  bool open() {
    if (++depth > max_depth) too_deep = true;
    return !too_deep;
  }
  bool start_array(uint32_t) { return open(); }
  bool end_array() { --depth; return true; }
  bool start_map(uint32_t) { return open(); }
  bool end_map() { --depth; return true; }
};

msgpack::object_handle unpack_checked(std::span<const char> payload) {
  shape_check check;
  size_t off = 0;
  const bool complete = msgpack::parse(payload.data(), payload.size(), off, check);
  if (check.too_deep) throw malformed("the message nests deeper than " + std::to_string(max_depth) + " levels");
  if (!complete) throw malformed("the message is not valid msgpack");
  if (off != payload.size()) throw malformed("the frame has bytes after its message");
  const msgpack::unpack_limit limit(max_array_elements, max_map_pairs, max_frame_bytes, max_frame_bytes,
                                    /*ext=*/0, max_depth);
  try {
    off = 0;
    return msgpack::unpack(payload.data(), payload.size(), off, nullptr, nullptr, limit);
  } catch (const msgpack::size_overflow& e) {
    throw malformed(std::string("the message exceeds a size limit (") + e.what() + ")");
  } catch (const msgpack::unpack_error& e) {
    throw malformed(std::string("the message is not valid msgpack (") + e.what() + ")");
  }
}

template <class T> void unpack_map(const msgpack::object& o, T& out, std::string_view what);

template <class V> void read_value(const msgpack::object& o, V& v, std::string_view name) {
  if constexpr (std::is_same_v<V, std::vector<output>>) {
    if (o.type != msgpack::type::ARRAY) throw malformed("field '" + std::string(name) + "' must be an array");
    v.resize(o.via.array.size);
    for (uint32_t i = 0; i < o.via.array.size; ++i) unpack_map(o.via.array.ptr[i], v[i], "an output");
  } else {
    try {
      o.convert(v);
    } catch (const std::bad_cast&) {
      throw malformed("field '" + std::string(name) + "' has the wrong type or is out of range");
    }
  }
}

// Fields it does not know are skipped (a newer peer may send more); missing ones keep their defaults.
template <class T> void unpack_map(const msgpack::object& o, T& out, std::string_view what) {
  if (o.type != msgpack::type::MAP) throw malformed(std::string(what) + " must be a map");
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR) throw malformed(std::string(what) + " has a key that is not a string");
    const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
    fields(out, [&](const char* name, auto& member) {
      if (key == name) read_value(kv.val, member, key);
    });
  }
}

// The envelope [kind, body]: returns the kind and points body at the map.
uint8_t envelope(const msgpack::object& root, const msgpack::object*& body) {
  if (root.type != msgpack::type::ARRAY || root.via.array.size != 2)
    throw malformed("a message must be the array [kind, body]");
  const msgpack::object& k = root.via.array.ptr[0];
  if (k.type != msgpack::type::POSITIVE_INTEGER || k.via.u64 > 255) throw malformed("the message kind must be a small integer");
  body = &root.via.array.ptr[1];
  return static_cast<uint8_t>(k.via.u64);
}

template <class T, class Variant> Variant body_as(const msgpack::object& body, const char* what) {
  T value;
  unpack_map(body, value, what);
  return value;
}

} // namespace

uint32_t announced_length(std::span<const char, frame_header_bytes> h) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(h[0])) << 24) | (static_cast<uint32_t>(static_cast<uint8_t>(h[1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(h[2])) << 8) | static_cast<uint8_t>(h[3]);
}

std::optional<uint32_t> frame_length(std::span<const char, frame_header_bytes> h) {
  const uint32_t n = announced_length(h);
  if (n == 0 || n > max_frame_bytes) return std::nullopt;
  return n;
}

std::vector<char> frame(const client_message& m) { return frame_of(m); }
std::vector<char> frame(const server_message& m) { return frame_of(m); }

client_message parse_client_message(std::span<const char> payload) {
  const msgpack::object_handle oh = unpack_checked(payload);
  const msgpack::object* body = nullptr;
  switch (static_cast<kind>(envelope(oh.get(), body))) {
    case kind::hello: return body_as<hello, client_message>(*body, "hello");
    case kind::submit: return body_as<job, client_message>(*body, "a job");
    case kind::abort: return body_as<abort_job, client_message>(*body, "abort");
    case kind::stats: return body_as<stats_request, client_message>(*body, "stats");
    default: throw malformed("unknown message kind " + std::to_string(envelope(oh.get(), body)));
  }
}

server_message parse_server_message(std::span<const char> payload) {
  const msgpack::object_handle oh = unpack_checked(payload);
  const msgpack::object* body = nullptr;
  switch (static_cast<kind>(envelope(oh.get(), body))) {
    case kind::welcome: return body_as<welcome, server_message>(*body, "welcome");
    case kind::submitted: return body_as<submitted, server_message>(*body, "submitted");
    case kind::aborted: return body_as<aborted, server_message>(*body, "aborted");
    case kind::stats_reply: return body_as<stats, server_message>(*body, "stats");
    case kind::outputs: return body_as<outputs, server_message>(*body, "outputs");
    case kind::error: return body_as<error, server_message>(*body, "error");
    default: throw malformed("unknown message kind " + std::to_string(envelope(oh.get(), body)));
  }
}

} // namespace troupe::wire
