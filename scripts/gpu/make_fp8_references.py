#!/usr/bin/env python3
"""Records what torch computes for the reference checkpoints (tests/data/reference/<name>, made by
make_reference_models.py) with FP8 weights, an FP8 KV cache, and both, rounded as troupe rounds them: last-position
logits of the same prompts, in float32 on the CPU with eager attention; how far each lands from the unrounded f32
logits; and how far f32 noise alone moves them. Runs where torch and transformers exist (the GPU machine); writes
<name>/reference_fp8.json beside each reference.json (not the 4-bit folders), which tests/fp8_reference_test.cpp
(CPU) and troupe_gpu_check (CUDA) check troupe against (tests/support/fp8_reference.hpp: the tolerance).

    python3 scripts/gpu/make_fp8_references.py REF_DIR [NAME...] [--only-missing]

The rounding is written from troupe's rules (runtime/model/fp8_formats.hpp, kernels/cpu/cpu_ops.cpp linear_fp8,
kernels/cpu/attention.cpp), not from its code:
  fp8_weights     (--quantization fp8) each decoder linear (q/k/v/o_proj, gate/up/down_proj; not the embeddings
                  or lm_head): W per output channel and each token of its input, with the dynamic scale
                  s = max(max|row| / 448, 1 / (448 * 512)) (the floor keeps a zero row finite), codes
                  e4m3(row / s) (f32 quotient, nearest even, saturating at +-448); out = (codes_x @ codes_W^T)
                  * (s_x * s_W) + bias, all in f32.
  fp8_kv          (--kv-cache-dtype fp8, scales 1.0: the checkpoints carry none) k after RoPE (and after
                  Qwen3's k_norm) and v rounded to e4m3 before attention, at every position (troupe's attention
                  reads every key and value, the current step's too, from the cache). Done by wrapping each
                  architecture's module-level eager_attention_forward, which the attention layers look up at
                  call time and hand the post-RoPE key and value.
  fp8_weights_kv  both.
Division runs on the CPU, where torch divides f32 by IEEE division (its CUDA kernels multiply by a reciprocal).

noise_error: two correct implementations differ by f32 rounding (summation order, exp), and where a value to be
rounded sits that close to the middle of two codes they take neighbouring codes; with dynamic activation scales
one such code in an early layer moves every later layer's activations and their codes, and the logits of a long
prompt by up to about the FP8 error itself. So each variant is run DRAWS more times with every value about to be
rounded to FP8 multiplied by 1 + u, u uniform within +-NOISE (a few f32 ulps), and the farthest those logits land
from the unjittered ones is recorded per prompt.
"""
import importlib
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM

E4M3_MAX = 448.0
MIN_SCALE = 1.0 / (E4M3_MAX * 512.0)
NOISE, DRAWS = 2.0 ** -21, 32
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FOUR_BIT_SUFFIXES = ("_awq", "_gptq", "_rtn")
ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3")
VARIANTS = {"fp8_weights": (True, False), "fp8_kv": (False, True), "fp8_weights_kv": (True, True)}

round_kv = False      # whether the wrapped attention rounds k and v now
attention_calls = 0   # how often it did, to prove the wrapper runs
noise = None          # a torch.Generator while a jittered draw runs


def e4m3(x):
    """x rounded to float8_e4m3fn (nearest, ties to even) and back to f32, saturating at +-448 as troupe and CUDA's
    __NV_SATFINITE do: torch's own cast makes |x| >= 480 a NaN, hence the clamp first."""
    return x.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).to(torch.float32)


def jitter(x):
    """x as another implementation might have computed it (see noise_error above), during a jittered draw."""
    return x if noise is None else x * (1 + (torch.rand(x.shape, generator=noise) * 2 - 1) * NOISE)


def dynamic_scale(x):
    """Each row's (last dim) dynamic scale, keepdim: max(max|row| / 448, MIN_SCALE) in f32."""
    return (x.abs().amax(dim=-1, keepdim=True) / E4M3_MAX).clamp(min=MIN_SCALE)


def fp8_forward(linear):
    """A forward for `linear` that computes what ops::linear_fp8 computes for it."""
    w = linear.weight.detach()
    w_scale = dynamic_scale(w)           # [out, 1]
    w_codes = e4m3(w / w_scale)          # [out, in], decoded
    bias = linear.bias

    def forward(x):                      # x [..., in]
        x = jitter(x)
        x_scale = dynamic_scale(x)       # [..., 1]
        y = F.linear(e4m3(x / x_scale), w_codes) * (x_scale * w_scale.t())
        return y if bias is None else y + bias
    return forward


def quantize_linears(model):
    n = 0
    for name, module in model.named_modules():
        if name.startswith("model.layers.") and name.split(".")[-1] in LINEARS:
            assert isinstance(module, torch.nn.Linear), name
            module.forward = fp8_forward(module)
            n += 1
    assert n == len(LINEARS) * model.config.num_hidden_layers, f"{n} linear layers quantized"


def rounding_kv(eager):
    def attention(module, query, key, value, *args, **kwargs):
        global attention_calls
        if round_kv:
            key, value = e4m3(jitter(key)), e4m3(jitter(value))
            attention_calls += 1
        return eager(module, query, key, value, *args, **kwargs)
    return attention


def wrap_attention():
    for arch in ARCHITECTURES:
        try:
            m = importlib.import_module(f"transformers.models.{arch}.modeling_{arch}")
        except ImportError:  # qwen3 before transformers 4.51
            continue
        if not hasattr(m, "eager_attention_forward"):
            sys.exit(f"transformers {transformers.__version__}: {m.__name__} has no eager_attention_forward to wrap")
        m.eager_attention_forward = rounding_kv(m.eager_attention_forward)


def relative_error(a, b):
    """||a - b|| / ||b|| in double, as tests/support/reference_steps.hpp computes it."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def last_logits(model, prompts, kv, seed=None):
    """Each prompt's last-position logits, k and v rounded when `kv`, jittered with `seed` when one is given."""
    global round_kv, noise
    round_kv, noise = kv, None if seed is None else torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            return [model(torch.tensor([p])).logits[0, -1] for p in prompts]
    finally:
        round_kv, noise = False, None


def self_check():
    # Saturation instead of NaN; ties to even among normals (432: 416 | 448, 400: 384 | 416) and subnormals
    # (multiples of 2^-9).
    got = e4m3(torch.tensor([470.0, -1000.0, 432.0, 400.0, 2.0 ** -10, 3 * 2.0 ** -10]))
    assert got.tolist() == [448.0, -448.0, 448.0, 384.0, 0.0, 2.0 ** -8], got
    assert dynamic_scale(torch.zeros(1, 4)).item() == torch.tensor(MIN_SCALE).item()


def make(folder):
    global attention_calls
    with open(os.path.join(folder, "reference.json")) as f:
        ref = json.load(f)
    prompts = ref["prompts"]
    def load():  # afresh for each variant: quantize_linears replaces forwards
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    model = load()
    exact = last_logits(model, prompts, False)
    for p, (got, want) in enumerate(zip(exact, ref["last_logits"])):
        err = relative_error(got, torch.tensor(want))
        assert err < 1e-4, f"{folder}: prompt {p}'s f32 logits moved {err:.2e} from reference.json"
    record = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "prompts": prompts, "noise": NOISE, "draws": DRAWS}
    for variant, (weights, kv) in VARIANTS.items():
        model = load()
        if weights:
            quantize_linears(model)
        attention_calls = 0
        logits = last_logits(model, prompts, kv)
        # Every layer of every prompt went through the wrapper.
        assert attention_calls == (model.config.num_hidden_layers * len(prompts) if kv else 0), attention_calls
        errors = [relative_error(a, b) for a, b in zip(logits, exact)]
        assert all(e > 0 for e in errors), f"{variant} changed nothing"
        noise_errors = [0.0] * len(prompts)
        for seed in range(DRAWS):
            for p, row in enumerate(last_logits(model, prompts, kv, seed)):
                noise_errors[p] = max(noise_errors[p], relative_error(row, logits[p]))
        record[variant] = {"relative_error": errors,  # against the f32 logits, one per prompt
                           "noise_error": noise_errors,  # the farthest jittered draw, one per prompt
                           "last_logits": [[float(f"{x:.7g}") for x in row.tolist()] for row in logits]}
    with open(os.path.join(folder, "reference_fp8.json"), "w") as f:
        json.dump(record, f)
    return record


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only_missing = "--only-missing" in sys.argv[1:]
    root, wanted = args[0], set(args[1:])
    names = sorted(n for n in os.listdir(root)
                   if os.path.exists(os.path.join(root, n, "reference.json")) and not n.endswith(FOUR_BIT_SUFFIXES))
    if wanted - set(names):
        sys.exit(f"no reference folders {sorted(wanted - set(names))} under {root}; there are {names}")
    self_check()
    wrap_attention()
    for name in names:
        folder = os.path.join(root, name)
        if (wanted and name not in wanted) or (only_missing and os.path.exists(os.path.join(folder, "reference_fp8.json"))):
            continue
        record = make(folder)
        for v in VARIANTS:
            print(f"{name:20s} reference_fp8.json {v:15s} fp8 vs f32 "
                  + " ".join(f"{e:.4f}" for e in record[v]["relative_error"]) + "  f32 noise "
                  + " ".join(f"{e:.1e}" for e in record[v]["noise_error"]))


if __name__ == "__main__":
    main()
