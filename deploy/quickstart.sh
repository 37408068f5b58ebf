#!/usr/bin/env bash
# Bring Sigil up on a project-local SoftHSM token with the embedded store:
#   deploy/quickstart.sh            # prepare (once) and run `sigil serve` in the foreground
#   deploy/quickstart.sh --prepare  # prepare only (install, build, token, ceremony, env file)
#
# Installs softhsm2 and opensc with apt when missing, builds Sigil, creates the token under
# var/hsm (git-ignored), runs `sigil init` the first time, and writes var/quickstart.env so that
# `source var/quickstart.env` lets `sigil` and `pkcs11-tool` reach the same token. Run again, it
# reuses the token and keys it made the first time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
prepare_only=false
[ "${1:-}" = "--prepare" ] && prepare_only=true

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config ca-certificates
command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup)" >&2; exit 1; }

echo "== building sigil (release)"
cargo build --release --quiet --bin sigil
sigil="$root/target/release/sigil"

echo "== SoftHSM token"
bash hsm-config/softhsm-token.sh var/hsm sigil

mkdir -p var/data
if [ ! -f var/sigil.toml ]; then
  cat >var/sigil.toml <<TOML
# Written by deploy/quickstart.sh. Every key can be overridden by SIGIL_<SECTION>_<KEY>.
[server]
listen = "127.0.0.1:8080"
data_dir = "$root/var/data"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "sigil"
pin_file = "$root/var/hsm/user.pin"
pool_size = 4
ca_key = "sigil-ca"
ra_key = "sigil-ra"

[log]
format = "human"
level = "info"
TOML
fi

cat >var/quickstart.env <<ENV
# Source this file to reach the quickstart token: . var/quickstart.env
export SOFTHSM2_CONF="$root/var/hsm/softhsm2.conf"
export SIGIL_CONFIG="$root/var/sigil.toml"
export SIGIL_HSM_MODULE="/usr/lib/softhsm/libsofthsm2.so"
export SIGIL_HSM_TOKEN="sigil"
export SIGIL_HSM_PIN_FILE="$root/var/hsm/user.pin"
ENV
# shellcheck disable=SC1091
. var/quickstart.env

if "$sigil" ca show 2>/dev/null | grep -q "^CA: .*" && ! "$sigil" ca show 2>/dev/null | grep -q "no certificate"; then
  echo "== token already initialised; reusing its keys"
else
  echo "== key ceremony (sigil init)"
  "$sigil" init --ca-key p384 --ca-subject "CN=Sigil Quickstart CA,O=Sigil"
fi
"$sigil" ca show

echo
echo "Token:      pkcs11-tool --module \$SIGIL_HSM_MODULE --token-label sigil --login --pin \$(cat \$SIGIL_HSM_PIN_FILE) -O"
echo "Env file:   var/quickstart.env"
echo "Health:     curl http://127.0.0.1:8080/healthz"
$prepare_only && exit 0
echo "== sigil serve on 127.0.0.1:8080 (Ctrl-C to stop)"
exec "$sigil" serve
