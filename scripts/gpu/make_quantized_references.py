#!/usr/bin/env python3
"""Packs reference checkpoints (tests/data/reference/<name>, made by make_reference_models.py) into 4-bit AWQ
and GPTQ folders laid out as AutoAWQ (GEMM) and AutoGPTQ write them, and records what transformers computes from
the dequantized weights: last-position logits and 32-token greedy continuations of the same prompts, in float32
on the CPU with eager attention. Also an RTN folder: the checkpoint unchanged, with the logits of the weights
rounded as `troupe --quantization rtn` rounds them. Runs where torch and transformers exist (the GPU machine);
its output (<name>_awq, <name>_gptq, <name>_rtn) is committed under tests/data/reference/ and checked by
tests/quantized_model_test.cpp (quantized_reference).

    python3 scripts/gpu/make_quantized_references.py tests/data/reference

The codes are round-to-nearest, computed as runtime/model/int4_formats.cpp computes them (fp16 scales, ties to
even). The packing and the unpacking below are written from the formats' documented layouts, not from troupe's
code, so the two sides check each other:
  AWQ  qweight int32 [in, out/8]: nibble k of word c holds output 8c + AWQ_ORDER[k]   (AutoAWQ gemm.py)
       qzeros  int32 [in/group, out/8], same order; scales fp16 [in/group, out]
  GPTQ qweight int32 [in/8, out]: nibble k of row r holds input 8r + k                (AutoGPTQ qlinear pack)
       qzeros  int32 [in/group, out/8]: nibble k holds output 8c + k, storing zero - 1 (checkpoint_format gptq)
       scales  fp16 [in/group, out]; g_idx int32 [in] = i // group
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

CASES = [  # (source, method, group size); rtn picks its group per layer as troupe does
    ("llama_f32", "awq", 32),
    ("llama_f32", "gptq", 32),
    ("llama_f32", "rtn", None),
    ("qwen2_sharded_bf16", "awq", 32),
    ("mistral_head_dim", "gptq", 32),
]
NEW_TOKENS = 32
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]
SHIFTS = torch.arange(0, 32, 4, dtype=torch.int64)
SMALLEST_F16 = 2.0 ** -24


def is_linear(name):
    return name.startswith("model.layers.") and name.endswith(".weight") and name.split(".")[-2] in LINEARS


def rtn_group(in_features):
    for g in (128, 64, 32):
        if in_features % g == 0:
            return g
    return in_features


def rtn(w, group, symmetric):
    """w [out, in] float32 -> codes [out, in], zeros [out, in/group], scales [out, in/group] (fp16 values)."""
    out, inn = w.shape
    g = w.reshape(out, inn // group, group)
    lo, hi = g.amin(-1), g.amax(-1)
    if symmetric:  # vLLM's rtn: 2 max|x| / 15 around 8
        amax = torch.maximum(lo.clamp(max=0).abs(), hi.clamp(min=0))
        amax[amax == 0] = 1
        scale = (2 * amax / 15).half().float()
        zero = torch.full_like(scale, 8)
    else:  # AutoAWQ's pseudo_quantize_tensor
        scale = ((hi - lo).clamp(min=1e-5) / 15).half().float()
        zero = (-torch.round(lo / scale)).clamp(0, 15)
    scale[scale == 0] = SMALLEST_F16
    q = (torch.round(g / scale[..., None]) + zero[..., None]).clamp(0, 15)
    return q.reshape(out, inn).to(torch.int64), zero.to(torch.int64), scale


def to_int32(words):
    """int64 words in [0, 2^32) -> int32 with the same bits."""
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def pack_words(m, dim):
    """Packs 8 consecutive entries of `m` along `dim` (already in nibble order) into one word each."""
    m = m.movedim(dim, -1)
    m = m.reshape(*m.shape[:-1], -1, 8)
    return to_int32((m << SHIFTS).sum(-1)).movedim(-1, dim).contiguous()


def unpack_words(words, dim):
    """The inverse of pack_words: each word of `words` along `dim` becomes its 8 nibbles."""
    w = words.to(torch.int64).movedim(dim, -1) & 0xFFFFFFFF
    n = (w[..., None] >> SHIFTS) & 0xF
    return n.reshape(*w.shape[:-1], -1).movedim(-1, dim)


def pack(method, q, zero, scale, group):
    """The tensors of one layer (suffix -> tensor) as AutoAWQ / AutoGPTQ store them."""
    t = {"scales": scale.t().contiguous().half()}
    if method == "awq":
        order = torch.tensor([8 * c + k for c in range(q.shape[0] // 8) for k in AWQ_ORDER])
        t["qweight"] = pack_words(q.t()[:, order], 1)
        t["qzeros"] = pack_words(zero.t()[:, order], 1)
    else:
        t["qweight"] = pack_words(q.t(), 0)
        t["qzeros"] = pack_words(zero.t() - 1, 1)
        t["g_idx"] = (torch.arange(q.shape[1]) // group).to(torch.int32)
    return t


def dequantize(method, t, group):
    """w [out, in] float32 from one layer's packed tensors, read by the layouts in the docstring."""
    scales = t["scales"].float()
    if method == "awq":
        reverse = torch.tensor([8 * c + k for c in range(t["qweight"].shape[1]) for k in AWQ_REVERSE_ORDER])
        codes = unpack_words(t["qweight"], 1)[:, reverse]
        zeros = unpack_words(t["qzeros"], 1)[:, reverse]
    else:
        codes = unpack_words(t["qweight"], 0)
        zeros = unpack_words(t["qzeros"], 1) + 1
        group_of = t["g_idx"].long()
        assert torch.equal(group_of, torch.arange(codes.shape[0]) // group)
    rows = torch.arange(codes.shape[0]) // group
    return ((codes - zeros[rows]).float() * scales[rows]).t().contiguous()


def load_tensors(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, f)))
    return tensors


def record(folder, weights, prompts):
    """reference.json of the (unquantized) model in `folder` with its linear weights replaced by `weights`."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, w in weights.items():
            params[name].copy_(w)
        out = {"transformers_version": __import__("transformers").__version__, "torch_version": torch.__version__,
               "prompts": prompts, "last_logits": [], "greedy": [], "min_greedy_margin": []}
        for p in prompts:
            out["last_logits"].append([float(x) for x in model(torch.tensor([p])).logits[0, -1]])
            seq, margin = list(p), float("inf")
            for _ in range(NEW_TOKENS):
                top = torch.topk(model(torch.tensor([seq])).logits[0, -1], 2)
                margin = min(margin, float(top.values[0] - top.values[1]))
                seq.append(int(top.indices[0]))
            out["greedy"].append(seq[len(p):])
            out["min_greedy_margin"].append(margin)
    return out


def make(root, source, method, group):
    src = os.path.join(root, source)
    dst = os.path.join(root, f"{source}_{method}")
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    with open(os.path.join(src, "reference.json")) as f:
        prompts = json.load(f)["prompts"]
    tensors = load_tensors(src)
    dequantized, stored = {}, {}
    for name, t in tensors.items():
        if not is_linear(name):
            stored[name] = t
            continue
        w = t.float()
        if method == "rtn":  # troupe rounds at load; the folder keeps the weights as they are
            q, zero, scale = rtn(w, rtn_group(w.shape[1]), symmetric=False)
            rows = torch.arange(w.shape[1]) // rtn_group(w.shape[1])
            dequantized[name] = ((q - zero[:, rows]).float() * scale[:, rows])
            stored[name] = t
            continue
        q, zero, scale = rtn(w, group, symmetric=(method == "gptq"))
        layer = pack(method, q, zero, scale, group)
        dequantized[name] = dequantize(method, layer, group)
        for suffix, packed in layer.items():
            stored[name[: -len("weight")] + suffix] = packed
    for f in os.listdir(src):
        if f.endswith(".json") and f not in ("reference.json", "model.safetensors.index.json"):
            shutil.copy(os.path.join(src, f), dst)
    save_file(stored, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    ref = record(src, dequantized, prompts)
    if method != "rtn":
        with open(os.path.join(dst, "config.json")) as f:
            cfg = json.load(f)
        cfg["quantization_config"] = (
            {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True, "version": "gemm",
             "modules_to_not_convert": None} if method == "awq" else
            {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": False, "sym": True,
             "checkpoint_format": "gptq"})
        with open(os.path.join(dst, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    with open(os.path.join(dst, "reference.json"), "w") as f:
        json.dump(ref, f)
    return dst, ref["min_greedy_margin"]


def main():
    root = sys.argv[1]
    for source, method, group in CASES:
        dst, margins = make(root, source, method, group)
        print(f"{os.path.basename(dst):26s} files={sorted(os.listdir(dst))} min_margins={[round(m, 4) for m in margins]}")


if __name__ == "__main__":
    main()
