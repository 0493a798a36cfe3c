#!/usr/bin/env bash
# A short GPU run within a time limit (LIMIT seconds, default 320), for when device time is scarce: the op
# table and its timings (int4, FP8 KV, FP8 weights included), one request's time per output token at
# Qwen2.5-7B shapes in bf16 / rtn / fp8 (and rtn without programmatic dependent launch), the KV block counts
# with an auto and an FP8 cache, then the reference models as time allows. Logs in $OUT/logs.tgz.
#   LIMIT=215 bash scripts/gpu/quick.sh      (on the GPU machine, after scripts/gpu/bundle.sh here)
set -u
bash scripts/gpu/unpack.sh bundle
export LD_LIBRARY_PATH=bundle/lib:/usr/local/cuda/lib64 NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/troupe-gpu}; mkdir -p "$OUT"
m=bundle/data/qwen2.5-7b-shape
end=$((SECONDS + ${LIMIT:-320}))
left() { echo $((end - SECONDS)); }
run_b1() {  # tag, then extra args; env from the caller
  local tag=$1; shift
  [ "$(left)" -gt 40 ] || { echo "== skipped b1 $tag"; return; }
  timeout 60 bundle/troupe bench throughput --backend cuda --load-format dummy --model $m --num-prompts 1 --input-len 128 \
    --output-len 384 --max-model-len 1024 --temperature 0 "$@" > $OUT/b1_$tag.txt 2>&1
  echo "== 1 request $tag: $(grep -E 'output tokens/s' $OUT/b1_$tag.txt) | $(grep -E 'us per step' $OUT/b1_$tag.txt)"
}
# Reference models the bundle lacks (a new architecture's) and torch's FP8 references are made first, so the models
# run below checks them; what is made comes back in $OUT/references.tgz for unpacking into tests/data/reference/.
bash scripts/gpu/make_missing_references.sh bundle/data/reference "$OUT"
timeout 120 bundle/troupe_gpu_check --data bundle/data/reference --no-models --no-comm --no-tp --torture-seconds 0 > $OUT/ops.txt 2>&1
echo "== ops: $(grep -E 'checks pass' $OUT/ops.txt)"; grep -E "FAIL|inf " $OUT/ops.txt | head -20
grep -E "^time (linear|paged_attention)" $OUT/ops.txt | cut -c1-44,100-190
run_b1 bf16
run_b1 rtn --quantization rtn
for kv in auto fp8; do
  [ "$(left)" -gt 30 ] || break
  timeout 30 bundle/troupe generate --backend cuda --load-format dummy --model $m --max-model-len 4096 --prompt-token-ids 1,2,3 --max-tokens 4 --kv-cache-dtype $kv > $OUT/gen_$kv.txt 2>&1
  echo "== kv $kv: $(grep -oE '= [0-9]+ blocks' $OUT/gen_$kv.txt | head -1)"
done
run_b1 fp8 --quantization fp8
TROUPE_NO_PDL=1 run_b1 rtn_nopdl --quantization rtn
if [ "$(left)" -gt 30 ]; then
  timeout $(left) bundle/troupe_gpu_check --data bundle/data/reference --models --no-tp > $OUT/models.txt 2>&1
  echo "== models: $(grep -E 'checks pass' $OUT/models.txt)"; grep -E "FAIL|inf " $OUT/models.txt | head -20
fi
cd $OUT && tar czf logs.tgz *.txt && rm -f gen_*.txt b1_*.txt
