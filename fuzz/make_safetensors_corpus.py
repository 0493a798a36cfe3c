#!/usr/bin/env python3
"""Writes the seed corpus of the safetensors fuzzer (fuzz/corpus/safetensors/): a few valid files in the layout
the Python safetensors package writes, and one broken file per kind of check. Run it again after changing it;
the files are committed. Development tool only: troupe runs no Python."""
import json
import os
import struct

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")
os.makedirs(out, exist_ok=True)

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2,
         "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8}
ORDER = list(SIZES)  # the reference writer's dtype order


def header_bytes(header: str, pad=True) -> bytes:
    h = header.encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h


def reference_file(tensors, metadata=None) -> bytes:
    """tensors: list of (name, dtype, shape, data bytes), laid out as the reference writer does."""
    tensors = sorted(tensors, key=lambda t: (-ORDER.index(t[1]), t[0]))
    parts, data, offset = [], b"", 0
    if metadata:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"), sort_keys=True))
    for name, dtype, shape, raw in tensors:
        parts.append(json.dumps(name) + ':{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}' % (
            dtype, json.dumps(shape, separators=(",", ":")), offset, offset + len(raw)))
        data += raw
        offset += len(raw)
    return header_bytes("{" + ",".join(parts) + "}") + data


def write(name: str, content: bytes):
    assert len(content) < 4096, name
    with open(os.path.join(out, name), "wb") as f:
        f.write(content)


f32 = lambda *v: struct.pack("<%df" % len(v), *v)
write("valid_llama_like", reference_file([
    ("model.embed_tokens.weight", "BF16", [4, 2], bytes(range(16))),
    ("model.norm.weight", "F32", [2], f32(1.0, -2.5)),
    ("lm_head.weight", "F16", [4, 2], bytes(range(16, 32))),
], {"format": "pt"}))
write("valid_every_dtype", reference_file(
    [("t_" + d.lower(), d, [2], bytes(range(2 * s))) for d, s in SIZES.items()]))
write("valid_scalar_empty_and_gap", header_bytes(
    '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]},'
    '"g":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}}') + f32(0.5) + b"pad!" + b"x")
write("valid_empty_header", header_bytes("{}"))
write("valid_escaped_names", reference_file([("a\nb\u00e9\\\"", "U8", [1], b"z")], {"k\t": "v\u2028"}))
write("invalid_truncated_data", reference_file([("w", "F32", [4], f32(1, 2, 3, 4))])[:-3])
write("invalid_short", b"\x10\x00\x00")
write("invalid_header_length", struct.pack("<Q", 1 << 40) + b"{}")
write("invalid_overlap", header_bytes(
    '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}')
    + bytes(24))
write("invalid_dtype", header_bytes('{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}') + bytes(4))
write("invalid_size_mismatch", header_bytes('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}') + bytes(12))
write("invalid_duplicate_name", header_bytes(
    '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}')
    + b"xy")
write("invalid_overflowing_shape", header_bytes(
    '{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'))
write("invalid_metadata", header_bytes('{"__metadata__":{"n":1}}'))
write("invalid_json", header_bytes('{"a":{"dtype":"F32",'))

# 4-bit layers (the fuzz target dequantizes every "<module>.qweight" as AWQ and as GPTQ): one of each format as
# AutoAWQ (GEMM) and AutoGPTQ lay them out, and one broken way per check of the layer reader.
i32 = lambda *v: struct.pack("<%di" % len(v), *v)
f16_ones = lambda n: struct.pack("<%dH" % n, *([0x3C00] * n))
awq = [("m.qweight", "I32", [32, 1], i32(*range(0x76543210, 0x76543210 + 32))),
       ("m.qzeros", "I32", [1, 1], i32(0x11111111)), ("m.scales", "F16", [1, 8], f16_ones(8))]
gptq = [("m.qweight", "I32", [1, 8], i32(*[0x76543210] * 8)), ("m.qzeros", "I32", [1, 1], i32(0x77777777)),
        ("m.scales", "F16", [1, 8], f16_ones(8)), ("m.g_idx", "I32", [8], i32(*[0] * 8))]
write("valid_awq_layer", reference_file(awq))
write("valid_gptq_layer", reference_file(gptq))
write("valid_awq_layer_without_scales", reference_file(awq[:2]))
write("valid_awq_layer_qzeros_of_another_shape", reference_file([awq[0], ("m.qzeros", "I32", [2, 1], i32(1, 2)), awq[2]]))
write("valid_gptq_layer_act_order_g_idx", reference_file(gptq[:3] + [("m.g_idx", "I32", [8], i32(*[1, 0] * 4))]))
write("valid_gptq_layer_f32_qweight", reference_file([("m.qweight", "F32", [1, 8], f32(*[1.0] * 8))] + gptq[1:]))
write("valid_gptq_layer_empty", reference_file([("m.qweight", "I32", [0, 8], b""), ("m.qzeros", "I32", [0, 1], b""),
                                                ("m.scales", "F16", [0, 8], b"")]))

# FP8 layers (the fuzz target reads every "<module>.weight" with a "<module>.weight_scale" under every FP8 config):
# AutoFP8's (a 0-d weight_scale and input_scale), llm-compressor's per-channel scales in BF16, and one broken way
# per check of the FP8 reader.
e4m3 = bytes([0x38, 0x40, 0x30, 0xB8, 0x7E, 0xFE, 0x00, 0x01])  # 1, 2, 0.5, -1, 448, -448, 0, the smallest subnormal
fp8 = [("m.weight", "F8_E4M3", [2, 4], e4m3), ("m.weight_scale", "F32", [], f32(0.25)), ("m.input_scale", "F32", [], f32(0.5))]
write("valid_fp8_layer", reference_file(fp8))
write("valid_fp8_layer_channel_bf16_scales", reference_file(
    [fp8[0], ("m.weight_scale", "BF16", [2, 1], struct.pack("<2H", 0x3F80, 0x4000))]))
write("valid_fp8_layer_bf16_weight", reference_file([("m.weight", "BF16", [2, 4], bytes(16)), fp8[1]]))
write("valid_fp8_layer_scales_of_another_shape", reference_file([fp8[0], ("m.weight_scale", "F32", [3], f32(1, 1, 1))]))
write("valid_fp8_layer_negative_and_nan_scales", reference_file(
    [fp8[0], ("m.weight_scale", "F32", [2], f32(-1.0, float("nan"))), ("m.input_scale", "F32", [1], f32(0.0))]))
write("valid_fp8_layer_empty", reference_file([("m.weight", "F8_E4M3", [0, 4], b""), ("m.weight_scale", "F32", [0], b"")]))

