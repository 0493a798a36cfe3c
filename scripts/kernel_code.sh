#!/usr/bin/env bash
# Whether a change moved any kernel's machine code, without a GPU: builds each kernels/cuda/*.cu into a cubin (sm_90a,
# the flags of the project's build) at two revisions and compares every kernel's code (the bytes of each `.text.*`
# section) by hash. A change that should leave the kernels the GPU check passed as they were proves it this way.
#   bash scripts/kernel_code.sh [BASE_REV]       (default HEAD: the working tree against the last commit)
# Prints the kernels whose code is new (or moved) and those gone; nvcc's names change with template arguments and the
# anonymous namespace's hash, so the comparison is by code, not name.
set -eu
cd "$(dirname "$0")/.."
base=${1:-HEAD}
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/base" "$base" >/dev/null 2>&1
build() {  # source tree, output folder
  mkdir -p "$2"
  for f in "$1"/kernels/cuda/*.cu; do
    nice "$nvcc" -DTROUPE_HAVE_NCCL=1 -I"$1" -isystem=/usr/local/cuda/include -O3 -DNDEBUG \
      -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -std=c++20 -x cu -cubin "$f" \
      -o "$2/$(basename "$f" .cu).cubin" 2>/dev/null || echo "build failed: $f" >&2
  done
}
build "$work/base" "$work/old"
build "$PWD" "$work/new"
python3 - "$work/old" "$work/new" <<'PY'
import hashlib, os, struct, sys

def kernels(folder):  # (code hash, cubin, kernel) for each .text.* section of each cubin (ELF64, little-endian)
    out = []
    for c in sorted(os.listdir(folder)):
        d = open(os.path.join(folder, c), 'rb').read()
        shoff, = struct.unpack_from('<Q', d, 0x28)
        size, count, names = struct.unpack_from('<HHH', d, 0x3a)
        secs = [struct.unpack_from('<IIQQQQIIQQ', d, shoff + i * size) for i in range(count)]
        strtab = secs[names][4]
        for s in secs:
            name = d[strtab + s[0]:d.index(b'\0', strtab + s[0])].decode()
            if name.startswith('.text.'):
                out.append((hashlib.md5(d[s[4]:s[4] + s[5]]).hexdigest(), c, name[6:]))
    return out

old, new = kernels(sys.argv[1]), kernels(sys.argv[2])
old_codes, new_codes = {k[0] for k in old}, {k[0] for k in new}
print(f"kernels: {len(old)} before, {len(new)} now, {sum(k[0] in old_codes for k in new)} with code as before")
for h, c, n in new:
    if h not in old_codes: print(f"  new or changed: {c} {n}")
for h, c, n in old:
    if h not in new_codes: print(f"  gone or changed: {c} {n}")
PY
