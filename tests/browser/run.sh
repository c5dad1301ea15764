#!/usr/bin/env bash
# Runs the approval page's browser test: Debian's chromium driven by
# playwright-core (pinned in package-lock.json). Exits 77 (ctest: skipped)
# when chromium or the Node modules are missing here: `apt-get install
# chromium` and `npm ci` in this directory enable it (CI does both).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "SKIPPED: $chromium is missing; 'apt-get install chromium' enables this test" >&2
    exit 77
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
    echo "SKIPPED: Node modules are missing; run 'npm ci' in $here to enable this test" >&2
    exit 77
fi
node="$(command -v node || true)"
if [ -z "$node" ]; then
    echo "SKIPPED: no node binary found" >&2
    exit 77
fi
cd "$here"
exec "$node" --test --test-reporter=spec "${1:-approval_page.test.mjs}"
