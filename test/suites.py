"""The registry: every suite test/runner.py runs, in the order it runs them (docs/testing.md).

A suite is one test program on one backend and build. The tests inside come from the program
itself (a Python file's --list, meson's list of unit binaries and the PASS/FAIL line each binary
prints per function, node's TAP report), so a test added inside a file is picked up without an
edit here. Known failures go in test/quarantine.txt, with their reason, not here.

Keys: name, kind, about, and by kind:
  meson    build, setup (a meson test setup), timeout (the whole meson test run)
  fuzz     seconds (per target), timeout
  harness  file (a test/integration/harness.py file), backend, build (the airlock under test),
           tests (only these), exclude (all but these), test_timeout (seconds per test), timeouts
           ({test: seconds}), canary (on kvm: a failure of this test on a healthy test host stops
           every kvm suite), boot_with (in the test host: tests that make what the others rely
           on, run again first in every later boot, a fresh test host)
  node     file (a node --test file), backend, test_timeout
  checks   file or payload_file, args: a script that prints PASS/FAIL per check; one test
  example  argv (run in an empty directory; "{node}" is the pinned node), expect (regular
           expressions its output must match), timeout
A suite with backend "kvm" (and every "checks" suite) runs inside the KVM test host
(test/kvmhost) unless this machine's own KVM runs guests; kvmhost_only: always there.
"""

# The heavy attacks of test/security/test_user_code.py: on kvm they crash the test host's own
# kernel now and then (quarantined; test/quarantine.txt says why), so they get a boot of their
# own, apart from the attacks that run clean there.
HEAVY_USER_CODE = [
    "fork_bomb_is_contained",
    "memory_bomb_is_contained",
    "filling_the_disk_stops_at_its_size",
    "very_many_files_are_contained",
    "output_flood_is_cut",
]


# Egress tests whose subject is airlock's judgement on the host (egress/request.c, policy.c, the
# install's result), the same whatever the backend: tcg runs them, kvm runs the rest.
EGRESS_HOST_ONLY = [
    "the_ip_literal_of_a_listed_name_is_not_allowed_by_it",
    "two_host_headers_are_refused",
    "an_absolute_uri_with_another_hosts_host_header_is_refused",
    "requests_that_are_not_proxy_requests_are_refused",
    "an_unreachable_port_and_an_unknown_name_fail_with_clear_pages",
    "a_failed_install_is_an_error_and_the_program_does_not_run",
    "packages_are_checked_before_any_vm",
    "a_malformed_allow_host_is_an_error_at_start",
    # guest tools whose path through the proxy the kvm run already takes (pip, git)
    "npm_installs_a_package_from_the_registry",
    "run_repo_clones_through_the_allowlist",
    # the rest of the host's policy: refusals, rebinding, limits, timeouts (the mechanism's
    # kvm run is the transfers: plain, TLS, a large download, every client, pip)
    "without_allow_host_there_is_no_proxy_at_all",
    "a_listed_name_that_resolves_to_loopback_is_refused",
    "connections_beyond_the_limit_are_refused_and_all_end_with_the_run",
    "an_endless_download_ends_with_the_timeout",
    "an_upload_goes_through",
    # a refusal is the host's judgement; Node's clients through the proxy are guest code on both
    "a_host_not_listed_gets_a_403_naming_the_policy",
    "node_fetch_and_https_go_through_the_proxy",
]

# On kvm, run.kvm leaves out what is the same on both backends and costs its budget: the
# pre-scan runs in the guest's python (its STEP frames travel on kvm in the egress suite's pip
# test), --dir is packed on the host, the host's checks of arguments and of what it writes to
# --out, the output cap (host code; output_over_several_credit_windows_arrives_byte_exact and
# a_guest_flooding_past_the_output_cap_is_ended_at_once carry output on kvm) and the image's
# contents (the same rootfs on both).
RUN_HOST_ONLY = ["the_pre_scan_warns_and_the_program_runs",
                 "the_pre_scan_in_deny_mode_refuses_before_the_program_runs",
                 "dir_becomes_work_and_command_runs_there", "dir_never_follows_a_link_out_of_it",
                 "dir_over_a_cap_is_refused_before_a_vm_starts",
                 "command_and_repo_arguments_are_checked", "bad_file_path_is_refused",
                 "bad_arguments_are_refused", "image_list_shows_the_current_recipe",
                 "image_prune_removes_only_what_no_current_recipe_uses",
                 "out_never_writes_a_git_config", "out_never_follows_a_symlink",
                 "out_writes_new_files_exactly_and_keeps_existing_ones",
                 "output_flood_is_capped", "scientific_python_imports",
                 "output_is_written_as_it_comes",  # airlock run's own writing
                 # the guest's own starters and output buffer (start.js's exit report,
                 # python-output.c), the same guest on both
                 "javascript_exit_status_and_exit_listeners",
                 "a_print_per_line_flood_completes_and_is_counted",
                 "output_before_a_kill_a_crash_or_os_exit_is_returned"]

# On kvm, limits.kvm runs the transfers (binary files, a 1 MiB result) and leaves out the host's
# own timeouts, caps and accounting and the pooled VMs' entropy after 30 s idle (the PING's path, which restored_vms_are_unique
# takes on kvm; with two VMs per language its pool alone is eight restores in the test host).
LIMITS_HOST_ONLY = ["a_guest_silent_after_run_is_ended_at_the_limit_plus_grace",
                    "stderr_past_the_cap_is_cut_at_exactly_the_cap_and_flagged",
                    "pooled_vms_idle_for_30_s_have_fresh_entropy_and_the_hosts_clock",
                    # the server's own accounting: slots, clamps, the queue, the files' cap
                    "max_concurrent_caps_the_programs_running_at_once",
                    "max_timeout_clamps_a_longer_timeout_s",
                    "a_cancelled_queued_call_never_starts_a_vm_and_gets_no_reply",
                    "output_files_past_one_mib_in_total_are_listed_but_not_returned"]

# On kvm, mcp-raw.kvm leaves out the JSON-RPC layer and the server's own event loop (framing,
# negotiation, argument errors, logging, a stalled client, queue limits, progress): no VM or
# backend code is on their path. It runs what the backend changes: the jail, the seccomp filter,
# cgroups, the pool, cancellation and the ends of VMs.
MCP_HOST_ONLY = ["version_negotiation", "bad_lines_get_errors_and_the_server_keeps_serving",
                 "oversized_line_is_refused_and_skipped", "requests_before_initialize_are_served",
                 "allowed_hosts_are_told_and_results_fit_the_output_schema",
                 "argument_errors_name_the_field", "slow_call_does_not_block_ping_or_other_calls",
                 "progress_is_reported_every_second", "stdin_may_be_a_plain_file",
                 "logging_level_can_be_set", "calls_past_max_queued_are_refused_at_once",
                 "user_text_cut_inside_a_character_still_gets_an_answer",
                 "a_client_that_stops_reading_does_not_grow_the_server",
                 "sigterm_ends_a_server_whose_client_stopped_reading"]


def suite(name, kind, about, **options):
    return dict(name=name, kind=kind, about=about, **options)


INTEGRATION = "test/integration/"
SECURITY = "test/security/"

SUITES = [
    # The runner's own rules for kvm retries and fail-fast, against a fake test host (seconds).
    suite("runner", "harness", "the runner's retry and fail-fast rules (a fake KVM test host)",
          file="test/runner_selftest.py"),
    # No VM: the C unit tests, as meson registers them (test/unit/meson.build).
    suite("unit", "meson", "unit tests", build="build", timeout=300),
    suite("unit.valgrind", "meson", "unit tests under valgrind", build="build",
          setup="valgrind", timeout=900),
    suite("unit.asan", "meson", "unit tests built with ASan/UBSan", build="build-asan",
          timeout=300),
    suite("fuzz", "fuzz", "the parsers of untrusted bytes under libFuzzer (test/fuzz)",
          seconds=10, timeout=600),

    # VMs on QEMU (tcg), directly on this machine.
    suite("run.tcg", "harness", "airlock run, VM tests", file=INTEGRATION + "test_run.py",
          backend="tcg"),
    # images of one's own: the build is the same whatever the backend, and tcg runs it
    suite("images.tcg", "harness", "images of one's own: recipes, --image",
          file=INTEGRATION + "test_images.py", backend="tcg"),
    suite("egress.tcg", "harness", "egress through the guest's proxy and the host's policy",
          file=INTEGRATION + "test_egress.py", backend="tcg"),
    suite("install.tcg", "harness", "meson install: a complete airlock, no source tree needed",
          file=INTEGRATION + "test_install.py", backend="tcg"),
    suite("snapshot.tcg", "harness", "snapshots and restore", backend="tcg",
          file=INTEGRATION + "test_snapshot.py", test_timeout=420),
    suite("kept-state.tcg", "harness", "kept state: keep, continue, branch, expire, refuse",
          file=INTEGRATION + "test_kept_state.py", backend="tcg"),
    suite("mcp-raw.tcg", "harness", "airlock mcp at the wire, the warm pool, every VM's jail",
          file=INTEGRATION + "test_mcp_raw.py", backend="tcg"),
    suite("limits.tcg", "harness", "limits: silent guests, output caps, concurrency, timeouts",
          file=INTEGRATION + "test_limits.py", backend="tcg"),
    suite("sdk.tcg", "node", "airlock mcp driven by the official MCP SDK client",
          file=INTEGRATION + "mcp_sdk.test.mjs", backend="tcg"),
    # MCP 2026-07-28 and Streamable HTTP: both eras, tokens, sessions, tasks, the audit log; the
    # clients people use against it (the v2 and v1 SDKs, the Inspector) and the conformance
    # suite. HTTP is host code, the same on either backend: tcg runs it.
    suite("protocol-eras.tcg", "harness", "both protocol eras on stdio, tasks, the audit log",
          file=INTEGRATION + "test_protocol_eras.py", backend="tcg"),
    suite("http.tcg", "harness", "airlock mcp --http: tokens, Origin, limits, sessions, load",
          file=INTEGRATION + "test_http.py", backend="tcg"),
    suite("sdk-v2.tcg", "node", "the v2 SDK client (legacy, auto, pinned; stdio and HTTP), v1 "
          "over HTTP", file=INTEGRATION + "mcp_sdk_v2.test.mjs", backend="tcg"),
    suite("inspector.tcg", "node", "the MCP Inspector's CLI on stdio and HTTP",
          file=INTEGRATION + "mcp_inspector.test.mjs", backend="tcg"),
    suite("conformance.tcg", "node", "the MCP conformance suite's server scenarios over HTTP",
          file=INTEGRATION + "mcp_conformance.test.mjs", backend="tcg"),
    suite("user-code.tcg", "harness", "hostile user code is contained",
          file=SECURITY + "test_user_code.py", backend="tcg"),
    suite("vm-processes.tcg", "harness", "what a VM's host processes hold, who may reach them",
          file=SECURITY + "test_vm_processes.py", backend="tcg"),
    suite("host-server.tcg", "harness", "the host server under 500 calls",
          file=SECURITY + "test_host_server.py", backend="tcg", test_timeout=900),

    # What a newcomer runs first: checked by what they print, not only their exit status.
    suite("example.client-py", "example", "examples/client.py (stdlib MCP client session)",
          argv=["/usr/bin/python3", "{root}/examples/client.py"], timeout=300,
          expect=[r"connected to airlock \S+ \(protocol 2025-11-25\)", r"tools: execute_code",
                  r"trend: 6\.69 per month, intercept 113\.0", r"\[image image/png saved to ", r"NameError",
                  r"session completed"]),
    suite("example.k8s-manifests", "example", "examples/kubernetes/ against Kubernetes' schemas",
          argv=["/bin/bash", "{root}/test/deploy/validate-manifests.sh"], timeout=120,
          expect=[r"\b[1-9]\d* valid, 0 invalid"]),
    suite("example.client-mjs", "example", "examples/client.mjs (MCP SDK client)",
          argv=["{node}", "{root}/examples/client.mjs"], timeout=300,
          expect=[r"connected to airlock", r"sum 10 on v\d+", r'structured: \{"exit_code":0\}']),

    # The host code built with ASan/UBSan, on runs that exercise every path: output, files both
    # ways, a directory packed for /work, a flood, a timeout, hostile guests; JSON-RPC framing
    # on real pipes, cancel, shutdown.
    suite("run.tcg.asan", "harness", "airlock run with ASan/UBSan", backend="tcg",
          build="build-asan", file=INTEGRATION + "test_run.py",
          tests=["python_hello", "files_go_in_and_out", "output_flood_is_capped",
                 "timeout_kills_an_infinite_loop", "malformed_frames_end_the_vm",
                 "agent_crash_ends_with_an_error", "dir_becomes_work_and_command_runs_there",
                 "dir_never_follows_a_link_out_of_it"]),
    suite("mcp-raw.tcg.asan", "harness", "airlock mcp with ASan/UBSan", backend="tcg",
          build="build-asan", file=INTEGRATION + "test_mcp_raw.py",
          tests=["bad_lines_get_errors_and_the_server_keeps_serving",
                 "oversized_line_is_refused_and_skipped", "argument_errors_name_the_field",
                 "cancellation_kills_the_vm_quickly_and_sends_no_result",
                 "eof_kills_running_vms_and_exits_zero_within_a_second",
                 "stdin_may_be_a_plain_file",
                 "a_crashing_vm_is_an_error_result_and_the_server_lives_on",
                 "warm_pool_serves_calls_and_refills_after_a_burst",
                 "the_server_and_its_vms_run_under_its_seccomp_filter"]),
    suite("http.tcg.asan", "harness", "airlock mcp --http with ASan/UBSan", backend="tcg",
          build="build-asan", file=INTEGRATION + "test_http.py",
          exclude=["fifty_clients_of_twenty_calls_all_succeed",
                   "idle_connections_are_closed_after_30_seconds",
                   "a_quiet_event_stream_gets_a_comment_every_15_seconds"]),
    suite("egress.tcg.asan", "harness", "egress with ASan/UBSan", backend="tcg",
          build="build-asan", file=INTEGRATION + "test_egress.py",
          tests=["http_and_https_reach_allowed_hosts_and_are_listed",
                 "two_host_headers_are_refused",
                 "an_unreachable_port_and_an_unknown_name_fail_with_clear_pages",
                 "connections_beyond_the_limit_are_refused_and_all_end_with_the_run",
                 "an_endless_download_ends_with_the_timeout", "an_upload_goes_through"]),
    suite("snapshot.tcg.asan", "harness", "snapshots with ASan/UBSan", backend="tcg",
          build="build-asan", file=INTEGRATION + "test_snapshot.py", test_timeout=420,
          tests=["every_language_answers_after_restore_many_times",
                 "damaged_snapshots_are_refused_and_made_again"]),

    # The kvm backend (airlock-vmm): in the KVM test host here. run.kvm goes first, and its
    # first test is the canary: if it fails on a healthy test host, no other kvm test runs.
    suite("run.kvm", "harness", "airlock run, VM tests", file=INTEGRATION + "test_run.py",
          backend="kvm", canary="python_hello", exclude=RUN_HOST_ONLY),
    # (node's reseed is the guest's, the same on both backends: restored_vms_are_unique checks
    # node's PRNGs on kvm, javascript_randomness_is_fresh_in_every_vm every source on tcg)
    suite("snapshot.kvm", "harness", "snapshots and restore through airlock", backend="kvm",
          file=INTEGRATION + "test_snapshot.py", test_timeout=420,
          boot_with=["snapshots_are_made_for_every_language"],
          exclude=["javascript_randomness_is_fresh_in_every_vm"]),
    # On kvm, the tests of the mechanism (streams over the VM's channel, TLS, credit, many
    # connections, every client, packages); the host's judgement of odd requests and failed
    # upstreams is the same code on both backends, and runs on tcg (all 22 passed in the test
    # host on 2026-12-06: docs/testing.md). Within the suite's 44 minutes.
    suite("egress.kvm", "harness", "egress through the guest's proxy and the host's policy",
          file=INTEGRATION + "test_egress.py", backend="kvm", exclude=EGRESS_HOST_ONLY),
    suite("mcp-raw.kvm", "harness", "airlock mcp: the warm pool, every VM's jail, filter and "
          "cgroup v2", file=INTEGRATION + "test_mcp_raw.py", backend="kvm",
          exclude=MCP_HOST_ONLY),
    # (the store's rules, expiry, eviction and refusals are host code, the same on both
    # backends: tcg runs them; kvm the save and restore themselves)
    suite("kept-state.kvm", "harness", "kept state: keep, continue, branch on airlock-vmm",
          file=INTEGRATION + "test_kept_state.py", backend="kvm",
          tests=["the_snapshots_are_made", "three_python_cells_carry_a_dataframe_and_files",
                 "branches_of_one_state_diverge_and_never_see_each_other",
                 "javascript_cells_keep_globals_and_timers_finish",
                 "bash_cells_keep_variables_functions_cwd_and_read_their_own_stdin",
                 "unknown_damaged_and_mismatched_states_are_refused"]),
    # (The SDK client's suite runs on tcg only: it drives the host server, the same code on both
    # backends, and mcp-raw.kvm runs the server's VM paths on kvm.)
    suite("user-code.kvm", "harness", "hostile user code is contained",
          file=SECURITY + "test_user_code.py", backend="kvm",
          exclude=HEAVY_USER_CODE + [  # the starters' and the collector's own logic, guest code
              "bash_and_node_find_no_report_pipe_on_fd_4",
              "a_link_swapped_in_during_collection_is_not_followed"]),
    # One airlock-vmm build per boot of the test host, each with its own retries. The emulated
    # test host freezes now and then under these attacks (no kvm_keeper heartbeat for 91 s):
    # with both builds in one boot, in 3 of 4 CI boots on 2026-12-07 and 3 of 6 the day before,
    # twice in a row in one CI run (both at the ASan build's UART garbage, after its exit flood),
    # which failed the run. Alone, the release build's boot froze in 2 of 4 boots, both during
    # its first attack (malformed virtqueues), before any flood; each retry passed. Where the
    # freeze comes from is not known; nothing of airlock-vmm's own shows in those boots.
    suite("hostile-guest.kvm", "checks", "a hostile guest against airlock-vmm (release build)",
          file=SECURITY + "test_hostile_guest.py", timeout=600, args=["build/vmm/airlock-vmm"]),
    suite("hostile-guest.asan.kvm", "checks", "a hostile guest against airlock-vmm (ASan/UBSan "
          "build)", file=SECURITY + "test_hostile_guest.py", timeout=600,
          args=["build-asan/vmm/airlock-vmm"]),
    suite("vmm-snapshot.kvm", "checks", "airlock-vmm's snapshot format and restores",
          payload_file="test/kvmhost/snapshot_test.py", kvmhost_only=True, timeout=600,
          args=["--restores", "10", "--measure", "3"]),
    suite("vmm-identity.kvm", "checks", "who airlock-vmm is outside: its own uid, no one may "
          "signal, trace or read it, never dumpable, no inherited fd",
          payload_file="test/kvmhost/snapshot_test.py:test/kvmhost/identity_test.py",
          kvmhost_only=True, timeout=600),
    suite("vmm-jail-host.kvm", "checks", "airlock from an initramfs root; a refused jail step "
          "explained by doctor and by the run alike",
          payload_file="test/kvmhost/snapshot_test.py:test/kvmhost/jail_host_test.py",
          kvmhost_only=True, timeout=600),
    suite("vmm-crash-report.kvm", "checks", "what airlock-vmm records when a guest ends or "
          "stays silent unexplained",
          payload_file="test/kvmhost/snapshot_test.py:test/kvmhost/crash_report_test.py",
          kvmhost_only=True, timeout=600),
    suite("limits.kvm", "harness", "limits: silent guests, output caps, concurrency, timeouts",
          file=INTEGRATION + "test_limits.py", backend="kvm", exclude=LIMITS_HOST_ONLY),
    suite("vm-processes.kvm", "harness", "what a VM's host processes hold, who may reach them",
          file=SECURITY + "test_vm_processes.py", backend="kvm",
          tests=["vm_processes_get_none_of_airlocks_environment_or_fds",
                 "no_other_process_may_trace_read_or_signal_a_vm"]),  # the rest is QEMU's
    # Last: all quarantined (test/quarantine.txt), shown but not counted; a boot of their own.
    suite("user-code-heavy.kvm", "harness", "hostile user code: the heavy attacks",
          file=SECURITY + "test_user_code.py", backend="kvm",
          tests=HEAVY_USER_CODE + ["the_server_ends_cleanly"]),  # (it ends the file's server)
]
