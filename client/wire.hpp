#pragma once
// The msgpack payloads of the native client protocol, shared by client/client.cpp and the server's
// actors/client_endpoint.cpp. Maps with field names, so either side can add fields later.
//
//   client -> endpoint: (submit_atom, bytes<wire_job>, actor events_to) -> bytes<wire_submit_reply>
//                       (abort_atom, uint64 job_id)
//                       (stats_atom) -> bytes<wire_stats>
//   endpoint -> events_to: (output_atom, bytes<std::vector<wire_output>>)

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>

namespace troupe::wire {

// The same atoms as actors/protocol.hpp (an atom is its name).
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using abort_atom = caf::atom_constant<caf::atom("abort")>;
using output_atom = caf::atom_constant<caf::atom("output")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;

struct job {
  std::string prompt;
  std::vector<int32_t> prompt_token_ids;
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  bool has_seed = false;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  int32_t priority = 0;
  MSGPACK_DEFINE_MAP(prompt, prompt_token_ids, max_tokens, min_tokens, temperature, top_p, top_k, min_p,
                     repetition_penalty, presence_penalty, frequency_penalty, has_seed, seed, ignore_eos, stop,
                     stop_token_ids, priority);
};

struct submit_reply {
  uint64_t job_id = 0;
  std::string error;
  int32_t num_prompt_tokens = 0;
  MSGPACK_DEFINE_MAP(job_id, error, num_prompt_tokens);
};

struct output {
  uint64_t job_id = 0;
  std::vector<int32_t> token_ids;
  std::string text;
  bool finished = false;
  std::string finish_reason;
  std::string error;
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_tokens = 0;
  MSGPACK_DEFINE_MAP(job_id, token_ids, text, finished, finish_reason, error, num_prompt_tokens, num_cached_tokens);
};

struct stats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int64_t num_preemptions = 0;
  MSGPACK_DEFINE_MAP(num_running, num_waiting, num_free_blocks, num_blocks, num_preemptions);
};

template <class T>
std::vector<char> pack(const T& value) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, value);
  return std::vector<char>(buf.data(), buf.data() + buf.size());
}

// Throws msgpack::type_error (or another std::exception) on a malformed payload.
template <class T>
T unpack(const std::vector<char>& bytes) {
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size());
  return oh.get().as<T>();
}

} // namespace troupe::wire
