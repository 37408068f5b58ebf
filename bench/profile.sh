#!/usr/bin/env bash
# Where Sigil's CPU goes during enrollments: one Sigil (SoftHSM + SQLite, RSA-2048) under
# `sigil bench` at concurrency 16, sampled by `perf record` for the whole run, then a flat
# profile by shared object and by function (self time), the token's share apart.
#   bench/profile.sh                 # N=2000 enrollments
#   N=4000 bench/profile.sh
#   BENCH_SIGIL=/path/to/a/sigil bench/profile.sh
# Writes target/profile/perf.data and target/profile/report.txt. Needs `perf` (package
# linux-perf) and root or kernel.perf_event_paranoid <= 1. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${N:-2000}"
C="${C:-16}"
CHALLENGE="bench-challenge"

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config python3 linux-perf >&2
. bench/lib.sh
bench_sigil

warm_sigil "$PWD/target/profile" 200
perf record -q -F 400 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" 2>"$work/perf.log" &
perf_pid=$!
sleep 0.5
line="$("$sigil" --log-level error bench --url "http://127.0.0.1:$port/scep" --challenge "$CHALLENGE" \
  -c "$C" -n "$N" --server-pid "$pid")"
kill -INT "$perf_pid"
wait "$perf_pid" || true
echo "$line" | tee "$work/bench.json"

set +o pipefail   # `head` closes the pipes early
{
  echo "== bench: $line"
  echo
  echo "== self time by shared object"
  perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
  echo
  echo "== self time by function, top 60"
  perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -60
  echo
  echo "== time including callees, Sigil's own functions, top 60"
  perf report -i "$work/perf.data" --children --sort symbol --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -E 'sigil::|actix|tokio|rusqlite|sqlite3' | head -60
  echo
  echo "== the token's share and the host's (bench/profile_split.py)"
  perf script -i "$work/perf.data" 2>/dev/null > "$work/perf.txt"
  cpu="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_cpu_ms_per_enrollment"])' "$work/bench.json")"
  python3 bench/profile_split.py "$work/perf.txt" "$cpu"
} > "$work/report.txt"
cat "$work/report.txt"
