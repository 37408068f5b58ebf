#!/usr/bin/env bash
# Install the tests' OpenID provider (panva's oidc-provider, from npm, under Debian's nodejs)
# into target/oidc-op, once; again only when its lockfile changes.
#   softhsm-tests/oidc/install.sh
# oidc-provider 9 needs Node >= 20.18 (URL.parse); on an older Node (Debian 12's 18) the
# 8.x line is installed instead. Both run softhsm-tests/oidc/op.mjs unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash deploy/ensure-packages.sh nodejs
command -v npm >/dev/null || bash deploy/ensure-packages.sh npm
if node -e 'process.exit(typeof URL.parse === "function" ? 0 : 1)'; then v=op-9; else v=op-8; fi
dir=target/oidc-op
mkdir -p "$dir"
if ! cmp -s "softhsm-tests/oidc/$v/package-lock.json" "$dir/package-lock.json" \
  || [ ! -d "$dir/node_modules/oidc-provider" ]; then
  cp "softhsm-tests/oidc/$v/package.json" "softhsm-tests/oidc/$v/package-lock.json" "$dir/"
  echo "installing oidc-provider ($v) into $dir" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
cp softhsm-tests/oidc/op.mjs "$dir/op.mjs"
