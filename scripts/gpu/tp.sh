#!/usr/bin/env bash
# Tensor parallelism over the GPUs of one machine (issue 16 on 2 GPUs, issue 17 on 4 and 8), in one run within
# LIMIT seconds (default 570). Each part is timed and skipped, saying so, when it would not fit the time left
# or the GPUs' memory; a table comes last, each figure next to its goal from the issues. Logs in $OUT/tp.tgz.
#   plan     the Llama-3.1-70B / -405B shape folders through the engine's config, sharding and KV planning at
#            TP = 2, 4, 8 on the null backend (no weights, no GPU), in one process and under mpirun
#   answers  greedy tokens in f32 (--dtype float32) of every non-4-bit reference checkpoint at TP = 1, at TP = N
#            in one process and at TP = N under `mpirun -np N` (one GPU per rank), N = 2 .. GPUs where the
#            checkpoint's 4 heads allow, and of a dummy-weight 8-head model (dummy weights do not depend on the
#            split) up to TP = 8: pass/FAIL lines (issue 16 item 1, issue 17 items 2-3)
#   scale7b  Qwen2.5-7B shapes, dummy bf16 weights: W1 (256 prompts x 512 in x 256 out, greedy) and one
#            request's time per output token (1 prompt, 128 in, 384 out) at TP = 1 and each of SCALE_TPS, with
#            and without --disable-custom-all-reduce: the all-reduce's cost per step at batch 1 and 256
#            (issue 16 items 2 and 4)
#   serve2   Qwen2.5-7B shapes served at TP = 2 under `mpirun -np 2`, `troupe bench serve` at SERVE_RATE
#            requests/s: every request answered (issue 16 item 5)
#   70b      Llama-3.1-70B shapes, dummy bf16 weights, one `troupe serve -tp N` per N in TPS_70B (default 2, 4, 8
#            as the GPUs allow): load time (to /health 200), KV blocks, one request's TPOT, W1, and the 1000 x
#            1000/1000 job with as many prompts as the time left allows (the table says how many), each next
#            to its floor (issue 16 item 3, issue 17 item 1)
#   405b     Llama-3.1-405B shapes at TP = 8 (8 H200s: 94.5 GiB of weights a GPU): load time, KV blocks, TPOT
#            against its floor and a short `troupe bench serve` run (issue 17 item 4)
#   archeck  (only when named in PART) troupe_gpu_check --tp: decode step and collective times, NCCL against
#            the custom all-reduce on GPUs 0 and 1 at batch 1 and 256
# Floors: TPOT = bf16 weight bytes a GPU reads per decode step (its linear layers and LM head rows) / 4.14 TB/s;
# a job's = the larger of its FLOPs a GPU (2 per weight per token, plus attention) / 737 TFLOP/s and its decode
# steps' weight bytes / 4.14 TB/s (../shared/GPU.md's measured H200 ceilings).
#
#   bash scripts/gpu/tp.sh                         on the GPU machine, after scripts/gpu/bundle.sh here (carry
#                                                  bundle); the parts default by GPU count (nvidia-smi -L):
#                                                  2: plan, answers, scale7b, serve2, 70b; 4 and 8: plan,
#                                                  answers, 70b (on 8, PART=405b in a second call); the 70B
#                                                  jobs take the time the other parts leave (~9.5 minutes in all)
#   PART=405b bash scripts/gpu/tp.sh               only some parts (comma-separated; ~3 minutes for 405b)
#   BACKEND=cpu bash scripts/gpu/tp.sh             anywhere: tiny dummy models on CPU shards (threads, and
#                                                  mpirun --oversubscribe), GPUS=8 pretend GPUs; ~40 s on 2 cores
# LIMIT= seconds (default 570); OUT= where tp.tgz goes (default /tmp/troupe-tp; the device tool's $OUT there);
# WORK= the logs (default /tmp/troupe-tp-work); TROUPE= the binary (bundle/troupe, else build/troupe);
# TPS_70B= "2 4 8"; SCALE_TPS= "2"; SERVE_RATE= 8; JOB_PROMPTS= the 1000/1000 job's prompts (default: as many as
# the time allows, at most the first TP's, so the TPs compare on one job).
set -u
cd "$(dirname "$0")/../.." || exit 1
# Never NVLink multicast on shared machines (../shared/GPU.md); mpirun passes these on (-x below).
export LD_LIBRARY_PATH="bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" NCCL_NVLS_ENABLE=0 \
  TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# Only tp.tgz goes to $OUT (the device tool brings back 8 files); the logs and the tiny model live in WORK.
OUT=${OUT:-/tmp/troupe-tp} WORK=${WORK:-/tmp/troupe-tp-work}
rm -rf "$WORK/logs" "$WORK/tiny-8-heads"; mkdir -p "$OUT" "$WORK/logs"
LOGS=$WORK/logs
BACKEND=${BACKEND:-cuda}
TROUPE=${TROUPE:-$( [ -x bundle/troupe ] && echo bundle/troupe || echo build/troupe )}
LIMIT=${LIMIT:-570}
end=$((SECONDS + LIMIT))
# 1000 streams at once: the server's --max-connections defaults to the descriptor limit less 128.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
left() { echo $((end - SECONDS)); }

if [ "$BACKEND" = cpu ]; then
  GPUS=${GPUS:-8}
  GPU_MIB=${GPU_MIB:-143771}  # as an H200, for the fit checks
  REF=${REF:-tests/data/reference}
  # Tiny stand-ins for the big shapes: every part's plumbing, in seconds.
  TINY=$WORK/tiny-8-heads; mkdir -p "$TINY"
  SHAPE_7B=$TINY SHAPE_70B=$TINY SHAPE_405B=$TINY
  W1=(16 32 16) TPOT=(1 16 48) JOB=(16 64 64) SERVE=(16 32 16) SHORT=(8 32 16)
  SERVE_RATE=${SERVE_RATE:-8} MODEL_LEN=256 NEED_BIG=20 KEEP_TP=10 KEEP_405=20 DEFAULT_PART=plan,answers,scale7b,serve2,70b,405b
  extra=(--backend cpu)
else
  GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | sort -n | head -1)
  REF=${REF:-bundle/data/reference}
  TINY=$WORK/tiny-8-heads; mkdir -p "$TINY"
  shape_dir() { [ -d "bundle/data/$1" ] && echo "bundle/data/$1" || echo "scripts/gpu/$1"; }
  SHAPE_7B=$(shape_dir qwen2.5-7b-shape) SHAPE_70B=$(shape_dir llama-3.1-70b-shape) SHAPE_405B=$(shape_dir llama-3.1-405b-shape)
  W1=(256 512 256) TPOT=(1 128 384) JOB=(1000 1000 1000) SERVE=(200 512 128) SHORT=(64 512 128)
  SERVE_RATE=${SERVE_RATE:-8} MODEL_LEN=4096 NEED_BIG=120 KEEP_TP=100 KEEP_405=240
  case $GPUS in
    2|3) DEFAULT_PART=plan,answers,scale7b,serve2,70b ;;
    4|5|6|7) DEFAULT_PART=plan,answers,70b ;;
    *) DEFAULT_PART=plan,answers,70b ;;
  esac
  extra=(--backend cuda)
fi
PART=${PART:-$DEFAULT_PART}
has_part() { [[ ",$PART," == *",$1,"* ]]; }
# The 8-head model of tests/tensor_parallel_mpirun_test.cpp's eight-process test, at head_dim 64.
cat >"$TINY/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
 "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-05, "torch_dtype": "float32"}
JSON

MPIRUN=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --bind-to none
        -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST -x NVSHMEM_DISABLE_NVLS)
[ "$BACKEND" = cpu ] && MPIRUN+=(--oversubscribe)

pids=()
# shellcheck disable=SC2317  # run by the trap
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; pids=(); }

table=() passes=0 fails=0
# shellcheck disable=SC2059  # the format is the first argument
row() { table+=("$(printf "$@")"); }
verdict() {  # NAME OK(0/1) DETAIL: a pass/FAIL line
  if [ "$2" = 0 ]; then echo "pass  $1 $3"; passes=$((passes + 1)); else echo "FAIL  $1 $3"; fails=$((fails + 1)); fi
}
# need TAG SECONDS: 0 when SECONDS are left, else records the skip.
need() {
  if [ "$(left)" -lt "$2" ]; then echo "== skipped $1: needs $2 s, $(left) s left"; row "%-44s skipped: needs %s s, %s s left" "$1" "$2" "$(left)"; return 1; fi
}

# shape_math CONFIG TP [PROMPTS IN OUT]: per GPU at TP, from config.json: "GIB TPOT_FLOOR_MS" and, with a job,
# "FLOOR_S FLOOR_OUT_TOK_S" (the floors the header describes; max_num_seqs 1024 sequences a step).
shape_math() {
  python3 - "$@" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json")); tp = int(sys.argv[2])
h, L, H, KV, I, V = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"], c["intermediate_size"], c["vocab_size"]
hd = c.get("head_dim") or h // H
q, kv, inter, vocab = H // tp * hd, max(KV // tp, 1) * hd, I // tp, -(-V // tp)
bias = (q + 2 * kv) if c.get("model_type") == "qwen2" else 0
layer = q * h + 2 * kv * h + h * q + 3 * inter * h + 2 * h + bias
head = 0 if c.get("tie_word_embeddings") else vocab * h
params = L * layer + vocab * h + head + h
read = (L * layer + (head or vocab * h)) * 2  # bytes a decode step reads: not the embedding's other rows
out = ["%.2f" % (params * 2 / 2**30), "%.4g" % (read / 4.14e12 * 1e3)]
if len(sys.argv) > 3:
    n, i, o = map(int, sys.argv[3:6])
    flops = 2 * (read / 2) * n * (i + o) + 4 * L * q * n * (i * i / 2 + o * i + o * o / 2)
    steps = o * -(-n // 1024)
    t = max(flops / 737e12, steps * read / 4.14e12)
    out += ["%.4g" % t, "%.0f" % (n * o / t)]
print(" ".join(out))
PY
}
fits() {  # CONFIG TP: 0 when a GPU's share of the bf16 weights fits 0.9 of the smallest GPU's memory, with 5 GiB to spare
  local gib; gib=$(shape_math "$1" "$2" | cut -d' ' -f1)
  python3 -c "import sys; sys.exit(0 if $gib + 5 <= 0.9 * $GPU_MIB / 1024 else 1)"
}
heads_allow() {  # CONFIG TP
  python3 - "$1" "$2" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/config.json")); n = int(sys.argv[2])
h, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
sys.exit(0 if h % n == 0 and (kv % n == 0 or n % kv == 0) else 1)
PY
}
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null; }
fmt() { python3 -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2" 2>/dev/null || echo '?'; }

# wait_health PORT SECONDS: 0 once /health answers 200; 1 after SECONDS or once the last process started exited.
wait_health() {
  local until=$((SECONDS + $2)) pid=${pids[-1]}
  while [ $SECONDS -lt $until ]; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$1/health")" = 200 ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "== the server on port $1 exited"; return 1; }
    sleep 0.5
  done
  echo "== the server on port $1 was not healthy after $2 s"; return 1
}
kv_blocks() { grep -oE "KV cache \([a-z0-9_]+\) of [0-9]+ blocks" "$1" | head -1 | grep -oE "[0-9]+ blocks"; }
# bench_serve TAG PORT SECONDS PROMPTS IN OUT [FLAGS...]: `troupe bench serve` at rate inf (unless FLAGS say),
# greedy, EOS ignored; its JSON in $LOGS/TAG.json. 0 when that JSON says some requests completed.
bench_serve() {
  local tag=$1 port=$2 secs=$3 n=$4 in=$5 out=$6; shift 6
  timeout "$secs" "$TROUPE" bench serve --port "$port" --disable-tqdm --num-prompts "$n" --random-input-len "$in" \
    --random-output-len "$out" --ignore-eos --temperature 0 "$@" --json "$LOGS/$tag.json" >"$LOGS/$tag.txt" 2>&1
  [ "$(json_field "$LOGS/$tag.json" completed)" -gt 0 ] 2>/dev/null
}

echo "== $(date -u +%FT%TZ) backend $BACKEND, $GPUS GPUs of ${GPU_MIB} MiB, parts $PART, limit $LIMIT s, $TROUPE"
[ "$BACKEND" = cpu ] || nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader

# ---- plan: the big shapes through config, sharding and KV planning, no weights.
if has_part plan && need "plan" 20; then
  for shape in llama-3.1-70b-shape llama-3.1-405b-shape; do
    dir=scripts/gpu/$shape; [ -d "$dir" ] || dir=bundle/data/$shape
    for n in 2 4 8; do
      timeout 60 "$TROUPE" generate --backend null --model "$dir" --load-format dummy -tp $n --max-model-len 4096 \
        --kv-cache-memory 4294967296 \
        --num-prompts 2 --input-len 8 --max-tokens 4 --ignore-eos --json >"$LOGS/plan_${shape}_$n.txt" 2>&1
      verdict "plan $shape TP=$n (null backend)" $? "($(grep -oE '[0-9]+ blocks of 16' "$LOGS/plan_${shape}_$n.txt" | head -1) tokens in 4 GiB a shard)"
    done
    timeout 120 "${MPIRUN[@]}" -np 8 --oversubscribe "$TROUPE" generate --backend null --model "$dir" --load-format dummy -tp 8 \
      --kv-cache-memory 4294967296 --max-model-len 4096 --num-prompts 2 --input-len 8 --max-tokens 4 --ignore-eos --json >"$LOGS/plan_${shape}_mpirun8.txt" 2>&1
    verdict "plan $shape TP=8 under mpirun -np 8 (null backend)" $? ""
  done
fi

# ---- answers: greedy f32 tokens at TP = N (one process, and mpirun) against TP = 1.
gen_args=(generate "${extra[@]}" --dtype float32 --num-prompts 4 --input-len 20 --max-tokens 16 --ignore-eos
          --temperature 0 --json --max-model-len 128 --max-num-seqs 8)
[ "$BACKEND" = cuda ] && gen_args+=(--num-gpu-blocks-override 256)
if has_part answers && need "answers" 60; then
  models=()
  for d in "$REF"/*/; do
    case $d in *_awq/|*_gptq/|*_rtn/) continue ;; esac  # 4-bit: issue 12's checks
    models+=("${d%/}")
  done
  models+=("$TINY")
  for m in "${models[@]}"; do
    name=$(basename "$m"); load=(); [ "$m" = "$TINY" ] && load=(--load-format dummy) && name=dummy-8-heads
    [ "$(left)" -lt 30 ] && { echo "== answers: stopped before $name, $(left) s left"; row "%-44s stopped before %s: time" "answers" "$name"; break; }
    if ! timeout 120 "$TROUPE" "${gen_args[@]}" --model "$m" "${load[@]}" >"$LOGS/answers_${name}_tp1.json" \
         2>"$LOGS/answers_${name}_tp1.log" || [ ! -s "$LOGS/answers_${name}_tp1.json" ]; then
      verdict "answers $name TP=1" 1 "(did not run: see its log)"; continue
    fi
    for n in $(seq 2 "$GPUS"); do
      heads_allow "$m" "$n" || continue
      [ "$n" -gt 8 ] && continue
      timeout 120 "$TROUPE" "${gen_args[@]}" --model "$m" "${load[@]}" -tp "$n" >"$LOGS/answers_${name}_tp$n.json" 2>"$LOGS/answers_${name}_tp$n.log"
      cmp -s "$LOGS/answers_${name}_tp1.json" "$LOGS/answers_${name}_tp$n.json"
      verdict "answers $name TP=$n one process = TP=1" $? ""
      timeout 180 "${MPIRUN[@]}" -np "$n" "$TROUPE" "${gen_args[@]}" --model "$m" "${load[@]}" -tp "$n" \
        >"$LOGS/answers_${name}_mpirun$n.json" 2>"$LOGS/answers_${name}_mpirun$n.log"
      cmp -s "$LOGS/answers_${name}_tp1.json" "$LOGS/answers_${name}_mpirun$n.json"
      verdict "answers $name TP=$n mpirun -np $n = TP=1" $? ""
    done
  done
  row "%-44s %s pass, %s FAIL (lines above)" "same answers (f32 greedy, and plan)" "$passes" "$fails"
fi

# ---- scale7b: W1 and one request's TPOT at TP = 1 and N, custom all-reduce on and off.
throughput() {  # TAG PROMPTS IN OUT [FLAGS...]: bench throughput on SHAPE_7B; 0 when its JSON is there
  local tag=$1 n=$2 in=$3 out=$4; shift 4
  timeout $(($(left) - 5)) "$TROUPE" bench throughput "${extra[@]}" --load-format dummy --model "$SHAPE_7B" \
    --num-prompts "$n" --input-len "$in" --output-len "$out" --max-model-len 1024 --temperature 0 "$@" \
    --output-json "$LOGS/$tag.json" >"$LOGS/$tag.txt" 2>&1 && [ -s "$LOGS/$tag.json" ]
}
declare -A w1 tpot
if has_part scale7b; then
  for n in 1 ${SCALE_TPS:-2}; do
    [ "$n" -gt "$GPUS" ] && continue
    for ar in custom nccl; do
      [ "$n" = 1 ] && [ $ar = nccl ] && continue
      flags=(-tp "$n"); [ $ar = nccl ] && flags+=(--disable-custom-all-reduce)
      key="$n $ar"
      need "7B W1 TP=$n ($ar)" 60 && throughput "w1_7b_tp${n}_$ar" "${W1[@]}" "${flags[@]}" &&
        w1[$key]=$(python3 -c "import json,sys; print('%.1f' % json.load(open(sys.argv[1]))['output_tokens_per_s'])" "$LOGS/w1_7b_tp${n}_$ar.json")
      need "7B TPOT TP=$n ($ar)" 40 && throughput "tpot_7b_tp${n}_$ar" "${TPOT[@]}" "${flags[@]}" &&
        tpot[$key]=$(python3 -c "import json,sys; print('%.3f' % (json.load(open(sys.argv[1]))['wall_us_per_step'] / 1e3))" "$LOGS/tpot_7b_tp${n}_$ar.json")
    done
  done
  read -r _ floor7 <<<"$(shape_math "$SHAPE_7B" 1)"
  read -r _ _ _ w1floor7 <<<"$(shape_math "$SHAPE_7B" 1 "${W1[@]}")"
  row "%-44s %10s %s" "7B W1 TP=1 output tok/s" "${w1[1 custom]:--}" "(floor $w1floor7; GPU.md's main: 11,006)"
  row "%-44s %10s %s" "7B TPOT TP=1 ms" "${tpot[1 custom]:--}" "(floor $floor7 ms; GPU.md's main: 4.70)"
  for n in ${SCALE_TPS:-2}; do
    read -r _ floorn <<<"$(shape_math "$SHAPE_7B" "$n")"
    for ar in custom nccl; do
      w=${w1[$n $ar]:-} t=${tpot[$n $ar]:-}
      rw=$( [ -n "$w" ] && [ -n "${w1[1 custom]:-}" ] && python3 -c "print('%.2fx TP=1' % ($w / ${w1[1 custom]}))" || echo -)
      rt=$( [ -n "$t" ] && [ -n "${tpot[1 custom]:-}" ] && python3 -c "print('%.2fx TP=1' % ($t / ${tpot[1 custom]}))" || echo -)
      row "%-44s %10s %-12s %s" "7B W1 TP=$n ($ar all-reduce) output tok/s" "${w:--}" "$rw" "(goal >= 1.8x at TP=2)"
      row "%-44s %10s %-12s %s" "7B TPOT TP=$n ($ar all-reduce) ms" "${t:--}" "$rt" "(goal <= 0.6x at TP=2; floor $floorn ms)"
    done
    # What sending every sum through NCCL costs a step: at batch 1 (TPOT) and at W1's batches (~256).
    if [ -n "${tpot[$n custom]:-}" ] && [ -n "${tpot[$n nccl]:-}" ]; then
      layers=$(json_field "$SHAPE_7B/config.json" num_hidden_layers)
      row "%-44s %10s %s" "7B TP=$n NCCL - custom, batch 1, ms/step" \
        "$(python3 -c "print('%.3f' % (${tpot[$n nccl]} - ${tpot[$n custom]}))")" \
        "($(python3 -c "print('%.1f us per all-reduce' % ((${tpot[$n nccl]} - ${tpot[$n custom]}) * 1e3 / ($layers * 2 + 1)))"), $((layers * 2 + 1)) a step; goal: custom when NCCL costs > 10% of the step)"
    fi
    if [ -n "${w1[$n custom]:-}" ] && [ -n "${w1[$n nccl]:-}" ]; then
      row "%-44s %10s %s" "7B TP=$n W1 custom / NCCL" "$(python3 -c "print('%.3f' % (${w1[$n custom]} / ${w1[$n nccl]}))")" "(batch ~256)"
    fi
  done
fi

# ---- serve2: TP = 2 under mpirun answers bench serve at a fixed rate.
if has_part serve2 && [ "$GPUS" -ge 2 ] && need "serve2 (mpirun TP=2 serve)" 120; then
  "${MPIRUN[@]}" -np 2 "$TROUPE" serve "${extra[@]}" --load-format dummy --model "$SHAPE_7B" --max-model-len "$MODEL_LEN" \
    -tp 2 --port 8400 --client-port -1 >"$LOGS/serve2.log" 2>&1 &
  pids+=($!)
  if wait_health 8400 $(($(left) - 60)); then
    bench_serve serve2 8400 $(($(left) - 10)) "${SERVE[@]}" --request-rate "$SERVE_RATE"
    done_=$(json_field "$LOGS/serve2.json" completed) failed=$(json_field "$LOGS/serve2.json" failed)
    [ "${done_:-0}" = "${SERVE[0]}" ] && [ "${failed:-1}" = 0 ]
    verdict "serve2: mpirun -np 2 serve -tp 2, bench serve at $SERVE_RATE req/s" $? "(${done_:-?} done, ${failed:-?} failed)"
    row "%-44s %s" "serve TP=2 under mpirun, $SERVE_RATE req/s" \
      "${done_:-?}/${SERVE[0]} done, ${failed:-?} failed, $(fmt "$LOGS/serve2.json" output_throughput) out tok/s, TPOT p50 $(fmt "$LOGS/serve2.json" median_tpot_ms) ms (goal: no errors)"
  else
    verdict "serve2: mpirun -np 2 serve -tp 2" 1 "(not healthy: $LOGS/serve2.log)"
  fi
  stop_all
fi

# ---- 70b and 405b: one server per TP; TPOT, W1, the 1000/1000 job (or the short serve run), load time, KV blocks.
# big_model LABEL SHAPE TP PORT JOB(0/1) LATER_S: LATER_S seconds are kept for the parts after this one.
declare -A big
big_model() {
  local label=$1 shape=$2 n=$3 port=$4 job=$5 later=$6 gib floor t0 load
  read -r gib floor <<<"$(shape_math "$shape" "$n")"
  if ! fits "$shape" "$n"; then
    echo "== skipped $label TP=$n: $gib GiB of weights a GPU do not fit 0.9 of $GPU_MIB MiB"
    row "%-44s skipped: %s GiB a GPU do not fit %s MiB GPUs" "$label TP=$n" "$gib" "$GPU_MIB"; return
  fi
  need "$label TP=$n" $((later + NEED_BIG + 30)) || return  # the wait below gets NEED_BIG s at least
  t0=$SECONDS
  "$TROUPE" serve "${extra[@]}" --load-format dummy --model "$shape" --max-model-len "$MODEL_LEN" -tp "$n" \
    --max-num-batched-tokens 16384 --port "$port" --client-port -1 >"$LOGS/${label}_tp$n.log" 2>&1 &
  pids+=($!)
  if ! wait_health "$port" $(($(left) - later - 30)); then
    row "%-44s did not come up: %s" "$label TP=$n" "$(grep -iE 'error' "$LOGS/${label}_tp$n.log" | tail -1)"; stop_all; return
  fi
  load=$((SECONDS - t0))
  row "%-44s %10s %s" "$label TP=$n load (to /health 200), s" "$load" "($gib GiB of weights a GPU; KV cache $(kv_blocks "$LOGS/${label}_tp$n.log"))"
  if bench_serve "${label}_tp${n}_tpot" "$port" $(($(left) - later - 10)) "${TPOT[@]}"; then
    t=$(json_field "$LOGS/${label}_tp${n}_tpot.json" mean_tpot_ms)
    row "%-44s %10.2f %s" "$label TP=$n TPOT ms" "$t" "(floor $floor ms: $(python3 -c "print('%.2fx' % ($t / $floor))"); goal <= 1.25x)"
    # What the step spends beyond reading its weights bounds its all-reduces (2 a layer and the embedding's).
    local layers; layers=$(json_field "$shape/config.json" num_hidden_layers)
    row "%-44s %10s %s" "$label TP=$n TPOT - floor, ms/step" "$(python3 -c "print('%.2f' % ($t - $floor))")" \
      "(all-reduces and everything else: at most $(python3 -c "print('%.1f' % (($t - $floor) * 1e3 / ($layers * 2 + 1)))") us for each of $((layers * 2 + 1)))"
  fi
  if [ "$job" = 1 ]; then
    if [ "$(left)" -gt $((later + 60)) ] && bench_serve "${label}_tp${n}_w1" "$port" $(($(left) - later - 10)) "${W1[@]}"; then
      local w tot wf
      w=$(json_field "$LOGS/${label}_tp${n}_w1.json" output_throughput)
      tot=$(json_field "$LOGS/${label}_tp${n}_w1.json" total_token_throughput)
      read -r _ _ _ wf <<<"$(shape_math "$shape" "$n" "${W1[@]}")"
      big[w1 $n]=$w
      row "%-44s %10.0f %s" "$label TP=$n W1 output tok/s" "$w" "(floor $wf; $(python3 -c "print('%.0f' % ($w / $n))") a GPU)"
      # The 1000/1000 job: as many prompts (multiples of 16) as 60% of the time left allows at W1's total rate,
      # and no more than the first TP's job had, so that the TPs compare on one job.
      local budget=$(($(left) - later - 20)) p
      p=${JOB_PROMPTS:-$(python3 -c "print(max(0, min(${job_prompts_first:-${JOB[0]}}, int(0.6 * $budget * $tot / (${JOB[1]} + ${JOB[2]}) / 16) * 16)))")}
      job_prompts_first=${job_prompts_first:-$p}
      if [ "$p" -ge 16 ] && bench_serve "${label}_tp${n}_job" "$port" "$budget" "$p" "${JOB[1]}" "${JOB[2]}"; then
        local j jf
        j=$(json_field "$LOGS/${label}_tp${n}_job.json" output_throughput)
        read -r _ _ _ jf <<<"$(shape_math "$shape" "$n" "$p" "${JOB[1]}" "${JOB[2]}")"
        big[job $n]=$j big[jobp $n]=$p
        row "%-44s %10.0f %s" "$label TP=$n ${p}x${JOB[1]}/${JOB[2]} job out tok/s" "$j" \
          "(floor $jf; $(python3 -c "print('%.0f' % ($j / $n))") a GPU; ${p} of ${JOB[0]} prompts as time allowed, $(json_field "$LOGS/${label}_tp${n}_job.json" failed) failed; TRT-LLM FP8 1000 prompts: TP2 4,601 TP4 7,608 TP8 13,081)"
      else
        row "%-44s %s" "$label TP=$n ${JOB[1]}/${JOB[2]} job" "not run ($p prompts fit the $budget s left, or it timed out)"
      fi
    fi
  else
    bench_serve "${label}_tp${n}_short" "$port" $(($(left) - later - 10)) "${SHORT[@]}" --request-rate 4
    [ "$(json_field "$LOGS/${label}_tp${n}_short.json" completed)" = "${SHORT[0]}" ] &&
      [ "$(json_field "$LOGS/${label}_tp${n}_short.json" failed)" = 0 ]
    verdict "$label TP=$n serve answers bench serve at 4 req/s" $? ""
    if [ -s "$LOGS/${label}_tp${n}_short.json" ]; then
      row "%-44s %s" "$label TP=$n bench serve ${SHORT[0]}x${SHORT[1]}/${SHORT[2]} @4/s" \
        "$(json_field "$LOGS/${label}_tp${n}_short.json" completed) done, $(json_field "$LOGS/${label}_tp${n}_short.json" failed) failed, $(fmt "$LOGS/${label}_tp${n}_short.json" output_throughput) out tok/s, TTFT p50 $(fmt "$LOGS/${label}_tp${n}_short.json" median_ttft_ms) ms, TPOT p50 $(fmt "$LOGS/${label}_tp${n}_short.json" median_tpot_ms) ms"
    fi
  fi
  stop_all
}
if has_part 70b; then
  tps=()
  for n in ${TPS_70B:-2 4 8}; do [ "$n" -le "$GPUS" ] && tps+=("$n"); done
  reserve_405=0; has_part 405b && [ "$GPUS" -ge 8 ] && reserve_405=$KEEP_405
  for i in "${!tps[@]}"; do
    # Each TP after this one keeps KEEP_TP s (its load, TPOT and W1); the job takes what is left.
    big_model 70B "$SHAPE_70B" "${tps[$i]}" $((8500 + i)) 1 $(( (${#tps[@]} - i - 1) * KEEP_TP + reserve_405 ))
  done
  # Issue 17: per-GPU efficiency at TP = 4 against TP = 2 (goal >= 80%).
  for k in w1 job; do
    a=${big[$k 2]:-} b=${big[$k 4]:-}
    [ -n "$a" ] && [ -n "$b" ] && row "%-44s %10s %s" "70B $k per-GPU efficiency TP=4 / TP=2" \
      "$(python3 -c "print('%.0f%%' % (100 * ($b / 4) / ($a / 2)))")" "(goal >= 80%$([ $k = job ] && echo "; prompts ${big[jobp 2]} and ${big[jobp 4]}"))"
  done
fi
if has_part 405b; then
  if [ "$GPUS" -ge 8 ] || [ "$BACKEND" = cpu ]; then
    big_model 405B "$SHAPE_405B" 8 8600 0 0
  else
    row "%-44s %s" "405B TP=8" "skipped: $GPUS GPUs"
  fi
fi

# ---- archeck: troupe_gpu_check's tensor-parallel timings (NCCL against the custom all-reduce on 2 GPUs).
if has_part archeck && [ "$BACKEND" = cuda ] && need "archeck (troupe_gpu_check --tp)" 240; then
  timeout $(($(left) - 5)) bundle/troupe_gpu_check --data "$REF" --tp >"$LOGS/gpu_check_tp.txt" 2>&1
  echo "== troupe_gpu_check --tp: exit $?"
  grep -E "^(setup|tp=)" "$LOGS/gpu_check_tp.txt" | sed 's/^/   /'
  row "%-44s %s" "troupe_gpu_check --tp" "the step / collective table above ($LOGS/gpu_check_tp.txt)"
fi

{
  echo "== tensor parallelism: $GPUS GPUs ($BACKEND), $(date -u +%FT%TZ), $((LIMIT - $(left))) s of $LIMIT"
  printf '%s\n' "${table[@]}"
  echo "== $passes pass, $fails FAIL"
} >"$LOGS/table.txt"
(cd "$WORK" && tar czf "$OUT/tp.tgz" logs)
echo
cat "$LOGS/table.txt"
[ "$fails" = 0 ]
