#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang under ASan+UBSan and runs
# each one for a bounded time, a few at a time. Fails on any crash, leak,
# timeout, out-of-memory or broken invariant, and on any saved regression
# input (fuzz/regressions/<name>/) that still fails.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET]          (default 60)
# env:   FUZZ_JOBS     targets run at once (default 2)
#        FUZZ_TARGETS  space-separated subset, e.g. "sse config" (default: all)
#        FUZZ_BUILD    build directory (default build-fuzz)
#        FUZZ_WORK     where corpora, logs and crash inputs go (default: a new
#                      temporary directory; the repository is never written)
#        CC            clang to use (default clang, else clang-14)
#
# Seeds come from fuzz/corpus/<name>/ and the regression inputs; what the run
# discovers stays in FUZZ_WORK. To reproduce a crash: build-fuzz/fuzz/fuzz_<name> FILE
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
jobs=${FUZZ_JOBS:-2}
build=${FUZZ_BUILD:-build-fuzz}
cc=${CC:-}
if [ -z "$cc" ]; then
    cc=$(command -v clang || command -v clang-14 || true)
fi
if [ -z "$cc" ]; then
    echo "fuzz.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi

cmake -S . -B "$build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DDEPLOY_MCP_FUZZ=ON -DDEPLOY_MCP_TESTS=OFF -DDEPLOY_MCP_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

all=$(cd fuzz && ls fuzz_*.c | sed -e 's/^fuzz_//' -e 's/\.c$//')
targets=${FUZZ_TARGETS:-$all}

work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/deploy-mcp-fuzz.XXXXXX")}
mkdir -p "$work"
echo "fuzz.sh: ${secs}s per target, $jobs at a time; corpora, logs and crashes in $work"

symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH="$symbolizer"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one target: regressions first (each input once), then fuzzing.
run_target() {
    local name=$1 bin="$build/fuzz/fuzz_$1"
    local corpus="$work/corpus/$name" art="$work/artifacts/$name" log="$work/$name.log"
    mkdir -p "$corpus" "$art"
    [ -d "fuzz/corpus/$name" ] && cp -R "fuzz/corpus/$name/." "$corpus/"
    local dict=()
    [ -f "fuzz/dict/$name.dict" ] && dict=(-dict="fuzz/dict/$name.dict")
    if [ -d "fuzz/regressions/$name" ] && [ -n "$(ls -A "fuzz/regressions/$name")" ]; then
        if ! "$bin" "fuzz/regressions/$name"/* >"$log" 2>&1; then
            echo "regression inputs in fuzz/regressions/$name fail" >>"$log"
            return 1
        fi
        cp -R "fuzz/regressions/$name/." "$corpus/"
    fi
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 \
           -max_len=8192 -print_final_stats=1 "${dict[@]}" \
           -artifact_prefix="$art/" "$corpus" >>"$log" 2>&1
}

report() {
    local name=$1 rc=$2 log="$work/$1.log"
    if [ "$rc" -eq 0 ]; then
        printf '  %-10s ok   %s\n' "$name" \
            "$(grep -a -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2 " runs"}')"
        return
    fi
    printf '  %-10s FAILED (exit %s), log %s\n' "$name" "$rc" "$log"
    grep -a -E -m 40 '^Running: |ERROR|SUMMARY|invariant failed|^  [^ ]|regression|^    #[0-9]' "$log" |
        sed 's/^/    /' || true
    for f in "$work/artifacts/$name"/*; do
        [ -f "$f" ] || continue
        # CI keeps only the log: print the input so it can be reproduced.
        echo "    input $(basename "$f") (base64): $(base64 -w0 "$f" | head -c 4000)"
    done
}

declare -A pid_of=()
failed=0
wait_one() {
    local done_pid rc name
    set +e
    wait -n -p done_pid
    rc=$?
    set -e
    for name in "${!pid_of[@]}"; do
        if [ "${pid_of[$name]}" = "$done_pid" ]; then
            unset "pid_of[$name]"
            report "$name" "$rc"
            [ "$rc" -eq 0 ] || failed=1
        fi
    done
}

for name in $targets; do
    if [ ! -x "$build/fuzz/fuzz_$name" ]; then
        echo "fuzz.sh: no target fuzz_$name" >&2
        exit 2
    fi
    while [ "${#pid_of[@]}" -ge "$jobs" ]; do wait_one; done
    run_target "$name" &
    pid_of[$name]=$!
done
while [ "${#pid_of[@]}" -gt 0 ]; do wait_one; done

if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: FAILED (details in $work)"
    exit 1
fi
echo "fuzz.sh: all targets clean (new corpus entries in $work/corpus)"
