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

# Tallies a runner's "N passed, N failed" line; an empty one (no result at all) is one failure.
tally_summary() { # NAME SUMMARY
  if [ -z "$2" ]; then
    tally "$1" 0 1
  else
    tally "$1" "${2%% passed*}" "$(echo "$2" | sed 's/.*, \([0-9]*\) failed.*/\1/')"
  fi
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

# The parsers of untrusted bytes under libFuzzer, 30 s each (test/fuzz/README.md).
fuzz_out=$(bash test/fuzz/run.sh 30 2>&1)
echo "$fuzz_out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$'
tally_summary "fuzzing" "$(echo "$fuzz_out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)"

run_integration() { # NAME BACKEND SCRIPT [test names...]   (SCRIPT: in test/integration, or a path)
  local name=$1 backend=$2 script=$3 out
  shift 3
  [[ $script == */* ]] || script=test/integration/$script
  out=$(AIRLOCK_TEST_BACKEND=$backend $python "$script" "$@" 2>&1)
  echo "$out" | grep -vE '^PASS |^[0-9]+ passed, [0-9]+ failed$'
  tally_summary "$name" "$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)"
}

# The official MCP SDK client (node's test runner prints "# pass N" / "# fail N").
run_sdk() { # NAME BACKEND
  local out
  out=$(AIRLOCK_TEST_BACKEND=$2 node --test test/integration/mcp_sdk.test.mjs 2>&1)
  echo "$out" | grep -E '^not ok|concurrent sleep' || true
  local p f
  p=$(echo "$out" | sed -n 's/^# pass \([0-9]*\)$/\1/p')
  f=$(echo "$out" | sed -n 's/^# fail \([0-9]*\)$/\1/p')
  if [ -z "$p" ] || [ -z "$f" ]; then
    echo "$out" | tail -30
    tally "$1" 0 1
  else
    [ "$f" = 0 ] || echo "$out" | grep -A30 '^not ok'
    tally "$1" "$p" "$f"
  fi
}

# What marks a test host that malfunctioned (see run_kvm): its kernel's stall reports, or a
# nested guest that never became ready.
host_stall='soft lockup|rcu_(sched|preempt) self-detected stall|rcu: INFO: rcu_(sched|preempt) detected stalls|the guest did not become ready within'

run_integration "airlock run, VM tests (tcg)" tcg test_run.py
run_integration "snapshots and restore (tcg)" tcg test_snapshot.py
run_integration "airlock mcp, wire tests and the warm pool (tcg)" tcg test_mcp_raw.py
run_sdk "airlock mcp, official SDK client (tcg)" tcg
run_integration "hostile user code is contained (tcg)" tcg test/security/test_user_code.py
run_integration "the host server under 2,000 calls (tcg)" tcg test/security/test_host_server.py

# The kvm backend: directly where this machine's KVM runs guests, else inside the KVM test host
# (QEMU TCG emulating AMD-V; see test/kvmhost/README.md). Same suite, same assertions.
run_kvm() { # NAME SCRIPT
  local name=$1 script=$2
  if build/mcp/airlock doctor | grep -qE '^ok +kvm '; then
    run_integration "$name, directly" kvm "$script"
    return
  fi
  # In the test host: one fresh test host per test, with a deadline. The emulated AMD-V (QEMU
  # TCG's nested SVM) now and then stalls the test host's own kernel (it prints "soft lockup" or an
  # RCU stall, or stops altogether), or leaves a nested guest without a single instruction of
  # progress (it never reaches its first MSR write; seen in two CI runs, once per run, on tests
  # that pass when run again). Only then, when no result came out, or a test failed while the test
  # host's kernel reported a stall, or a VM never became ready at all, is the test run again, at
  # most three times, and said so. A test that fails its assertions on a healthy test host fails.
  local log=build/kvm-suite.log p=0 f=0 t tries out summary
  : >"$log"
  echo "== $name: in the KVM test host, one boot per test (log: $log)"
  for t in $($python "test/integration/$script" --list); do
    for tries in 1 2 3 4; do
      out=$(KVMHOST_TIMEOUT=120 bash test/kvmhost/suite.sh "test/integration/$script" "$t" 2>&1)
      echo "$out" >>"$log"
      summary=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
      if [ -z "$summary" ]; then
        echo "   $t: the test host froze (no result; see $log), booting it again"
      elif [[ $summary != *", 0 failed"* ]] && echo "$out" | grep -qE "$host_stall"; then
        echo "   $t: failed while the test host stalled:"
        echo "$out" | grep -E "$host_stall" | head -2 | sed 's/^/     /'
        echo "   booting it again"
        summary=""
      else
        break
      fi
    done
    echo "$out" | grep -E '^(PASS|FAIL) ' | grep -v no_vm_process || true
    echo "$out" | grep -A30 -E '^FAIL ' | grep -vE '^(PASS|FAIL) ' || true
    if [ -z "$summary" ]; then
      f=$((f + 1))
    else
      p=$((p + ${summary%% passed*}))
      f=$((f + $(echo "$summary" | sed 's/.*, \([0-9]*\) failed.*/\1/')))
    fi
  done
  tally "$name" "$p" "$f"
}
run_kvm "airlock run, VM tests (kvm)" test_run.py

# Whole files in one test-host boot each: snapshots are made inside it first (a minute at
# emulation speed), then restored many times. Rebooted, at most twice more, only when the test
# host froze or its kernel reported a stall. TIMEOUT: seconds for the whole boot, about four
# times what a healthy run takes (a frozen test host is only noticed when it expires).
run_kvm_file() { # NAME TIMEOUT SCRIPT [ARGS...]
  local name=$1 timeout=$2 log=build/kvm-suite.log out summary tries
  shift 2
  if [[ $1 == test/* ]] && build/mcp/airlock doctor | grep -qE '^ok +kvm '; then
    run_integration "$name, directly" kvm "$@"
    return
  fi
  echo "== $name: in the KVM test host, one boot (log: $log)"
  for tries in 1 2 3; do
    out=$(KVMHOST_TIMEOUT=$timeout bash test/kvmhost/suite.sh "$@" 2>&1)
    echo "$out" >>"$log"
    summary=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -n "$summary" ] && { [[ $summary == *", 0 failed"* ]] || ! echo "$out" | grep -qE "$host_stall|$restore_hang|$vm_failed"; }; then
      break
    fi
    echo "$out" | grep -E "^FAIL " | head -3 | sed 's/^/   /'
    echo "   the test host froze or stalled, or a restored VM never answered (see $log), booting it again"
    summary=""
  done
  echo "$out" | grep -E '^(PASS|FAIL) ' || true
  echo "$out" | grep -A30 -E '^FAIL ' | grep -vE '^(PASS|FAIL) ' || true
  tally_summary "$name" "$summary"
}
# A restore that stopped answering, or a cold boot that never became ready, in the test host
# (both seen before kvm_keeper.py stopped the test host's own code patching; see README) is
# still booted again, like a stall, and said. So is a warm pool that never filled (a nested VM
# of a fresh test host that never became ready: the cgroup v2 test, once, 2026-11-22).
restore_hang='timed out waiting for (PING|RUN)|FAIL boot to READY: timed out|the snapshot VM did not become ready|the pool has [0-9]+ VMs \(has [0-9]+\)'
# The security suite tells a contained attack from a VM that failed under it ("Sandbox error",
# e.g. a restored VM that stopped answering as above): only the latter is run again. So is a
# hostile guest that stopped before the end of its attacks with the monitor unharmed (seen once
# in the test host, 2026-11-22: the exit flood ended after 3.6 s of 6, no log line, exit 0).
vm_failed='Sandbox error|FAIL .*: the flood ran to its end|FAIL .*: the guest got through every attack'
run_kvm_file "snapshots and restore through airlock (kvm)" 400 test/integration/test_snapshot.py
# The heavy attacks (fork and memory bombs, disk fill, many files, output flood) run on tcg only:
# in the KVM test host they crash the test host's own kernel now and then (it reads `current`
# as NULL through its GS base after a nested VM exit: "stack guard page was hit ... airlock-vmm";
# seen again on 2026-11-22 with kvm_keeper.py, under the output flood), and the memory bomb
# sometimes ends the guest itself ("the guest shut down before the program finished"; 3 of 7
# tries over 2026-11-22), an open problem (README, "What user code meets").
run_kvm_file "hostile user code is contained (kvm)" 400 test/security/test_user_code.py \
  outside_network_is_unreachable host_paths_are_not_there privileged_operations_are_refused \
  kill_all_reaches_only_the_users_processes infinite_loop_and_sleep_end_at_the_timeout \
  closing_stdout_early_keeps_the_exit_status nothing_outlives_a_call the_server_ends_cleanly
# cgroup v2 (the test host's init mounts it; this machine has v1): a group per VM with limits.
run_kvm_file "a cgroup v2 group per VM (kvm)" 300 test/integration/test_mcp_raw.py \
  each_vm_runs_in_a_cgroup_of_its_own_with_limits
# A hostile guest (test/guests/hostile.c, booted in place of the kernel) against the release and
# the ASan/UBSan builds of airlock-vmm: malformed virtqueues, exit floods, UART garbage.
run_kvm_file "a hostile guest against airlock-vmm (kvm)" 300 test/security/test_hostile_guest.py \
  build/vmm/airlock-vmm build-asan/vmm/airlock-vmm
KVMHOST_EXTRA=test/kvmhost/snapshot_test.py \
  run_kvm_file "airlock-vmm snapshot format and restores (kvm)" 300 snapshot_test.py --restores 20 \
  --measure 5

# The examples a newcomer runs first must work too.
run_example() { # NAME COMMAND...
  local name=$1 out
  shift
  if out=$(cd "$(mktemp -d)" && "$@" 2>&1); then
    tally "$name" 1 0
  else
    echo "$out" | tail -20
    tally "$name" 0 1
  fi
}
run_example "examples/client.py (stdlib MCP client session)" $python "$PWD/examples/client.py"
run_example "examples/client.mjs (MCP SDK client)" node "$PWD/examples/client.mjs"

# The host code built with ASan/UBSan, on runs that exercise every path: output, files both
# ways, a flood, a timeout, hostile guests; JSON-RPC framing on real pipes, cancel, shutdown.
export AIRLOCK_BUILD=build-asan
run_integration "airlock run with ASan/UBSan (tcg)" tcg test_run.py \
  python_hello files_go_in_and_out output_flood_is_capped timeout_kills_an_infinite_loop \
  malformed_frames_end_the_vm agent_crash_ends_with_an_error
run_integration "airlock mcp with ASan/UBSan (tcg)" tcg test_mcp_raw.py \
  bad_lines_get_errors_and_the_server_keeps_serving oversized_line_is_refused_and_skipped \
  argument_errors_name_the_field cancellation_kills_the_vm_quickly_and_sends_no_result \
  eof_kills_running_vms_and_exits_zero_within_a_second stdin_may_be_a_plain_file \
  a_crashing_vm_is_an_error_result_and_the_server_lives_on \
  warm_pool_serves_calls_and_refills_after_a_burst the_server_and_its_vms_run_under_its_seccomp_filter
run_integration "snapshots with ASan/UBSan (tcg)" tcg test_snapshot.py \
  every_language_answers_after_restore_many_times damaged_snapshots_are_refused_and_made_again
unset AIRLOCK_BUILD

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
