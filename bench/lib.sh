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
