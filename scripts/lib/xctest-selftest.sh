#!/usr/bin/env bash
# Checks xctest_summary (scripts/lib/xctest.sh) against canned XCTest output:
# the lines are those swift-corelibs-xctest (Swift 6.3) printed for a probe
# package with passing, skipped and failing tests. The parser decides what
# scripts/test reports, so a parser that counts skips as passes, or passes a
# run that ran nothing, must fail here, without a build. Exits 1 on any
# mismatch. Run by scripts/test; alone: bash scripts/lib/xctest-selftest.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/xctest.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0

# expect NAME RC WANT_STATUS EXECUTED SKIPPED FAILED PASSED < canned output
expect() {
  local name=$1 rc=$2 want=$3 got=0
  cat >"$tmp/log"
  xctest_summary "$tmp/log" "$rc" || got=1
  local have="status $got executed $xt_executed skipped $xt_skipped failed $xt_failed passed $xt_passed"
  local need="status $want executed $4 skipped $5 failed $6 passed $7"
  if [ "$have" = "$need" ]; then
    echo "ok: $name: $have${xt_error:+ ($xt_error)}"
  else
    echo "FAIL: $name: got $have${xt_error:+ ($xt_error)}; want $need"
    bad=$((bad + 1))
  fi
}

# The plain form: no test skipped.
expect "plain form" 0 0 265 0 0 265 <<'OUT'
Test Case 'BTests.testB' passed (0.0 seconds)
Test Suite 'BTests' passed at 2026-12-04 13:31:42.935
	 Executed 1 test, with 0 failures (0 unexpected) in 0.0 (0.0) seconds
Test Suite 'WhalescalePackageTests.xctest' passed at 2026-12-04 13:31:42.935
	 Executed 265 tests, with 0 failures (0 unexpected) in 40.1 (40.2) seconds
Test Suite 'All tests' passed at 2026-12-04 13:31:42.935
	 Executed 265 tests, with 0 failures (0 unexpected) in 40.1 (40.2) seconds
OUT

# The skipped form: skipped tests are in "Executed N" and must not count as passed.
# (The last class has no skips: its plain line is not the total.)
expect "skipped form" 0 0 5 2 0 3 <<'OUT'
Test Case 'ATests.testSkip' started at 2026-12-04 13:31:42.935
/tmp/xct-probe/Tests/PTests/T.swift:4: ATests.testSkip : Test skipped - not here
Test Case 'ATests.testSkip' skipped (0.0 seconds)
Test Suite 'ATests' passed at 2026-12-04 13:31:42.935
	 Executed 4 tests, with 2 tests skipped and 0 failures (0 unexpected) in 0.008 (0.008) seconds
Test Suite 'BTests' started at 2026-12-04 13:31:42.935
Test Case 'BTests.testB' passed (0.0 seconds)
Test Suite 'BTests' passed at 2026-12-04 13:31:42.935
	 Executed 1 test, with 0 failures (0 unexpected) in 0.0 (0.0) seconds
Test Suite 'debug.xctest' passed at 2026-12-04 13:31:42.935
	 Executed 5 tests, with 2 tests skipped and 0 failures (0 unexpected) in 0.008 (0.008) seconds
Test Suite 'All tests' passed at 2026-12-04 13:31:42.935
	 Executed 5 tests, with 2 tests skipped and 0 failures (0 unexpected) in 0.008 (0.008) seconds
OUT

# One test skipped (singular), in a filtered run.
expect "one skipped, filtered" 0 0 3 1 0 2 <<'OUT'
Test Suite 'Selected tests' passed at 2026-12-04 13:31:53.010
	 Executed 3 tests, with 1 test skipped and 0 failures (0 unexpected) in 0.125 (0.125) seconds
OUT

# One test failing twice: 2 failures (assertions), 1 failed test; the exit status says 1.
expect "failures are assertions" 1 1 5 2 1 2 <<'OUT'
Test Case 'ATests.testFailTwice' started at 2026-12-04 13:31:52.722
/tmp/xct-probe/Tests/PTests/T.swift:6: error: ATests.testFailTwice : XCTAssertTrue failed -
/tmp/xct-probe/Tests/PTests/T.swift:6: error: ATests.testFailTwice : XCTAssertTrue failed -
Test Case 'ATests.testFailTwice' failed (0.009 seconds)
Test Suite 'ATests' failed at 2026-12-04 13:31:44.923
	 Executed 4 tests, with 2 tests skipped and 2 failures (0 unexpected) in 0.005 (0.005) seconds
Test Suite 'All tests' failed at 2026-12-04 13:31:44.924
	 Executed 5 tests, with 2 tests skipped and 2 failures (0 unexpected) in 0.005 (0.005) seconds
OUT

# A --filter that matched nothing: XCTest passes it with exit status 0.
expect "0 tests" 0 1 0 0 0 0 <<'OUT'
warning: No matching test cases were run
Test Suite 'Selected tests' started at 2026-12-04 13:31:46.145
Test Suite 'Selected tests' passed at 2026-12-04 13:31:46.151
	 Executed 0 tests, with 0 failures (0 unexpected) in 0.0 (0.0) seconds
OUT

# Every test skipped: nothing was checked.
expect "all skipped" 0 1 2 2 0 0 <<'OUT'
Test Suite 'Selected tests' passed at 2026-12-04 13:31:53.010
	 Executed 2 tests, with 2 tests skipped and 0 failures (0 unexpected) in 0.1 (0.1) seconds
OUT

# No summary at all (the build or the runner failed).
expect "no summary" 1 1 0 0 0 0 <<'OUT'
error: fatalError
OUT

# A crash after some classes: their summaries are there, the whole run's is not.
expect "crash, class summaries only" 1 1 0 0 0 0 <<'OUT'
Test Suite 'BTests' passed at 2026-12-04 13:31:42.935
	 Executed 12 tests, with 0 failures (0 unexpected) in 0.0 (0.0) seconds
Test Case 'CTests.testCrash' started at 2026-12-04 13:31:42.935
Fatal error: Unexpectedly found nil while unwrapping an Optional value
error: Exited with unexpected signal code 4
OUT

# A summary that passes but an exit status that does not.
expect "non-zero exit" 1 1 3 0 0 3 <<'OUT'
Test Suite 'All tests' passed at 2026-12-04 13:31:42.935
	 Executed 3 tests, with 0 failures (0 unexpected) in 0.1 (0.1) seconds
OUT

if [ "$bad" -gt 0 ]; then
  echo "xctest_summary: $bad canned case(s) misread"
  exit 1
fi
echo "xctest_summary: every canned case read right"
