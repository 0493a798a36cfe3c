// Fuzz target for the native client protocol (client/wire): the input is the byte stream a client sends to
// the server's native port. It is cut into frames as the endpoint cuts it (a 4-byte length, refused above
// the cap before anything is read), and each payload is decoded as the endpoint decodes it, and as the client
// library decodes the server's frames. Either a payload is a message or it throws wire::malformed with a
// one-line reason; nothing else: no crash, no other exception (bad_alloc included), no read outside the input
// (ASan), no undefined behaviour (UBSan). A message that decodes must encode and decode to the same bytes.

#include "client/wire.hpp"
#include "fuzz/fuzz_check.hpp"

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace {

template <class Message, class Parse>
void check_round_trip(const Message& m, Parse parse) {
  const std::vector<char> once = troupe::wire::frame(m);
  const auto length = troupe::wire::frame_length(std::span<const char, 4>(once.data(), 4));
  FUZZ_CHECK(length && *length == once.size() - 4);
  const std::vector<char> twice = troupe::wire::frame(parse(std::span<const char>(once).subspan(4)));
  FUZZ_CHECK(once == twice);
}

template <class Parse>
void decode(std::span<const char> payload, Parse parse) {
  try {
    check_round_trip(parse(payload), parse);
  } catch (const troupe::wire::malformed& e) {
    FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::span<const char> stream(reinterpret_cast<const char*>(data), size);
  while (stream.size() >= troupe::wire::frame_header_bytes) {
    const auto length = troupe::wire::frame_length(stream.first<troupe::wire::frame_header_bytes>());
    if (!length) return 0;  // the endpoint drops the connection here, having read nothing more
    stream = stream.subspan(troupe::wire::frame_header_bytes);
    if (stream.size() < *length) return 0;  // the client vanished mid-frame
    const auto payload = stream.first(*length);
    decode(payload, [](std::span<const char> p) { return troupe::wire::parse_client_message(p); });
    decode(payload, [](std::span<const char> p) { return troupe::wire::parse_server_message(p); });
    stream = stream.subspan(*length);
  }
  return 0;
}
