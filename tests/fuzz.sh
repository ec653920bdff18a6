#!/usr/bin/env bash
# Fuzz smoke: builds ws-fuzz with libFuzzer and AddressSanitizer (in .build-fuzz,
# apart from the normal build), replays every kept crash input under
# Fuzz/regressions/<target>/, then runs every target for a few seconds from its
# seed corpus (Fuzz/corpus/<target>/). One line per target; fails on any crash.
# The long runs are perf/fuzz --cpu-seconds N (Fuzz/README.md).
#
#   tests/fuzz.sh [SECONDS]    (default 3 per target; WS_FUZZ_SECONDS too)
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${WS_FUZZ_SECONDS:-3}}
export SWIFT_BACKTRACE=enable=no
perf/fuzz --seconds "$seconds"
