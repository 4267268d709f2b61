#!/usr/bin/env bash
# The demo study trained twice on this machine, once with PyTorch's native CPU kernels and
# once with ATEN_CPU_CAPABILITY=default (no AVX2/AVX-512 code paths), each into its own
# database and run directories under runs/kernels/, then the generated findings of each
# and of the committed results.db, one after the other: do the stated conclusions survive
# other kernels? Needs `make data` first. Usage: bash tools/kernel-check.sh [--max-parallel N]
set -euo pipefail
cd "$(dirname "$0")/.."
ABLATE=.venv/bin/ablate
out=runs/kernels
mkdir -p "$out"
for kernels in native default; do
  if [ "$kernels" = default ]; then export ATEN_CPU_CAPABILITY=default; else unset ATEN_CPU_CAPABILITY; fi
  "$ABLATE" run studies/fashion_mnist_tricks.yaml --db "sqlite:///$out/$kernels.db" \
    --runs-dir "$out/$kernels" --max-parallel 2 "$@"
done
unset ATEN_CPU_CAPABILITY
for db in "$out/native.db" "$out/default.db" results.db; do
  page="$out/findings.md"
  printf '<!-- ablate:report fashion_mnist_tricks -->\n<!-- /ablate:report -->\n' > "$page"
  "$ABLATE" report --readme "$page" --db "sqlite:///$db" >/dev/null
  echo "== $db"
  sed -n 2p "$page"
done
