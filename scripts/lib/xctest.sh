# shellcheck shell=bash
# The totals of one XCTest run (`swift test`, or the .xctest bundle run
# directly), read from its output. Sourced by scripts/test for every XCTest
# step; scripts/lib/xctest-selftest.sh checks it against canned output.
#
# xctest_summary LOG RC
#   LOG: the run's output. RC: its exit status.
#   XCTest prints one summary per suite (each class, the bundle, then the
#   whole run); the total is the one under the outermost suite, "All tests",
#   or "Selected tests" with a filter or a test named on the command line:
#       Test Suite 'All tests' passed at 2026-12-04 13:31:42.935
#       	 Executed 265 tests, with 0 failures (0 unexpected) in ...
#   or, whenever a test called XCTSkip,
#       	 Executed 265 tests, with 2 tests skipped and 0 failures (0 unexpected) in ...
#   A run that crashed has per-class summaries but not that one: taking the
#   last "Executed" line would report one class as the whole run. N includes
#   the skipped tests, and M counts failed assertions (several per test if
#   need be), so the tests that failed are counted from the per-test lines
#   "Test Case '...' failed (...)" (at least 1 when M > 0).
#   Sets:
#     xt_executed  N, skipped tests included
#     xt_skipped   K (0 in the form without skips)
#     xt_failures  M (failed assertions)
#     xt_failed    tests that failed
#     xt_passed    N - K - xt_failed: a skipped test is never a passed one
#     xt_error     why the run is not a pass; empty when it is
#   Returns 0 only when the run passed: a summary was printed, at least one
#   test ran and was not skipped (a --filter that matches nothing prints
#   "Executed 0 tests", and checking nothing is not passing), nothing failed,
#   and RC is 0.
xctest_summary() {
  local log=${1:?xctest_summary LOG RC} rc=${2:?xctest_summary LOG RC} line
  xt_executed=0 xt_skipped=0 xt_failures=0 xt_failed=0 xt_passed=0 xt_error=
  line=$(awk '
    top && /^[ \t]*Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures? \(/ { last = $0 }
    { top = /^Test Suite .(All|Selected) tests. (passed|failed) at / }
    END { print last }' "$log")
  if [ -z "$line" ]; then
    xt_error="no XCTest summary of the whole run (exit status $rc: did it crash?)"
    return 1
  fi
  xt_executed=$(sed -E 's/^[[:space:]]*Executed ([0-9]+) tests?, .*/\1/' <<<"$line")
  if [[ $line =~ with\ ([0-9]+)\ tests?\ skipped\ and ]]; then xt_skipped=${BASH_REMATCH[1]}; fi
  xt_failures=$(sed -E 's/.*[ ,]([0-9]+) failures? \(.*/\1/' <<<"$line")
  xt_failed=$(grep -acE "^Test Case '[^']*' failed \(" "$log" || true)
  if [ "$xt_failures" -gt 0 ] && [ "$xt_failed" -eq 0 ]; then xt_failed=1; fi
  xt_passed=$((xt_executed - xt_skipped - xt_failed))
  if [ "$xt_passed" -lt 0 ]; then xt_passed=0; fi
  if [ "$xt_executed" -eq 0 ]; then
    xt_error="no test ran (Executed 0 tests: a filter that matches nothing?)"
  elif [ "$xt_skipped" -ge "$xt_executed" ]; then
    xt_error="every test skipped ($xt_skipped of $xt_executed): nothing was checked"
  elif [ "$xt_failed" -gt 0 ]; then
    xt_error="$xt_failed of $xt_executed tests failed ($xt_failures failed assertions)"
  elif [ "$rc" -ne 0 ]; then
    xt_error="exit status $rc with no failed test in the summary"
  fi
  [ -z "$xt_error" ]
}
