#!/usr/bin/env bash
# Issue 14's scenarios A and D, short and functional (perf/multipath measures):
# a sender with two uplinks, each through its own link emulator, to one receiver.
#
#                         ns <P>-emu0: ws-bench linkemu, 50 Mbit/s, 20 ms RTT
#   ns <P>-snd  up0 198.18.0.2 ── [emu0] ── dn0 198.18.1.2  ns <P>-rcv
#               up1 198.18.2.2 ── [emu1] ── dn1 198.18.3.2
#                         ns <P>-emu1: the same
#   Whalescale overlay: snd 10.77.0.1 ⇄ rcv 10.77.0.2 (tests/lib/multipath.sh)
#
# 1. A, kernel MPTCP without a tunnel (the perf reference): one iperf3 flow under
#    mptcpize carries bytes over BOTH emulated links (their counters), i.e. the
#    reference really is two-path. SKIP where the kernel has no MPTCP or mptcpize
#    is missing.
# 2. A, Whalescale: `wsctl status --json` lists both uplinks (node.uplinks: up0, up1,
#    found from the routing table; the receiver's, from `[node] uplinks` in its
#    config, with one that does not exist); a third interface with a gateway route
#    becomes uplink 2 and leaves again when deleted (netlink re-read); each path's
#    `uplink` is the interface its remote is routed through; once the sender knows
#    the receiver's second address (its gossip record) and has pinged it, both
#    paths have a `weight` in the status (multipath: data is spread); one iperf3
#    flow through the tunnel delivers data and each emulated link carries at least
#    5% of its bytes; the receiver's `reorder` counters show packets released in order.
# 3. D, Whalescale: the active path is cut 6 s into a 40 s flow and restored at
#    34 s. The flow must go on over the other path during the cut (bytes arrive in
#    the cut's second half), its longest stall (0.1 s receive intervals with no
#    byte) must stay under 24 s (generous, a bound from before multipath, when a
#    failover took several seconds; what it was is printed), and data must arrive
#    after the restore.
# 4. The daemons restarted with path 1 down: once it is up again, the spread forms
#    (the endpoint that never answered is pinged every 5 s while data flows).
#
# Needs root, iproute2, iperf3, python3; mptcpize for check 1. Everything it makes
# is removed on exit (tests/lib/lab.sh).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WS_BIN=${WS_BIN:-$here/../.build/release}
export WS_BIN
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/linkemu.sh"
. "$here/lib/multipath.sh"
command -v iperf3 >/dev/null || { echo "SKIP: tests/multipath.sh needs iperf3 (scripts/setup installs it)"; exit 0; }
for b in whalescaled wsctl ws-bench; do [ -x "$WS_BIN/$b" ] || { echo "FAIL: no $WS_BIN/$b"; exit 1; }; done

lab_init "ws$$" || exit 1
trap lab_cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
die() { echo "FAIL: $*"; lab_dump; exit 1; }

mp_lab "$(mp_settings 50 20)" "$(mp_settings 50 20)" || die "could not build the two paths"
port=5300

# flow NAME SECONDS ADDR [mptcp]: one iperf3 TCP flow snd -> ADDR; the receiver's JSON
# (0.1 s intervals) in $LAB_DIR/NAME.json. Returns 1 if iperf3 reported no result.
flow() {
  local name=$1 secs=$2 addr=$3 pre=()
  [ "${4:-}" = mptcp ] && pre=(mptcpize run)
  port=$((port + 1))
  lab_bg rcv "srv-$name" "${pre[@]}" iperf3 -s -1 -p $port -i 0.1 -J --logfile "$LAB_DIR/$name.json" || return 1
  wait_tcp_listen "$(lab_ns rcv)" $port 20 || { echo "iperf3 server $name did not start"; return 1; }
  lab_exec snd "${pre[@]}" iperf3 -c "$addr" -p $port -t "$secs" -J >"$LAB_DIR/$name-client.json" 2>&1 &
  FLOW_PID=$!
}
# flow_end NAME: waits for the flow's client and server.
flow_end() {
  wait "$FLOW_PID"
  wait_until 20 test -s "$LAB_DIR/$1.json"
  lab_kill_tag "srv-$1"
}
# summary NAME [CUT_FROM CUT_TO RESTORED_FROM]: "bytes longest_stall_ms bytes_in_cut_second_half bytes_after_restore"
summary() {
  "$LAB_PY" - "$LAB_DIR/$1.json" "${2:-0}" "${3:-0}" <<'PY'
import json, sys
f, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
try:
    t = open(f).read(); s = json.loads(t[t.index("{"):])
except Exception:
    print("0 -1 0 0"); sys.exit()
iv = [(i["sum"]["start"], i["sum"]["seconds"], i["sum"]["bytes"]) for i in s.get("intervals", [])]
total = sum(b_ for _, _, b_ in iv)
longest = run = 0.0
for _, d, b_ in iv:
    run = run + d if b_ == 0 else 0.0
    longest = max(longest, run)
mid = (a + b) / 2
during = sum(b_ for st, d, b_ in iv if st >= mid and st + d <= b)
after = sum(b_ for st, d, b_ in iv if st >= b + 1)
print(total, round(longest * 1000), during, after)
PY
}

# 1. MPTCP over the two emulated links, no tunnel.
if why=$(mp_mptcp); then
  b0=$(mp_bytes 0) b1=$(mp_bytes 1)
  flow mptcp 5 "$MP_RCV0" mptcp || die "MPTCP flow did not start"
  flow_end mptcp
  d0=$(($(mp_bytes 0) - b0)) d1=$(($(mp_bytes 1) - b1))
  read -r total _ _ _ <<<"$(summary mptcp)"
  if [ "$total" -le 0 ]; then
    bad "MPTCP: the flow delivered nothing: $(tail -3 "$LAB_DIR/mptcp-client.json")"
  elif [ "$d0" -gt $((total / 20)) ] && [ "$d1" -gt $((total / 20)) ]; then
    echo "ok: MPTCP reference uses both links: $total bytes received; path 0 carried $d0, path 1 $d1 bytes"
  else
    bad "MPTCP did not use both links: path 0 carried $d0, path 1 $d1 bytes of $total ($(lab_exec snd ip mptcp endpoint show))"
  fi
else
  echo "SKIP: MPTCP reference not checked: $why"
fi

# 2. Whalescale over the same two links: uplinks in the status, a flow through the tunnel.
# The receiver names its uplinks: one that exists and one that does not (yet).
mp_daemons "$WS_BIN" "" 'uplinks = ["dn1", "nosuch0"]' || die "the daemons did not bring the tunnel up"
st=$(mp_status snd) || die "wsctl status"
ups=$(printf '%s' "$st" | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(" ".join("%d:%s:%s:%s" % (u["index"], u["name"], u["source"], u["present"]) for u in s["node"].get("uplinks") or []))')
if [ "$ups" = "0:up0:routes:True 1:up1:routes:True" ]; then
  echo "ok: node.uplinks lists both uplinks from the routing table: $ups"
else
  bad "node.uplinks: '$ups' (want up0 and up1, source routes)"
fi
rups=$(mp_status rcv | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(" ".join("%d:%s:%s:%s" % (u["index"], u["name"], u["source"], u["present"]) for u in s["node"].get("uplinks") or []))')
if [ "$rups" = "0:dn1:config:True 1:nosuch0:config:False" ]; then
  echo "ok: the receiver's configured uplinks, in order, a missing one shown as not present: $rups"
else
  bad "receiver's node.uplinks: '$rups' (want dn1 present, nosuch0 not, both from the config)"
fi
grep -q 'uplinks: nosuch0 does not exist' "$(lab_log d-rcv)" || bad "the receiver did not log its missing uplink"
# Uplinks come and go: an interface with a route via a gateway appears in the sender's
# list (at the next index) within seconds of its route, and leaves when it is deleted.
uplinks_of_snd() { mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(" ".join("%d:%s" % (u["index"], u["name"]) for u in s["node"].get("uplinks") or []))'; }
snd_uplinks_are() { [ "$(uplinks_of_snd)" = "$1" ]; }
ns_snd=$(lab_ns snd)
# (A veth pair inside snd: this kernel has no dummy interfaces.)
ip -n "$ns_snd" link add up2 type veth peer name up2p && ip -n "$ns_snd" link set up2p up &&
  ip -n "$ns_snd" addr add 198.18.100.2/24 dev up2 && ip -n "$ns_snd" link set up2 up &&
  ip -n "$ns_snd" route add 198.18.200.0/24 via 198.18.100.1 dev up2 || die "could not add up2"
if wait_until 15 snd_uplinks_are "0:up0 1:up1 2:up2"; then
  echo "ok: a new interface with a gateway route became uplink 2"
else
  bad "after adding up2 with a gateway route, the sender's uplinks are '$(uplinks_of_snd)' (want 0:up0 1:up1 2:up2)"
fi
ip -n "$ns_snd" link del up2
if wait_until 15 snd_uplinks_are "0:up0 1:up1"; then
  echo "ok: the deleted interface left the uplinks"
else
  bad "after deleting up2, the sender's uplinks are '$(uplinks_of_snd)' (want 0:up0 1:up1)"
fi
# Every path's uplink is the interface its remote is routed through (198.18.1.x: up0, 198.18.3.x: up1).
pu=$(printf '%s' "$st" | "$LAB_PY" -c '
import json, sys
s = json.load(sys.stdin); bad = []; n = 0
for p in s["peers"]:
    for q in p["paths"]:
        n += 1
        want = {"198.18.1.2": "up0", "198.18.3.2": "up1"}.get(q["remote"].rsplit(":", 1)[0])
        if want and q.get("uplink") != want: bad.append("%s on %s" % (q["remote"], q.get("uplink")))
print("%d %s" % (n, ",".join(bad) or "-"))')
read -r npaths wrong <<<"$pu"
if [ "$npaths" -ge 1 ] && [ "$wrong" = - ]; then
  echo "ok: $npaths path(s), each with the uplink its remote is routed through"
else
  bad "paths' uplinks: $npaths paths, wrong: $wrong"
fi
# Multipath: both paths get a weight once the second one answered its pings (traffic keeps the checks going).
spread_paths() {
  lab_exec snd ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1
  [ "$(mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(sum(1 for p in s["peers"] for q in p["paths"] if q.get("weight") is not None))')" -ge 2 ]
}
if wait_until 60 spread_paths; then
  echo "ok: the sender spreads over two paths: $(mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(", ".join("%s weight %.2f" % (q["remote"], q["weight"]) for p in s["peers"] for q in p["paths"] if q.get("weight") is not None))')"
else
  bad "the sender's paths never got a weight (not spread): $(mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print([(q["remote"], q["usable"], q["rtt_ms"], q.get("weight")) for p in s["peers"] for q in p["paths"]])')"
fi
b0=$(mp_bytes 0) b1=$(mp_bytes 1)
flow wsA 5 10.77.0.2 || die "iperf3 through the tunnel did not start"
flow_end wsA
d0=$(($(mp_bytes 0) - b0)) d1=$(($(mp_bytes 1) - b1))
read -r total _ _ _ <<<"$(summary wsA)"
if [ "$total" -le 0 ]; then
  bad "A through the tunnel delivered nothing: $(tail -3 "$LAB_DIR/wsA-client.json")"
elif [ "$d0" -gt $((total / 20)) ] && [ "$d1" -gt $((total / 20)) ]; then
  echo "ok: A through the tunnel: $total bytes received; path 0 carried $d0, path 1 $d1 bytes"
else
  bad "A through the tunnel used one path: $total bytes received; path 0 carried $d0, path 1 $d1 bytes"
fi
ro=$(mp_status rcv | "$LAB_PY" -c '
import json, sys
s = json.load(sys.stdin); r = s["peers"][0].get("reorder")
print("none" if r is None else " ".join("%s=%s" % (k, r[k]) for k in sorted(r)))')
case "$ro" in
  *released_in_order=0*|none) bad "the receiver's reorder counters: $ro (want packets released in order)" ;;
  *) echo "ok: the receiver put the flow in order: $ro" ;;
esac

# 3. D: cut the path in use 6 s into a 40 s flow, restore it at 34 s.
active=$(mp_active_remote)
[ "$active" = "$MP_RCV1" ] && k=1 || k=0
flow wsD 40 10.77.0.2 || die "iperf3 (D) did not start"
# These sleeps are the scenario's timeline (cut at 6 s, restore at 34 s), not waits for something.
sleep 6
linkemu_ctl "emu$k" down
sleep 28
linkemu_ctl "emu$k" up
flow_end wsD
read -r total stall during after <<<"$(summary wsD 6 34)"
echo "D: active path to $active (path $k) cut for 28 s: $total bytes, longest stall $stall ms, $during bytes in the cut's second half, $after after the restore"
echo "D: the receiver's reorder counters: $(mp_status rcv | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(s["peers"][0].get("reorder"))')"
if [ "$total" -le 0 ]; then
  bad "D: the flow delivered nothing: $(tail -3 "$LAB_DIR/wsD-client.json")"
else
  [ "$during" -gt 0 ] && echo "ok: D: the flow went on over the other path during the cut" \
    || bad "D: nothing arrived in the second half of the cut: the daemon did not move to the other path"
  [ "$stall" -ge 0 ] && [ "$stall" -lt 24000 ] && echo "ok: D: longest stall $stall ms (< 24 s)" \
    || bad "D: longest stall $stall ms (want < 24000)"
  [ "$after" -gt 0 ] && echo "ok: D: data flows after the restore" || bad "D: nothing arrived after the restore"
fi

# 4. A path that is down when the daemons start joins the spread once it comes back: its
#    endpoint (from the receiver's gossip record) never answered, and is pinged every 5 s
#    while data flows (`candidateRetry`). Before, it was never pinged again.
lab_kill_tag d-snd
lab_kill_tag d-rcv
linkemu_ctl emu1 down
mp_daemons "$WS_BIN" || die "the daemons did not bring the tunnel up over path 0 alone"
lab_exec snd ping -c 3 -i 0.3 -W 1 10.77.0.2 >/dev/null 2>&1
linkemu_ctl emu1 up
if wait_until 40 spread_paths; then
  echo "ok: a path down at start joined the spread after it came back: $(mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print(", ".join("%s weight %.2f" % (q["remote"], q["weight"]) for p in s["peers"] for q in p["paths"] if q.get("weight") is not None))')"
else
  bad "a path down at start never joined the spread: $(mp_status snd | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); print([(q["remote"], q["usable"], q["rtt_ms"], q.get("weight")) for p in s["peers"] for q in p["paths"]])')"
fi

[ $fail = 0 ] || { lab_dump | tail -60; exit 1; }
echo "PASS: tests/multipath.sh"
