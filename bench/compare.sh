#!/usr/bin/env bash
# Sigil and micromdm's scepserver under the same SCEP load, side by side, on loopback only:
#   bench/compare.sh              # N=500 enrollments per run, concurrency 1 4 16 64
#   N=1000 CONCURRENCY="16" bench/compare.sh
#   BASELINE=/path/to/an/older/sigil CONCURRENCY=16 bench/compare.sh   # and that build too
#   BENCH_SIGIL=/path/to/a/sigil ...    # measure that build instead of building this tree
# Starts Sigil on SoftHSM with SQLite, Sigil on SoftHSM with PostgreSQL, and
# `scepserver` (Debian package scep) with an RSA-2048 CA; RSA-2048 keys everywhere. Each
# concurrency level runs the targets interleaved (A B C, A B C, ...) with `sigil bench`, which
# checks every answer. Prints one JSON line per run, then a table with the ratios
# Sigil/micromdm, the host overhead measured (server CPU outside PKCS#11 calls, from Sigil's
# `sigil_hsm_cpu_seconds_total`), and `sigil bench hsm` (the token's floor). Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${N:-500}"
CONCURRENCY="${CONCURRENCY:-1 4 16 64}"
CHALLENGE="bench-challenge"

bash deploy/ensure-packages.sh softhsm2 opensc scep openssl libssl-dev pkg-config python3 >&2
. bench/lib.sh
bench_sigil

work="$PWD/target/compare"
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
  if declare -F pg_test_drop >/dev/null; then pg_test_drop; fi
}
trap cleanup EXIT


# --- Sigil: one token, two stores (SQLite, PostgreSQL) ---------------------------------------
enroll_setup "$work"
SIGIL_SERVER_DATA_DIR="$work/data-sqlite" "$sigil" --log-level warn init --ca-key rsa2048 --ca-subject "CN=Bench CA" >/dev/null
# One CA, one store: the PostgreSQL target is a CA of its own (same key sizes), on a second
# token of the same SoftHSM directory, made after PostgreSQL is up (below).
bash hsm-config/softhsm-token.sh "$work/hsm" sigil-pg >&2

read -r sqlite_port sqlite_pid < <(bench_serve "$work" sigil-sqlite "$work/data-sqlite")
pids+=("$sqlite_pid")

# shellcheck source=softhsm-tests/postgres.sh
. softhsm-tests/postgres.sh >&2
SIGIL_HSM_TOKEN=sigil-pg SIGIL_DATABASE_URL="$SIGIL_TEST_DATABASE_URL" SIGIL_SERVER_DATA_DIR="$work/data-pg" \
  "$sigil" --log-level warn init --ca-key rsa2048 --ca-subject "CN=Bench CA" >/dev/null
read -r sigil_pg_port sigil_pg_pid < <(SIGIL_HSM_TOKEN=sigil-pg bench_serve "$work" sigil-postgres "$work/data-pg" "$SIGIL_TEST_DATABASE_URL")
pids+=("$sigil_pg_pid")

# --- optionally an older build of Sigil (SQLite, a token of its own), to compare builds ----
targets=("sigil-sqlite $sqlite_port $sqlite_pid")
if [ -n "${BASELINE:-}" ]; then
  bash hsm-config/softhsm-token.sh "$work/hsm" sigil-base >&2
  SIGIL_HSM_TOKEN=sigil-base SIGIL_SERVER_DATA_DIR="$work/data-base" \
    "$BASELINE" --log-level warn init --ca-key rsa2048 --ca-subject "CN=Bench CA" >/dev/null
  base_port="$(free_port)"
  SIGIL_HSM_TOKEN=sigil-base SIGIL_SERVER_DATA_DIR="$work/data-base" SIGIL_SERVER_LISTEN="127.0.0.1:$base_port" \
    SIGIL_LOG_LEVEL=warn "$BASELINE" serve 2>"$work/baseline.log" &
  base_pid=$!
  pids+=("$base_pid")
  wait_up "http://127.0.0.1:$base_port/healthz"
  targets+=("baseline-sqlite $base_port $base_pid")
fi

# --- micromdm scepserver, RSA-2048 CA ----------------------------------------------------------
(cd "$work" && scepserver ca -init -depot "$work/depot" -keySize 2048 >/dev/null 2>&1)
mm_port="$(free_port)"
scepserver -depot "$work/depot" -port "$mm_port" -challenge "$CHALLENGE" 2>"$work/micromdm.log" &
mm_pid=$!
pids+=("$mm_pid")
wait_up "http://127.0.0.1:$mm_port/scep?operation=GetCACaps"

# --- the runs -----------------------------------------------------------------------------------
results="$work/results.jsonl"
: > "$results"
for c in $CONCURRENCY; do
  for target in "${targets[@]}" "micromdm $mm_port $mm_pid" "sigil-postgres $sigil_pg_port $sigil_pg_pid"; do
    read -r name port pid <<<"$target"
    line="$("$sigil" --log-level error bench --url "http://127.0.0.1:$port/scep" --challenge "$CHALLENGE" \
      -c "$c" -n "$N" --server-pid "$pid")"
    echo "{\"target\":\"$name\",\"result\":$line}" | tee -a "$results"
  done
done
hsm_line="$("$sigil" --log-level error bench hsm --seconds 2)"
echo "{\"target\":\"hsm-floor\",\"result\":$hsm_line}" | tee -a "$results"

python3 - "$results" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
hsm = next(r["result"] for r in runs if r["target"] == "hsm-floor")
rows = {}
for r in runs:
    if r["target"] == "hsm-floor":
        continue
    rows.setdefault(r["result"]["concurrency"], {})[r["target"]] = r["result"]
print()
print("| concurrency | target | ok/sent | failed | dup serials | enroll/s | p50 ms | p99 ms | server CPU ms/enroll | peak RSS MB |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in sorted(rows):
    for t in ("sigil-sqlite", "baseline-sqlite", "sigil-postgres", "micromdm"):
        r = rows[c].get(t)
        if not r:
            continue
        failed = sum(r["failed"].values())
        cpu = r["server_cpu_ms_per_enrollment"]
        rss = r["server_peak_rss_mb"]
        print(f"| {c} | {t} | {r['ok']}/{r['requests']} | {failed} | {r['duplicate_serials']} | "
              f"{r['enrollments_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{cpu:.2f} | {rss:.0f} |" if cpu is not None and rss is not None else
              f"| {c} | {t} | {r['ok']}/{r['requests']} | {failed} | {r['duplicate_serials']} | "
              f"{r['enrollments_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | - | - |")
print()
print("| concurrency | Sigil/micromdm enroll/s (SQLite) | PostgreSQL/SQLite | Sigil CPU / HSM floor | p99/p50 (SQLite) |")
print("| ---: | ---: | ---: | ---: | ---: |")
for c in sorted(rows):
    s, m, p = rows[c].get("sigil-sqlite"), rows[c].get("micromdm"), rows[c].get("sigil-postgres")
    ratio = s["enrollments_per_s"] / m["enrollments_per_s"] if s and m and m["enrollments_per_s"] else float("nan")
    pg = p["enrollments_per_s"] / s["enrollments_per_s"] if s and p and s["enrollments_per_s"] else float("nan")
    cpu = (s["server_cpu_ms_per_enrollment"] or float("nan")) / hsm["floor_ms_per_enrollment"] if s else float("nan")
    tail = s["p99_ms"] / s["p50_ms"] if s and s["p50_ms"] else float("nan")
    print(f"| {c} | {ratio:.2f} | {pg:.2f} | {cpu:.2f} | {tail:.2f} |")
print()
print("Host overhead measured (the server's CPU outside PKCS#11 calls, `sigil_hsm_cpu_seconds_total`), ms per enrollment:")
print()
print("| concurrency | target | server CPU | the token's | the host's |")
print("| ---: | --- | ---: | ---: | ---: |")
for c in sorted(rows):
    for t in ("sigil-sqlite", "baseline-sqlite", "sigil-postgres"):
        r = rows[c].get(t)
        if not r or r.get("server_host_cpu_ms_per_enrollment") is None:
            continue
        print(f"| {c} | {t} | {r['server_cpu_ms_per_enrollment']:.2f} | "
              f"{r['server_token_cpu_ms_per_enrollment']:.2f} | {r['server_host_cpu_ms_per_enrollment']:.2f} |")
if any("baseline-sqlite" in r for r in rows.values()):
    print()
    print("| concurrency | this build / baseline enroll/s | server CPU ms/enroll (this, baseline) | host overhead above the floor, ms (this, baseline) |")
    print("| ---: | ---: | ---: | ---: |")
    floor = hsm["floor_ms_per_enrollment"]
    for c in sorted(rows):
        s, b = rows[c].get("sigil-sqlite"), rows[c].get("baseline-sqlite")
        if not s or not b:
            continue
        sc, bc = s["server_cpu_ms_per_enrollment"], b["server_cpu_ms_per_enrollment"]
        print(f"| {c} | {s['enrollments_per_s'] / b['enrollments_per_s']:.2f} | {sc:.2f}, {bc:.2f} | "
              f"{sc - floor:.2f}, {bc - floor:.2f} |")
print()
print(f"HSM floor (one thread): {hsm['floor_ms_per_enrollment']:.2f} ms per enrollment "
      f"(RA decrypt {hsm['ra_decrypt_per_s']['threads_1']:.0f}/s, CA sign {hsm['ca_sign_per_s']['threads_1']:.0f}/s, "
      f"RA sign {hsm['ra_sign_per_s']['threads_1']:.0f}/s); two threads allow "
      f"{hsm['ceiling_enrollments_per_s_2_threads']:.0f} enrollments/s")
PY
