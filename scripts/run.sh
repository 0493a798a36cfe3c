#!/usr/bin/env bash
# Installs what troupe needs, builds it, and runs it. With no arguments it serves the built-in small model
# on the CPU (no GPU, no download): the OpenAI-compatible API on http://localhost:8000 and the native
# client API on port 8001. Any arguments go to the troupe program instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
if [ $# -eq 0 ]; then
  set -- serve --port 8000 --client-port 8001
fi
exec ./build/troupe "$@"
