#!/usr/bin/env bash
# The whole test suite (or a slice: test/run.sh --list; test/run.sh SUITE[/TEST]...): unit tests
# (plain, under valgrind, ASan/UBSan), fuzzing, the VM tests on tcg and on kvm (in the KVM test
# host here), the examples, within a global deadline. Ends with "N passed, N failed".
# Expects `images/build.sh all` to have run (the README's test command does both).
# The runner and its registry: test/runner.py, test/suites.py, test/quarantine.txt;
# docs/testing.md explains them.
cd "$(dirname "$0")/.." || exit 1
exec /usr/bin/python3 test/runner.py "$@"
