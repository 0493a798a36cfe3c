// Fuzz target for the step plan codec (runtime/engine/step_plan_codec): the input is the bytes a rank receives
// from rank 0 each step. Either they decode to a message (a step plan or a stop order) or decoding throws
// std::invalid_argument with a one-line reason; nothing else: no crash, no other exception (bad_alloc
// included), no read outside the input (ASan), no undefined behaviour (UBSan). A message that decodes
// re-encodes to no more bytes than it came in (the encoder writes the smallest form of all the decoder
// accepts), that encoding reads back to itself, and decoding into a used message gives what a fresh one gets.

#include "fuzz/fuzz_check.hpp"
#include "runtime/engine/step_plan_codec.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <vector>

namespace {

std::vector<std::byte> encoded(const troupe::rank_message& m) {
  std::vector<std::byte> out;
  troupe::encode_rank_message(m, out);
  return out;
}

// Compared by their encodings, which are exact: a NaN in a float field is unequal to itself under ==.
troupe::rank_message& used_message() {
  static troupe::rank_message m;
  return m;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> input(reinterpret_cast<const std::byte*>(data), size);
  troupe::rank_message m;
  try {
    m = troupe::decode_rank_message(input);
  } catch (const std::invalid_argument& e) {
    FUZZ_CHECK(std::strchr(e.what(), '\n') == nullptr);
    try {  // the same bytes into a used message: refused too
      troupe::decode_rank_message(input, used_message());
      FUZZ_CHECK(false);
    } catch (const std::invalid_argument&) {
    }
    return 0;
  }
  const std::vector<std::byte> once = encoded(m);
  FUZZ_CHECK(once.size() <= size);
  FUZZ_CHECK(encoded(troupe::decode_rank_message(once)) == once);
  troupe::decode_rank_message(input, used_message());
  FUZZ_CHECK(encoded(used_message()) == once);
  // decode_step_plan takes exactly the plans.
  bool is_plan = true;
  try {
    troupe::decode_step_plan(input);
  } catch (const std::invalid_argument&) {
    is_plan = false;
  }
  FUZZ_CHECK(is_plan == (m.what == troupe::rank_message::kind::plan));
  return 0;
}
