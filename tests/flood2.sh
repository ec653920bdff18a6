#!/usr/bin/env bash
# The rest of the flood and fault suite (security review 60ee9cd, Part C.4):
# F2, F6, F7, F8, F9 and F11 (b), against real release daemons while
# legitimate flows run (tests/flood.sh has F1, F3, F4, F5, F10, F11 (a)).
# Short form: each attack a few seconds, the whole script under 3 minutes;
# perf/flood runs it longer (WS_FLOOD_SECONDS).
#
#                          ns <P>-internet: bridge br0 (no uplink)
#   ┌─────────────┬──────────────┬─────────────┬───────────────┬──────────────────────────┬───────────────────┐
#  a1 .10        m1 .21         m2 .22        m3 .23          x .66 (+.67, .68)          s (the sink)
#  anchor,       the victim,    legit peer    the insider:    the attacker, no daemon:   203.0.113.200-215
#  relay budget  reactors = 2;  (direct)      a member whose  198.18.0.0/20 (4096 IPv4   (the "third-party"
#  8 Mbit/s per  drops UDP to/                namespace has   sources, routed to it by   hosts: logs every
#  member        from m3: m1-m3               dummy0 with     m1), 2001:db8:aa::/48      datagram it gets)
#                is relayed                   203.0.113.200-  (IPv6, routed by m1);
#                                             215: it         on path (routes) for F6
#                                             announces them  and F9: forwards itself
#   All addresses 203.0.113.x unless said; m1 also 2001:db8:f::21/64, x 2001:db8:f::66/64.
#   Overlay ws0: a1 10.77.0.1, m1 .21, m2 .22, m3 .23.
#
# F2  INIT floods from many real sources that first collect a cookie each
#     (ws-bench flood --kind init-cookie): 4096 IPv4 addresses, then 256
#     addresses of one IPv6 /64. Past mac2 only the per-source limiter (IPv6:
#     per /64) stands before the DH: every INIT is a cookie, rateLimited or
#     notMember (one DH), and one /64 gets at most 20/s + 5 past it.
# F6  An on-path attacker (m1 routes to a1 through x) answers each of m1's
#     PATH_PROBEs to a1 with a forged reply before a1's, `observed`
#     alternating between two addresses: m1's NAT evidence and endpoints
#     never move, no heal, and every forged reply or the real one it beat is
#     `probe_unexpected_reply`.
# F7  Relay abuse at the anchor: RELAYs from m3's exact endpoint (forged),
#     from a stranger, and a RELAY inside a RELAY: none forwarded, each in one
#     counter; then m3 itself (a member) relays to m1 at twice its budget: a1
#     forwards at most budget x time + burst and counts the rest.
# F8  The insider m3 announces 16 addresses of the sink as its candidates
#     (its own interface addresses, so a real daemon does it) all through the
#     run while m1 cannot reach m3 directly (so every direct retry brings a
#     rendezvous with them): the pings m1 sends to the sink stay within the
#     bound (8 unattested candidates + the 8 of the member's signed record per
#     30 s, one punch per attempt).
# F9  The roaming race: m2 routes to m1 through x, which sends a copy of each
#     of m2's DATA from an address of its own (two, alternating) before the
#     original: m1's path flips on every packet, yet endpoints.json is written
#     at most as the debounce allows, never with an fsync on reactor 0 (strace),
#     and every copy or its original is a `replay`.
# F11b m1 restarts (its INIT timestamps of m2 are not persisted); m2's INIT
#     captured at the start is replayed 6 s after m1 is back: accepted at most
#     once (the review's B.3, documented in docs/wire.md: after a restart the
#     last timestamp is gone), every other copy refused.
#
# Each attack prints its figures (rate sent, victim reactor-0 CPU, legit flow
# kept vs. the same flow without attack, counter deltas) and checks that every
# attack datagram is in exactly one counter (+ replies it got, + kernel drops).
#
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
secs=${WS_FLOOD_SECONDS:-3}       # attack time per flood
rate=${WS_FLOOD_RATE:-2000}       # F2/F7 datagrams per second
legit=${WS_FLOOD_LEGIT:-10M}      # offered legit UDP, bits/s, direct (m2 -> m1)
budget_mbit=8                     # a1's relay_rate_mbit
legit_relay=4M                    # offered legit UDP through the relay (m3 -> m1): within the budget
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin
[ -x "$bin/ws-bench" ] || fail "no $bin/ws-bench (swift build -c release)"
command -v iperf3 >/dev/null || fail "iperf3 not found"
command -v nft >/dev/null || fail "nft not found"
command -v strace >/dev/null || fail "strace not found (scripts/setup installs it)"
PY=$LAB_PY
FL=$here/lib/flood.py
F2L=$here/lib/flood2.py
SEQ=$here/lib/seqstream.py

lab_internet
lab_public a1 203.0.113.10
lab_public m1 203.0.113.21
lab_public m2 203.0.113.22
lab_public m3 203.0.113.23
lab_public x 203.0.113.66
lab_public s 203.0.113.200
ipx() { ip -n "$(lab_ns "$1")" "${@:2}"; }
# x: the alternates of F9, IPv6, and F2's sources (on lo: m1 routes them to x).
ipx x addr add 203.0.113.67/32 dev eth0
ipx x addr add 203.0.113.68/32 dev eth0
ipx x addr add 2001:db8:f::66/64 dev eth0 nodad
{ for i in $(seq 0 4095); do echo "addr add 198.18.$((i / 256)).$((i % 256))/32 dev lo"; done
  for i in $(seq 0 255); do printf 'addr add 2001:db8:aa:1::%x/128 dev lo nodad\n' "$((i + 1))"; done; } | ipx x -batch -
lab_exec x sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
seq 0 4095 | awk '{printf "198.18.%d.%d\n", int($1 / 256), $1 % 256}' >"$LAB_DIR/f2-v4.txt"
for i in $(seq 0 255); do printf '2001:db8:aa:1::%x\n' "$((i + 1))"; done >"$LAB_DIR/f2-v6.txt"
ipx m1 addr add 2001:db8:f::21/64 dev eth0 nodad
ipx m1 route add 198.18.0.0/20 via 203.0.113.66 dev eth0
ipx m1 -6 route add 2001:db8:aa::/48 via 2001:db8:f::66 dev eth0
# s: the 16 third-party addresses m3 will announce.
for i in $(seq 201 215); do ipx s addr add "203.0.113.$i/32" dev eth0; done
# m3: the same 16 on an interface of its own (the daemon lists every interface's
# addresses as local candidates); arp_ignore so that m3 does not answer ARP
# for them on eth0 (the sink does).
ipx m3 link add dummy0 type veth peer name dummy1   # no dummy driver everywhere: a veth to nowhere
ipx m3 link set dummy0 up
ipx m3 link set dummy1 up
for i in $(seq 200 215); do ipx m3 addr add "203.0.113.$i/32" dev dummy0; done
lab_exec m3 sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.eth0.arp_ignore=1
# m1 and m3 never talk directly: their traffic is relayed by a1.
lab_block m1 m3 f7

declare -A ov=([a1]=1 [m1]=21 [m2]=22 [m3]=23) ip=([a1]=203.0.113.10 [m1]=203.0.113.21 [m2]=203.0.113.22 [m3]=203.0.113.23)
mesh_keys a1 m1 m2 m3
# m1 and m3 know each other only through the anchor (it introduces them).
MESH_NO_ENDPOINT="m1m3 m3m1"
MESH_ANCHOR_LINES="relay_rate_mbit = $budget_mbit"
mesh_conf a1 true 1 m1 m2 m3 >"$LAB_DIR/a1.toml"
mesh_conf m1 false 2 a1 m2 m3 >"$LAB_DIR/m1.toml"
mesh_conf m2 false 1 a1 m1 m3 >"$LAB_DIR/m2.toml"
mesh_conf m3 false 1 a1 m1 m2 >"$LAB_DIR/m3.toml"

# F11b replays a real HANDSHAKE_INIT of m2's to m1: catch one while the daemons start.
ip netns exec "$LAB_PREFIX-internet" "$PY" "$FL" sniff-init i-m2 "$LAB_DIR/init.bin" 15 203.0.113.22 203.0.113.21 \
  >"$LAB_DIR/sniff.out" 2>&1 &
sniffer=$!
wait_until 5 grep -qs listening "$LAB_DIR/sniff.out" || fail "INIT sniffer did not start: $(cat "$LAB_DIR/sniff.out")"
# F8's sink logs from before m3 starts.
lab_bg s sink "$PY" "$F2L" sink eth0 "$LAB_DIR/sink.log"
wait_until 5 grep -qs listening "$(lab_log sink)" || fail "the sink did not start"

start_daemon() { lab_bg "$1" "d-$1" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$1.toml"; }
for n in a1 m1; do start_daemon "$n"; done
wait_until 10 status m1 >/dev/null 2>&1 || fail "m1 does not answer on its control socket"
start_daemon m2
start_daemon m3

wait_until 20 pingable m2 m1 || fail "m2 cannot ping m1 through the tunnel"
wait_until 20 pingable m1 a1 || fail "m1 cannot ping the anchor"
wait_until 30 pingable m3 m1 || fail "m3 cannot ping m1 (relayed by a1)"
anchor_up() { status m1 | "$PY" "$here/lib/jq.py" anchors.0.reachable | grep -qix true; }
wait_until 15 anchor_up || fail "m1 does not see its anchor as reachable"
relayed() { status m1 | "$PY" -c "
import json,sys; p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='m3'][0]
a=[x for x in p['paths'] if x['active']]; sys.exit(0 if a and a[0]['kind']=='relay' else 1)"; }
wait_until 10 relayed || fail "m1 does not reach m3 through the relay"
echo "ok: a1, m1, m2, m3 up; m2 -> m1 direct, m3 -> m1 relayed by a1"

lab_bg m1 iperf-s iperf3 -s -B 10.77.0.21
wait_tcp_listen "$(lab_ns m1)" 5201 || fail "iperf3 server not listening"
hz=$(getconf CLK_TCK)
# Reactor 0 of node N is its main thread: utime + stime ticks.
ticks() { local p; p=$(pid_of "$1"); awk '{print $14 + $15}' "/proc/$p/task/$p/stat"; }
kdrops() { lab_exec "$1" "$PY" "$FL" snmp /proc/net/snmp /proc/net/snmp6; }

# settle NODE FILE NAMES...: NODE's status once the named counters stopped moving for 1 s.
settle() {
  local n=$1 f=$2 prev="" cur i
  shift 2
  for i in $(seq 20); do
    status "$n" >"$f"
    cur=$("$PY" -c "
import json,sys; c=json.load(open('$f')).get('counters',{}); print(sum(c.get(n,0) for n in sys.argv[1:]))" "$@")
    [ "$cur" = "$prev" ] && return 0
    prev=$cur
    sleep 0.5
  done
  fail "$n's counters $* still moving 10 s after the attack"
}

# legit_run TAG FROM SECONDS [RATE]: a UDP flow FROM -> m1 (iperf3, 1200-byte
# datagrams) in the background; legit_wait TAG sets $got to what arrived.
legit_run() {
  local r=$legit
  [ "$2" != m3 ] || r=$legit_relay
  lab_exec "$2" iperf3 -c 10.77.0.21 -u -b "${4:-$r}" -l 1200 -t "$3" -J >"$LAB_DIR/legit-$1.json" 2>&1 &
  legit_pid=$!
}
legit_wait() {
  wait "$legit_pid" || fail "legit flow ($1): iperf3 failed: $(tail -3 "$LAB_DIR/legit-$1.json")"
  got=$("$PY" -c "
import json; e=json.load(open('$LAB_DIR/legit-$1.json'))['end']['sum']
print(e['packets'] - e['lost_packets'])")
}

# Baselines: each legit flow without attack.
declare -A base
for from in m2 m3; do
  legit_run "base-$from" "$from" $((secs + 2))
  legit_wait "base-$from"
  base[$from]=$got
  [ "$got" -gt 0 ] || fail "the baseline legit flow from $from received nothing"
done
echo "ok: baselines for $((secs + 2)) s: m2 -> m1 (direct, $legit) ${base[m2]}, m3 -> m1 (relayed, $legit_relay) ${base[m3]} datagrams"
figures=()

# attack NAME VICTIM LEGIT_FROM COUNTERS... -- injector...: one flood inside a
# legit flow from LEGIT_FROM to m1; checks the legit flow (>= 90% of its
# baseline), that m1 still pings m2, the accounting (counters + replies +
# kernel drops on VICTIM within [95%, 102%] of sent) and VICTIM's reactor-0
# CPU (<= WS_FLOOD_CPU_MAX, 50%). Leaves $out, $moved, $sent, $replies.
attack() {
  local name=$1 victim=$2 from=$3 counters=() k0 k1 t0 t1 cpu kept acc
  shift 3
  while [ "$1" != -- ]; do counters+=("$1"); shift; done
  shift
  settle "$victim" "$LAB_DIR/$name-before.json" "${counters[@]}"
  k0=$(kdrops "$victim")
  legit_run "$name" "$from" $((secs + 2))
  sleep 1
  t0=$(ticks "$victim") t1=$(date +%s%N)
  out=$("$@") || fail "$name: injector failed: $out"
  cpu=$(( ($(ticks "$victim") - t0) * 100 * 1000000000 / hz / ($(date +%s%N) - t1) ))
  legit_wait "$name"
  settle "$victim" "$LAB_DIR/$name-after.json" "${counters[@]}"
  k1=$(kdrops "$victim")
  moved=$("$PY" "$FL" delta "$LAB_DIR/$name-before.json" "$LAB_DIR/$name-after.json" "${counters[@]}")
  sent=$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' <<<"$out")
  replies=$(sed -n 's/.* replies=\([0-9]*\) .*/\1/p' <<<"$out")
  pps=$(sed -n 's/.* pps=\([0-9]*\) .*/\1/p' <<<"$out")
  kept=$((got * 100 / base[$from]))
  acc=$(( ${moved##*sum=} + k1 - k0 ))
  figures+=("$name: sent $sent at $pps/s; $victim reactor-0 CPU ${cpu}%; legit $from -> m1 kept ${kept}% ($got/${base[$from]}); counters: $moved; replies $replies; kernel drops $((k1 - k0))")
  echo "figures: ${figures[-1]}"
  [ "$sent" -gt 0 ] || fail "$name: the injector sent nothing"
  [ "$kept" -ge 90 ] || fail "$name: the legit flow kept $kept% of its baseline"
  wait_until 5 pingable m1 m2 || fail "$name: m1 no longer pings m2"
  [ $((acc * 100)) -ge $((sent * 95)) ] && [ $((acc * 100)) -le $((sent * 102)) ] ||
    fail "$name: $acc of $sent attack datagrams accounted for (counters + kernel drops)"
  [ "$cpu" -le "${WS_FLOOD_CPU_MAX:-50}" ] || fail "$name: $victim reactor-0 CPU $cpu% > ${WS_FLOOD_CPU_MAX:-50}%"
  echo "ok: $name: legit kept $kept%, $acc of $sent accounted for"
}
d() { "$PY" -c "import sys; print(sys.argv[1].split('$1=')[1].split()[0])" "$moved"; }
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$out"; }
hs="cookieRequired notMember rateLimited authFailed mac1 handshakeFlood staleTimestamp simultaneousInitiation"

# WS_FLOOD2_ONLY="F6 F9 ...": run only those of F2, F7 (to try one); F6, F8,
# F9, F11b always run (they need no more than the lab).
want() { [ -z "${WS_FLOOD2_ONLY:-}" ] || [[ " $WS_FLOOD2_ONLY " == *" $1 "* ]]; }

# ── F2: many real sources, each with its own cookie ─────────────────────────
if want F2; then
# The injector gets m1 under load (> 128 INITs/s), collects a cookie for every
# source (phase 1), then floods INITs with valid mac2 round-robin. Every INIT
# ends as cookieRequired (phase 1, or a source whose cookie did not come),
# rateLimited (its source's budget, 20/s burst 5, is spent) or notMember
# (past every cheap check: one DH, then the unknown static).
f2() { lab_exec x bash -c "ulimit -n 16384; exec \"\$@\"" f2 "$bin/ws-bench" flood --seconds "$secs" --kind init-cookie \
  --rate "$rate" --to "$1" --from-file "$2" --victim-key "${pub[m1]}"; }
attack F2-init-cookies-4096-ipv4 m1 m2 $hs -- f2 203.0.113.21:51820 "$LAB_DIR/f2-v4.txt"
collected=$(field collected) phase1=$(field phase1)
[ "$collected" -ge 3686 ] || fail "F2 IPv4: only $collected of 4096 sources got a cookie"
# In phase 2 each source sends rate * secs / 4096 INITs (about 1.5): within
# its budget, so nearly all reach the DH and are refused as notMember.
p2=$((sent - phase1))
[ $(( $(d notMember) * 100 )) -ge $(( (p2 - (4096 - collected)) * 90 )) ] ||
  fail "F2 IPv4: of $p2 INITs with a cookie only $(d notMember) reached the member check ($moved)"
echo "ok: F2 IPv4: $collected sources collected a cookie in $phase1 INITs; then $p2 INITs with mac2: $(d notMember) refused after one DH, $(d rateLimited) rate-limited"
sleep 1.2
attack F2-init-cookies-ipv6-one-64 m1 m2 $hs -- f2 "[2001:db8:f::21]:51820" "$LAB_DIR/f2-v6.txt"
collected=$(field collected) phase1=$(field phase1)
[ "$collected" -ge 230 ] || fail "F2 IPv6: only $collected of 256 sources got a cookie"
p2=$((sent - phase1))
# Phase 1 already spends some of the /64's budget; in phase 2 (secs s) the /64
# passes at most 20/s + the burst of 5: all the rest is rateLimited.
cap=$((20 * secs + 5 + 20))
past=$(( $(d notMember) + $(d authFailed) ))
[ "$past" -le $((cap + phase1)) ] || fail "F2 IPv6: $past INITs from one /64 reached the DH (cap $cap + phase 1's $phase1)"
[ "$(d rateLimited)" -ge $((p2 - cap - 50)) ] || fail "F2 IPv6: only $(d rateLimited) of $p2 rate-limited"
echo "ok: F2 IPv6 one /64: $collected addresses with a cookie, $p2 INITs with mac2: $(d rateLimited) rate-limited per /64, $past reached the DH (<= $cap + $phase1 in phase 1)"

fi

# ── F7: relay abuse at the anchor ───────────────────────────────────────────
if want F7; then
# a1's counters; the legit flow is m3 -> m1, relayed by a1.
rl="relay_bad_tag relay_source_not_member relay_unknown_target relay_target_unreachable relay_rate_limited relay_not_anchor bad_length"
fwd() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('counters',{}).get('relay_forwarded_packets',0))" "$1"; }
sleep 1.2
relay_attack() { # NAME SOURCE-ARGS... -- KIND-ARGS...
  local name=$1
  shift
  attack "$name" a1 m3 $rl -- lab_exec x "$bin/ws-bench" flood --seconds "$secs" --rate "$rate" \
    --to 203.0.113.10:51820 --victim-key "${pub[a1]}" --member-key "${pub[m1]}" "$@"
  local f0 f1
  f0=$(fwd "$LAB_DIR/$name-before.json") f1=$(fwd "$LAB_DIR/$name-after.json")
  # What a1 forwarded meanwhile is the legit flow (and its control packets), never the attack's.
  [ $((f1 - f0)) -le $((got + 300)) ] || fail "$name: a1 forwarded $((f1 - f0)) datagrams, the legit flow was $got"
}
# (a) m3's exact endpoint, forged: refused at the hop tag (no session key).
relay_attack F7a-forged-member-source --kind relay-init --spoof 203.0.113.23:51820
[ "$(d relay_bad_tag)" -eq "$sent" ] || fail "F7a: $sent RELAYs from m3's forged endpoint, $(d relay_bad_tag) refused at the tag ($moved)"
echo "ok: F7a: every RELAY from m3's forged exact endpoint refused at the hop tag, none forwarded"
sleep 0.5
# (b) a stranger's own address.
relay_attack F7b-stranger --kind relay-init --from 203.0.113.66
[ "$(d relay_source_not_member)" -eq "$sent" ] || fail "F7b: $sent RELAYs from a stranger, $(d relay_source_not_member) refused as not a member ($moved)"
echo "ok: F7b: every RELAY from a stranger refused (relay_source_not_member)"
sleep 0.5
# (c) a RELAY inside a RELAY (no chains), from m3's forged endpoint.
"$PY" "$F2L" nested-relay "$LAB_DIR/nested.bin" "${pub[m1]}"
relay_attack F7c-nested-relay --kind replay --payload-file "$LAB_DIR/nested.bin" --spoof 203.0.113.23:51820
[ "$(d bad_length)" -eq "$sent" ] || fail "F7c: $sent nested RELAYs, $(d bad_length) refused by the parser ($moved)"
echo "ok: F7c: every RELAY carrying a RELAY refused before any lookup (bad_length)"
# (d) m3 itself, a member, relays to m1 at twice its budget: a1 forwards at
# most budget * time + burst (1 MiB) of it; the rest is relay_rate_limited.
sleep 0.5
settle a1 "$LAB_DIR/F7d-before.json" $rl
dsecs=$((secs + 2))
lab_bg m1 seq-f7d "$PY" "$SEQ" recv --bind 10.77.0.21:6001 --seconds $((dsecs + 10))
wait_until 5 grep -qs listening "$(lab_log seq-f7d)" || fail "F7d: the receiver did not start"
t0=$(ticks a1)
# 2 x budget in 1200-byte datagrams (a numbered stream: no TCP to lose).
lab_exec m3 "$PY" "$SEQ" send --to 10.77.0.21:6001 --rate $((2 * budget_mbit * 1000000 / 8 / 1200)) --seconds "$dsecs" \
  --size 1200 >"$LAB_DIR/f7d-send.out"
cpu=$(( ($(ticks a1) - t0) * 100 / hz / dsecs ))
wait_until 10 grep -qs "^recv " "$(lab_log seq-f7d)" || fail "F7d: the receiver did not finish"
settle a1 "$LAB_DIR/F7d-after.json" $rl
moved=$("$PY" "$FL" delta "$LAB_DIR/F7d-before.json" "$LAB_DIR/F7d-after.json" $rl)
offered=$(sed -n 's/^sent //p' "$LAB_DIR/f7d-send.out")
got=$(sed -n 's/.* distinct=\([0-9]*\) .*/\1/p' "$(lab_log seq-f7d)")
# Each datagram a1 forwards is >= 1200 bytes of payload + 28 + DATA's 32 + RELAY's 16.
allowed=$(( (budget_mbit * 1000000 / 8 * dsecs + 1048576) / 1276 + 50 ))
figures+=("F7d-member-over-budget: m3 offered $offered datagrams at $((2 * budget_mbit)) Mbit/s for $dsecs s through a1 (budget $budget_mbit Mbit/s + 1 MiB burst); m1 got $got (allowed <= $allowed); a1 reactor-0 CPU ${cpu}%; counters: $moved")
echo "figures: ${figures[-1]}"
[ "$got" -le "$allowed" ] || fail "F7d: a1 forwarded $got datagrams of m3's, budget allows $allowed"
[ "$(d relay_rate_limited)" -gt 0 ] || fail "F7d: nothing counted as relay_rate_limited ($moved)"
[ "$got" -gt 0 ] || fail "F7d: nothing of m3's flow arrived"
echo "ok: F7d: m3 over its relay budget: $got forwarded (<= $allowed), $(d relay_rate_limited) relay_rate_limited"
wait_until 10 pingable m3 m1 || fail "F7d: m3 no longer reaches m1 after its over-budget flow"

fi

# ── F6: probe-reply forgery by an on-path attacker ──────────────────────────
# m1's packets to a1 now go through x, which forges a reply to every PATH_PROBE
# before forwarding it. m1 probes a1 every 7 s: 3 probes in ~22 s.
f6secs=${WS_F6_SECONDS:-22}
state0=$(status m1 | "$PY" "$FL" state)
status m1 >"$LAB_DIR/F6-before.json"
ev0=$("$PY" -c "import json; print(json.load(open('$LAB_DIR/F6-before.json'))['node']['nat']['evidence'])")
heal0=$(grep -c "observed" "$(lab_log d-m1)" || true)
lab_bg x onpath "$PY" "$F2L" onpath eth0 "$f6secs" probe-forge 203.0.113.10 "${pub[a1]}" 198.51.100.7:4444,198.51.100.8:5555
wait_until 5 grep -qs listening "$(lab_log onpath)" || fail "F6: the on-path forger did not start"
ipx m1 route add 203.0.113.10/32 via 203.0.113.66 dev eth0
legit_run F6 m2 "$f6secs"
t0=$(ticks m1)
wait_until $((f6secs + 10)) grep -qs "^onpath " "$(lab_log onpath)" || fail "F6: the forger did not finish"
cpu=$(( ($(ticks m1) - t0) * 100 / hz / f6secs ))
ipx m1 route del 203.0.113.10/32 via 203.0.113.66 dev eth0
legit_wait F6
out=$(grep "^onpath " "$(lab_log onpath)")
forged=$(field forged)
settle m1 "$LAB_DIR/F6-after.json" probe_unexpected_reply
moved=$("$PY" "$FL" delta "$LAB_DIR/F6-before.json" "$LAB_DIR/F6-after.json" probe_unexpected_reply)
state1=$(status m1 | "$PY" "$FL" state)
ev1=$("$PY" -c "import json; print(json.load(open('$LAB_DIR/F6-after.json'))['node']['nat']['evidence'])")
heal1=$(grep -c "observed" "$(lab_log d-m1)" || true)
kept=$((got * 100 * (secs + 2) / f6secs / base[m2]))
figures+=("F6-probe-reply-forgery: $forged forged replies (each before the real one) to m1's probes in ${f6secs} s; m1 reactor-0 CPU ${cpu}%; legit m2 -> m1 kept ${kept}%; counters: $moved")
echo "figures: ${figures[-1]}"
[ "$forged" -ge 2 ] || fail "F6: only $forged probes seen on path in $f6secs s"
[ "$(d probe_unexpected_reply)" -eq "$forged" ] || fail "F6: $forged probes answered twice (forged + real), $(d probe_unexpected_reply) counted unexpected"
[ "$state1" = "$state0" ] || fail "F6: m1's state moved: before [$state0] after [$state1]"
"$PY" -c "
import json,sys
s=json.load(open('$LAB_DIR/F6-after.json'))
bad=[e for e in s['node']['endpoints'] if e['addr'].startswith('198.51.100.')]
bad+=[e for e in s['node']['nat']['evidence'] if e['observed'].startswith('198.51.100.')]
sys.exit('forged observation taken: %s' % bad if bad else 0)" || fail "F6: a forged observation reached m1's endpoints or NAT evidence"
[ "$heal1" = "$heal0" ] || fail "F6: m1 logged an observed-endpoint change (heal) during the forgery"
[ "$kept" -ge 90 ] || fail "F6: the legit flow kept $kept% of its baseline"
echo "ok: F6: $forged forged probe replies, each accepted as the probe's answer or counted: NAT evidence [$ev1] and endpoints unchanged, no heal, every forged or beaten reply in probe_unexpected_reply"

# ── F9: the roaming race ────────────────────────────────────────────────────
f9secs=${WS_F9_SECONDS:-12}
m1pid=$(pid_of m1)
settle m1 "$LAB_DIR/F9-before.json" replay
strace -f -qq -e trace=fsync,fdatasync,rename,renameat,renameat2 -o "$LAB_DIR/f9.strace" -p "$m1pid" 2>/dev/null &
stracer=$!
sleep 1
lab_bg x onpath9 "$PY" "$F2L" onpath eth0 "$f9secs" roam-race 203.0.113.21 203.0.113.22 203.0.113.67:40001,203.0.113.68:40002
wait_until 5 grep -qs listening "$(lab_log onpath9)" || fail "F9: the on-path racer did not start"
ipx m2 route add 203.0.113.21/32 via 203.0.113.66 dev eth0
lab_bg m1 seq-recv "$PY" "$SEQ" recv --bind 10.77.0.21:6000 --seconds $((f9secs + 10))
wait_until 5 grep -qs listening "$(lab_log seq-recv)" || fail "F9: the receiver did not start"
t0=$(ticks m1)
lab_exec m2 "$PY" "$SEQ" send --to 10.77.0.21:6000 --rate 300 --seconds $((f9secs - 2)) --size 400 >"$LAB_DIR/f9-send.out"
wait_until 10 grep -qs "^onpath " "$(lab_log onpath9)" || fail "F9: the racer did not finish"
cpu=$(( ($(ticks m1) - t0) * 100 / hz / f9secs ))
ipx m2 route del 203.0.113.21/32 via 203.0.113.66 dev eth0
wait_until 10 grep -qs "^recv " "$(lab_log seq-recv)" || fail "F9: the receiver did not finish"
sleep 1
kill -0 "$stracer" 2>/dev/null || fail "F9: strace did not stay attached to m1 (pid $m1pid)"
kill "$stracer" 2>/dev/null || true
wait "$stracer" 2>/dev/null || true
out=$(grep "^onpath " "$(lab_log onpath9)")
copies=$(field copies)
settle m1 "$LAB_DIR/F9-after.json" replay
moved=$("$PY" "$FL" delta "$LAB_DIR/F9-before.json" "$LAB_DIR/F9-after.json" replay)
seqsent=$(sed -n 's/^sent //p' "$LAB_DIR/f9-send.out")
seqgot=$(sed -n 's/.* distinct=\([0-9]*\) .*/\1/p' "$(lab_log seq-recv)")
# Threads: reactors are named wsreactor-N; reactor 0 is the main thread.
reactors=$(for t in /proc/"$m1pid"/task/*; do c=$(cat "$t/comm"); [[ $c == wsreactor* ]] && basename "$t"; done | sort -u | tr '\n' ' ')
reactors="$m1pid $reactors"
writes=$(grep -E 'rename.*endpoints\.json' "$LAB_DIR/f9.strace" | grep -vc 'resumed>' || true)
fsyncs_on_reactor=$(awk -v r=" $reactors " '/fsync|fdatasync/ { if (index(r, " " $1 " ")) n++ } END { print n + 0 }' "$LAB_DIR/f9.strace")
fsyncs=$(grep -cE 'fsync|fdatasync' "$LAB_DIR/f9.strace" || true)
fsync_tids=$(awk '/fsync|fdatasync/ { print $1 }' "$LAB_DIR/f9.strace" | sort -u | tr '\n' ' ')
flips=$(grep -c "m2: path direct 203.0.113.6[78]" "$(lab_log d-m1)" || true)
figures+=("F9-roaming-race: $copies copies raced ahead of m2's DATA from 2 alternating addresses in ${f9secs} s; m1 logged $flips moves of m2's path to them; m1 reactor-0 CPU ${cpu}%; legit m2 -> m1 (numbered) $seqgot of $seqsent; endpoints.json renames $writes, fsyncs $fsyncs by threads [ ${fsync_tids}] (reactors [ $reactors ]: $fsyncs_on_reactor); counters: $moved")
echo "figures: ${figures[-1]}"
[ "$copies" -ge 100 ] || fail "F9: only $copies copies raced"
[ "$flips" -ge 1 ] || fail "F9: the race never moved m1's path to m2 (nothing for the debounce to hold back)"
# The log is budgeted (Engine/LogBudget.swift: a burst of 20, then 2 lines/s), not written at the racer's rate.
[ "$flips" -le $((20 + 2 * f9secs + 5)) ] || fail "F9: m1 logged $flips path moves in $f9secs s: the log runs at the attacker's rate"
# Each DATA arrives twice (copy first): exactly one of the two is a replay.
[ "$(d replay)" -ge $((copies * 98 / 100)) ] && [ "$(d replay)" -le $((copies + 5)) ] ||
  fail "F9: $copies raced copies, $(d replay) counted as replay"
[ "$fsyncs_on_reactor" -eq 0 ] || fail "F9: $fsyncs_on_reactor fsyncs on a reactor thread ($reactors): $(grep -E 'fsync' "$LAB_DIR/f9.strace" | head -3)"
# At once after a quiet spell, then at most once per 30 s: 2 writes in a short run, 1 per 30 s more.
maxw=$((2 + f9secs / 30))
[ "$writes" -le "$maxw" ] || fail "F9: endpoints.json written $writes times in $f9secs s (debounce allows $maxw)"
[ $((seqgot * 100)) -ge $((seqsent * 90)) ] || fail "F9: the numbered flow m2 -> m1 got $seqgot of $seqsent"
# m2's own packets (no more races) bring m1's path back to m2's real endpoint.
back() { status m1 | "$PY" -c "
import json,sys; p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='m2'][0]
sys.exit(0 if p['endpoint']=='203.0.113.22:51820' else 1)"; }
pokeback() { lab_exec m2 ping -c 1 -W 1 10.77.0.21 >/dev/null 2>&1; back; }
wait_until 20 pokeback || fail "F9: m1's path to m2 did not come back to 203.0.113.22:51820 after the race"
echo "ok: F9: path flipped by $copies raced copies; endpoints.json written $writes times (<= $maxw), no fsync on a reactor; every copy or original in replay; path back to m2's endpoint"

# ── F11b: replay after a restart ────────────────────────────────────────────
if wait "$sniffer"; then
  lab_kill_tag d-m1
  wait_until 10 bash -c "! ip -n $(lab_ns m1) link show ws0 >/dev/null 2>&1" || fail "F11b: m1's ws0 stays after it stopped"
  start_daemon m1
  wait_until 10 status m1 >/dev/null 2>&1 || fail "F11b: m1 does not come back"
  wait_until 20 pingable m1 m2 || fail "F11b: m1 does not reach m2 after its restart"
  # For REKEY_TIMEOUT (5 s) after a handshake it initiated, m1 takes an INIT
  # of m2's as one that crossed its own (simultaneousInitiation): wait that
  # out, so that the replay meets the timestamp check (the review's case).
  sleep 6
  settle m1 "$LAB_DIR/F11b-before.json" $hs
  out=$(lab_exec x "$bin/ws-bench" flood --seconds 2 --kind replay --rate 20 --to 203.0.113.21:51820 --from 203.0.113.66 \
    --payload-file "$LAB_DIR/init.bin")
  sent=$(field sent) replies=$(field replies)
  settle m1 "$LAB_DIR/F11b-after.json" $hs
  moved=$("$PY" "$FL" delta "$LAB_DIR/F11b-before.json" "$LAB_DIR/F11b-after.json" $hs)
  refused=${moved##*sum=}
  all=$("$PY" -c "
import json
a=json.load(open('$LAB_DIR/F11b-before.json'))['counters']; b=json.load(open('$LAB_DIR/F11b-after.json'))['counters']
print(' '.join('%s=%d' % (k, b[k] - a.get(k, 0)) for k in sorted(b) if b[k] != a.get(k, 0)))")
  echo "F11b: every counter that moved: $all"
  figures+=("F11b-replay-after-restart: $sent replays of m2's INIT captured before m1's restart; answered $replies; counters: $moved")
  echo "figures: ${figures[-1]}"
  # The INIT is older than m1's run: accepted at most once (if no newer INIT of
  # m2 came since the restart), answered at most once; every other copy refused.
  [ "$replies" -le 1 ] || fail "F11b: $replies answers to $sent replays"
  [ "$refused" -ge $((sent - 1)) ] && [ "$refused" -le "$sent" ] || fail "F11b: $refused of $sent replays refused ($moved)"
  wait_until 10 pingable m1 m2 || fail "F11b: m1 no longer reaches m2 after the replays"
  echo "ok: F11b: after a restart the captured INIT was accepted $((sent - refused)) time(s) (at most once, as documented), $refused refused; m1 still reaches m2"
else
  echo "SKIP: F11b not run: no HANDSHAKE_INIT from m2 to m1 seen while the daemons started"
fi

# ── F8: what the insider made m1 send to third parties ──────────────────────
# The bound (EndpointBook.admit, GossipRouting.drainGossip): of what a member
# says about its addresses, CANDIDATES and the new endpoints of its signed
# gossip record alike, at most 8 addresses nobody vouched for are taken per
# 30 s window (unattestedPunchTargets); what the book holds is at most 8
# candidates + 8 record endpoints (EndpointRecord.maxEndpoints), so at most
# 16 distinct third-party targets in any window (those held from the window
# before + 8 new), and each direct attempt pings each target for one punch
# (about 9 rounds in 5 s): the review's example budget, 16 targets x 10 rounds
# per rendezvous per 5 s. ConnectivityGossipTests checks a churning record.
lab_kill_tag sink
run_s=$(awk 'END { print int($1) }' "$LAB_DIR/sink.log")
cands=$(status m3 | "$PY" -c "import json,sys
sink={'203.0.113.%d' % i for i in range(200, 216)}
print(sum(1 for e in json.load(sys.stdin)['node']['endpoints'] if e['addr'].rsplit(':', 1)[0] in sink))")
gossiped=$(status m1 | "$PY" -c "import json,sys
p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='m3'][0]
print(sum(1 for e in ((p.get('gossip') or {}).get('endpoints') or []) if e['addr'].startswith('203.0.113.2') and not e['addr'].startswith('203.0.113.23:')))")
punch=$(status m1 | "$PY" -c "import json,sys; c=json.load(sys.stdin)['counters']; print(' '.join('%s=%d' % (k, c.get(k, 0)) for k in ('candidates_rate_limited','rendezvous_rate_limited','gossip_record_punches')))")
s1=$("$PY" "$F2L" sinkstats "$LAB_DIR/sink.log" 203.0.113.21 30)
s1b=$("$PY" "$F2L" sinkstats "$LAB_DIR/sink.log" 203.0.113.21 5)
s2=$("$PY" "$F2L" sinkstats "$LAB_DIR/sink.log" 203.0.113.22 30)
figures+=("F8-insider-candidates: m3 announced $cands sink addresses (its signed gossip record at m1: $gossiped of them); over ${run_s} s the sink got from m1 (30 s windows): $s1; (5 s windows): $s1b; from m2 (30 s windows): $s2; m1: $punch")
echo "figures: ${figures[-1]}"
[ "$cands" -ge 8 ] || fail "F8: m3 announces only $cands of its 16 sink addresses: the insider did not insist"
total=$(sed -n 's/.*total=\([0-9]*\).*/\1/p' <<<"$s1")
[ "$total" -gt 0 ] || fail "F8: m1 never punched m3's announced addresses: the test saw no insider effect"
wmax=$(sed -n 's/.*window_max=\([0-9]*\).*/\1/p' <<<"$s1")
wpk=$(sed -n 's/.*window_pkts=\([0-9]*\).*/\1/p' <<<"$s1b")
[ "$wmax" -le 16 ] || fail "F8: m1 sent to $wmax distinct sink addresses within 30 s (bound 8 held + 8 new)"
# A 5 s window can hold parts of two attempts (one of m1's, one m3's rendezvous
# started): at most 2 x 16 targets x 10 rounds.
[ "$wpk" -le 320 ] || fail "F8: m1 sent $wpk datagrams to the sink within 5 s (bound 2 attempts x 16 targets x 10 rounds)"
echo "ok: F8: m1 pinged at most $wmax distinct third-party addresses per 30 s and at most $wpk datagrams per 5 s (<= 16 and 320)"
if [ "$wmax" -gt 8 ]; then
  echo "note: F8: $wmax > 8 distinct in one window: addresses taken in the window before were still held"
fi

echo "figures (attack: rate sent; victim reactor-0 CPU; legit kept; counters moved):"
for f in "${figures[@]}"; do echo "  $f"; done
