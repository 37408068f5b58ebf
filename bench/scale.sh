#!/usr/bin/env bash
# A million certificates: fill each store (SQLite, PostgreSQL 15) with `sigil bench fill`
# (CERTS, a tenth revoked, no token), then measure on it:
#   - the fill itself, and the database's size;
#   - a revocation from the command line, which makes and signs the CRL over every revoked
#     certificate (its time), and the CRL's size as served;
#   - the full CRL downloaded 20 times, p50 and p99;
#   - CRL partitions (the weeks 1, 26 and 50 weeks from now): the first request, which makes
#     and signs the partition's CRL, the next (held), and the size;
#   - the certificate search of the API (`GET /api/v1/certificates`): by exact device (and
#     its valid certificates, as revoking a device asks), by subject text, revoked ones,
#     the newest 100 of a profile, expiring within 7 days, each SAMPLES times, p50 and p99;
#   - OCSP: a request with a nonce (a status read and a signature) for SAMPLES different
#     certificates, p50 and p99; and the same requests without a nonce, asked twice (the
#     second from the pre-produced answer in memory);
#   - the server's peak memory (VmHWM) after all that.
#   bench/scale.sh                    # CERTS=1000000 SAMPLES=200, both stores
#   CERTS=100000 STORES=sqlite bench/scale.sh
# Prints one JSON line per store. Loopback only; release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CERTS="${CERTS:-1000000}"
SAMPLES="${SAMPLES:-200}"
STORES="${STORES:-sqlite postgres}"

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config python3 curl >&2
. bench/lib.sh
bench_sigil

work="$PWD/target/bench-scale"
rm -rf "$work"
mkdir -p "$work"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  if declare -F pg_test_drop >/dev/null; then pg_test_drop; fi
}
trap cleanup EXIT
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

bash hsm-config/softhsm-token.sh "$work/hsm" sigil >&2
export SOFTHSM2_CONF="$work/hsm/softhsm2.conf"
cat > "$work/sigil.toml" <<TOML
[hsm]
token = "sigil"
pin_file = "$work/hsm/user.pin"

[profiles.default]
key_types = ["rsa"]
TOML
export SIGIL_CONFIG="$work/sigil.toml"

for store in $STORES; do
  data="$work/data-$store"
  export SIGIL_SERVER_DATA_DIR="$data"
  if [ "$store" = postgres ]; then
    # shellcheck source=softhsm-tests/postgres.sh
    . softhsm-tests/postgres.sh >&2
    export SIGIL_DATABASE_URL="$SIGIL_TEST_DATABASE_URL"
    # One CA, one store: a CA of its own on a second token.
    bash hsm-config/softhsm-token.sh "$work/hsm" sigil-pg >&2
    export SIGIL_HSM_TOKEN=sigil-pg
  else
    unset SIGIL_DATABASE_URL SIGIL_HSM_TOKEN
  fi
  "$sigil" --log-level warn init --ca-key rsa2048 --ca-subject "CN=Scale CA $store" >/dev/null
  echo "== $store: filling with $CERTS certificates" >&2
  fill="$("$sigil" --log-level warn bench fill --certs "$CERTS" --revoked-every 10 2>/dev/null)"
  if [ "$store" = postgres ]; then
    size="$(psql "$SIGIL_DATABASE_URL" -Atc "SELECT pg_database_size(current_database())")"
  else
    size="$(stat -c %s "$data/sigil.db")"
  fi
  serial="$("$sigil" --log-level error cert list --status valid --limit 1 2>/dev/null | awk 'NR==2{print $1}')"
  t=$(date +%s%N)
  "$sigil" --log-level error cert revoke "$serial" --reason keyCompromise >/dev/null
  revoke_ms=$(ms_since "$t")
  token="$("$sigil" --log-level error token create --role officer --name bench-scale 2>/dev/null | tail -1)"

  port="$(free_port)"
  SIGIL_SERVER_LISTEN="127.0.0.1:$port" SIGIL_SERVER_PUBLIC_URL="http://127.0.0.1:$port" \
    SIGIL_LOG_LEVEL=warn "$sigil" serve 2>"$work/serve-$store.log" &
  pid=$!
  base="http://127.0.0.1:$port"
  wait_up "$base/healthz" 600
  label="$(curl -s "$base/crl/x.crl" | sed -n 's|.*/crl/\([^ ,]*\)\.crl.*|\1|p' | head -1)"
  crl_bytes="$(curl -fsS "$base/crl/$label.crl" | wc -c)"
  cp "$data/ca.pem" "$work/ca-$store.pem"
  measured="$(python3 - "$base" "$token" "$work/ca-$store.pem" "$SAMPLES" "$label" <<'PY'
import datetime, json, os, random, subprocess, sys, time, urllib.request
base, token, ca, samples, label = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def get(path):
    r = urllib.request.Request(base + path, headers={"authorization": f"Bearer {token}"})
    t = time.perf_counter()
    body = urllib.request.urlopen(r, timeout=120).read()
    return (time.perf_counter() - t) * 1000, body
def pct(xs):
    xs = sorted(xs)
    return {"p50_ms": round(xs[len(xs) // 2], 2), "p99_ms": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2)}
out = {}
rng = random.Random(7)
n = int(os.environ.get("CERTS", "1000000"))
searches = {
    "by_device": lambda: f"/api/v1/certificates?device=fill-device-{rng.randrange(n // 2):06d}",
    "by_device_valid": lambda: f"/api/v1/certificates?device=fill-device-{rng.randrange(n // 2):06d}&status=valid",
    "by_subject_text": lambda: f"/api/v1/certificates?subject=fill-{rng.randrange(n):07d}&limit=10",
    "revoked_first_100": lambda: "/api/v1/certificates?status=revoked&limit=100",
    "profile_newest_100": lambda: "/api/v1/certificates?profile=bench-fill&limit=100",
    "expiring_7d_first_100": lambda: "/api/v1/certificates?expiring_within=7d&limit=100",
}
for name, path in searches.items():
    k = samples if name != "by_subject_text" else max(5, samples // 20)
    out[name] = pct([get(path())[0] for _ in range(k)])
# The full CRL, downloaded again and again (held in memory while its number is current).
out["full_crl_get"] = pct([get(f"/crl/{label}.crl")[0] for _ in range(20)])
# CRL partitions: made on the first request, held for the next.
out["crl_partitions"] = {}
for weeks in (1, 26, 50):
    y, w, _ = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(weeks=weeks)).isocalendar()
    path = f"/crl/{label}/{y:04d}-W{w:02d}.crl"
    made, body = get(path)
    held, _ = get(path)
    out["crl_partitions"][f"{y:04d}-W{w:02d}"] = {"first_ms": round(made, 1), "held_ms": round(held, 1), "bytes": len(body)}
# OCSP: serials from the device search, then requests made by openssl.
serials = []
while len(serials) < samples:
    _, body = get(f"/api/v1/certificates?device=fill-device-{rng.randrange(n // 2):06d}")
    serials += [c["serial"] for c in json.loads(body)]
serials = serials[:samples]
def ocsp(serial, nonce):
    req = subprocess.run(["openssl", "ocsp", "-issuer", ca, "-serial", "0x" + serial,
                          "-reqout", "/dev/stdout"] + ([] if nonce else ["-no_nonce"]),
                         capture_output=True).stdout
    r = urllib.request.Request(base + "/ocsp", data=req, headers={"content-type": "application/ocsp-request"})
    t = time.perf_counter()
    urllib.request.urlopen(r, timeout=60).read()
    return (time.perf_counter() - t) * 1000
out["ocsp_nonce_live"] = pct([ocsp(s, True) for s in serials])
out["ocsp_first_no_nonce"] = pct([ocsp(s, False) for s in serials])
out["ocsp_again_no_nonce"] = pct([ocsp(s, False) for s in serials])
print(json.dumps(out))
PY
)"
  rss_kb="$(awk '/VmHWM/{print $2}' "/proc/$pid/status")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  echo "{\"store\":\"$store\",\"certs\":$CERTS,\"fill\":$fill,\"database_bytes\":$size,\"revoke_with_crl_ms\":$revoke_ms,\"crl_bytes\":$crl_bytes,\"searches\":$measured,\"server_peak_rss_mb\":$(( rss_kb / 1024 ))}"
done
