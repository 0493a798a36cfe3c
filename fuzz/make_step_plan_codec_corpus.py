#!/usr/bin/env python3
"""Writes the seed corpus of the step plan codec fuzzer (fuzz/corpus/step_plan_codec/): messages as rank 0 sends
them to the other ranks (runtime/engine/step_plan_codec.hpp: positional msgpack arrays, int32 lists as bins of
little-endian int32s, floats as float32), valid ones and one broken message per kind of check. Run it again after
changing it; the files are committed. Development tool only: troupe runs no Python."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "step_plan_codec")
os.makedirs(out, exist_ok=True)

VERSION, PLAN, STOP = 1, 0, 1


class F32(float):
    """A float sent as float32 (the codec's only float)."""


class Ints(list):
    """An int32 list sent as one bin of little-endian int32s."""


def pack(v) -> bytes:
    """The msgpack subset the codec uses, each value in its smallest form as msgpack-c writes it."""
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, F32):
        return b"\xca" + struct.pack(">f", v)
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 256:
            return b"\xcc" + bytes([v])
        if 0 <= v < 65536:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v < 2**32:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        if v >= -128:
            return b"\xd0" + struct.pack("b", v)
        if v >= -32768:
            return b"\xd1" + struct.pack(">h", v)
        return b"\xd2" + struct.pack(">i", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, Ints):
        body = b"".join(struct.pack("<i", x) for x in v)
        return b"\xc4" + bytes([len(body)]) + body if len(body) < 256 else b"\xc5" + struct.pack(">H", len(body)) + body
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(pack(x) for x in v)
    raise TypeError(v)


def continuing(i, start, tokens, blocks, sample=True):
    return [i, False, start, Ints(tokens), Ints(blocks), sample]


DEFAULT_PARAMS = [F32(1), F32(1), 0, F32(0), F32(1), F32(0), F32(0), None, 16, 0, False, [], Ints([]), False, [], None]
EVERY_PARAM = [F32(0.7), F32(0.9), 40, F32(0.05), F32(1.1), F32(-0.5), F32(0.25), 2**64 - 1, 300, 3, True,
               ["\n\n", "終わり", "🙂 done", ""], Ints([2, 128001]), True, [50256, F32(-100), 7, F32(2.5)], 0]
NEW = [2**40, True, 32, Ints([10, 11, 12]), Ints([4, 0, 9]), True, Ints(range(36)), 35, EVERY_PARAM, 0xdeadbeefcafe]
PLAIN = [2, True, 0, Ints([1, 2, 3]), Ints([1]), True, Ints([1, 2, 3]), 3, DEFAULT_PARAMS, 7]


def plan(step, seqs, released):
    return pack([VERSION, PLAN, step, seqs, released])


mixed = plan(12345678901, [NEW, PLAIN, continuing(3, 100, [42], [17]), continuing(4, 16, [5, 6, 7, 8], [], False)],
             [5, 2**64 - 1])
seeds = {
    "empty_plan": plan(0, [], []),
    "stop_order": pack([VERSION, STOP]),
    "decode_step": plan(1000, [continuing(100 + i, 500 + i, [12345 + i], [4000 + i] if i % 4 == 0 else [])
                               for i in range(20)], []),
    "mixed_plan": mixed,
    "invalid_truncated": mixed[:-7],
    "invalid_trailing_bytes": plan(0, [], []) + b"\xc0",
    "invalid_version": pack([2, PLAN, 0, [], []]),
    "invalid_kind": pack([VERSION, 9]),
    # [1, 0, 0, seqs claiming 2^32-1 elements, then nothing]
    "invalid_seqs_claiming_4g": b"\x95\x01\x00\x00\xdd\xff\xff\xff\xff",
    "invalid_wrong_type": plan(1, [[1, False, "zero", Ints([1]), Ints([]), True]], []),
    "invalid_continuing_with_new_fields": plan(1, [[1, False, 0, Ints([1]), Ints([]), True, Ints([]), 0, DEFAULT_PARAMS, 0]], []),
    "invalid_odd_logit_bias": plan(1, [NEW[:8] + [EVERY_PARAM[:14] + [[7]] + EVERY_PARAM[15:]] + NEW[9:]], []),
    # token_ids a bin of 3 bytes: not a whole int32
    "invalid_bin_not_int32s": b"\x95\x01\x00\x01\x91\x96\x01\xc2\x00\xc4\x03\x01\x02\x03\xc4\x00\xc3\x90",
    "invalid_deep_nesting": b"\x92" + b"\x91" * 64 + b"\xc0",
}

for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
