#!/usr/bin/env bash
# Step 0 of scripts/gpu/check.sh and scripts/gpu/quick.sh, on the GPU machine (it has torch and transformers):
# makes what the bundle's reference folders lack, so that the checks after it use it: the checkpoints of a new
# architecture (make_reference_models.py --only-missing) and torch's FP8 references of every checkpoint without
# its reference_fp8.json (make_fp8_references.py --only-missing). Every file made goes into OUT_DIR/references.tgz
# (paths relative to REF_DIR), which comes back with the run: unpack it into tests/data/reference/ and commit.
#   bash scripts/gpu/make_missing_references.sh REF_DIR OUT_DIR        (log: OUT_DIR/make_references.txt)
set -uo pipefail
cd "$(dirname "$0")/../.."
ref=$1
out=$2
if ! python3 -c "import torch, transformers" 2>/dev/null; then
  echo "== made references: none (no torch or transformers here)"
  exit 0
fi
files() { (cd "$ref" && find . -type f | sort); }
before=$(files)
status=0
{
  python3 scripts/gpu/make_reference_models.py "$ref" --only-missing || status=1
  python3 scripts/gpu/make_fp8_references.py "$ref" --only-missing || status=1
} >"$out/make_references.txt" 2>&1
[ $status = 0 ] || tail -20 "$out/make_references.txt"
made=$(comm -13 <(echo "$before") <(files))
# One archive, since the device tool brings back at most 8 files from OUT_DIR.
# shellcheck disable=SC2086
[ -n "$made" ] && tar czf "$out/references.tgz" -C "$ref" $made
echo "== made references: $(echo "$made" | grep -c .) files, in $out/references.tgz"
grep -E 'files=|reference_fp8.json' "$out/make_references.txt"
exit $status
