#!/usr/bin/env bash
# Bring Sigil up on a project-local SoftHSM token with the embedded store:
#   deploy/quickstart.sh            # prepare (once) and run `sigil serve` in the foreground
#   deploy/quickstart.sh --prepare  # prepare only (install, build, token, ceremony, env file)
#
# Settings (environment):
#   QUICKSTART_LISTEN  address to serve on (default 127.0.0.1:8080); a later run with another
#                      address moves the server there (configuration, env file, printed URLs)
#   QUICKSTART_VAR     where the token, configuration and data go (default var/, git-ignored)
#   QUICKSTART_BUILD   release (default) or debug
#
# Installs softhsm2, opensc, the `scep` client and jq with apt when missing, builds Sigil,
# creates the token under var/hsm, runs `sigil init` the first time, and writes
# var/quickstart.env so that `. var/quickstart.env` lets `sigil`, `scepclient`, `curl` and
# `pkcs11-tool` reach the same server and token. Run again, it reuses the token, keys and
# store it made the first time.
set -euo pipefail
# A relative QUICKSTART_VAR is taken from where the script is run.
if [ -n "${QUICKSTART_VAR:-}" ]; then
  mkdir -p "$QUICKSTART_VAR"
  QUICKSTART_VAR=$(cd "$QUICKSTART_VAR" && pwd)
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
prepare_only=false
[ "${1:-}" = "--prepare" ] && prepare_only=true
var=${QUICKSTART_VAR:-$root/var}
mkdir -p "$var"
var=$(cd "$var" && pwd)
build=${QUICKSTART_BUILD:-release}
listen=${QUICKSTART_LISTEN:-127.0.0.1:8080}
base_url="http://$listen"

echo "== packages (softhsm2, opensc, scep, jq; apt, only what is missing)"
bash deploy/ensure-packages.sh softhsm2 opensc openssl libssl-dev pkg-config ca-certificates scep jq
command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup, Rust $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) or newer)" >&2; exit 1; }

sigil="$root/target/$build/sigil"
if [ -x "$sigil" ]; then
  echo "== building sigil ($build; up to date in seconds)"
else
  echo "== building sigil ($build): the first build compiles every dependency and takes 5 to 10 minutes on two cores"
fi
if [ "$build" = release ]; then
  cargo build --release --bin sigil
else
  cargo build --bin sigil
fi

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
listen = "$listen"
# Where devices and relying parties reach this server: certificates point at its CRL and OCSP.
public_url = "$base_url"
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
else
  # A run with another address moves the server: listen and public_url follow.
  sed -i -e "s|^listen = .*|listen = \"$listen\"|" \
         -e "s|^public_url = .*|public_url = \"$base_url\"|" "$var/sigil.toml"
  grep -q '^public_url = ' "$var/sigil.toml" ||
    sed -i "s|^listen = .*|&\npublic_url = \"$base_url\"|" "$var/sigil.toml"
fi

# It holds the admin token: readable by its owner only.
umask 077
cat >"$var/quickstart.env.tmp" <<ENV
# Source this file to reach the quickstart server and token: . "$var/quickstart.env"
export PATH="$root/target/$build:\$PATH"
export SOFTHSM2_CONF="$var/hsm/softhsm2.conf"
export SIGIL_CONFIG="$var/sigil.toml"
export SIGIL_HSM_MODULE="/usr/lib/softhsm/libsofthsm2.so"
export SIGIL_HSM_TOKEN="sigil"
export SIGIL_HSM_PIN_FILE="$var/hsm/user.pin"
export SIGIL_DATA_DIR="$var/data"
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

fingerprint() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }
ca_sha256=$(fingerprint "$var/data/ca.pem")
ra_sha256=$(fingerprint "$var/data/ra.pem")
cat >>"$var/quickstart.env.tmp" <<ENV
export SIGIL_BASE_URL="$base_url"
export SIGIL_SCEP_URL="$base_url/scep"
export SIGIL_CHALLENGE="$challenge"
export SIGIL_CA_SHA256="$ca_sha256"
export SIGIL_RA_SHA256="$ra_sha256"
export SIGIL_ADMIN_TOKEN="$admin_token"
ENV

mv "$var/quickstart.env.tmp" "$var/quickstart.env"

echo
echo "Base URL:   $base_url"
echo "SCEP URL:   $base_url/scep   (old clients: $base_url/scep/legacy)"
echo "Challenge:  $challenge"
echo "CA SHA-256: $ca_sha256"
echo "RA SHA-256: $ra_sha256   (scepclient -ca-fingerprint: the RA's, not the CA's)"
echo "Env file:   . $var/quickstart.env"
echo "Try:        scepclient -server-url \$SIGIL_SCEP_URL/legacy -challenge \$SIGIL_CHALLENGE -ca-fingerprint \$SIGIL_RA_SHA256 -private-key dev.key -certificate dev.pem"
$prepare_only && exit 0
echo "== sigil serve on $listen (Ctrl-C to stop)"
exec "$sigil" serve
