#!/usr/bin/env bash
# Create (once) a SoftHSM2 token in a project-local directory.
#
#   hsm-config/softhsm-token.sh DIR LABEL
#
# Writes DIR/softhsm2.conf (tokendir DIR/tokens), DIR/user.pin and DIR/so.pin (mode 0600,
# random), and initialises a token labelled LABEL. Run again, it changes nothing.
# Afterwards:  export SOFTHSM2_CONF=DIR/softhsm2.conf
#              pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label LABEL -O
set -euo pipefail
dir=${1:?usage: softhsm-token.sh DIR LABEL}
label=${2:?usage: softhsm-token.sh DIR LABEL}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v softhsm2-util >/dev/null || { echo "softhsm2-util missing: apt-get install softhsm2" >&2; exit 1; }
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir" "$dir/tokens"
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.template" >"$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
umask 077
[ -s "$dir/user.pin" ] || od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$dir/user.pin"
[ -s "$dir/so.pin" ] || od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >"$dir/so.pin"
if softhsm2-util --show-slots 2>/dev/null | grep -qE "^\s*Label:\s+$label\s*$"; then
  echo "token '$label' already exists in $dir/tokens"
else
  softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
  echo "created token '$label' in $dir/tokens"
fi
