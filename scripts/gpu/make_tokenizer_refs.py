#!/usr/bin/env python3
"""Records what the Hugging Face `tokenizers` library makes of tests/data/tokenizer_corpus.json.

For each tokenizer.json given and every corpus string it writes encode(s, add_special_tokens=False).ids,
encode(s, add_special_tokens=True).ids, decode(those ids) with and without skip_special_tokens, the
decode of the plain ids, and what HF's DecodeStream streams for the ids; plus decodes of hand-picked
token sequences (byte fallback runs, partial UTF-8, special tokens first). troupe's tokenizer tests
compare against the files this writes: tests/data/tokenizer_refs_<name>.json.

Runs wherever `tokenizers` is installed (the GPU machine here):
  python3 make_tokenizer_refs.py --corpus tokenizer_corpus.json --out DIR \
      --tokenizer qwen3=.../tokenizer.json --tokenizer llama3=... --tokenizer llama2=... \
      --tokenizer troupe_tiny=... --variants tokenizer_variants.json
"""
import argparse
import copy
import json
import os
import sys

# Token sequences whose decode is worth pinning down, by tokenizer family. Tokens missing from a
# vocabulary are left out of the sequence; a sequence that loses a token is dropped.
SENTENCEPIECE_DECODES = [
    ["\u2581Hello"], ["\u2581\u2581"], ["\u2581"], ["\u2581", "\u2581"], ["\u2581\u2581Hello", "\u2581world"],
    ["<s>", "\u2581Hello"], ["</s>", "\u2581Hi"], ["<unk>"], ["<unk>", "\u2581a"], ["<0xE4>"], ["<0xE4>", "<0xB8>"],
    ["<0xE4>", "<0xB8>", "<0xAD>"], ["<0xE4>", "a"], ["a", "<0xE4>", "<0xB8>"], ["<0xFF>", "<0xFE>"],
    ["<0x20>", "a"], ["<0x0A>"], ["\u2581a", "<0xE4>", "<0xB8>", "<0xAD>", "\u2581b"],
    ["<0xE4>", "<0xB8>", "<0xAD>", "<0xE4>"], ["<s>", "<0xE4>", "<0xB8>", "<0xAD>"], ["\u2581\u2581\u2581\u2581"],
    ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"], ["<0xF0>", "<0x9F>", "<s>", "<0x98>", "<0x80>"],
]
BYTE_LEVEL_DECODES = [
    ["\u0120"], ["\u0120Hello", "\u0120world"], ["\u00c3"], ["\u00c3", "\u00a4"], ["\u00c3\u00a4"],
    ["\u00e4\u00b8\u0143"], ["\u00e4", "\u00b8", "\u0143"], ["\u00e4", "\u00b8"], ["<|im_start|>", "user"],
    ["<|endoftext|>"], ["<|begin_of_text|>", "Hello"], ["\u00ff"], ["\u00ff", "a"], ["\u010a"], ["\u010a\u010a"],
    ["<|im_start|>", "\u00e4", "<|im_end|>", "\u00b8", "\u0143"], ["\u00f0\u0141", "\u013a", "\u0122"],
    ["Hello", "<|endoftext|>", "\u0120there"],
]


def decode_cases(tok):
    cases = []
    for tokens in SENTENCEPIECE_DECODES + BYTE_LEVEL_DECODES:
        ids = [tok.token_to_id(t) for t in tokens]
        if any(i is None for i in ids):
            continue
        try:
            cases.append({
                "tokens": tokens,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids, skip_special_tokens=True),
            })
        except BaseException:  # an HF panic: nothing to compare with
            continue
    return cases


def streamed(tok, ids):
    """What HF's DecodeStream emits for ids, joined; None when this tokenizers has no DecodeStream."""
    try:
        from tokenizers.decoders import DecodeStream
    except ImportError:
        return None
    stream = DecodeStream(skip_special_tokens=False)
    out = []
    for i in ids:
        piece = stream.step(tok, i)
        if piece is not None:
            out.append(piece)
    return "".join(out)


def apply_variant(base, variant):
    """base (a parsed tokenizer.json) with the variant's sections, model fields and added tokens."""
    doc = copy.deepcopy(variant["tokenizer"] if variant["base"] == "inline" else base)
    for key, value in variant.get("sections", {}).items():
        doc[key] = value
    doc["model"].update(variant.get("model", {}))
    doc["added_tokens"] = doc.get("added_tokens", []) + variant.get("added_tokens", [])
    return doc


def variant_refs(Tokenizer, variants, bases, corpus, max_bytes):
    """Refs for each variant on the corpus strings of at most max_bytes (to keep the file small)."""
    indices = [i for i, text in enumerate(corpus) if len(text.encode("utf-8")) <= max_bytes]
    result = {"max_bytes": max_bytes, "indices": indices, "variants": {}}
    for variant in variants:
        name = variant["name"]
        try:
            tok = Tokenizer.from_str(json.dumps(apply_variant(bases.get(variant["base"]), variant)))
        except Exception as e:
            result["variants"][name] = {"error": str(e)}
            print(f"variant {name}: HF refused it: {e}", flush=True)
            continue
        cases = []
        for i in indices:
            plain = tok.encode(corpus[i], add_special_tokens=False).ids
            special = tok.encode(corpus[i], add_special_tokens=True).ids
            try:
                decoded = tok.decode(special, skip_special_tokens=False)
                decoded_skip = tok.decode(special, skip_special_tokens=True)
            except BaseException as e:  # HF panics on some inputs (Strip with stop > 0 on an empty token)
                cases.append({"ids": plain, "ids_special": special if special != plain else None,
                              "decode_panic": str(e)})
                continue
            # null where a field repeats another, to keep the file small
            cases.append({
                "ids": plain,
                "ids_special": special if special != plain else None,
                "decoded": decoded,
                "decoded_skip": decoded_skip if decoded_skip != decoded else None,
            })
        result["variants"][name] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True), "cases": cases,
                                    "decode_cases": decode_cases(tok)}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--out", required=True, help="folder for tokenizer_refs_<name>.json")
    parser.add_argument("--tokenizer", action="append", required=True, help="NAME=PATH to a tokenizer.json")
    parser.add_argument("--variants", help="tokenizer_variants.json: changed copies of the tokenizers above")
    parser.add_argument("--variant-max-bytes", type=int, default=100)
    args = parser.parse_args()

    import tokenizers
    from tokenizers import Tokenizer

    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)
    os.makedirs(args.out, exist_ok=True)
    bases = {}
    for spec in args.tokenizer:
        name, path = spec.split("=", 1)
        with open(path, encoding="utf-8") as f:
            bases[name] = json.load(f)
        tok = Tokenizer.from_file(path)
        cases = []
        for text in corpus:
            plain = tok.encode(text, add_special_tokens=False).ids
            special = tok.encode(text, add_special_tokens=True).ids
            case = {
                "ids": plain,
                "ids_special": special,
                "decoded": tok.decode(special, skip_special_tokens=False),
                "decoded_skip": tok.decode(special, skip_special_tokens=True),
                "decoded_plain": tok.decode(plain, skip_special_tokens=False),
            }
            try:
                case["streamed"] = streamed(tok, special)
            except Exception as e:  # a DecodeStream error is itself worth recording
                case["streamed"] = None
                case["stream_error"] = str(e)
            cases.append(case)
        result = {
            "tokenizer": name,
            "tokenizers_version": tokenizers.__version__,
            "corpus_size": len(corpus),
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "cases": cases,
            "decode_cases": decode_cases(tok),
        }
        out_path = os.path.join(args.out, f"tokenizer_refs_{name}.json")
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: {len(cases)} cases, {len(result['decode_cases'])} decode cases -> {out_path} "
              f"({os.path.getsize(out_path)} bytes)", flush=True)
    if args.variants:
        with open(args.variants, encoding="utf-8") as f:
            variants = json.load(f)
        result = variant_refs(Tokenizer, variants, bases, corpus, args.variant_max_bytes)
        result["tokenizers_version"] = tokenizers.__version__
        out_path = os.path.join(args.out, "tokenizer_refs_variants.json")
        with open(out_path, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        print(f"variants: {len(result['variants'])} -> {out_path} ({os.path.getsize(out_path)} bytes)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
