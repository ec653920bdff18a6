#!/usr/bin/env bash
# Rekey under load loses nothing (security review 60ee9cd, Part C.5 "Packets"):
# two real release daemons rekey every few seconds (WS_TEST_REKEY_AFTER_S,
# tests only) while numbered UDP streams run through the tunnel both ways and,
# in the background, a TCP bulk transfer keeps the tunnel as busy as this
# machine lets it. Every datagram sealed under an old key must still open (the
# `previous` slot), and a payload sent while a handshake runs waits in the
# handshake queue; so:
#   - the session drop counters a rekey would move (unknownIndex, authFailed,
#     keyExpired, replay, unexpectedMessage; send_noEndpoint; queue_dropped)
#     stay 0 on both sides;
#   - every numbered datagram missing at the receiver is explained by a
#     counted overload drop that has nothing to do with keys: the kernel's UDP
#     receive drops (RcvbufErrors/InErrors), the TUN's tx drops, the daemon's
#     udp_send_full / handoff_full. On a quiet machine that is 0 = 0.
#   - the session rekeyed at least WS_REKEYS (3) times (handshakes_completed).
#
#             ns <P>-internet: bridge br0 (no uplink)
#          ┌─────────────────────────┴──────────────────────┐
#   m1 203.0.113.21:51820 (reactors 2)          m2 203.0.113.22:51820 (reactors 1)
#   overlay 10.77.0.21                           overlay 10.77.0.22
#   REKEY_AFTER_TIME 3 s on both
#
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
secs=${WS_REKEY_SECONDS:-24}
after=${WS_REKEY_AFTER:-3}
pps=${WS_REKEY_PPS:-1000}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin
PY=$LAB_PY
FL=$here/lib/flood.py
SEQ=$here/lib/seqstream.py
command -v iperf3 >/dev/null || fail "iperf3 not found"

lab_internet
lab_public m1 203.0.113.21
lab_public m2 203.0.113.22
declare -A ov=([m1]=21 [m2]=22) ip=([m1]=203.0.113.21 [m2]=203.0.113.22)
mesh_keys m1 m2
mesh_conf m1 false 2 m2 >"$LAB_DIR/m1.toml"
mesh_conf m2 false 1 m1 >"$LAB_DIR/m2.toml"
for n in m1 m2; do
  lab_bg "$n" "d-$n" env WS_TEST_REKEY_AFTER_S="$after" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml"
done
wait_until 20 pingable m2 m1 || fail "m2 cannot ping m1 through the tunnel"
echo "ok: m1 and m2 up, REKEY_AFTER_TIME $after s"

rekeyc="unknownIndex authFailed keyExpired replay unexpectedMessage send_noEndpoint send_unknownPeer queue_dropped"
loadc="udp_send_full handoff_full"
hs() { status "$1" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['peers'][0]['handshakes_completed'])"; }
kdrops() { lab_exec "$1" "$PY" "$FL" snmp /proc/net/snmp /proc/net/snmp6; }
tundrops() { lab_exec "$1" cat /sys/class/net/ws0/statistics/tx_dropped; }
for n in m1 m2; do status "$n" >"$LAB_DIR/$n-before.json"; done
h0=$(hs m1) k0=$(( $(kdrops m1) + $(kdrops m2) )) t0=$(( $(tundrops m1) + $(tundrops m2) ))

# The load: TCP bulk both ways for the whole run (as fast as the machine lets it).
lab_bg m1 iperf-s iperf3 -s -B 10.77.0.21
lab_bg m2 iperf-s2 iperf3 -s -B 10.77.0.22
wait_tcp_listen "$(lab_ns m1)" 5201 || fail "iperf3 server not listening on m1"
wait_tcp_listen "$(lab_ns m2)" 5201 || fail "iperf3 server not listening on m2"
lab_bg m1 seq-m1 "$PY" "$SEQ" recv --bind 10.77.0.21:6000 --seconds $((secs + 20)) --idle 5
lab_bg m2 seq-m2 "$PY" "$SEQ" recv --bind 10.77.0.22:6000 --seconds $((secs + 20)) --idle 5
wait_until 5 grep -qs listening "$(lab_log seq-m1)" || fail "receiver on m1 did not start"
wait_until 5 grep -qs listening "$(lab_log seq-m2)" || fail "receiver on m2 did not start"
lab_exec m2 iperf3 -c 10.77.0.21 -t "$secs" -J >"$LAB_DIR/tcp-21.json" 2>&1 &
tcp1=$!
lab_exec m1 iperf3 -c 10.77.0.22 -t "$secs" -J >"$LAB_DIR/tcp-22.json" 2>&1 &
tcp2=$!
lab_exec m2 "$PY" "$SEQ" send --to 10.77.0.21:6000 --rate "$pps" --seconds "$secs" >"$LAB_DIR/send-21.out" &
s1=$!
lab_exec m1 "$PY" "$SEQ" send --to 10.77.0.22:6000 --rate "$pps" --seconds "$secs" >"$LAB_DIR/send-22.out" &
s2=$!
wait "$s1" "$s2"
wait "$tcp1" || fail "TCP m2 -> m1 failed: $(tail -3 "$LAB_DIR/tcp-21.json")"
wait "$tcp2" || fail "TCP m1 -> m2 failed: $(tail -3 "$LAB_DIR/tcp-22.json")"
wait_until 15 grep -qs "^recv " "$(lab_log seq-m1)" || fail "receiver on m1 did not finish"
wait_until 15 grep -qs "^recv " "$(lab_log seq-m2)" || fail "receiver on m2 did not finish"
sleep 1  # other reactors publish their counters up to 0.5 s late
for n in m1 m2; do status "$n" >"$LAB_DIR/$n-after.json"; done
h1=$(hs m1) k1=$(( $(kdrops m1) + $(kdrops m2) )) t1=$(( $(tundrops m1) + $(tundrops m2) ))
rekeys=$((h1 - h0))
rk=0 ld=0
for n in m1 m2; do
  mv=$("$PY" "$FL" delta "$LAB_DIR/$n-before.json" "$LAB_DIR/$n-after.json" $rekeyc)
  ml=$("$PY" "$FL" delta "$LAB_DIR/$n-before.json" "$LAB_DIR/$n-after.json" $loadc)
  echo "counters $n: rekey-related: $mv; overload: $ml"
  rk=$((rk + ${mv##*sum=}))
  ld=$((ld + ${ml##*sum=}))
done
sent=$(( $(sed -n 's/^sent //p' "$LAB_DIR/send-21.out") + $(sed -n 's/^sent //p' "$LAB_DIR/send-22.out") ))
r1=$(grep "^recv " "$(lab_log seq-m1)") r2=$(grep "^recv " "$(lab_log seq-m2)")
miss() { sed -n 's/.* missing=\([0-9]*\) .*/\1/p' <<<"$1"; }
tail_lost() { # datagrams after the last one received (max) count as lost too
  local m s
  m=$(sed -n 's/.* max=\([0-9-]*\) .*/\1/p' <<<"$1")
  s=$(sed -n 's/^sent //p' "$2")
  echo $((s - m - 1))
}
lost=$(( $(miss "$r1") + $(miss "$r2") + $(tail_lost "$r1" "$LAB_DIR/send-21.out") + $(tail_lost "$r2" "$LAB_DIR/send-22.out") ))
explained=$((ld + k1 - k0 + t1 - t0))
tcp=$("$PY" -c "
import json
for f in ('$LAB_DIR/tcp-21.json','$LAB_DIR/tcp-22.json'):
    e=json.load(open(f))['end']['sum_received']; print('%.0f Mbit/s' % (e['bits_per_second']/1e6), end=' ')")
echo "figures: $secs s, REKEY_AFTER_TIME $after s: $rekeys handshakes completed; numbered UDP both ways at $pps/s each: $sent sent, $lost lost (m2->m1: $r1; m1->m2: $r2); overload drops (kernel UDP $((k1 - k0)), TUN tx $((t1 - t0)), daemon $ld) = $explained; rekey-related drop counters moved $rk; TCP load: $tcp"
[ "$rekeys" -ge "${WS_REKEYS:-3}" ] || fail "only $rekeys handshakes completed in $secs s (REKEY_AFTER_TIME $after s)"
[ "$rk" -eq 0 ] || fail "rekey-related drop counters moved by $rk"
[ "$lost" -le "$explained" ] || fail "$lost numbered datagrams lost, only $explained explained by counted overload drops"
echo "ok: $rekeys rekeys under load: 0 datagrams lost to a rekey ($lost lost, all explained by $explained counted overload drops)"
