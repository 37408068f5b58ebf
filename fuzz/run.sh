#!/usr/bin/env bash
# Run every fuzz target for MINUTES each (default 1), with its corpus in fuzz/corpus/<target>
# (seeded from testdata/ and the repository's configurations). Needs the nightly toolchain
# and cargo-fuzz (installed here when missing). A crash stops the run with the input saved
# under fuzz/artifacts/<target>/ (keep it as a regression test).
#   fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
minutes="${1:-1}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p logs
targets="${FUZZ_TARGETS:-scep_message envelope csr ocsp_request gateway_checks config}"
for t in $targets; do
  mkdir -p "corpus/$t"
  echo "== $t for $minutes minute(s)"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 >"logs/$t.log" 2>&1; then
    tail -40 "logs/$t.log"
    exit 1
  fi
  grep -E "^#[0-9]+[[:space:]]+DONE" "logs/$t.log" | tail -1
done
