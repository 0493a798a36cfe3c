#!/usr/bin/env python3
"""Writes the seed corpus of the native client protocol fuzzer (fuzz/corpus/client_wire/): byte streams as a
client sends them to the server's native port (client/wire.hpp: a 4-byte big-endian length, then the msgpack
array [kind, {field: value}]), valid ones and one broken stream per kind of check. Run it again after changing
it; the files are committed. Development tool only: troupe runs no Python."""
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "client_wire")
os.makedirs(out, exist_ok=True)

HELLO, WELCOME, SUBMIT, SUBMITTED, ABORT, ABORTED, STATS, STATS_REPLY, OUTPUTS, ERROR = range(1, 11)


def pack(v) -> bytes:
    """The msgpack subset the protocol uses."""
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xca" + struct.pack(">f", v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xdb" + struct.pack(">I", len(b))) + b
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdd" + struct.pack(">I", len(v))
        return head + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xdf" + struct.pack(">I", len(v))
        return head + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def message(kind, body) -> bytes:
    return frame(pack([kind, body]))


JOB = {"tag": 1, "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0.0, "ignore_eos": True,
       "stop": ["\n\n", "The end"], "stop_token_ids": [2], "has_seed": True, "seed": 42, "priority": -1}
JOB_IDS = {"tag": 2, "prompt_token_ids": [1, 2, 3, 4, 5], "max_tokens": 4, "min_tokens": 1, "top_p": 0.9, "top_k": 5,
           "min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5}
OUTPUT = {"job_id": 12345678901234, "token_ids": [7, 8], "text": "hi", "finished": True, "finish_reason": "length",
          "error": "", "num_prompt_tokens": 3, "num_cached_tokens": 0}

seeds = {
    "session": message(HELLO, {"protocol": 1, "api_key": "sesame"}) + message(SUBMIT, JOB) +
    message(SUBMIT, JOB_IDS) + message(ABORT, {"tag": 3, "job_id": 12345678901234}) + message(STATS, {"tag": 4}),
    "hello_newer_fields": message(HELLO, {"protocol": 2, "api_key": "", "compression": "none"}),
    "server_replies": message(WELCOME, {"protocol": 1}) +
    message(SUBMITTED, {"tag": 1, "job_id": 9, "error": "", "error_type": "", "retry_after_s": 0, "num_prompt_tokens": 3}) +
    message(OUTPUTS, {"outputs": [OUTPUT, OUTPUT]}) + message(ABORTED, {"tag": 3, "ok": False}) +
    message(STATS_REPLY, {"tag": 4, "num_running": 1, "num_waiting": 0, "num_free_blocks": 10, "num_blocks": 12,
                          "num_preemptions": 0}) + message(ERROR, {"message": "The server is shutting down"}),
    "invalid_frame_of_4_gb": b"\xff\xff\xff\xff" + b"\x92\x01\x80",
    "invalid_empty_frame": b"\x00\x00\x00\x00",
    "invalid_array_announcing_4g": frame(b"\x92\x03\x81\xa4stop\xdd\xff\xff\xff\xff"),
    "invalid_deep_nesting": frame(b"\x91" * 64 + b"\xc0"),
    "invalid_trailing_bytes": frame(pack([STATS, {"tag": 1}]) + b"\x00"),
    "invalid_wrong_type": message(SUBMIT, {"max_tokens": "many", "prompt_token_ids": [1, -1, 2**40]}),
    "invalid_kind": message(99, {}),
    "invalid_truncated": frame(pack([SUBMIT, JOB])[:-5]),
    "invalid_vanished_mid_frame": message(SUBMIT, JOB)[:-5],
}

for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {out}")
