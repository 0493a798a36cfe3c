#pragma once
// The 4-bit weights' FP8 form (int4_path::fp8) by table: within one output channel and one group, the e4m3 code of a
// weight depends on its nibble q only — e4m3(((q − z) · s) / scale), fp8_activation_code's IEEE quotient — so a kernel
// makes the 16 codes once (4 to a register) and looks every weight of the group up by byte permutes, ~2 instructions a
// weight where the quotient takes ~20. The same codes as computing each weight's: each is the same expression of the
// same q. Used by linear_int4.cu's int4_to_fp8 conversion and linear_fp8_wgmma.cu's fused form.

#include <cstdint>

#include "kernels/cuda/fp8_kv.cuh"
#include "kernels/ops.hpp"

namespace troupe::cuda {

// The codes of q = q0 .. q0 + 3 in one register, q0's in the low byte: e4m3(((q − z) · s) / scale).
__device__ __forceinline__ uint32_t int4_fp8_table_word(int q0, float z, float s, float scale) {
  uint32_t r = 0;
#pragma unroll
  for (int b = 0; b < 4; ++b) r |= uint32_t{fp8_activation_code((static_cast<float>(q0 + b) - z) * s, scale)} << (8 * b);
  return r;
}

// Word w's 8 codes in k order (weights 8j .. 8j + 7: two registers), looked up in tab (q's code at byte q % 4 of
// tab[q / 4]). This backend's nibble order puts weight 2m in nibble m and 2m + 1 in nibble m + 4, so the low half's
// four nibbles are weights 0, 2, 4, 6 and the high half's 1, 3, 5, 7: each half's codes by two permutes of the table's
// halves (q < 8, q ≥ 8) and a third that takes, byte by byte, the one q's bit 3 names; then the halves interleaved.
__device__ __forceinline__ uint2 int4_word_fp8_codes(uint32_t w, const uint32_t (&tab)[4]) {
  static_assert(int4_pair_nibble(0) == 0 && int4_pair_nibble(1) == 4 && int4_pair_nibble(2) == 1 && int4_pair_nibble(7) == 7,
                "int4_word_fp8_codes: weight 2m sits in nibble m, 2m + 1 in nibble m + 4");
  auto look = [&](uint32_t nibbles) {  // the codes of the 4 nibbles in bits 0-15, nibble i's at byte i
    const uint32_t index = nibbles & 0x7777u;
    const uint32_t low = __byte_perm(tab[0], tab[1], index), high = __byte_perm(tab[2], tab[3], index);
    return __byte_perm(low, high, 0x3210u | ((nibbles >> 1) & 0x4444u));
  };
  const uint32_t even = look(w), odd = look(w >> 16);
  return make_uint2(__byte_perm(even, odd, 0x5140u), __byte_perm(even, odd, 0x7362u));
}

} // namespace troupe::cuda
