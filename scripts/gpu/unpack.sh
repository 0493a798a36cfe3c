#!/usr/bin/env bash
# Unpacks the programs scripts/gpu/bundle.sh compressed (COMPRESS=1: the run tool carries at most 64 MiB with the working
# tree, and two builds of troupe for scripts/gpu/ab.sh do not fit uncompressed). Does nothing where none is compressed.
#   bash scripts/gpu/unpack.sh [BUNDLE_DIR]      (on the GPU machine; check.sh, figures.sh, quick.sh and ab.sh call it)
set -euo pipefail
bundle=${1:-bundle}
for f in "$bundle"/*.gz; do
  [ -e "$f" ] || continue
  gunzip -f "$f"
  chmod +x "${f%.gz}"
done
