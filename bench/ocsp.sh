#!/usr/bin/env bash
# OCSP for relying parties, measured against /healthz on the same server in the same run:
#   bench/ocsp.sh                      # 100,000 certificates in the store (a tenth revoked)
#   CERTS=20000 ROUNDS=5 bench/ocsp.sh
# Sigil on SoftHSM with SQLite, filled by `sigil bench fill` (no token), release build, warn
# logs. Waits until the background producer has pre-produced every certificate's answer (the
# server's CPU goes quiet), then runs ab (apache2-utils) at concurrency 16 with keep-alive,
# alternating /healthz and an RFC 5019 OCSP request (SHA-1 CertID, no nonce, the openssl ocsp
# client's own request) for a good and a revoked certificate by POST, and the good one by GET
# (base64 in the path, as Windows and RFC 5019 clients send small requests), ROUNDS times; the
# order is reversed every other round, so the machine's drift within a round favours no
# target. Also times a revocation made from the command line until OCSP says so. Prints one
# JSON line per run, then the medians, the ratio of the medians OCSP/healthz and the median
# of each round's own ratio. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CERTS="${CERTS:-100000}"
ROUNDS="${ROUNDS:-3}"
REQUESTS="${REQUESTS:-40000}"

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config python3 apache2-utils curl >&2
. bench/lib.sh
bench_sigil

work="$PWD/target/bench-ocsp"
rm -rf "$work"
mkdir -p "$work"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

bash hsm-config/softhsm-token.sh "$work/hsm" sigil >&2
export SOFTHSM2_CONF="$work/hsm/softhsm2.conf"
cat > "$work/sigil.toml" <<TOML
[hsm]
token = "sigil"
pin_file = "$work/hsm/user.pin"

[profiles.default]
key_types = ["rsa"]
TOML
export SIGIL_CONFIG="$work/sigil.toml" SIGIL_SERVER_DATA_DIR="$work/data"
"$sigil" --log-level warn init --ca-key rsa2048 --ca-subject "CN=Bench CA" >/dev/null
echo "== filling the store with $CERTS certificates" >&2
fill="$("$sigil" --log-level warn bench fill --certs "$CERTS" --revoked-every 10 2>/dev/null)"
echo "{\"fill\":$fill}"

port="$(free_port)"
SIGIL_SERVER_LISTEN="127.0.0.1:$port" SIGIL_LOG_LEVEL=warn "$sigil" serve 2>"$work/serve.log" &
pid=$!
base="http://127.0.0.1:$port"
wait_up "$base/healthz" 400
echo "== waiting for the answers to be pre-produced (server CPU quiet)" >&2
started=$(date +%s)
while :; do
  a=$(cpu_ticks "$pid"); sleep 5; b=$(cpu_ticks "$pid")
  # Under 5% of one core over five seconds (ticks are 1/100 s).
  [ $((b - a)) -lt 25 ] && break
  [ $(( $(date +%s) - started )) -gt 1800 ] && { echo "still busy after 30 minutes" >&2; break; }
done
echo "{\"preproduced_after_s\":$(( $(date +%s) - started - 5 ))}"

cp "$work/data/ca.pem" "$work/ca.pem"
good="$("$sigil" --log-level error cert list --status valid --limit 1 2>/dev/null | awk 'NR==2{print $1}')"
revoked="$("$sigil" --log-level error cert list --status revoked --limit 1 2>/dev/null | awk 'NR==2{print $1}')"
for which in good revoked; do
  serial="${!which}"
  openssl ocsp -issuer "$work/ca.pem" -serial "0x$serial" -no_nonce -reqout "$work/$which.req" >/dev/null
  # Check the answer before measuring it.
  curl -fsS --data-binary @"$work/$which.req" -H 'content-type: application/ocsp-request' \
    "$base/ocsp" -o "$work/$which.resp"
  openssl ocsp -respin "$work/$which.resp" -issuer "$work/ca.pem" -serial "0x$serial" \
    -CAfile "$work/ca.pem" 2>&1 | grep -q ": $which" || { echo "the $which answer is wrong" >&2; exit 1; }
done

ab_rate() { # url [post-file]
  local out
  if [ -n "${2:-}" ]; then
    out="$(ab -q -k -c 16 -n "$REQUESTS" -p "$2" -T application/ocsp-request "$1" 2>&1)"
  else
    out="$(ab -q -k -c 16 -n "$REQUESTS" "$1" 2>&1)"
  fi
  local failed; failed="$(awk '/^Failed requests/{print $3}' <<<"$out")"
  [ "$failed" = "0" ] || { echo "$out" >&2; echo "ab: failed requests" >&2; exit 1; }
  awk '/^Requests per second/{print $4}' <<<"$out"
}
results="$work/results.jsonl"
: > "$results"
get_path="$(base64 -w0 < "$work/good.req" | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))')"
curl -fsS "$base/ocsp/$get_path" -o "$work/get.resp"
cmp -s "$work/get.resp" "$work/good.resp" || { echo "the GET answer differs from the POST one" >&2; exit 1; }
for r in $(seq 1 "$ROUNDS"); do
  order="healthz ocsp-good ocsp-revoked ocsp-get"
  [ $((r % 2)) -eq 0 ] && order="ocsp-get ocsp-revoked ocsp-good healthz"
  for target in $order; do
    case "$target" in
      healthz) rate="$(ab_rate "$base/healthz")" ;;
      ocsp-good) rate="$(ab_rate "$base/ocsp" "$work/good.req")" ;;
      ocsp-revoked) rate="$(ab_rate "$base/ocsp" "$work/revoked.req")" ;;
      ocsp-get) rate="$(ab_rate "$base/ocsp/$get_path")" ;;
    esac
    echo "{\"round\":$r,\"target\":\"$target\",\"per_s\":$rate}" | tee -a "$results"
  done
done
grep 'sigil_ocsp_answers_total' < <(curl -fsS "$base/metrics") | tee "$work/metrics.txt" >&2

# A revocation from the command line (the server does not hear of it): how long until OCSP
# says so.
t0=$(date +%s%N)
"$sigil" --log-level error cert revoke "$good" --reason keyCompromise >/dev/null
t1=$(date +%s%N)
while :; do
  curl -fsS --data-binary @"$work/good.req" -H 'content-type: application/ocsp-request' \
    "$base/ocsp" -o "$work/after.resp"
  openssl ocsp -respin "$work/after.resp" -issuer "$work/ca.pem" -serial "0x$good" \
    -CAfile "$work/ca.pem" 2>&1 | grep -q ": revoked" && break
  [ $(( ($(date +%s%N) - t1) / 1000000 )) -gt 10000 ] && { echo "not revoked after 10 s" >&2; exit 1; }
done
t2=$(date +%s%N)
echo "{\"revoke_command_ms\":$(( (t1 - t0) / 1000000 )),\"visible_after_command_ms\":$(( (t2 - t1) / 1000000 ))}" | tee -a "$results"

python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rates, by_round = {}, {}
for r in runs:
    if "target" in r:
        rates.setdefault(r["target"], []).append(r["per_s"])
        by_round.setdefault(r["round"], {})[r["target"]] = r["per_s"]
med = {t: statistics.median(v) for t, v in rates.items()}
print()
print("| target | requests/s (median of rounds) | / healthz (medians) | / healthz (median of each round's ratio) |")
print("| --- | ---: | ---: | ---: |")
for t in ("healthz", "ocsp-good", "ocsp-revoked", "ocsp-get"):
    each = statistics.median(r[t] / r["healthz"] for r in by_round.values())
    print(f"| {t} | {med[t]:.0f} | {med[t] / med['healthz']:.2f} | {each:.2f} |")
PY
