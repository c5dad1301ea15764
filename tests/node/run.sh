#!/usr/bin/env bash
# Runs one Node interop test under the Node the lockfile pins (the `node`
# package: Node 22, which the conformance suite needs), else the system node.
# Exits 77 (ctest: skipped) when the modules are not installed: run
# `npm ci` in tests/node (CI does).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -d "$here/node_modules/@modelcontextprotocol/sdk" ]; then
    echo "SKIPPED: Node modules are missing; run 'npm ci' in $here to enable this test" >&2
    exit 77
fi
node="$here/node_modules/node/bin/node"
[ -x "$node" ] || node="$(command -v node || true)"
if [ -z "$node" ]; then
    echo "SKIPPED: no node binary found" >&2
    exit 77
fi
cd "$here"
case "$1" in
    *.test.mjs) exec "$node" --test --test-reporter=spec "$1" ;;
    *) exec "$node" "$1" ;;
esac
