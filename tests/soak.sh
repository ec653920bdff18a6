#!/usr/bin/env bash
# Soak (security review 60ee9cd, Part C.5 "Memory and tables"): three real
# release daemons run for WS_SOAK_SECONDS (45 here; perf/soak --minutes 10)
# with traffic through the tunnel and path flaps, and every 5 s the script
# samples each daemon's RSS, open fds and threads. Checks:
#   - every daemon is still running, answers on its control socket, and m2
#     reaches m1 again after the last flap;
#   - fds do not grow (end <= the sample after warm-up + 2);
#   - RSS does not grow beyond WS_SOAK_RSS_PCT % (default 25 here, where the
#     run is short; perf/soak uses 10) of the sample after warm-up (20 s in),
#     + 2 MiB for allocator slack;
#   - no log line at level error or critical.
# A flap: m1 drops UDP to and from m2 (nftables) for WS_SOAK_FLAP s, so the
# m1-m2 path fails over to the relay through a1, then lets it through again
# for as long, so it goes direct again.
#
#             ns <P>-internet: bridge br0 (no uplink)
#        ┌──────────────────────────┼────────────────────────────┐
#   a1 203.0.113.10 (anchor)   m1 203.0.113.21 (reactors 2)   m2 203.0.113.22
#                               overlay 10.77.0.21             overlay 10.77.0.22
#   traffic: numbered UDP m2 -> m1 (200/s), ping m1 -> m2 (5/s), TCP m2 -> m1 in bursts
#
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
secs=${WS_SOAK_SECONDS:-45}
flap=${WS_SOAK_FLAP:-8}
rss_pct=${WS_SOAK_RSS_PCT:-25}
warm=${WS_SOAK_WARM:-20}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin
PY=$LAB_PY
FL=$here/lib/flood.py
SEQ=$here/lib/seqstream.py
command -v iperf3 >/dev/null || fail "iperf3 not found"
command -v nft >/dev/null || fail "nft not found"

lab_internet
lab_public a1 203.0.113.10
lab_public m1 203.0.113.21
lab_public m2 203.0.113.22
declare -A ov=([a1]=1 [m1]=21 [m2]=22) ip=([a1]=203.0.113.10 [m1]=203.0.113.21 [m2]=203.0.113.22)
mesh_keys a1 m1 m2
mesh_conf a1 true 1 m1 m2 >"$LAB_DIR/a1.toml"
mesh_conf m1 false 2 a1 m2 >"$LAB_DIR/m1.toml"
mesh_conf m2 false 1 a1 m1 >"$LAB_DIR/m2.toml"
for n in a1 m1 m2; do lab_bg "$n" "d-$n" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml"; done
wait_until 20 pingable m2 m1 || fail "m2 cannot ping m1 through the tunnel"
wait_until 20 pingable m1 a1 || fail "m1 cannot ping the anchor"
echo "ok: a1, m1, m2 up"

# sample TAG: one line per daemon: "TAG NODE rss_kib fds threads"
sample() {
  local n p
  for n in a1 m1 m2; do
    p=$(pid_of "$n")
    [ -d "/proc/$p" ] || fail "$n (pid $p) is not running any more ($1)"
    echo "$1 $n $(awk '/^VmRSS/ {print $2}' "/proc/$p/status") $(ls "/proc/$p/fd" | wc -l) $(ls "/proc/$p/task" | wc -l)"
  done
}
block() { # on|off: m1 drops UDP to/from m2's endpoint
  if [ "$1" = on ]; then
    lab_block m1 m2 soak
  else
    lab_exec m1 nft delete table inet soak 2>/dev/null || true
  fi
}

lab_bg m1 iperf-s iperf3 -s -B 10.77.0.21
wait_tcp_listen "$(lab_ns m1)" 5201 || fail "iperf3 server not listening"
lab_bg m1 seq-recv "$PY" "$SEQ" recv --bind 10.77.0.21:6000 --seconds $((secs + 30)) --idle 10
wait_until 5 grep -qs listening "$(lab_log seq-recv)" || fail "receiver did not start"
lab_bg m2 seq-send "$PY" "$SEQ" send --to 10.77.0.21:6000 --rate 200 --seconds "$secs" --size 300
lab_bg m1 pinger ping -q -i 0.2 -w "$secs" 10.77.0.22
for n in a1 m1 m2; do status "$n" >"$LAB_DIR/$n-start.json"; done
sample start >"$LAB_DIR/samples"
t0=$(date +%s) flaps=0 relayed_seen=0 last_flap=$t0 blocked=0 warm_done=0
while [ $(( $(date +%s) - t0 )) -lt "$secs" ]; do
  sleep 5
  now=$(date +%s)
  sample "t+$((now - t0))" >>"$LAB_DIR/samples"
  if [ "$warm_done" = 0 ] && [ $((now - t0)) -ge "$warm" ]; then
    sample warm >>"$LAB_DIR/samples"
    warm_done=1
  fi
  # A TCP burst now and then (2 s), so that the tunnel also carries bulk.
  lab_exec m2 iperf3 -c 10.77.0.21 -t 2 -b 20M >/dev/null 2>&1 || true
  if [ $((now - last_flap)) -ge "$flap" ]; then
    if [ "$blocked" = 0 ]; then block on; blocked=1; flaps=$((flaps + 1)); else block off; blocked=0; fi
    last_flap=$now
  fi
  kind=$(status m1 | "$PY" -c "
import json,sys; p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='m2'][0]
a=[x for x in p['paths'] if x['active']]; print(a[0]['kind'] if a else 'none')")
  [ "$kind" = relay ] && relayed_seen=$((relayed_seen + 1))
done
block off
wait_until 30 pingable m2 m1 || fail "m2 does not reach m1 after the last flap"
wait_until 20 grep -qs "^recv " "$(lab_log seq-recv)" || fail "the numbered stream's receiver did not finish"
sample end >>"$LAB_DIR/samples"
[ "$warm_done" = 1 ] || sample warm >>"$LAB_DIR/samples"
for n in a1 m1 m2; do status "$n" >"$LAB_DIR/$n-end.json" || fail "$n does not answer on its control socket at the end"; done
sed 's/^/  sample /' "$LAB_DIR/samples"

fails=0
for n in a1 m1 m2; do
  read -r _ _ r0 f0 th0 < <(grep "^warm $n " "$LAB_DIR/samples")
  read -r _ _ r1 f1 th1 < <(grep "^end $n " "$LAB_DIR/samples")
  read -r _ _ rs fs ths < <(grep "^start $n " "$LAB_DIR/samples")
  c=$("$PY" -c "
import json,sys
a=json.load(open('$LAB_DIR/$n-start.json'))['counters']; b=json.load(open('$LAB_DIR/$n-end.json'))['counters']
print(' '.join('%s=%d' % (k, b[k] - a.get(k, 0)) for k in sorted(b) if b[k] - a.get(k, 0)) or 'none')")
  echo "figures: $n: RSS start $rs KiB, after warm-up $r0 KiB, end $r1 KiB ($(( (r1 - r0) * 100 / r0 ))%); fds $fs/$f0/$f1; threads $ths/$th0/$th1; counters moved: $c"
  [ "$f1" -le $((f0 + 2)) ] || { echo "FAIL: $n: fds grew from $f0 to $f1"; fails=1; }
  [ "$r1" -le $((r0 + r0 * rss_pct / 100 + 2048)) ] || { echo "FAIL: $n: RSS grew from $r0 KiB to $r1 KiB (> $rss_pct% + 2 MiB)"; fails=1; }
done
errs=$(cat "$(lab_log d-a1)" "$(lab_log d-m1)" "$(lab_log d-m2)" | grep -cE ' (error|critical) ' || true)
recv=$(grep "^recv " "$(lab_log seq-recv)")
echo "figures: $secs s, $flaps flaps (m1 saw m2 relayed in $relayed_seen of its 5 s looks); numbered UDP m2 -> m1: $recv; log lines at error or above: $errs"
[ "$errs" -eq 0 ] || { echo "FAIL: $errs log lines at error or above:"; grep -hE ' (error|critical) ' "$(lab_log d-a1)" "$(lab_log d-m1)" "$(lab_log d-m2)" | head -5; fails=1; }
[ "$flaps" -ge 1 ] || { echo "FAIL: no flap in $secs s"; fails=1; }
[ "$fails" = 0 ] || exit 1
echo "ok: soak $secs s with $flaps path flaps: daemons up, fds flat, RSS within $rss_pct% + 2 MiB of the warm-up sample, no error logged"
