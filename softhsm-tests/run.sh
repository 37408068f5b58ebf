#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine with only the Rust toolchain:
#   softhsm-tests/run.sh
# Installs what the tests need (idempotently), starts from a fresh SoftHSM token directory,
# checks formatting and lints, then runs every test (unit tests beside the code, the
# integration tests in softhsm-tests/ against real tokens, doc tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config ca-certificates scep certmonger dbus python3-venv jq

# The OpenID provider the identity tests sign in with (oidc-provider from npm, under nodejs).
bash softhsm-tests/oidc/install.sh
# The console tests' browser (Debian's chromium and chromium-driver) and axe-core.
bash softhsm-tests/console/install.sh

# PostgreSQL 15 and a throwaway database for this run (dropped at the end).
# shellcheck source=softhsm-tests/postgres.sh
. softhsm-tests/postgres.sh
trap pg_test_drop EXIT

# Fresh tokens for this run (the in-process tests create theirs here; see .cargo/config.toml).
rm -rf target/softhsm-tests
mkdir -p target/softhsm-tests

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== the gateway build (no default features) links neither the hsm nor the store module"
cargo clippy --no-default-features --all-targets --quiet -- -D warnings
deps="$(cargo tree --no-default-features -e normal --prefix none | sed 's/ .*//' | sort -u)"
for d in cryptoki rusqlite tokio-postgres deadpool-postgres postgres-openssl rcgen; do
  if grep -qx "$d" <<<"$deps"; then
    echo "the gateway build links $d" >&2
    exit 1
  fi
done
echo "== cargo deny check licenses bans sources (deny.toml)"
command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny
cargo deny --log-level error check licenses bans sources
echo "== cargo test"
# Last, so the run ends with cargo's own summary.
cargo test --no-fail-fast
