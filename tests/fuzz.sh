#!/usr/bin/env bash
# Fuzz smoke: builds ws-fuzz with libFuzzer and AddressSanitizer (in .build-fuzz,
# apart from the normal build), replays every kept crash input under
# Fuzz/regressions/<target>/, then runs every target for a few seconds from its
# seed corpus (Fuzz/corpus/<target>/). One line per target; fails on any crash.
# The long runs are perf/fuzz --seconds N (Fuzz/README.md).
#
# `config` is only replayed (regressions and seeds), not fuzzed, here: TOMLKit's
# toml++ still asserts on some malformed TOML (Fuzz/known/config/, Fuzz/README.md),
# which a few seconds of fuzzing may or may not hit; a smoke must not flip a coin.
#
#   tests/fuzz.sh [SECONDS]    (default 3 per target; WS_FUZZ_SECONDS too)
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-${WS_FUZZ_SECONDS:-3}}
export SWIFT_BACKTRACE=enable=no
perf/fuzz --seconds 0 config || exit 1
mapfile -t targets < <(.build-fuzz/release/ws-fuzz --list | cut -f1 | grep -vx config)
perf/fuzz --no-build --seconds "$seconds" "${targets[@]}" | tail -n +2
