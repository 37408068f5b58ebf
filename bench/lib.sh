# Shared by the bench scripts (sourced, not run): the build under test and two helpers.
#   . bench/lib.sh

# $sigil: the build under test, BENCH_SIGIL=/path/to/a/sigil or this tree's release build.
bench_sigil() {
  if [ -n "${BENCH_SIGIL:-}" ]; then
    sigil="$BENCH_SIGIL"
  else
    echo "== building sigil (release)" >&2
    cargo build --release --quiet --bin sigil
    sigil="$PWD/target/release/sigil"
  fi
}

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Wait until URL answers (TRIES times 50 ms, 200 unless given).
wait_up() { # URL [TRIES]
  for _ in $(seq 1 "${2:-200}"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "$1 did not come up" >&2
  return 1
}

# A SoftHSM token "sigil" under WORK/hsm and a configuration with one RSA profile whose static
# challenge is $CHALLENGE, for the enrollment benches; exports SOFTHSM2_CONF and SIGIL_CONFIG.
enroll_setup() { # WORK
  bash hsm-config/softhsm-token.sh "$1/hsm" sigil >&2
  export SOFTHSM2_CONF="$1/hsm/softhsm2.conf"
  local hash; hash="$(printf '%s' "$CHALLENGE" | sha256sum | cut -d' ' -f1)"
  cat > "$1/sigil.toml" <<TOML
[hsm]
token = "sigil"
pin_file = "$1/hsm/user.pin"

[profiles.default]
challenge_sha256 = "$hash"
key_types = ["rsa"]
TOML
  export SIGIL_CONFIG="$1/sigil.toml"
}

# Start `$sigil serve` (warn logs to WORK/NAME.log) on a free port; prints "PORT PID" once it
# answers. The CA must have been made (`sigil init`) in DATA_DIR.
bench_serve() { # WORK NAME DATA_DIR [DATABASE_URL]
  local port; port="$(free_port)"
  SIGIL_SERVER_DATA_DIR="$3" SIGIL_DATABASE_URL="${4:-}" SIGIL_SERVER_LISTEN="127.0.0.1:$port" \
    SIGIL_LOG_LEVEL=warn "$sigil" serve 2>"$1/$2.log" &
  local pid=$!
  wait_up "http://127.0.0.1:$port/healthz" >&2
  echo "$port $pid"
}

# One Sigil on SQLite for a profiling script: a fresh WORK, the token, profile and CA, the
# server started (stopped when the script exits) and warmed up with WARMUP enrollments at
# concurrency $C and challenge $CHALLENGE. Sets `work`, `port` and `pid`.
warm_sigil() { # WORK WARMUP
  work="$1"
  rm -rf "$work"
  mkdir -p "$work"
  pid=""
  trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi' EXIT
  enroll_setup "$work"
  SIGIL_SERVER_DATA_DIR="$work/data" "$sigil" --log-level warn init --ca-key rsa2048 \
    --ca-subject "CN=Bench CA" >/dev/null
  read -r port pid < <(bench_serve "$work" sigil "$work/data")
  # The first connections and the token's sessions, before anything is counted.
  "$sigil" --log-level error bench --url "http://127.0.0.1:$port/scep" --challenge "$CHALLENGE" \
    -c "$C" -n "$2" --server-pid "$pid" >/dev/null
}
