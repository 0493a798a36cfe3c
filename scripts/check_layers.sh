#!/usr/bin/env bash
# Fails, naming the file, the line and the include, when a source file includes a header from a folder its
# own folder may not use: a lower layer reaching up (runtime/ -> kernels/ -> actors/ -> launch/, DESIGN.md)
# or one runtime subsystem reaching into another that CMake does not link. Every build runs it (the
# check_layers target in CMakeLists.txt), so a wrong include fails the build.
#
# The table of what may include what is kept in one place per layer:
#  - runtime/<subsystem>: read from runtime/CMakeLists.txt, where each troupe_runtime_subsystem(<folder> ...)
#    lists the troupe_runtime_<other> libraries it links; a subsystem may include those, runtime/error.hpp
#    (troupe_runtime_base), and its own folder.
#  - the layers above: the table below. "runtime/*" means any runtime subsystem.
# A file belongs to the longest folder of the table its path starts with. Only quoted includes whose path
# starts with one of the checked folders are checked; system and third-party headers are CMake's business.
set -euo pipefail
cd "$(dirname "$0")/.."

upper_layers='
runtime
kernels       runtime runtime/model runtime/engine
actors        runtime runtime/* kernels client
launch/bench  runtime runtime/openai
launch        runtime runtime/* kernels actors launch/bench
client
'

# "<folder> <allowed>..." for each runtime subsystem, from its troupe_runtime_subsystem(...) call.
runtime_layers=$(sed 's/#.*//' runtime/CMakeLists.txt | tr '\n' ' ' |
  grep -oE 'troupe_runtime_subsystem\([^)]*\)' |
  sed -E 's/troupe_runtime_subsystem\( *([a-z_]+)/runtime\/\1 runtime/; s/\)$//' |
  awk '{ line = $1 " " $2; for (i = 3; i <= NF; ++i) if ($i ~ /^troupe_runtime_/) { sub(/^troupe_runtime_/, "runtime/", $i); line = line " " $i } print line }')

files=$(git ls-files --cached --others --exclude-standard 'runtime/*' 'kernels/*' 'actors/*' 'launch/*' 'client/*' |
  grep -E '\.(cpp|hpp|h|cu|cuh)$')

printf '%s\n%s\n' "$upper_layers" "$runtime_layers" | awk -v files="$files" '
  function unit_of(path,    dir, best, u) {
    dir = path; sub(/\/[^\/]*$/, "", dir)
    best = ""
    for (u in allowed) if ((dir == u || index(dir, u "/") == 1) && length(u) > length(best)) best = u
    return best
  }
  function may_include(from, to,    list, n, i, parts) {
    if (from == to) return 1
    n = split(allowed[from], parts, " ")
    for (i = 1; i <= n; ++i) {
      if (parts[i] == to) return 1
      if (parts[i] == "runtime/*" && index(to, "runtime/") == 1) return 1
    }
    return 0
  }
  NF > 0 { key = $1; $1 = ""; sub(/^ /, ""); allowed[key] = $0 }
  END {
    n = split(files, list, "\n"); bad = 0
    for (i = 1; i <= n; ++i) {
      file = list[i]; from = unit_of(file); line_no = 0
      while ((getline line < file) > 0) {
        ++line_no
        if (line !~ /^[ \t]*#[ \t]*include[ \t]*"/) continue
        target = line; sub(/^[^"]*"/, "", target); sub(/".*$/, "", target)
        if (target !~ /^(runtime|kernels|actors|launch|client)\//) continue
        to = unit_of(target)
        if (to == "" || may_include(from, to)) continue
        printf "%s:%d: includes \"%s\" (%s), but %s may include only: %s\n", file, line_no, target, to, from,
               (allowed[from] == "" ? "nothing outside itself" : allowed[from])
        bad = 1
      }
      close(file)
    }
    if (bad) { print "check_layers: an include crosses the layers (scripts/check_layers.sh says which may)"; exit 1 }
    print "check_layers: every include points down its layers"
  }'
