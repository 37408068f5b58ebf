#!/usr/bin/env bash
# PyScep (PyPI: "A Python SCEP client and server"), the one packaged SCEP client here that asks
# for GetNextCACert. Installs it once into target/pyscep-venv (pinned versions), then runs
# softhsm-tests/pyscep_nextca.py with the given arguments.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/pyscep-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import scep" 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check \
    PyScep==0.0.14 asn1crypto==1.5.1 certbuilder==0.14.2 csrbuilder==0.10.1 \
    oscrypto==1.3.0 cryptography requests six >&2
fi
exec "$venv/bin/python" -W ignore "$root/softhsm-tests/pyscep_nextca.py" "$@"
