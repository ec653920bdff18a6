#!/usr/bin/env bash
# Self-test of the integration lab (tests/lib/lab.sh): do its NAT routers
# behave like the home routers they stand for? No daemon here: a small UDP tool
# (tests/lib/udp.py) observes, listens and punches.
#
#                           ns ws<pid>-internet: bridge br0 (no uplink)
#   ┌────────────┬────────────┬───────────┬───────────┬───────────┬───────────┬───────────┐
#   a1           a2           re1         re2         rd1         rd2         rf          ra
#   203.0.113.10 203.0.113.20 11.0.0.1    11.0.0.2    11.0.0.3    11.0.0.4    11.0.0.5    11.0.0.6
#   observer     observer     eim         eim         edm         edm         eim-eif     eim-adf
#   :3478        :3478        │           │           │           │           │           │
#                             ├─ e1 .10   └─ f1 .10   └─ d1 .10   └─ d2 .10   └─ c1 .10   └─ s1 .10
#                             └─ e2 .11 (same LAN as e1; observer :3478)
#
#   Every router's LAN is 192.168.1.0/24 (router .1), as in real homes.
#   re1 is renumbered to 11.0.1.1 at the end.
#
# One "ok:" line per check. Everything it makes is removed on exit, also on
# failure (LAB_KEEP=1 keeps the logs). LAB_FAIL_AT=N fails on purpose before
# check N, to test that cleanup.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/lab.sh"

lab_init "ws$$"
trap lab_cleanup EXIT
fail() { echo "FAIL: $*"; lab_dump; exit 1; }
n=0
check() { # announce the next check; LAB_FAIL_AT forces a failure there
  n=$((n + 1))
  [ "${LAB_FAIL_AT:-0}" != "$n" ] || fail "forced failure before check $n (LAB_FAIL_AT)"
}
A1=203.0.113.10:3478 A2=203.0.113.20:3478

lab_internet
lab_public a1 203.0.113.10
lab_public a2 203.0.113.20
lab_router re1 11.0.0.1 192.168.1.1/24 eim
lab_router re2 11.0.0.2 192.168.1.1/24 eim
lab_router rd1 11.0.0.3 192.168.1.1/24 edm
lab_router rd2 11.0.0.4 192.168.1.1/24 edm
lab_router rf 11.0.0.5 192.168.1.1/24 eim-eif
lab_router ra 11.0.0.6 192.168.1.1/24 eim-adf
lab_host e1 re1 192.168.1.10
lab_lan_host e2 re1 192.168.1.11
lab_host f1 re2 192.168.1.10
lab_host d1 rd1 192.168.1.10
lab_host d2 rd2 192.168.1.10
lab_host c1 rf 192.168.1.10
lab_host s1 ra 192.168.1.10
for a in a1 a2; do lab_bg $a observer "$LAB_PY" "$LAB_UDP" observe --port 3478; done
lab_bg e2 observer "$LAB_PY" "$LAB_UDP" observe --port 3478
for a in a1 a2 e2; do lab_wait_udp $a 3478 || fail "observer on $a did not start"; done
echo "ok: lab up: $(ls "$LAB_DIR/node" | wc -l) nodes, $(ip netns list | grep -c "^ws$$-") namespaces"

seen() { # OUTPUT OBSERVER -> what that observer saw
  awk -v o="$2" '$1 == o && $2 == "SEEN" {print $3}' <<<"$1"
}

# 1. eim: one local socket, two anchors, one public address:port.
check
out=$(lab_udp e1 client --port 40000 $A1 $A2) || fail "e1 client: $out"
s1=$(seen "$out" $A1) s2=$(seen "$out" $A2)
[ "$s1" = "$s2" ] && [ "${s1%:*}" = 11.0.0.1 ] || fail "eim: anchors saw $s1 and $s2"
echo "ok: eim: both anchors see e1's socket as $s1 (endpoint-independent mapping, port kept)"

# 2. A second host on the same LAN and the same local port.
check
out=$(lab_udp e2 client --port 40000 $A1 $A2) || fail "e2 client: $out"
t1=$(seen "$out" $A1) t2=$(seen "$out" $A2)
[ "$t1" = "$t2" ] && [ "${t1%:*}" = 11.0.0.1 ] && [ "$t1" != "$s1" ] || fail "eim, second host: anchors saw $t1 and $t2 (first host $s1)"
echo "ok: eim: e2 on the same local port gets another public port, the same for both anchors ($t1)"

# 3. edm: the same socket gets a new public port per destination.
check
out=$(lab_udp d1 client --port 40000 $A1 $A2) || fail "d1 client: $out"
s1=$(seen "$out" $A1) s2=$(seen "$out" $A2)
[ "${s1%:*}" = 11.0.0.3 ] && [ "${s2%:*}" = 11.0.0.3 ] && [ "$s1" != "$s2" ] || fail "edm: anchors saw $s1 and $s2"
echo "ok: edm: the anchors see d1's one socket as $s1 and $s2 (endpoint-dependent mapping)"

# 4-6. Filtering. Each host opens a mapping toward a1 only, then listens while
# the internet knocks: from a1's address on another port, from a2, and on a
# port nobody mapped. What gets in is the router's filtering behaviour.
stop_listening() { # HOST PORT PID: end a "client --listen" once what was sent has landed
  sleep 0.2
  lab_udp "$1" send --count 1 "127.0.0.1:$2" STOP
  wait "$3" || true
}
knock() { # HOST ROUTER_WAN -> the payloads that got in
  local host=$1 wan=$2 tag=listen-$1
  lab_bg "$host" "$tag" "$LAB_PY" "$LAB_UDP" client --port 40010 --listen 20 $A1
  local pid=$LAB_PID
  lab_wait_log "$tag" '^listening' 5 || fail "$host: no answer from a1: $(cat "$(lab_log "$tag")")"
  lab_udp a1 send --port 5000 --count 2 "$wan:40010" from-a1-port-5000
  lab_udp a2 send --port 5001 --count 2 "$wan:40010" from-a2
  stop_listening "$host" 40010 "$pid"
  grep '^unsolicited' "$(lab_log "$tag")" | awk '{print $3}' | sort -u | tr '\n' ' ' || true
}
check
drops_before=$(lab_exec re1 nft list chain inet filter input | awk '/unsolicited/ {print $3}')
lab_bg e1 quiet "$LAB_PY" "$LAB_UDP" client --port 40011 --listen 20
quiet=$LAB_PID
lab_wait_log quiet '^listening' 5 || fail "e1: listener did not start"
lab_udp a2 send --count 2 11.0.0.1:40011 never-mapped
stop_listening e1 40011 $quiet
got=$(knock e1 11.0.0.1)
grep -q '^unsolicited' "$(lab_log quiet)" && fail "eim: an unmapped port let a packet in: $(cat "$(lab_log quiet)")"
[ -z "$got" ] || fail "eim: unsolicited packets reached e1: $got"
drops=$(lab_exec re1 nft list chain inet filter input | awk '/unsolicited/ {print $3}')
[ "$drops" -ge $((drops_before + 6)) ] || fail "eim: the input chain dropped $drops_before -> $drops packets"
echo "ok: eim: unsolicited inbound dropped by the router's input chain ($((drops - drops_before)) packets): an unmapped port, and a mapped one from a1:5000 or a2 (address-and-port-dependent filtering)"
check
got=$(knock s1 11.0.0.6)
[ "$got" = "from-a1-port-5000 " ] || fail "eim-adf: expected only a1's other port in, got '$got'"
echo "ok: eim-adf: a1 from another port gets in, a2 does not (address-dependent filtering)"
check
got=$(knock c1 11.0.0.5)
[ "$got" = "from-a1-port-5000 from-a2 " ] || fail "eim-eif: expected both in, got '$got'"
echo "ok: eim-eif: a1 from another port and a2 both get in (endpoint-independent filtering)"

# 7-9. Hole punching, coordinated as an anchor would: each host learns its
# public address from a1, both get the other's, both punch at an agreed time.
# The late side starts SKEW seconds after the early one, as in real life: the
# early side's first packets reach the late side's router before any mapping
# exists there. Its input chain drops them; accepted, they would leave a
# conntrack entry that makes masquerade remap the late host's port.
punch() { # EARLY LATE SKEW TIMEOUT -> p_early p_late ok_early ok_late
  local at pe pl
  p_early=$(seen "$(lab_udp "$1" client --port 41000 $A1)" $A1)
  p_late=$(seen "$(lab_udp "$2" client --port 41000 $A1)" $A1)
  [ -n "$p_early" ] && [ -n "$p_late" ] || fail "punch: no observed address ($1: '$p_early', $2: '$p_late')"
  # Both sides sleep until the agreed time: 2 s leaves room for a slow interpreter start on a loaded machine,
  # which would otherwise make the early side late.
  at=$("$LAB_PY" -c "import time; print(time.time() + 2.0)")
  : >"$(lab_log "punch-$1")"
  : >"$(lab_log "punch-$2")"
  lab_bg "$1" "punch-$1" "$LAB_PY" "$LAB_UDP" punch --port 41000 --peer "$p_late" --at "$at" --timeout "$4"
  pe=$LAB_PID
  lab_bg "$2" "punch-$2" "$LAB_PY" "$LAB_UDP" punch --port 41000 --peer "$p_early" --at "$("$LAB_PY" -c "print($at + $3)")" --timeout "$4"
  pl=$LAB_PID
  ok_early=yes ok_late=yes
  wait "$pe" || ok_early=no
  wait "$pl" || ok_late=no
}
drops() { lab_exec "$1" nft list chain inet filter input | awk '/unsolicited/ {print $3}'; }
check
before=$(drops re1)
punch f1 e1 0.3 3
[ $ok_early = yes ] && [ $ok_late = yes ] || fail "eim <-> eim punch: f1: $(cat "$(lab_log punch-f1)") e1: $(cat "$(lab_log punch-e1)")"
lab_ct_list re1 | grep -q "src=192.168.1.10 dst=11.0.0.2 sport=41000 dport=41000 .*dst=11.0.0.1 sport=41000 dport=41000" ||
  fail "eim punch: e1's mapping toward f1 is not 41000: $(lab_ct_list re1 | grep 41000)"
[ "$(drops re1)" -gt "$before" ] || fail "eim punch: re1 dropped none of f1's early packets: was e1 late?"
echo "ok: eim <-> eim: punch succeeds ($p_early <-> $p_late, $(grep -o 'heard-after-ms=[0-9.]*' "$(lab_log punch-e1)") for the late side); f1's early packets were dropped by re1's input chain ($(($(drops re1) - before))) and e1 kept its public port"
check
# The same punch with re2's input chain accepting (a router without the drop):
# e1 is early now, so re2 sees e1's packets first.
lab_exec re2 nft add chain inet filter input '{ policy accept; }'
lab_ct_flush re1
lab_ct_flush re2
punch e1 f1 0.3 2
lab_exec re2 nft add chain inet filter input '{ policy drop; }'
[ $ok_early = no ] && [ $ok_late = no ] || fail "eim <-> eim punch through a router without the input drop succeeded: e1: $(cat "$(lab_log punch-e1)") f1: $(cat "$(lab_log punch-f1)")"
lab_ct_list re2 | grep -q "src=11.0.0.1 dst=11.0.0.2 sport=41000 dport=41000 " ||
  fail "control: no conntrack entry for e1's early packet to re2: $(lab_ct_list re2)"
remapped=$(lab_ct_list re2 | grep -o "src=192.168.1.10 dst=11.0.0.1 sport=41000 dport=41000 .*" | grep -o 'dport=[0-9]*' | tail -1)
[ -n "$remapped" ] && [ "$remapped" != dport=41000 ] || fail "control: f1 was not remapped: $(lab_ct_list re2)"
echo "ok: control: without re2's input drop the same punch fails both ways (e1's early packet became a conntrack entry to re2 itself and f1 was remapped to ${remapped#dport=})"
check
punch d1 d2 0 2
[ $ok_early = no ] && [ $ok_late = no ] || fail "edm <-> edm punch succeeded: d1: $(cat "$(lab_log punch-d1)") d2: $(cat "$(lab_log punch-d2)")"
echo "ok: edm <-> edm: simultaneous punch fails both ways, as it must without port prediction ($p_early <-> $p_late)"

# 10. LAN: two hosts behind one router reach each other directly, unNATed.
check
out=$(lab_udp e1 client --port 40020 192.168.1.11:3478) || fail "e1 -> e2 on the LAN: $out"
[ "$(seen "$out" 192.168.1.11:3478)" = 192.168.1.10:40020 ] || fail "LAN: e2 saw $(seen "$out" 192.168.1.11:3478)"
echo "ok: lan: e2 sees e1 at its LAN address 192.168.1.10:40020, not through the NAT"

# 11. Renumbering: the router's new address is used at once, also by a socket
# whose mapping existed before.
check
out=$(lab_udp e1 client --port 42000 $A1) || fail "e1 before renumber: $out"
[ "$(seen "$out" $A1)" = 11.0.0.1:42000 ] || fail "before renumber: a1 saw $(seen "$out" $A1)"
lab_renumber re1 11.0.1.1
[ "$(lab_wan e1)" = 11.0.1.1 ] || fail "lab_wan e1 is $(lab_wan e1)"
lab_ct_list re1 | grep -q 'dst=11.0.0.1 ' && fail "old mappings survive: $(lab_ct_list re1)"
out=$(lab_udp e1 client --port 42000 $A1 $A2) || fail "e1 after renumber: $out"
[ "$(seen "$out" $A1)" = 11.0.1.1:42000 ] && [ "$(seen "$out" $A2)" = 11.0.1.1:42000 ] ||
  fail "after renumber: anchors saw $(seen "$out" $A1) and $(seen "$out" $A2)"
echo "ok: renumber: re1 11.0.0.1 -> 11.0.1.1, old mappings flushed, e1's same socket now leaves from 11.0.1.1:42000"
[ "$(lab_ct_list re2 | wc -l)" -gt 0 ] || fail "re2 has no conntrack entries to flush"
lab_ct_flush re2
[ "$(lab_ct_list re2 | wc -l)" = 0 ] || fail "lab_ct_flush left entries: $(lab_ct_list re2)"
echo "ok: lab_ct_flush empties a router's conntrack table ($(command -v conntrack >/dev/null && echo 'conntrack -F' || echo 'ctnetlink from python'))"
