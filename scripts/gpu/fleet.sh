#!/usr/bin/env bash
# Issue 14's GPU figures in one run within LIMIT seconds (default 540):
#   A. must-show 2: two `troupe serve` workers sharing one GPU (half its memory each, see MEM_A below), a
#      `troupe router` over both, and `troupe bench serve` through it with vLLM's prefix_repetition dataset
#      (PREFIXES shared prefixes of PREFIX_LEN tokens, PROMPTS requests each adding SUFFIX_LEN tokens, OUTPUT_LEN
#      out, at RATE requests/s): --routing prefix_affinity, then round_robin over FRESH workers (empty prefix
#      caches and zeroed counters: troupe has no cache reset, and a restarted worker is the honest cold start).
#      Tokens/s, TTFT p50/p95 and the fleet's prefix-cache hit rate (the workers' /metrics before and after).
#   B. must-show 4: one worker with the whole GPU, `troupe bench serve --sweep` over a chat mix (SWEEP_* below)
#      to the knee C, then `troupe plan --tokens 1M/min --capacity sweep.json` with two pools.
# The tables come last; logs and JSON in $OUT (default /tmp/troupe-fleet), also as $OUT/logs.tgz. Parts that
# would not fit in the time left are skipped, saying so. Every process started here is killed on exit.
#   LIMIT=540 bash scripts/gpu/fleet.sh          (on the GPU machine, after scripts/gpu/bundle.sh here)
#   BACKEND=cpu bash scripts/gpu/fleet.sh        (anywhere: the built-in small model, small counts, ~1 minute)
# MODEL= a model folder (default: bundle/data/qwen2.5-7b-shape on cuda, random weights; the built-in model on
# cpu); TROUPE= the binary (default bundle/troupe, else build/troupe); WORKER_ARGS= extra flags for the 2 workers.
# On cuda they default to --num-gpu-blocks-override 480 at 48 requests/s: a cache that holds 4 of the 8 prefixes
# and the running requests, not all 8. With half an H200 each (55k blocks) every worker keeps every prefix and the
# two routings tie (2026-12-05: 18,407 vs 18,394 tok/s, hit 88.4 vs 86.8%); with 480 blocks prefix affinity gave
# 20,935 vs 11,034 tok/s, hit 90.8 vs 41.4%. WORKER_ARGS= (empty) and RATE=16 give the unbounded run.
# NOTE: --gpu-memory-utilization is each instance's share (vLLM V1's meaning; memory_plan.hpp), so both workers
# take MEM_A / MEM_B = 0.45. The second still starts once the first is healthy: a cache is planned on what is
# free, and two profiling steps at once would each see the other's workspaces come and go.
set -u
cd "$(dirname "$0")/../.." || exit 1
export LD_LIBRARY_PATH="bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0
OUT=${OUT:-/tmp/troupe-fleet}; mkdir -p "$OUT"
BACKEND=${BACKEND:-cuda}
TROUPE=${TROUPE:-$( [ -x bundle/troupe ] && echo bundle/troupe || echo build/troupe )}
end=$((SECONDS + ${LIMIT:-540}))
left() { echo $((end - SECONDS)); }
budget() { local b=$(($(left) - 10)); echo $((b < 5 ? 5 : b)); }  # a command's timeout: never 0 (no limit)

if [ "$BACKEND" = cpu ]; then
  MODEL=${MODEL-}
  PREFIXES=${PREFIXES:-8} PROMPTS=${PROMPTS:-48} PREFIX_LEN=${PREFIX_LEN:-64} SUFFIX_LEN=${SUFFIX_LEN:-8}
  OUTPUT_LEN=${OUTPUT_LEN:-8} RATE=${RATE:-40} MEM_A=${MEM_A:-} MEM_B=${MEM_B:-} MEM_WHOLE=${MEM_WHOLE:-}
  SWEEP_PROMPTS=${SWEEP_PROMPTS:-16} SWEEP_IN=${SWEEP_IN:-64} SWEEP_OUT=${SWEEP_OUT:-16} SWEEP_RATE=${SWEEP_RATE:-4}
  SWEEP_STEPS=${SWEEP_STEPS:-4} SLO_MS=${SLO_MS:-2000}
else
  MODEL=${MODEL-bundle/data/qwen2.5-7b-shape}
  PREFIXES=${PREFIXES:-8} PROMPTS=${PROMPTS:-400} PREFIX_LEN=${PREFIX_LEN:-1000} SUFFIX_LEN=${SUFFIX_LEN:-100}
  WORKER_ARGS=${WORKER_ARGS---num-gpu-blocks-override 480}
  OUTPUT_LEN=${OUTPUT_LEN:-128} RATE=${RATE:-48} MEM_A=${MEM_A:-0.45} MEM_B=${MEM_B:-0.45} MEM_WHOLE=${MEM_WHOLE:-0.9}
  SWEEP_PROMPTS=${SWEEP_PROMPTS:-200} SWEEP_IN=${SWEEP_IN:-1000} SWEEP_OUT=${SWEEP_OUT:-200} SWEEP_RATE=${SWEEP_RATE:-4}
  SWEEP_STEPS=${SWEEP_STEPS:-6} SLO_MS=${SLO_MS:-2000}
fi
model_args=(--backend "$BACKEND")
[ -n "$MODEL" ] && model_args+=(--model "$MODEL" --load-format dummy --max-model-len 4096)
[ -n "$MODEL" ] && router_model=(--model "$MODEL" --max-model-len 4096) || router_model=()

pids=()
# shellcheck disable=SC2317  # run by the trap
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_health PORT SECONDS: 0 once http://127.0.0.1:PORT/health answers 200; 1 after SECONDS, or at once
# when the last process started here has exited (its log's last line is shown).
wait_health() {
  local until=$((SECONDS + $2)) pid=${pids[-1]}
  while [ $SECONDS -lt $until ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$1/health")" = 200 ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "== the process for 127.0.0.1:$1 exited: $(ps -o args= -p "$pid" 2>/dev/null)" >&2
      tail -1 "$OUT"/*.log 2>/dev/null | grep -E "error|Error" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "== 127.0.0.1:$1 not healthy after $2 s" >&2; return 1
}
# start_worker TAG PORT MEM [ARGS...]: a `troupe serve` on PORT (native client port PORT+1) with
# --gpu-memory-utilization MEM (none when empty), logged to $OUT/TAG.log.
start_worker() {
  local tag=$1 port=$2 mem=$3 args=()
  shift 3
  [ -n "$mem" ] && args=(--gpu-memory-utilization "$mem")
  "$TROUPE" serve "${model_args[@]}" "${args[@]}" "$@" --port "$port" --client-port $((port + 1)) \
    >"$OUT/$tag.log" 2>&1 &
  pids+=($!)
}
# The KV cache a worker's log reports, e.g. "KV cache 40.1 GiB = 2740 blocks of 16 tokens".
kv_of() { grep -oE "KV cache [0-9.]+ GiB = [0-9]+ blocks|KV cache \(auto\) of [0-9]+ blocks" "$OUT/$1.log" | head -1; }
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; pids=(); }

declare -A row
fleet_run() {  # ROUTING
  local routing=$1
  if [ "$(left)" -lt 150 ]; then echo "== skipped the $routing fleet run: $(left) s left"; return; fi
  # shellcheck disable=SC2086  # WORKER_ARGS is a list of flags
  start_worker "worker_a_$routing" 8100 "$MEM_A" ${WORKER_ARGS:-}
  if ! wait_health 8100 $(($(left) - 90)); then stop_all; return; fi
  # shellcheck disable=SC2086
  start_worker "worker_b_$routing" 8200 "$MEM_B" ${WORKER_ARGS:-}
  if ! wait_health 8200 $(($(left) - 60)); then stop_all; return; fi
  echo "== workers: a $(kv_of "worker_a_$routing"); b $(kv_of "worker_b_$routing") ($(left) s left)"
  "$TROUPE" router "${router_model[@]}" --port 8000 --routing "$routing" \
    --worker http://127.0.0.1:8100 --worker http://127.0.0.1:8200 >"$OUT/router_$routing.log" 2>&1 &
  pids+=($!)
  wait_health 8000 30 || { stop_all; return; }
  timeout "$(budget)" "$TROUPE" bench serve --port 8000 --disable-tqdm --dataset-name prefix_repetition \
    --num-prompts "$PROMPTS" --prefix-repetition-num-prefixes "$PREFIXES" --prefix-repetition-prefix-len "$PREFIX_LEN" \
    --prefix-repetition-suffix-len "$SUFFIX_LEN" --prefix-repetition-output-len "$OUTPUT_LEN" --ignore-eos \
    --request-rate "$RATE" --metrics-url http://127.0.0.1:8100/metrics --metrics-url http://127.0.0.1:8200/metrics \
    --json "$OUT/bench_$routing.json" >"$OUT/bench_$routing.txt" 2>&1
  echo "== $routing: exit $? ($(left) s left)"
  grep -E "Successful|Failed requests|throughput|TTFT|Prefix cache" "$OUT/bench_$routing.txt" | sed 's/^/   /'
  curl -s 127.0.0.1:8000/metrics | grep -E "router_(prefix_affinity_hits|requests_routed)_total" >"$OUT/router_$routing.metrics"
  if [ -f "$OUT/bench_$routing.json" ]; then
    # shellcheck disable=SC2046,SC2183  # the python prints the 7 values
    row[$routing]=$(printf "%5s %4s %10.1f %9.1f %10.1f %10.1f %8s" $(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
h = j.get("prefix_cache_hit_rate")
print(j["completed"], j["failed"], j["total_token_throughput"], j["output_throughput"], j["p50_ttft_ms"], j["p95_ttft_ms"],
      "n/a" if h is None else "%.1f" % (h * 100))' "$OUT/bench_$routing.json"))
  fi
  stop_all
}

echo "== $(date -u +%FT%TZ) backend $BACKEND, model ${MODEL:-built-in}, $TROUPE; limit ${LIMIT:-540} s"
[ "$BACKEND" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fleet_run prefix_affinity
fleet_run round_robin

# B. C at the knee of one worker with the whole GPU, and the plan.
if [ "$(left)" -gt 120 ]; then
  start_worker worker_whole 8300 "$MEM_WHOLE"
  if wait_health 8300 $(($(left) - 60)); then
    echo "== whole-device worker: $(kv_of worker_whole)"
    timeout "$(budget)" "$TROUPE" bench serve --port 8300 --disable-tqdm --sweep --num-prompts "$SWEEP_PROMPTS" \
      --random-input-len "$SWEEP_IN" --random-output-len "$SWEEP_OUT" --random-range-ratio 0.5 --ignore-eos \
      --request-rate "$SWEEP_RATE" --sweep-max-steps "$SWEEP_STEPS" --ttft-slo-ms "$SLO_MS" --json "$OUT/sweep.json" \
      >"$OUT/sweep.txt" 2>&1
    echo "== sweep: exit $? ($(left) s left)"
  fi
  stop_all
  if [ -f "$OUT/sweep.json" ]; then
    "$TROUPE" plan --tokens 1M/min --capacity "$OUT/sweep.json" --pool short:256,share=0.7 --pool long,share=0.3 \
      >"$OUT/plan.txt" 2>&1
    echo "== plan: exit $?"
  fi
else
  echo "== skipped the sweep and the plan: $(left) s left"
fi

(cd "$OUT" && tar czf logs.tgz ./*.log ./*.txt ./*.json ./*.metrics 2>/dev/null)
echo
echo "== prefix_repetition through troupe router: $PROMPTS requests, $PREFIXES prefixes x $PREFIX_LEN + $SUFFIX_LEN tokens, $OUTPUT_LEN out, $RATE req/s"
printf "%-16s %5s %4s %10s %9s %10s %10s %8s\n" routing "done" fail "tok/s" "out tok/s" "TTFT p50" "TTFT p95" "hit %"
for r in prefix_affinity round_robin; do printf "%-16s %s\n" "$r" "${row[$r]:-(not run)}"; done
[ -f "$OUT/sweep.txt" ] && { echo; echo "== sweep (one worker, whole device)"; sed -n '/Request-rate sweep/,$p' "$OUT/sweep.txt"; }
[ -f "$OUT/plan.txt" ] && { echo; echo "== troupe plan --tokens 1M/min"; cat "$OUT/plan.txt"; }
exit 0
