#!/usr/bin/env bash
# The whole test suite: unit tests (plain, under valgrind, and built with ASan/UBSan), then the VM
# integration tests on every backend that runs here. Ends with "N passed, N failed".
# Expects `images/build.sh all` to have run (the README's test command does both).
set -uo pipefail
cd "$(dirname "$0")/.."
python=/usr/bin/python3 # not a pyenv shim: the tests want Debian's python3
passed=0
failed=0

tally() { # NAME PASSED FAILED
  echo "== $1: $2 passed, $3 failed"
  passed=$((passed + $2))
  failed=$((failed + $3))
}

# meson counts one result per test binary; each binary prints PASS/FAIL per test function.
unit() { # NAME BUILD_DIR [meson test args...]
  local name=$1 dir=$2
  shift 2
  local log
  log=$(meson test -C "$dir" --suite unit --print-errorlogs --verbose "$@" 2>&1)
  local rc=$?
  echo "$log" | grep -E '^(FAIL|PASS) |CHECK\(|ERROR SUMMARY: [1-9]|runtime error|AddressSanitizer' | grep -v '^PASS' || true
  local p f
  p=$(echo "$log" | grep -cE '(^| )PASS [a-z_]+$')
  f=$(echo "$log" | grep -cE '(^| )FAIL [a-z_]+$')
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "$log" | tail -20; fi # crash, leak, sanitizer
  tally "$name" "$p" "$f"
}

unit "unit tests" build
unit "unit tests under valgrind" build --setup valgrind
unit "unit tests with ASan/UBSan" build-asan

run_integration() { # NAME BACKEND [test names...]
  local name=$1 backend=$2 out
  shift 2
  out=$(AIRLOCK_TEST_BACKEND=$backend $python test/integration/test_run.py "$@" 2>&1)
  echo "$out" | grep -vE '^PASS |^[0-9]+ passed, [0-9]+ failed$'
  local summary
  summary=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -z "$summary" ]; then
    tally "$name" 0 1
  else
    tally "$name" "${summary%% passed*}" "$(echo "$summary" | sed 's/.*, \([0-9]*\) failed/\1/')"
  fi
}

run_integration "VM tests (tcg)" tcg
# The host's VM code (sandbox, decoder, archive) built with ASan/UBSan, on runs that exercise
# every path: output, files both ways, a flood, a timeout and hostile guests.
AIRLOCK_BUILD=build-asan run_integration "VM tests (tcg, airlock built with ASan/UBSan)" tcg \
  python_hello files_go_in_and_out output_flood_is_capped timeout_kills_an_infinite_loop \
  malformed_frames_end_the_vm agent_crash_ends_with_an_error

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
