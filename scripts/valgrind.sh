#!/usr/bin/env bash
# valgrind memcheck over the core end-to-end scenarios, on a plain Debug build
# (no sanitizers: valgrind and ASan do not mix).
#
# usage: scripts/valgrind.sh [BUILD_DIR]        (default: build-vg)
#
# Every deploy-mcp process the e2e harness starts runs as
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite ...
# (tests/e2e/harness.py puts $DEPLOY_MCP_WRAPPER in front of the binary and
# scales its waits by E2E_TIME_SCALE). Each process writes its own log; any
# memcheck error or definite leak in any of them fails the run, whatever the
# test itself concluded. Scenarios: the whole protocol suite; the core Showly
# tool flows (create_preview with and without wait, stream_events across
# dropped streams, cancellation, tail_logs, get/list); upstream faults (resets
# at every phase, invalid JSON, oversized SSE lines and events); abusive stdin
# (20 MiB lines, invalid UTF-8, deep nesting, batches, duplicate ids, stray
# cancels) -- chosen because their timing tolerates valgrind's 20-50x
# slowdown. About 2-3 minutes with the build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-vg}

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }

cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DDEPLOY_MCP_SANITIZE=OFF \
      -DDEPLOY_MCP_WERROR="${DEPLOY_MCP_WERROR:-OFF}" -DDEPLOY_MCP_TESTS=OFF >/dev/null
cmake --build "$dir" -j"$(nproc)" --target deploy-mcp

logs=$(mktemp -d "${TMPDIR:-/tmp}/dmcp-valgrind.XXXXXX")
trap 'rm -rf "$logs"' EXIT

export DEPLOY_MCP_BIN="$PWD/$dir/deploy-mcp"
export TESTS_DIR="$PWD/tests"
export DEPLOY_MCP_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no -q --log-file=$logs/vg.%p.log"
export E2E_TIME_SCALE=${E2E_TIME_SCALE:-10}

status=0
run() {  # run FILE [TEST-NAME-SUBSTRING]
    local file=$1 only=${2:-}
    echo "== valgrind: ${file}${only:+ ($only)}"
    if ! E2E_ONLY="$only" timeout 600 python3 -u "tests/e2e/$file"; then
        echo "valgrind.sh: tests/e2e/$file ${only:+($only) }failed under valgrind" >&2
        status=1
    fi
}

run test_protocol.py
for t in create_preview_sends_idempotency_key_and_reuses_it \
         create_preview_wait_follows_the_build \
         dropped_stream_resumes_without_gap_or_duplicate \
         cancellation_closes_upstream_and_sends_no_response \
         tail_logs_filters_and_caps \
         get_and_list_deployments; do
    run test_showly.py "$t"
done
# error paths: broken and malformed upstreams, abusive stdin
for t in reset_after_headers_and_mid_body_on_json_calls \
         stream_reset_at_every_phase_resumes_without_gap_or_duplicate \
         invalid_json_in_an_sse_event_is_skipped_and_the_stream_goes_on \
         oversized_sse_line_and_event_are_capped_reported_and_skipped; do
    run test_faults.py "$t"
done
for t in stdio_huge_line_invalid_utf8_and_deep_nesting stdio_batches_ids_and_nulls \
         stdio_duplicate_ids_and_cancelling_unknown_or_finished_ids; do
    run test_abuse.py "$t"
done

# Any memcheck report, from any process, fails the step.
nlogs=$(find "$logs" -name 'vg.*.log' | wc -l)
bad=$(find "$logs" -name 'vg.*.log' -size +0c)
if [ -n "$bad" ]; then
    for f in $bad; do
        echo "---- $f" >&2
        cat "$f" >&2
    done
    echo "valgrind.sh: memcheck reported errors (above)" >&2
    status=1
fi
if [ "$nlogs" -eq 0 ]; then
    echo "valgrind.sh: no process ran under valgrind" >&2
    status=1
fi
echo "valgrind.sh: $nlogs deploy-mcp processes under memcheck, $(echo "$bad" | grep -c . || true) with reports"
exit $status
