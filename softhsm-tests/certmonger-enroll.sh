#!/usr/bin/env bash
# Enroll over SCEP with certmonger, the way a Linux host does, without touching the system's
# certmonger state or D-Bus: a private session bus, `certmonger-session` with its own state
# directories, `getcert add-scep-ca` and `getcert request` with the key and certificate in
# files. Waits for MONITORING. Optionally renews (`getcert rekey`: a new key, a PKCSReq signed
# by the current certificate) and waits for a new serial.
#
#   softhsm-tests/certmonger-enroll.sh URL WORKDIR CHALLENGE CN [rekey]
#
# Exit status 0 when the certificate was issued (and renewed, with `rekey`); the certificate is
# WORKDIR/out/cert.pem, certmonger's log WORKDIR/certmonger.log.
set -euo pipefail
url=$1 W=$2 challenge=$3 cn=$4 renew=${5:-}
rm -rf "$W"
mkdir -p "$W"/{home,requests,cas,local,tmp,config,out}
chmod 700 "$W"/*
W=$(cd "$W" && pwd)
export HOME="$W/home"
export CERTMONGER_CONFIG_DIR="$W/config" CERTMONGER_REQUESTS_DIR="$W/requests"
export CERTMONGER_CAS_DIR="$W/cas" CERTMONGER_LOCAL_CA_DIR="$W/local" CERTMONGER_TMPDIR="$W/tmp"
export CERTMONGER_SYSTEM_LOCK_FILE="$W/lock"
unset DBUS_SYSTEM_BUS_ADDRESS

cat >"$W/bus.conf" <<BUS
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$W/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
BUS
dbus-daemon --config-file="$W/bus.conf" --fork --print-pid=3 --print-address=4 3>"$W/dbus.pid" 4>"$W/dbus.addr"
export DBUS_SESSION_BUS_ADDRESS
DBUS_SESSION_BUS_ADDRESS=$(head -1 "$W/dbus.addr")
cleanup() {
  [ -s "$W/certmonger.pid" ] && kill "$(cat "$W/certmonger.pid")" 2>/dev/null || true
  [ -s "$W/dbus.pid" ] && kill "$(cat "$W/dbus.pid")" 2>/dev/null || true
}
trap cleanup EXIT

/usr/lib/certmonger/certmonger-session -s -n -d 3 -p "$W/certmonger.pid" >"$W/certmonger.log" 2>&1 &
for _ in $(seq 100); do getcert list-cas -s >/dev/null 2>&1 && break; sleep 0.1; done

# The daemon runs GetCACaps and GetCACert itself and finds the RA certificate.
getcert add-scep-ca -s -c sigil -u "$url"
for _ in $(seq 200); do
  grep -qs '^ca_encryption_cert=' "$W"/cas/* && grep -qs '^ca_capabilities=' "$W"/cas/* && break
  sleep 0.1
done

status() { getcert list -s -i req1 | sed -n 's/^\s*status: //p'; }
serial() { openssl x509 -in "$W/out/cert.pem" -noout -serial 2>/dev/null || true; }
wait_for() { # wait until status is final; with a serial given, until it changes
  local old=${1:-} st=
  for i in $(seq 300); do
    st=$(status)
    case "$st" in
      MONITORING) [ -z "$old" ] || [ "$(serial)" != "$old" ] && break ;;
      CA_REJECTED | CA_UNREACHABLE | CA_UNCONFIGURED | NEED_GUIDANCE) break ;;
    esac
    sleep 0.1
  done
  echo "$st"
}

getcert request -s -c sigil -f "$W/out/cert.pem" -k "$W/out/key.pem" \
  -L "$challenge" -N "CN=$cn" -I req1 >/dev/null
st=$(wait_for)
getcert list -s -i req1
[ "$st" = MONITORING ] || { echo "certmonger: $st" >&2; exit 1; }
echo "issued: $(serial)"

if [ "$renew" = rekey ]; then
  old=$(serial)
  getcert rekey -s -i req1 >/dev/null
  st=$(wait_for "$old")
  getcert list -s -i req1
  [ "$st" = MONITORING ] && [ "$(serial)" != "$old" ] || { echo "rekey: $st, serial $(serial)" >&2; exit 1; }
  echo "renewed: $old -> $(serial)"
fi
