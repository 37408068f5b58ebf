#!/usr/bin/env bash
# System calls and context switches per enrollment: one Sigil (SoftHSM + SQLite, RSA-2048)
# under `sigil bench -c 16`, counted by `perf stat` on the server for the whole run.
#   bench/syscalls.sh                 # N=2000 enrollments
#   BENCH_SIGIL=/path/to/a/sigil N=4000 bench/syscalls.sh
# Needs `perf` (package linux-perf) and root or kernel.perf_event_paranoid <= 1, and the
# kernel's syscall tracepoints. Loopback only. Prints one line per counter: total, per
# enrollment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${N:-2000}"
C="${C:-16}"
CHALLENGE="bench-challenge"

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config python3 linux-perf >&2
. bench/lib.sh
bench_sigil

warm_sigil "$PWD/target/syscalls" 300
events="syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fsync"
events="$events,syscalls:sys_enter_fdatasync,syscalls:sys_enter_sched_yield"
events="$events,syscalls:sys_enter_openat,syscalls:sys_enter_epoll_wait,context-switches"
perf stat -e "$events" -p "$pid" -o "$work/stat.txt" &
stat_pid=$!
sleep 0.3
line="$("$sigil" --log-level error bench --url "http://127.0.0.1:$port/scep" --challenge "$CHALLENGE" \
  -c "$C" -n "$N" --server-pid "$pid")"
kill -INT "$stat_pid"
wait "$stat_pid" || true
echo "== bench: $line"
awk -v n="$N" '/syscalls:|context-switches/ { gsub(",", "", $1); printf "%-36s %10d  %6.2f per enrollment\n", $2, $1, $1 / n }' "$work/stat.txt"
