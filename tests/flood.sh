#!/usr/bin/env bash
# Floods against a real release daemon while a legitimate flow runs through it
# (security review 60ee9cd, Part C.4: F1, F3, F4, F5, F10, F11a). Short form: every
# attack a few seconds, the whole script well under 3 minutes; perf/flood runs
# the same longer (WS_FLOOD_SECONDS) and keeps the table.
#
#                  ns <P>-internet: bridge br0 (no uplink)
#      ┌──────────────────┬───────────┴──────┬──────────────────────────┐
#   a1 203.0.113.10    m1 203.0.113.21     m2 203.0.113.22         x 203.0.113.66
#   anchor             the victim          legit peer: UDP to m1   the attacker (no daemon):
#   reactors = 2       reactors = 2        through the tunnel      + 198.51.100.1-200/32 (F5, IPv4 sources)
#                      + 2001:db8:f::21/64                         + 2001:db8:f::1:0-ff/64 (F5, one /64)
#
# A sniffer on m2's port of the bridge catches one of m2's HANDSHAKE_INITs to m1
# while the daemons start; F11 replays it from x.
# Overlay ws0: a1 10.77.0.1, m1 10.77.0.21, m2 10.77.0.22. m1 and m2 know each
# other's endpoint (a direct path); both keep a session with the anchor a1.
# m1's peers are [a1, m2], so with 2 reactors m2's session (the legit flow) is
# owned by reactor 1 and reactor 0 (the main thread: handshakes, probes,
# timers, RELAY) does the attack's work alone: its CPU is the figure.
#
# Per attack: the legit flow (iperf3 UDP m2 -> m1, a fixed offered rate, so
# that it measures loss, not how much CPU the shared machine has left) runs for
# the attack's time plus a margin, the injector (ws-bench flood, or
# tests/lib/flood.py ctl) runs inside it, then the script checks:
#   - legit: received >= 90% of what the baseline (same flow, no attack, this
#     run) received, and m1 still pings m2;
#   - the attack's datagrams show up in m1's counters: sum of the named
#     counters + replies the injector got + kernel receive drops at least 95%
#     of what the injector sent, and counters + replies at most 102% (kernel
#     drops on the shared socket may be the legit flow's, so they only fill in);
#   - m1's state (NAT mapping, anchor reachability, peer sessions and active
#     paths) is the same before and after;
#   - per-attack limits (load meter tripped, global/per-/64 probe reply caps).
# m1's reactor-0 CPU (main thread, /proc/PID/task/PID/stat: its own CPU time,
# which other load on the machine hardly inflates) must stay under
# WS_FLOOD_CPU_MAX, 50% by default: far above what these floods cost today
# (<= 11% at 2,000/s, perf/results/flood.md; the review's target is 20%), far
# below what the old bugs cost (H1: 2,000 relayed INITs/s at 380 us of DH each
# would take 76%; H2: a table rebuilt per probe pins the thread).
#
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
secs=${WS_FLOOD_SECONDS:-3}       # attack time per flood
rate=${WS_FLOOD_RATE:-2000}       # F1/F3/F5 datagrams per second (the review: 5k; 2 shared cores)
legit=${WS_FLOOD_LEGIT:-20M}      # offered legit UDP, bits/s
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin
[ -x "$bin/ws-bench" ] || fail "no $bin/ws-bench (swift build -c release)"
command -v iperf3 >/dev/null || fail "iperf3 not found"
PY=$LAB_PY
FL=$here/lib/flood.py

lab_internet
lab_public a1 203.0.113.10
lab_public m1 203.0.113.21
lab_public m2 203.0.113.22
lab_public x 203.0.113.66
# F5's sources: 200 IPv4 addresses on the attacker (the victim answers them
# over ARP like any host), and 256 IPv6 addresses in one /64.
{ for i in $(seq 1 200); do echo "addr add 198.51.100.$i/32 dev eth0"; done
  for i in $(seq 0 255); do printf 'addr add 2001:db8:f::1:%x/64 dev eth0 nodad\n' "$i"; done; } |
  ip -n "$(lab_ns x)" -batch -
ip -n "$(lab_ns m1)" addr add 2001:db8:f::21/64 dev eth0 nodad

declare -A ov=([a1]=1 [m1]=21 [m2]=22) ip=([a1]=203.0.113.10 [m1]=203.0.113.21 [m2]=203.0.113.22)
mesh_keys a1 m1 m2
# The anchor runs 2 reactors: every one of them forwards RELAY (docs/engine.md).
mesh_conf a1 true 2 m1 m2 >"$LAB_DIR/a1.toml"
mesh_conf m1 false 2 a1 m2 >"$LAB_DIR/m1.toml"
mesh_conf m2 false 1 a1 m1 >"$LAB_DIR/m2.toml"
# The control socket's directory is traversable by others (the socket itself
# is 0600): F10 checks that a non-root user is refused by the socket's mode.
chmod 711 "$LAB_DIR"
# F11 replays a real HANDSHAKE_INIT of m2 to m1: catch one on m2's bridge port
# while the daemons start.
ip netns exec "$LAB_PREFIX-internet" "$PY" "$FL" sniff-init i-m2 "$LAB_DIR/init.bin" 15 203.0.113.22 203.0.113.21 \
  >"$LAB_DIR/sniff.out" 2>&1 &
sniffer=$!
wait_until 5 grep -qs listening "$LAB_DIR/sniff.out" || fail "INIT sniffer did not start: $(cat "$LAB_DIR/sniff.out")"
# m2 starts once m1 answers, and its first ping makes it the initiator toward
# m1: m1 accepts that INIT, so F11's copy of it is a replay of an accepted one.
for n in a1 m1; do lab_bg "$n" "d-$n" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml"; done
wait_until 10 status m1 >/dev/null 2>&1 || fail "m1 does not answer on its control socket"
lab_bg m2 d-m2 "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/m2.toml"
victim_pid=$(awk '$2 == "d-m1" {print $1}' "$LAB_DIR/pids")

wait_until 20 pingable m2 m1 || fail "m2 cannot ping m1 through the tunnel"
wait_until 20 pingable m1 a1 || fail "m1 cannot ping the anchor"
anchor_up() { status m1 | "$PY" "$here/lib/jq.py" anchors.0.reachable | grep -qix true; }
wait_until 15 anchor_up || fail "m1 does not see its anchor as reachable"
echo "ok: a1, m1, m2 up; m2 -> m1 and m1 -> a1 ping through the tunnel"

lab_bg m1 iperf-s iperf3 -s -B 10.77.0.21
wait_tcp_listen "$(lab_ns m1)" 5201 || fail "iperf3 server not listening"

# Reactor 0 of the victim is the main thread: utime + stime ticks.
ticks() { awk '{print $14 + $15}' "/proc/$victim_pid/task/$victim_pid/stat"; }
hz=$(getconf CLK_TCK)
kdrops() { lab_exec m1 "$PY" "$FL" snmp /proc/net/snmp /proc/net/snmp6; }

# settle FILE NAMES...: m1's status once the named counters stopped moving for
# 1 s (other reactors publish theirs up to 0.5 s late), at most 10 s.
settle() {
  local f=$1 prev="" cur i
  shift
  for i in $(seq 20); do
    status m1 >"$f"
    cur=$("$PY" -c "
import json,sys; c=json.load(open('$f')).get('counters',{}); print(sum(c.get(n,0) for n in sys.argv[1:]))" "$@")
    [ "$cur" = "$prev" ] && return 0
    prev=$cur
    sleep 0.5
  done
  fail "m1's counters $* still moving 10 s after the attack"
}

# legit_run TAG SECONDS: the legit flow m2 -> m1 in the background (iperf3 UDP at
# $legit, 1200-byte datagrams); legit_wait TAG sets $got to the datagrams received.
legit_run() {
  lab_exec m2 iperf3 -c 10.77.0.21 -u -b "$legit" -l 1200 -t "$2" -J >"$LAB_DIR/legit-$1.json" 2>&1 &
  legit_pid=$!
}
legit_wait() {
  wait "$legit_pid" || fail "legit flow ($1): iperf3 failed: $(tail -3 "$LAB_DIR/legit-$1.json")"
  got=$("$PY" -c "
import json; e=json.load(open('$LAB_DIR/legit-$1.json'))['end']['sum']
print(e['packets'] - e['lost_packets'])")
}

# Baseline: the same flow, no attack.
legit_run base $((secs + 2))
t0=$(ticks)
sleep "$((secs + 2))"
base_cpu=$(( ($(ticks) - t0) * 100 / hz / (secs + 2) ))
legit_wait base
base=$got
[ "$base" -gt 0 ] || fail "the baseline legit flow received nothing"
echo "ok: baseline: legit UDP $legit for $((secs + 2)) s: $base datagrams received; m1 reactor-0 CPU ${base_cpu}%"
figures=()

# attack NAME ACCOUNTED_COUNTERS -- injector command...: runs one flood inside
# the legit flow and checks everything but the attack-specific limits; leaves
# the injector's line in $out, the counter deltas in $moved, sent in $sent.
attack() {
  local name=$1 counters=() before after state0 state1 k0 k1 t0 t1 cpu got kept acc
  shift
  while [ "$1" != -- ]; do counters+=("$1"); shift; done
  shift
  settle "$LAB_DIR/$name-before.json" "${counters[@]}"
  state0=$(status m1 | "$PY" "$FL" state)
  k0=$(kdrops)
  legit_run "$name" $((secs + 2))
  sleep 1
  t0=$(ticks) t1=$(date +%s%N)
  out=$("$@") || fail "$name: injector failed: $out"
  cpu=$(( ($(ticks) - t0) * 100 * 1000000000 / hz / ($(date +%s%N) - t1) ))
  legit_wait "$name"
  settle "$LAB_DIR/$name-after.json" "${counters[@]}"
  k1=$(kdrops)
  state1=$(status m1 | "$PY" "$FL" state)
  moved=$("$PY" "$FL" delta "$LAB_DIR/$name-before.json" "$LAB_DIR/$name-after.json" "${counters[@]}")
  sent=$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' <<<"$out")
  replies=$(sed -n 's/.* replies=\([0-9]*\) .*/\1/p' <<<"$out")
  pps=$(sed -n 's/.* pps=\([0-9]*\) .*/\1/p' <<<"$out")
  kept=$((got * 100 / base))
  # Answers are their own outcome only for probes (a reply instead of a drop);
  # a cookie reply answers an INIT that is counted as cookieRequired.
  [ "${count_replies:-0}" = 1 ] || replies_acc=0
  # Datagrams of a side injector (its line in $extra_file) counted by the same counters.
  local extra=0
  [ -z "${extra_file:-}" ] || extra=$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' "$extra_file")
  # Kernel receive drops may be the legit flow's too (the socket is shared): they
  # can make up for attack datagrams the daemon never saw (the lower bound), but
  # never count against double counting (the upper bound is counters + replies).
  local own=$(( ${moved##*sum=} + ${replies_acc:-$replies} - extra ))
  acc=$(( own + k1 - k0 ))
  unset replies_acc
  figures+=("$name: sent $sent at $pps/s; m1 reactor-0 CPU ${cpu}% (baseline ${base_cpu}%); legit kept ${kept}% ($got/$base); counters: $moved; replies $replies; kernel drops $((k1 - k0))")
  echo "figures: ${figures[-1]}"
  [ "$sent" -gt 0 ] || fail "$name: the injector sent nothing"
  [ "$kept" -ge 90 ] || fail "$name: the legit flow kept $kept% of its baseline"
  wait_until 5 pingable m1 m2 || fail "$name: m1 no longer pings m2"
  [ "$state1" = "$state0" ] || fail "$name: m1's state moved: before [$state0] after [$state1]"
  [ $((acc * 100)) -ge $((sent * 95)) ] && [ $((own * 100)) -le $((sent * 102)) ] ||
    fail "$name: $acc of $sent attack datagrams accounted for (counters + replies + kernel drops; $own without kernel drops)"
  [ "$cpu" -le "${WS_FLOOD_CPU_MAX:-50}" ] || fail "$name: m1 reactor-0 CPU $cpu% > ${WS_FLOOD_CPU_MAX:-50}%"
  echo "ok: $name: legit kept $kept%, $acc of $sent accounted for, state unchanged [$state1]"
}
d() { "$PY" -c "import sys; print(sys.argv[1].split('$1=')[1].split()[0])" "$moved"; }
flood() { "$bin/ws-bench" flood --seconds "$secs" "$@"; }

# F1: HANDSHAKE_INIT with a valid mac1 from a stranger, one source. The load
# meter (128/s) trips within the first second: then each costs one BLAKE2b and
# a cookie reply, and the rest before that one DH (es) and `notMember`.
hs="cookieRequired notMember rateLimited authFailed mac1 handshakeFlood staleTimestamp"
attack F1-init $hs -- lab_exec x "$bin/ws-bench" flood --seconds "$secs" --kind init --rate "$rate" \
  --to 203.0.113.21:51820 --from 203.0.113.66 --victim-key "${pub[m1]}"
[ $(( $(d cookieRequired) + rate )) -ge "$sent" ] || fail "F1: under load after more than 1 s ($moved)"
[ "$replies" -le "$(d cookieRequired)" ] || fail "F1: more replies than cookies"
echo "ok: F1: under load within 1 s; $(d cookieRequired) answered with a cookie (64 bytes for 180), $(d notMember) refused after one DH"

# F3: the same wrapped in RELAY, with the anchor's forged source, naming m2.
# A RELAY must carry the anchor's per-hop tag under its session with m1
# (review M4 and H1 vector (a)): a forged anchor source cannot make one, so m1
# drops every datagram at the tag check, before the load meter or any DH.
sleep 1.2  # F1's load state is sticky for 1 s
attack F3-relay-init $hs relay_bad_tag relay_unknown_target relay_mismatch bad_length -- lab_exec x "$bin/ws-bench" flood \
  --seconds "$secs" --kind relay-init --rate "$rate" --to 203.0.113.21:51820 --spoof 203.0.113.10:51820 \
  --victim-key "${pub[m1]}" --member-key "${pub[m2]}"
[ "$(d relay_bad_tag)" -eq "$sent" ] || fail "F3: forged-anchor RELAYs not all refused at the hop tag ($moved)"
[ "$(d cookieRequired)" -eq 0 ] && [ "$(d notMember)" -eq 0 ] || fail "F3: a forged-anchor RELAY reached the handshake ($moved)"
[ "$replies" -eq 0 ] || fail "F3: $replies replies to forged RELAYs"
echo "ok: F3: every forged-anchor RELAY refused at the hop tag ($(d relay_bad_tag)), none reached the handshake, no reply"

# F4: 1-byte 0x01 garbage, 200/s (review: 129/s kept a node "under load", M2),
# with 10 valid stranger INITs a second beside it: they must all be refused
# as `notMember` (not under load: no cookie round trip for a first contact).
sleep 1.2
f4() { # the garbage, with the 10 INITs a second beside it for the same time
  lab_exec x "$bin/ws-bench" flood --seconds "$secs" --kind init --rate 10 --to 203.0.113.21:51820 \
    --from 203.0.113.66 --victim-key "${pub[m1]}" >"$LAB_DIR/f4-inits.out" &
  local side=$!
  lab_exec x "$bin/ws-bench" flood --seconds "$secs" --kind garbage --rate 200 --to 203.0.113.21:51820 --from 203.0.113.66
  wait "$side"
}
extra_file=$LAB_DIR/f4-inits.out attack F4-garbage badLength bad_length notMember cookieRequired -- f4
inits=$(sed -n 's/.* sent=\([0-9]*\) .*/\1/p' "$LAB_DIR/f4-inits.out")
[ "$(d cookieRequired)" -eq 0 ] || fail "F4: garbage put m1 under load ($(d cookieRequired) cookies)"
[ "$(d notMember)" -eq "$inits" ] || fail "F4: $inits stranger INITs sent beside the garbage, $(d notMember) refused as notMember"
echo "ok: F4: 1-byte garbage never counts as load: $inits stranger INITs beside it all reached the member check, no cookie asked"

# F5a: PATH_PROBE with m2's (public) key from 200 IPv4 sources at $rate/s: each
# source gets at most 10 replies/s (burst 20) and all together at most
# 1000/s (burst 1000, NodeCore probeReplyBudget); replies are never larger.
sleep 1.2
srcs=$(seq -s, -f '198.51.100.%g' 1 200)
count_replies=1 attack F5-probe-ipv4 probe_rate_limited probe_not_member bad_length -- lab_exec x "$bin/ws-bench" flood \
  --seconds "$secs" --kind probe --rate "$rate" --to 203.0.113.21:51820 --from "$srcs" --member-key "${pub[m2]}"
# Every reply from a source that is not a member's known address takes a
# token of the global budget: at most 1000 * secs + the burst of 1000 (+ 50
# for the refill while the last probes are still being read).
cap=$((1000 * secs + 1000 + 50))
[ "$replies" -le "$cap" ] || fail "F5 IPv4: $replies probe replies > global cap $cap"
rb=$(sed -n 's/.* reply_bytes=\([0-9]*\) .*/\1/p' <<<"$out")
[ "$rb" -le $((replies * 63)) ] || fail "F5 IPv4: replies larger than 63 bytes"
echo "ok: F5 IPv4: $replies replies to $sent probes from 200 sources (cap $cap), $rb reply bytes for $((sent * 64)) probe bytes"

# F5b: the same from 256 addresses of one IPv6 /64: one source for the limiter (M3).
sleep 1.2
srcs6=$(for i in $(seq 0 255); do printf '2001:db8:f::1:%x,' "$i"; done)
count_replies=1 attack F5-probe-ipv6-64 probe_rate_limited probe_not_member bad_length -- lab_exec x "$bin/ws-bench" flood \
  --seconds "$secs" --kind probe --rate $((rate / 2)) --to "[2001:db8:f::21]:51820" --from "${srcs6%,}" \
  --member-key "${pub[m2]}"
cap=$((10 * secs + 20 + 10))
[ "$replies" -le "$cap" ] || fail "F5 IPv6: $replies probe replies from one /64 > $cap (keyed by /64?)"
echo "ok: F5 IPv6 /64: $replies replies to $sent probes from 256 addresses of one /64 (cap $cap)"

# F11: a real HANDSHAKE_INIT of m2's, replayed from the attacker 100 times a
# second (below the load meter's 128/s, so each one reaches the timestamp
# check): refused as stale (or as a flood within 20 ms), m2's session and
# path untouched (the state check). At most 1 DH each since M1's fix; not timed.
if wait "$sniffer"; then
  sleep 1.2
  attack F11-replay staleTimestamp handshakeFlood cookieRequired rateLimited notMember authFailed -- lab_exec x \
    "$bin/ws-bench" flood --seconds "$secs" --kind replay --rate 100 --to 203.0.113.21:51820 --from 203.0.113.66 \
    --payload-file "$LAB_DIR/init.bin"
  [ $(( ($(d staleTimestamp) + $(d handshakeFlood)) * 10 )) -ge $((sent * 9)) ] ||
    fail "F11: of $sent replayed INITs fewer than 90% refused as stale or flood ($moved)"
  echo "ok: F11: $sent replays of a real INIT: $(d staleTimestamp) stale, $(d handshakeFlood) flood; m2's session kept"
else
  echo "SKIP: F11 not run: no HANDSHAKE_INIT from m2 to m1 seen while the daemons started"
fi

# F10: control-socket abuse while the legit flow runs, then a non-root user.
# The counters list is empty: nothing of it is a datagram (sent=0 accounted=0).
f10() {
  "$PY" "$FL" ctl "$LAB_DIR/m1.sock" >"$LAB_DIR/f10.out" || { cat "$LAB_DIR/f10.out"; return 1; }
  echo "flood kind=control sent=0 seconds=0 pps=0 replies=0 reply_bytes=0 errors=0 sources=1"
}
secs_saved=$secs
secs=12
legit_run F10 14
sleep 1
t0=$(ticks) t1=$(date +%s%N)
f10 >/dev/null || fail "F10: $(grep FAIL "$LAB_DIR/f10.out")"
cpu=$(( ($(ticks) - t0) * 100 * 1000000000 / hz / ($(date +%s%N) - t1) ))
[ "$cpu" -le "${WS_FLOOD_CPU_MAX:-50}" ] || fail "F10: m1 reactor-0 CPU $cpu% > ${WS_FLOOD_CPU_MAX:-50}%"
legit_wait F10
sed 's/^/  /' "$LAB_DIR/f10.out"
kept=$((got * 100 / (base * 14 / (secs_saved + 2))))
secs=$secs_saved
who=nobody
id "$who" >/dev/null 2>&1 || fail "no user 'nobody' for the non-root check"
set +e
# The user must be able to run the client at all: the checkout (and /root's
# pyenv) may sit in directories only root can enter (a fresh clone in a
# mktemp -d is 0700), so it gets its own readable copy and Debian's python3.
# What it must not get through is the socket's mode.
f10dir=$(mktemp -d /tmp/wsf10.XXXXXX)
chmod 755 "$f10dir"
install -m 644 "$FL" "$f10dir/flood.py"
upy=/usr/bin/python3
[ -x "$upy" ] || upy=$PY
ip netns exec "$(lab_ns m1)" setpriv --reuid="$who" --regid=nogroup --clear-groups "$upy" "$f10dir/flood.py" connect "$LAB_DIR/m1.sock" >"$LAB_DIR/f10-user.out" 2>&1
rc=$?
set -e
rm -rf "$f10dir"
[ $rc = 13 ] || fail "F10: a non-root user connecting to the control socket: exit $rc ($(cat "$LAB_DIR/f10-user.out")), want EACCES"
status m1 >/dev/null || fail "F10: wsctl status fails after the abuse"
[ "$kept" -ge 90 ] || fail "F10: the legit flow kept $kept% of its baseline"
wait_until 5 pingable m1 m2 || fail "F10: m1 no longer pings m2"
figures+=("F10-control: 33 clients, slow client, 64 KiB + 1, 10 MB, nesting, non-UTF-8, non-root (EACCES); m1 reactor-0 CPU ${cpu}%; legit kept ${kept}%")
echo "ok: F10: a non-root user is refused (EACCES); wsctl status answers; legit kept ${kept}%"

echo "figures (attack: rate sent; victim reactor-0 CPU; legit kept; counters moved):"
for f in "${figures[@]}"; do echo "  $f"; done
