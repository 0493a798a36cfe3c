#!/usr/bin/env python3
"""A reference at real size for troupe_gpu_check: a model with the shapes of CONFIG_DIR/config.json (Qwen2.5-7B
in scripts/gpu/qwen2.5-7b-shape) and random bf16 weights (transformers' own initialisation, seeded), saved as
sharded safetensors, then read back in float32 with eager attention to record the last-position logits of four
prompts and their 32-token greedy continuations, in the format of tests/data/reference/*/reference.json.
At 15 GB it is too large to commit: scripts/gpu/check.sh (LARGE=1) makes it on the GPU machine in the run that
checks it. Needs torch, transformers and a GPU with room for the float32 model (30 GB for 7B).

    python3 make_large_reference.py CONFIG_DIR OUT_DIR
"""
import json
import os
import shutil
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

PROMPT_LENGTHS = [1, 7, 41, 133]
NEW_TOKENS = 32


def main():
    config_dir, out = sys.argv[1], sys.argv[2]
    t0 = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = AutoConfig.from_pretrained(config_dir)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config)
    torch.set_default_dtype(torch.float32)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, max_shard_size="4GB")
    del model
    torch.cuda.empty_cache()
    print(f"saved {out} in {time.time() - t0:.0f} s", flush=True)

    ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager",
                                               device_map="cuda").eval()
    g = torch.Generator().manual_seed(1234)
    prompts = [torch.randint(0, config.vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    record = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "prompts": prompts, "last_logits": [], "greedy": [], "min_greedy_margin": []}
    with torch.no_grad():
        for p in prompts:
            result = ref(torch.tensor([p], device="cuda"), use_cache=True)
            logits = result.logits[0, -1]
            record["last_logits"].append([float(x) for x in logits.cpu()])
            past, seq, margin = result.past_key_values, [], float("inf")
            for _ in range(NEW_TOKENS):
                top = torch.topk(logits, 2)
                margin = min(margin, float(top.values[0] - top.values[1]))
                seq.append(int(top.indices[0]))
                result = ref(torch.tensor([[seq[-1]]], device="cuda"), past_key_values=past, use_cache=True)
                past, logits = result.past_key_values, result.logits[0, -1]
            record["greedy"].append(seq)
            record["min_greedy_margin"].append(margin)
    # How far transformers itself lands from float32 when it runs the same weights in bf16: the yardstick
    # for troupe's bf16 logits (troupe_gpu_check allows 1.5 times this).
    del ref
    torch.cuda.empty_cache()
    half = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16, device_map="cuda").eval()
    worst, agree = 0.0, 0
    with torch.no_grad():
        for p, exact, greedy in zip(prompts, record["last_logits"], record["greedy"]):
            got = half(torch.tensor([p], device="cuda")).logits[0, -1].float().cpu()
            want = torch.tensor(exact)
            worst = max(worst, float(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want)))
            seq = half.generate(torch.tensor([p], device="cuda"), max_new_tokens=NEW_TOKENS, do_sample=False,
                                min_new_tokens=NEW_TOKENS)[0, len(p):].tolist()
            prefix = 0
            while prefix < min(len(seq), len(greedy)) and seq[prefix] == greedy[prefix]:
                prefix += 1
            agree += prefix  # tokens before the first divergence, summed over the prompts
    record["transformers_bf16_relative_error"] = worst
    record["transformers_bf16_greedy_agreement"] = agree
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(record, f)
    print(f"reference for {out}: min greedy margins {[round(m, 4) for m in record['min_greedy_margin']]}; "
          f"transformers in bf16: last logits within {worst:.3e} of float32, greedy agreement {agree} of "
          f"{NEW_TOKENS * len(prompts)} tokens; {time.time() - t0:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
