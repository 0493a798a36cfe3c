#!/usr/bin/env bash
# Installs what troupe needs, builds it, and runs it. With no arguments it completes a prompt with the
# built-in small model on the CPU (no GPU, no download); any arguments go to the troupe program.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
if [ $# -eq 0 ]; then
  set -- generate --prompt "Once upon a time" --max-tokens 32 --temperature 0.8 --seed 1
fi
exec ./build/troupe "$@"
