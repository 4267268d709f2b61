#!/usr/bin/env bash
# `make test` with a standard background load beside it: two processes that keep two cores
# busy (Debian's stress-ng --cpu 2), started here and stopped however the tests end. The
# suite's verdict must not depend on it; its time is what the README reports next to the
# idle figure. Usage: bash tools/test-under-load.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v stress-ng >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "error: stress-ng is not installed; apt-get install -y stress-ng" >&2; exit 2; }
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q stress-ng >/dev/null
fi
stress-ng --cpu 2 --quiet &
load=$!
trap 'kill "$load" 2>/dev/null; wait "$load" 2>/dev/null || true' EXIT
start=$(date +%s)
status=0
make --no-print-directory test ARGS="$*" || status=$?
echo "make test under stress-ng --cpu 2: exit $status in $(( $(date +%s) - start )) s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
exit "$status"
