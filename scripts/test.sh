#!/usr/bin/env bash
# Builds deploy-mcp and runs every test (unit + end-to-end) under ctest.
# usage: scripts/test.sh [BUILD_DIR]   (env: DEPLOY_MCP_SANITIZE=ON, DEPLOY_MCP_WERROR=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DDEPLOY_MCP_WERROR="${DEPLOY_MCP_WERROR:-OFF}" \
      -DDEPLOY_MCP_SANITIZE="${DEPLOY_MCP_SANITIZE:-OFF}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# A failed test is run once more before it counts: the end-to-end tests time
# real processes on a 2-core machine, and a loaded moment must not decide a
# run. A test that really fails fails both times.
ctest --test-dir "$dir" --output-on-failure -j2 --repeat until-pass:2
