#!/usr/bin/env bash
# The README's first command, scripts/demo, run the way a test can: --quick
# (no pauses) with the binaries of WS_BIN. It builds its own lab (namespaces
# wsdemo<PID>-*, see the picture at the top of scripts/demo):
#
#   anchor1, anchor2 (public) ── internet ── home1 (eim) ─ alice
#                                          ├─ home2 (eim) ─ bob
#                                          └─ mobile (edm) ─ carol
#
# Checks:
#   1. the demo exits 0, every pair it pings answered, alice <-> bob is direct
#      (hole punched), carol (symmetric NAT) is relayed via an anchor, a TCP
#      transfer ran over each, and each node's `wsctl status` was printed;
#   2. nothing of it is left: no namespace wsdemo<PID>-*, no daemon of its lab;
#   3. a demo stopped half-way with SIGTERM also exits non-zero and leaves nothing,
#      and so does one whose reader goes away (./scripts/demo | head).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/wait.sh"
out=$(mktemp -d /tmp/wsdemotest.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # A demo that died without its trap: remove its namespaces (its prefix is in its output).
  for f in "$out"/*.out; do
    [ -e "$f" ] || continue
    pre=$(grep -o 'namespaces wsdemo[0-9]*' "$f" | head -1 | cut -d' ' -f2)
    [ -n "$pre" ] || continue
    for ns in $(ip netns list | awk '{print $1}' | grep "^$pre-" || true); do ip netns del "$ns"; done
  done
  rm -rf "$out"
}
trap cleanup EXIT
failed=0
fail() { echo "FAIL: $*"; failed=1; }
ok() { echo "ok: $*"; }
for b in whalescaled wsctl; do [ -x "$bin/$b" ] || { echo "FAIL: $bin/$b not built"; exit 1; }; done

# demo_prefix FILE: the namespace prefix a demo run used (it names it at cleanup)
demo_prefix() { grep -o 'namespaces wsdemo[0-9]*' "$1" | head -1 | cut -d' ' -f2; }
leftovers() { # PREFIX: namespaces of that run still present
  ip netns list | awk '{print $1}' | grep "^$1-" || true
}

# ── 1. a whole run ───────────────────────────────────────────────────────────
echo "== scripts/demo --quick"
WS_BIN=$bin timeout 300 bash "$here/../scripts/demo" --quick </dev/null >"$out/run.out" 2>&1
rc=$?
sed 's/^/   | /' "$out/run.out"
[ $rc = 0 ] && ok "the demo exited 0" || fail "the demo exited $rc"
grep -qE '^   alice -> bob: direct 11\.0\.0\.2:[0-9]+' "$out/run.out" && ok "alice -> bob is direct after hole punching" ||
  fail "no 'alice -> bob: direct 11.0.0.2:...' line"
grep -qE '^   carol -> alice: relay via anchor[12]' "$out/run.out" && ok "carol -> alice is relayed via an anchor" ||
  fail "no 'carol -> alice: relay via anchor' line"
n=$(grep -cE '^   [a-z0-9]+ +<-> [a-z0-9]+ +up ' "$out/run.out")
[ "$n" = 5 ] && ok "all 5 pairs answered pings both ways" || fail "$n of 5 pairs reported up"
n=$(grep -cE 'Mbits/sec|Gbits/sec|Kbits/sec' "$out/run.out")
[ "$n" = 2 ] && ok "a TCP transfer ran over the direct and the relayed path" || fail "$n of 2 TCP transfers reported"
n=$(grep -c '^      public key: ' "$out/run.out")
[ "$n" = 5 ] && ok "wsctl status printed for all 5 nodes" || fail "wsctl status printed for $n of 5 nodes"
grep -q 'every ws0 interface is gone' "$out/run.out" && ok "SIGTERM removed every ws0" || fail "the daemons' interfaces were not seen gone"
pre=$(demo_prefix "$out/run.out")
if [ -z "$pre" ]; then
  fail "the demo did not name its namespaces at cleanup"
else
  left=$(leftovers "$pre")
  [ -z "$left" ] && ok "no namespace $pre-* left (ip netns list)" || fail "left behind: $left"
  [ -z "$(pgrep -f "$pre-lab" || true)" ] && ok "no process of the run left" || fail "processes left: $(pgrep -af "$pre-lab")"
fi

# ── 2. interrupted half-way ──────────────────────────────────────────────────
echo "== scripts/demo --quick, stopped with SIGTERM once its daemons run"
WS_BIN=$bin bash "$here/../scripts/demo" --quick </dev/null >"$out/int.out" 2>&1 &
dp=$!
pids+=("$dp")
if wait_until 120 grep -q '== 5\. Reaching each other' "$out/int.out"; then
  pre=$(demo_prefix "$out/int.out")
  [ -n "$pre" ] && [ -n "$(leftovers "$pre")" ] && ok "the lab $pre-* exists before the signal" ||
    fail "the interrupted run's namespaces are not there before the signal"
  kill -TERM "$dp"
  wait "$dp"
  rc=$?
  pids=()
  sed "s/^/   | /" "$out/int.out" | tail -8
  [ $rc != 0 ] && ok "the interrupted demo exited $rc (not 0)" || fail "the interrupted demo exited 0"
  if ! grep -q 'cleaning up' "$out/int.out"; then
    fail "the interrupted demo did not clean up (no cleanup line)"
  else
    left=$(leftovers "$pre")
    [ -z "$left" ] && ok "interrupted: no namespace $pre-* left" || fail "interrupted: left behind: $left"
    [ -z "$(pgrep -f "$pre-lab" || true)" ] && ok "interrupted: no process of the run left" ||
      fail "interrupted: processes left: $(pgrep -af "$pre-lab")"
  fi
else
  tail -20 "$out/int.out"
  fail "the second demo run did not reach its daemons within 120 s"
fi

# ── 3. its reader goes away (./scripts/demo | head) ─────────────────────────
echo "== scripts/demo --quick | head -40: SIGPIPE half-way"
WS_BIN=$bin timeout 300 bash "$here/../scripts/demo" --quick </dev/null 2>/dev/null | head -40 >"$out/pipe.out"
pre=$(demo_prefix "$out/pipe.out")
if [ -z "$pre" ]; then
  fail "the demo did not get as far as its namespaces before head stopped reading"
else
  gone() { [ -z "$(leftovers "$pre")" ] && [ -z "$(pgrep -f "$pre-lab" || true)" ]; }
  wait_until 30 gone && ok "SIGPIPE: nothing of $pre-* left" || fail "SIGPIPE: left behind: $(leftovers "$pre") $(pgrep -af "$pre-lab")"
fi

[ $failed = 0 ] && echo "demo: all checks passed" || echo "demo: some checks failed"
exit $failed
