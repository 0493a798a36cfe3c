#!/usr/bin/env bash
# Step 0 of scripts/gpu/check.sh and scripts/gpu/quick.sh, on the GPU machine (it has torch and transformers):
# makes what the bundle's reference folders lack, so that the checks after it use it: the checkpoints of a new
# architecture (make_reference_models.py --only-missing) and torch's FP8 references of every checkpoint without
# its reference_fp8.json (make_fp8_references.py --only-missing). Every file made is copied to
# OUT_DIR/reference/<name>/, which comes back with the run: copy that folder's contents into tests/data/reference/
# and commit them.
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
for f in $made; do
  mkdir -p "$out/reference/$(dirname "$f")"
  cp "$ref/$f" "$out/reference/$f"
done
echo "== made references: $(echo "$made" | grep -c .) files, copied under $out/reference/"
grep -E 'files=|reference_fp8.json' "$out/make_references.txt"
exit $status
