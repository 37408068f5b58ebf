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
# Where the token, configuration and data go (git-ignored). Tests point it elsewhere.
var=${QUICKSTART_VAR:-$root/var}
mkdir -p "$var"
var=$(cd "$var" && pwd)
# release (default) or debug (what the test suite builds anyway).
build=${QUICKSTART_BUILD:-release}

bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config ca-certificates
command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup)" >&2; exit 1; }

echo "== building sigil ($build)"
if [ "$build" = release ]; then
  cargo build --release --quiet --bin sigil
else
  cargo build --quiet --bin sigil
fi
sigil="$root/target/$build/sigil"

echo "== SoftHSM token"
bash hsm-config/softhsm-token.sh "$var/hsm" sigil

mkdir -p "$var/data"
# The static SCEP challenge: made once, kept in var/challenge (0600); the server only gets
# its SHA-256.
if [ ! -s "$var/challenge" ]; then
  (umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$var/challenge")
fi
challenge=$(cat "$var/challenge")
challenge_sha256=$(printf '%s' "$challenge" | sha256sum | cut -d' ' -f1)
if [ ! -f "$var/sigil.toml" ]; then
  cat >"$var/sigil.toml" <<TOML
# Written by deploy/quickstart.sh. Every key can be overridden by SIGIL_<SECTION>_<KEY>.
[server]
listen = "${QUICKSTART_LISTEN:-127.0.0.1:8080}"
data_dir = "$var/data"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "sigil"
pin_file = "$var/hsm/user.pin"
pool_size = 4
ca_key = "sigil-ca"
ra_key = "sigil-ra"

[log]
format = "human"
level = "info"

[scep]
default_profile = "default"

# Served at /scep: AES and SHA-2, a static challenge.
[profiles.default]
challenge_sha256 = "$challenge_sha256"
validity_days = 365

# Served at /scep/legacy: also single DES and SHA-1 answers, for old clients (micromdm's
# scepclient 2.1 encrypts with DES).
[profiles.legacy]
challenge_sha256 = "$challenge_sha256"
legacy = true
TOML
fi

# It holds the admin token: readable by its owner only.
umask 077
cat >"$var/quickstart.env.tmp" <<ENV
# Source this file to reach the quickstart token: . "$var/quickstart.env"
export SOFTHSM2_CONF="$var/hsm/softhsm2.conf"
export SIGIL_CONFIG="$var/sigil.toml"
export SIGIL_HSM_MODULE="/usr/lib/softhsm/libsofthsm2.so"
export SIGIL_HSM_TOKEN="sigil"
export SIGIL_HSM_PIN_FILE="$var/hsm/user.pin"
ENV
# shellcheck disable=SC1091
. "$var/quickstart.env.tmp"

admin_token=$(sed -n 's/^export SIGIL_ADMIN_TOKEN="\(.*\)"$/\1/p' "$var/quickstart.env" 2>/dev/null || true)
if shown=$("$sigil" ca show 2>&1); then
  echo "== token already initialised; reusing its keys"
elif printf '%s\n' "$shown" | grep -q "no CA certificate"; then
  echo "== key ceremony (sigil init)"
  init_out=$("$sigil" init --ca-key rsa3072 --ca-subject "CN=Sigil Quickstart CA,O=Sigil")
  printf '%s\n' "$init_out" | grep -v "Admin API token"
  admin_token=$(printf '%s\n' "$init_out" | sed -n 's/^Admin API token.*: \(sigil_[0-9a-f]*\)$/\1/p')
else
  printf '%s\n' "$shown" >&2
  exit 1
fi
"$sigil" ca show 2>/dev/null

ca_sha256=$(openssl x509 -in "$var/data/ca.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d ':' | tr 'A-F' 'a-f')
ra_sha256=$(openssl x509 -in "$var/data/ra.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d ':' | tr 'A-F' 'a-f')
scep_url="http://${QUICKSTART_LISTEN:-127.0.0.1:8080}/scep"
cat >>"$var/quickstart.env.tmp" <<ENV
export SIGIL_SCEP_URL="$scep_url"
export SIGIL_CHALLENGE="$challenge"
export SIGIL_CA_SHA256="$ca_sha256"
export SIGIL_ADMIN_TOKEN="$admin_token"
ENV

mv "$var/quickstart.env.tmp" "$var/quickstart.env"

echo
echo "SCEP URL:   $scep_url   (old clients: $scep_url/legacy)"
echo "Challenge:  $challenge"
echo "CA SHA-256: $ca_sha256"
echo "RA SHA-256: $ra_sha256"
echo "Token:      pkcs11-tool --module \$SIGIL_HSM_MODULE --token-label sigil --login --pin \$(cat \$SIGIL_HSM_PIN_FILE) -O"
echo "Admin API:  curl -H \"Authorization: Bearer \$SIGIL_ADMIN_TOKEN\" http://${QUICKSTART_LISTEN:-127.0.0.1:8080}/api/v1/tokens"
echo "Env file:   $var/quickstart.env"
echo "Try:        scepclient -server-url $scep_url/legacy -challenge $challenge -ca-fingerprint $ra_sha256 -private-key dev.key -certificate dev.pem"
$prepare_only && exit 0
echo "== sigil serve on ${QUICKSTART_LISTEN:-127.0.0.1:8080} (Ctrl-C to stop)"
exec "$sigil" serve
