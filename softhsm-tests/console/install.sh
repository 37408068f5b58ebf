#!/usr/bin/env bash
# Install what the console tests drive: Debian's headless Chromium and its WebDriver, and
# axe-core (npm, pinned by the lockfile) into target/axe, once; again only when the lockfile
# changes.
#   softhsm-tests/console/install.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash deploy/ensure-packages.sh chromium chromium-driver nodejs
command -v npm >/dev/null || bash deploy/ensure-packages.sh npm
dir=target/axe
mkdir -p "$dir"
if ! cmp -s softhsm-tests/console/package-lock.json "$dir/package-lock.json" \
  || [ ! -f "$dir/node_modules/axe-core/axe.min.js" ]; then
  cp softhsm-tests/console/package.json softhsm-tests/console/package-lock.json "$dir/"
  echo "installing axe-core into $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
