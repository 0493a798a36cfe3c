#!/usr/bin/env bash
# Runs on the GPU machine, from the project root, over a bundle made by scripts/gpu/bundle.sh. Builds
# nothing. NEEDS A GPU.
#   0. reference models the bundle lacks (a new architecture's, e.g. qwen3_f32 and qwen3_bias_bf16) and torch's FP8
#      references of every reference model without its reference_fp8.json are made into the bundle
#      (scripts/gpu/make_missing_references.sh), so step 1 checks them; what it made comes back under
#      $OUT/references.tgz: unpack it into tests/data/reference/ and commit it.
#   1. troupe_gpu_check: every CUDA op against its CPU twin, the reference models on the GPU, the
#      communicators (2 and 4 ranks sharing the GPU against the CPU's bits, NCCL of size 1, also inside
#      a CUDA graph), the tensor-parallel forward (reference models split over 2 and 4 shards sharing the
#      GPU, NCCL of size 1 on the sharded path; decode step and collective times at Qwen2.5-7B shapes),
#      timings. CHECK_ARGS=--comm runs only the communicators, CHECK_ARGS=--tp only tensor parallelism,
#      CHECK_ARGS=--models only the reference models (whole and split); add --only-4-bit for the 4-bit
#      reference folders alone (issue 12: CHECK_ARGS="--models --only-4-bit"); CHECK_ARGS=--fp8-kv only the FP8
#      KV cache's rows (issue 13: its ops, the reference models with an FP8 cache against the CPU twin and
#      against torch's FP8 references, attention timings); CHECK_ARGS=--fp8-silu only linear_fp8_silu's op rows; CHECK_ARGS=--fp8-weights only the FP8 weights' rows
#      (issue 13: linear_fp8 on each GEMM path, the reference models with FP8 weights against the CPU twin and
#      against torch's FP8 references, gate_up timings beside bf16); CHECK_ARGS=--int4 only the 4-bit weights' rows
#      (issue 12: linear_int4 on each kernel and variant, the 4-bit reference models, the random AWQ model on each
#      4-bit path, linear_int4's timings; about 90 s).
#   1b. with LARGE=1: the same model checks at Qwen2.5-7B shapes (scripts/gpu/make_large_reference.py).
#   1c. with EDGES=1: prompts over the step budget through `troupe generate` and `troupe serve`.
#   2. with BENCH=1: troupe bench throughput on the CUDA backend with random weights at Qwen2.5-7B shapes
#      (BENCH_ARGS overrides the workload; default 256 prompts x 512 in x 256 out).
#   3. with STRUCTURED=1 (a bundle made with STRUCTURED=1): the same bench at 256 sequences with the Qwen3
#      tokenizer, unconstrained and then half constrained by data/structured_schema.json: the bitmask time
#      per step (on a CPU thread beside the forward) and the wait for it, next to the step time (issue 15).
#   4. with CUSTOM_AR_MPI=1: `mpirun -np 2 troupe_gpu_check --custom-all-reduce-mpi` (issue 16: the custom
#      all-reduce through CUDA IPC, one rank per process); CHECK_ARGS=--custom-all-reduce runs step 1's part alone.
# Logs go to $OUT (or /tmp/troupe-gpu); the tables come last.
set -uo pipefail
cd "$(dirname "$0")/../.."
bundle=${BUNDLE:-bundle}
out=${OUT:-/tmp/troupe-gpu}
mkdir -p "$out"
bash scripts/gpu/unpack.sh "$bundle"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0  # never NVLink multicast on shared machines
# Ranks sharing the GPU run kernels that spin for each other: more hardware work queues (8 by default) make two
# ranks' streams less likely to share one after the checks before them made many streams.
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-32}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
bash scripts/gpu/make_missing_references.sh "$bundle/data/reference" "$out" || status=1
if [ "${CHECK:-1}" = 1 ]; then
  # The table goes to gpu_check.txt at the end; each row as it is made, each part's end and any error go to
  # gpu_check_progress.txt at once, so a run cut off by a time limit still says what it finished.
  TROUPE_GPU_CHECK_STREAM=1 "$bundle/troupe_gpu_check" --data "$bundle/data/reference" ${CHECK_ARGS:-} \
    >"$out/gpu_check.txt" 2>"$out/gpu_check_progress.txt" || status=1
fi

# 1b. with LARGE=1: a Qwen2.5-7B-shaped model with random weights, made here by transformers (15 GB under
#     $LARGE_DIR, default /tmp/troupe-large), and its logits and greedy continuations checked the same way.
if [ "${LARGE:-0}" = 1 ]; then
  large=${LARGE_DIR:-/tmp/troupe-large}
  if [ ! -f "$large/qwen2.5-7b-shape/reference.json" ]; then
    python3 scripts/gpu/make_large_reference.py "$bundle/data/qwen2.5-7b-shape" "$large/qwen2.5-7b-shape" \
      >"$out/large_reference.txt" 2>&1 || { status=1; tail -20 "$out/large_reference.txt"; }
  fi
  "$bundle/troupe_gpu_check" --no-ops --no-timing --data "$large" >"$out/gpu_check_large.txt" 2>&1 || status=1
fi

# 1c. with EDGES=1: prompts over the step budget through the programs (issue 9): `troupe generate` with
#     --max-num-batched-tokens 16 must print what the unchunked run prints (greedy and seeded, f32 and
#     bf16), and `troupe serve` with --max-num-batched-tokens 64 must answer 100- and 300-token prompts
#     and stay up.
if [ "${EDGES:-0}" = 1 ]; then
  {
    ref="$bundle/data/reference/llama_f32"
    for dt in float32 bfloat16; do
      for len in 17 100 200; do  # the reference models hold 256 tokens: 200 + 8 fits
        p=$(python3 -c "print(','.join(str((i * 31 + 7) % 250) for i in range($len)))")
        for t in "--temperature 0" "--temperature 0.8 --seed 3"; do  # stdout only: the logs carry timings
          # shellcheck disable=SC2086
          a=$("$bundle/troupe" generate --backend cuda --dtype $dt --model "$ref" --prompt-token-ids "$p" $t --max-tokens 8 --json 2>/dev/null)
          # shellcheck disable=SC2086
          b=$("$bundle/troupe" generate --backend cuda --dtype $dt --model "$ref" --prompt-token-ids "$p" $t --max-tokens 8 --json \
              --max-num-batched-tokens 16 2>/dev/null)
          if [ "$a" = "$b" ] && [ -n "$a" ]; then r=pass; else r=FAIL; status=1; fi
          echo "chunked generate  $dt prompt $len ($t): $r"
        done
      done
    done
    "$bundle/troupe" serve --backend cuda --load-format dummy --model "$bundle/data/qwen2.5-7b-shape" --max-model-len 4096 \
      --max-num-batched-tokens 64 --port 8000 --client-port -1 >"$out/serve_edges.log" 2>&1 &
    server=$!
    for _ in $(seq 1 180); do [ "$(curl -s -o /dev/null -w '%{http_code}' localhost:8000/health)" = 200 ] && break; sleep 1; done
    for n in 100 300; do
      p=$(python3 -c "print(','.join(str((i * 13 + 5) % 250) for i in range($n)))")
      for temp in 0 1; do
        code=$(curl -s -o /dev/null -w '%{http_code}' localhost:8000/v1/completions \
               -d "{\"prompt\": [$p], \"max_tokens\": 8, \"temperature\": $temp}")
        [ "$code" = 200 ] && r=pass || { r=FAIL; status=1; }
        echo "serve, budget 64  prompt $n temperature $temp: HTTP $code $r"
      done
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' localhost:8000/health)
    [ "$code" = 200 ] && r=pass || { r=FAIL; status=1; }
    echo "serve, budget 64  /health afterwards: $code $r"
    kill "$server"; wait "$server"
  } >"$out/edges.txt" 2>&1
fi

if [ "${BENCH:-0}" = 1 ]; then
  # shellcheck disable=SC2086
  "$bundle/troupe" bench throughput --backend cuda --load-format dummy --model "$bundle/data/qwen2.5-7b-shape" \
    ${BENCH_ARGS:---num-prompts 256 --input-len 512 --output-len 256 --max-model-len 1024} \
    --output-json "$out/bench.json" >"$out/bench.txt" 2>&1 || status=1
fi

if [ "${STRUCTURED:-0}" = 1 ]; then
  for fraction in 0 0.5; do
    "$bundle/troupe" bench throughput --backend cuda --load-format dummy --model "$bundle/data/qwen2.5-7b-shape" \
      --tokenizer "$bundle/data/qwen3-tokenizer" --num-prompts 256 --max-num-seqs 256 --input-len 512 \
      --output-len 256 --max-model-len 1024 --structured-fraction "$fraction" \
      --structured-schema "$bundle/data/structured_schema.json" >"$out/structured_$fraction.txt" 2>&1 || status=1
  done
fi

# 4. with CUSTOM_AR_MPI=1: the custom all-reduce with one rank per process (CUDA IPC handles), under mpirun:
#    CUSTOM_AR_NP processes (default 2) over the GPUs there are (one GPU is enough: rank r uses GPU r % GPUs).
#    Needs Open MPI's mpirun on the GPU machine (the bundle carries libmpi, not mpirun and its plugins).
if [ "${CUSTOM_AR_MPI:-0}" = 1 ]; then
  if command -v mpirun >/dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np "${CUSTOM_AR_NP:-2}" --oversubscribe \
      -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE "$bundle/troupe_gpu_check" --custom-all-reduce-mpi \
      >"$out/custom_all_reduce_mpi.txt" 2>&1 || status=1
  else
    echo "CUSTOM_AR_MPI=1: no mpirun on this machine" >"$out/custom_all_reduce_mpi.txt"
    status=1
  fi
fi

[ -f "$out/gpu_check.txt" ] && cat "$out/gpu_check.txt"
[ -f "$out/gpu_check_progress.txt" ] && grep -E "^troupe_gpu_check" "$out/gpu_check_progress.txt"
[ -f "$out/custom_all_reduce_mpi.txt" ] && { echo; echo "== custom all-reduce under mpirun (CUSTOM_AR_MPI=1)"; cat "$out/custom_all_reduce_mpi.txt"; }
[ -f "$out/gpu_check_large.txt" ] && { echo; echo "== the model at Qwen2.5-7B shapes against transformers"; cat "$out/large_reference.txt" 2>/dev/null | tail -2; cat "$out/gpu_check_large.txt"; }
[ -f "$out/edges.txt" ] && { echo; echo "== prompts over the step budget (EDGES=1)"; cat "$out/edges.txt"; }
[ -f "$out/bench.txt" ] && { echo; echo "== bench throughput (cuda, Qwen2.5-7B shapes, dummy weights)"; tail -40 "$out/bench.txt"; }
for fraction in 0 0.5; do
  [ -f "$out/structured_$fraction.txt" ] && { echo; echo "== structured outputs: $fraction of 256 sequences constrained"; tail -20 "$out/structured_$fraction.txt"; }
done
exit $status
