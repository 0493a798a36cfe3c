#!/usr/bin/env python3
"""Makes tiny Hugging Face checkpoints of each supported architecture and records what transformers
computes for them: last-position logits and 32-token greedy continuations, in float32 on the CPU with
eager attention. Runs where torch and transformers exist (the GPU machine); its output is committed
under tests/data/reference/ and checked by CI on the CPU.

    python3 scripts/gpu/make_reference_models.py OUT_DIR [NAME...] [--only-missing]

NAMEs make those cases alone; --only-missing makes the cases whose OUT_DIR/NAME/reference.json does not
exist yet (scripts/gpu/check.sh runs it so over the bundle: a new architecture's references are made and
checked in the same GPU run). A case's seed is its place in CASES, so new cases go last and old ones keep
their weights.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

try:  # transformers 4.51 and later
    from transformers import Qwen3Config
except ImportError:
    Qwen3Config = None

VOCAB = 384
PROMPT_LENGTHS = [1, 7, 41, 133]
NEW_TOKENS = 32

CASES = {
    # Llama, float32 weights, untied head, plain rope; config rewritten to the old rope_theta spelling.
    "llama_f32": dict(cls=LlamaConfig, dtype=torch.float32, old_rope_keys=True, kw=dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rope_theta=10000.0, tie_word_embeddings=False)),
    # Llama 3.1 style: llama3 rope scaling, bf16 weights, tied embeddings, q/k/v bias.
    "llama3_rope_bf16": dict(cls=LlamaConfig, dtype=torch.bfloat16, old_rope_keys=False, kw=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        tie_word_embeddings=True, attention_bias=True,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=64))),
    # Qwen2: q/k/v bias, tied embeddings, bf16, written as several safetensors shards with an index.
    "qwen2_sharded_bf16": dict(cls=Qwen2Config, dtype=torch.bfloat16, old_rope_keys=False, shard="60KB", kw=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        rope_theta=1000000.0, tie_word_embeddings=True)),
    # Mistral: head_dim 32 while hidden/heads is 16, linear rope scaling, a sliding window shorter than the prompts.
    "mistral_head_dim": dict(cls=MistralConfig, dtype=torch.float32, old_rope_keys=True, kw=dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, sliding_window=48, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0))),
    # Qwen3: q_norm / k_norm per head before RoPE, head_dim 32 while hidden/heads is 16, tied embeddings (as
    # the small Qwen3 sizes), no biases; float32, config in the Hub's rope_theta spelling.
    "qwen3_f32": dict(cls=Qwen3Config, dtype=torch.float32, old_rope_keys=True, kw=dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, rope_theta=1000000.0, tie_word_embeddings=True)),
    # Qwen3 in bf16 with attention_bias (q/k/v and o_proj biases), an untied head, one KV head.
    "qwen3_bias_bf16": dict(cls=Qwen3Config, dtype=torch.bfloat16, old_rope_keys=False, kw=dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
        head_dim=32, attention_bias=True, rope_theta=1000000.0, tie_word_embeddings=False)),
}


def randomize(model, seed):
    # Larger-than-default weights so logits are well separated and greedy choices are not near ties.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def rewrite_rope_keys(config_path):
    # Most Hub checkpoints spell rotary settings as rope_theta + rope_scaling; keep one case that way.
    with open(config_path) as f:
        cfg = json.load(f)
    params = cfg.pop("rope_parameters", None)
    if params is not None:
        cfg["rope_theta"] = params.get("rope_theta", 10000.0)
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        cfg["rope_scaling"] = None if scaling.get("rope_type", "default") == "default" else scaling
    with open(config_path, "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only_missing = "--only-missing" in sys.argv[1:]
    out_root, wanted = args[0], set(args[1:])
    unknown = wanted - set(CASES)
    if unknown:
        sys.exit(f"unknown cases {sorted(unknown)}; known: {list(CASES)}")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    summary = []
    for seed, (name, case) in enumerate(CASES.items()):
        out = os.path.join(out_root, name)
        if (wanted and name not in wanted) or (only_missing and os.path.exists(os.path.join(out, "reference.json"))):
            continue
        if case["cls"] is None:
            sys.exit(f"{name} needs a newer transformers (it has no config class for it): {transformers.__version__}")
        os.makedirs(out, exist_ok=True)
        config = case["cls"](vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-5,
                             bos_token_id=1, eos_token_id=2, **case["kw"])
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
        randomize(model, 100 + seed)
        model.to(case["dtype"]).save_pretrained(out, max_shard_size=case.get("shard", "50GB"))
        if case["old_rope_keys"]:
            rewrite_rope_keys(os.path.join(out, "config.json"))
        # The reference runs what was saved, read back and upcast to float32 exactly.
        ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        record = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
                  "prompts": prompts, "last_logits": [], "greedy": [], "min_greedy_margin": []}
        with torch.no_grad():
            for p in prompts:
                ids = torch.tensor([p])
                logits = ref(ids).logits[0, -1]
                record["last_logits"].append([float(x) for x in logits])
                seq = list(p)
                margin = float("inf")
                for _ in range(NEW_TOKENS):
                    step = ref(torch.tensor([seq])).logits[0, -1]
                    top = torch.topk(step, 2)
                    margin = min(margin, float(top.values[0] - top.values[1]))
                    seq.append(int(top.indices[0]))
                record["greedy"].append(seq[len(p):])
                record["min_greedy_margin"].append(margin)
        with open(os.path.join(out, "reference.json"), "w") as f:
            json.dump(record, f)
        summary.append((name, sorted(os.listdir(out)), record["min_greedy_margin"]))
    for name, files, margins in summary:
        print(f"{name:22s} files={files} min_margins={[round(m, 4) for m in margins]}")


if __name__ == "__main__":
    main()
