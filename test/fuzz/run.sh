#!/usr/bin/env bash
# Runs the libFuzzer targets (README.md here), each for SECONDS, starting from its corpus in the
# repository; new inputs go to a scratch copy unless --merge is given, which folds what the run
# found back into test/fuzz/corpus (minimized). A crash leaves its input in build-fuzz/artifacts/.
# Usage: test/fuzz/run.sh [--merge] [SECONDS [TARGET...]]   (default: 30 s, every target)
# Ends with "N passed, N failed". A target passes when it ran its time, exited 0 and its log holds
# no finding: no crash, sanitizer report (UBSan included: -fno-sanitize-recover and halt_on_error
# make one fatal), leak, timeout of one input (-timeout), memory past -rss_limit_mb or one
# allocation past -malloc_limit_mb.
set -uo pipefail
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}
finding='^==[0-9]+==|ERROR: libFuzzer|runtime error:|Sanitizer|SUMMARY: |Test unit written|ALARM: working on the last Unit|out-of-memory|-rss_limit_mb|deadly signal|Done 0 runs'
cd "$(dirname "$0")/../.."
merge=false
if [ "${1:-}" = --merge ]; then merge=true; shift; fi
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(rpc http frame egress virtq pages)

command -v clang >/dev/null || { echo "test/fuzz/run.sh: clang is needed (apt-get install clang)" >&2; exit 1; }
if [ ! -d build-fuzz ]; then
  CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    >/dev/null || exit 1
fi
ninja -C build-fuzz >/dev/null || { ninja -C build-fuzz | tail -20; exit 1; }
mkdir -p build-fuzz/artifacts

passed=0
failed=0
for t in "${targets[@]}"; do
  corpus=test/fuzz/corpus/$t
  scratch=$(mktemp -d "/tmp/airlock-fuzz-$t-XXXXXX")
  cp "$corpus"/* "$scratch"/ 2>/dev/null
  log=build-fuzz/artifacts/$t.log
  # -close_fd_mask=2: the code under test logs refusals to stderr, millions of times
  # -malloc_limit_mb: no single allocation may come near what a hostile guest once got out of
  # the host (an EXIT's files tar expanded to gigabytes); the largest frame is 40 MiB
  "build-fuzz/test/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=64 -close_fd_mask=2 -artifact_prefix="build-fuzz/artifacts/$t-" "$scratch" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
  if [ $rc = 0 ] && [ -n "$runs" ] && ! grep -qE "$finding" "$log"; then
    echo "PASS fuzz_$t: $runs inputs in ${seconds} s, no finding ($(ls "$scratch" | wc -l) in corpus)"
    passed=$((passed + 1))
    if $merge; then
      "build-fuzz/test/fuzz/fuzz_$t" -merge=1 -close_fd_mask=2 "$corpus" "$scratch" >/dev/null 2>&1
    fi
  else
    echo "FAIL fuzz_$t (exit $rc): see $log"
    grep -E "$finding" "$log" | head -8 | sed 's/^/   /'
    failed=$((failed + 1))
  fi
  rm -rf "$scratch"
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
