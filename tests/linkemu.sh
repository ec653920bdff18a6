#!/usr/bin/env bash
# The link emulator (ws-bench linkemu) between two namespaces: it adds the
# delay it is told to, limits the rate, loses packets at random, and its
# down/up control cuts and restores a flow mid-way. Tolerances are generous:
# this checks behaviour, not this machine's speed (perf/linkemu measures).
#
#   ns <P>-left  eth0 198.18.0.2 ── vl [router <P>-emu: ea ⇄ ws-bench linkemu ⇄ eb] vr ── eth0 198.18.1.2  ns <P>-right
#
# Needs root, iproute2, ping; iperf3 for the rate check (SKIP without it).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WS_BIN=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/linkemu.sh"

lab_init "ws$$" || exit 1
trap lab_cleanup EXIT
# The emulator runs under the malloc counter, so its packet path can be checked for allocations.
if command -v gcc >/dev/null && gcc -O2 -shared -fPIC -o "$LAB_DIR/malloccount.so" "$here/../perf/lib/malloccount.c" 2>/dev/null; then
  export LINKEMU_PRELOAD=$LAB_DIR/malloccount.so
fi
fail=0
bad() { echo "FAIL: $*"; fail=1; }

linkemu_path emu left right 0 "delay=20ms,queue=1000p" || { echo "FAIL: could not build the path"; exit 1; }
R=$(linkemu_addr_right 0)

# rtt_min: the smallest RTT in ms of N pings (empty when none came back). The minimum, not the
# average: the emulator never delivers early, and a loaded machine only ever adds delay.
rtt_min() { lab_exec left ping -n -q -c "$1" -i 0.2 -W 2 "$R" 2>/dev/null | awk -F'[/ =]+' '/^rtt/ {print $6}'; }

# 1. Delay: 20 ms each way -> RTT about 40 ms (at least 40: the emulator never delivers early).
rtt=$(rtt_min 10)
if [ -z "$rtt" ]; then
  bad "no ping reply through the emulator"
elif awk "BEGIN{exit !($rtt >= 39.5 && $rtt <= 80)}"; then
  echo "ok: delay 2 x 20 ms -> min ping RTT $rtt ms"
else
  bad "delay 2 x 20 ms but min ping RTT $rtt ms (want 40..80)"
fi

# 2. A changed setting takes effect: 5 ms each way.
linkemu_ctl emu "set both delay=5ms"
rtt=$(rtt_min 10)
if [ -n "$rtt" ] && awk "BEGIN{exit !($rtt >= 9.5 && $rtt <= 35)}"; then
  echo "ok: delay set to 2 x 5 ms -> min ping RTT $rtt ms"
else
  bad "delay set to 2 x 5 ms but min ping RTT '${rtt}' ms (want 10..35)"
fi

# 3. Down/up mid-flow: a ping stream (every 0.1 s for 12 s) is cut for about 4 s.
log=$(lab_log pingflow)
lab_bg left pingflow ping -n -D -i 0.1 -c 120 -W 1 "$R"
flow=$LAB_PID
wait_until 20 grep -q 'icmp_seq=10 ' "$log" || bad "the ping stream did not start"
linkemu_ctl emu "down"
down_at=$(date +%s.%N)
# The cut lasts 4 s (this sleep is the length of the outage, not a wait for something).
sleep 4
linkemu_ctl emu "up"
up_at=$(date +%s.%N)
wait "$flow" 2>/dev/null
# Replies (their -D timestamps) inside the down window; margins of 1 s after the down command
# and 0.3 s before the up (the emulator reads its FIFO a little later on a loaded machine).
during=$(awk -v a="$down_at" -v b="$up_at" -F'[][]' '/bytes from/ {t=$2+0; if (t > a + 1 && t < b - 0.3) n++} END {print n+0}' "$log")
after=$(awk -v b="$up_at" -F'[][]' '/bytes from/ {t=$2+0; if (t > b) n++} END {print n+0}' "$log")
before=$(awk -v a="$down_at" -F'[][]' '/bytes from/ {t=$2+0; if (t < a) n++} END {print n+0}' "$log")
if [ "$before" -gt 5 ] && [ "$during" -eq 0 ] && [ "$after" -gt 5 ]; then
  echo "ok: down/up mid-flow: $before replies before the cut, $during during, $after after the restore"
else
  bad "down/up mid-flow: $before replies before, $during during (want 0), $after after"
fi
stats=$(linkemu_stats emu)
dropped=$(printf '%s' "$stats" | "$LAB_PY" "$here/lib/jq.py" ab.dropped_down)
if [ "${dropped:-0}" -gt 0 ]; then echo "ok: the cut is counted (ab.dropped_down=$dropped)"; else bad "no dropped_down counted: $stats"; fi

# 4. Loss: 30% each way; 200 pings lose about 1 - 0.7^2 = 51% (want 25..80%).
linkemu_ctl emu "set both delay=1ms,loss=0.3"
loss=$(lab_exec left ping -n -q -c 200 -i 0.01 -W 1 "$R" 2>/dev/null | sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p')
if [ -n "$loss" ] && awk "BEGIN{exit !($loss >= 25 && $loss <= 80)}"; then
  echo "ok: loss 30% each way -> ping loss $loss%"
else
  bad "loss 30% each way but ping loss '${loss}'% (want 25..80)"
fi
linkemu_ctl emu "set both loss=0"

# 5. Rate: 10 Mbit/s; a UDP stream offered at 30 Mbit/s arrives at no more than about 10.
if command -v iperf3 >/dev/null; then
  linkemu_ctl emu "set both rate=10mbit,queue=50ms"
  lab_bg right iperf3 iperf3 -s -p 5201
  wait_tcp_listen "$(lab_ns right)" 5201 20 || bad "iperf3 server did not start"
  got=$(lab_exec left iperf3 -c "$R" -p 5201 -u -b 30M -t 4 -J 2>/dev/null |
    "$LAB_PY" -c 'import json,sys; e=json.load(sys.stdin)["end"]; print(e.get("sum_received", e["sum"])["bits_per_second"])' 2>/dev/null)
  # The receiver's rate (sum_received: what the server got, reported back to the client).
  if [ -n "$got" ] && awk "BEGIN{exit !($got > 1e6 && $got <= 10.6e6)}"; then
    echo "ok: rate 10 Mbit/s -> UDP at 30 offered arrives at $(awk "BEGIN{printf \"%.2f\", $got/1e6}") Mbit/s"
  else
    bad "rate 10 Mbit/s but UDP arrived at '${got}' bit/s (want 1e6..10.6e6)"
  fi
else
  echo "SKIP: iperf3 not installed: the rate check"
fi

stats=$(linkemu_stats emu)
echo "emulator counters: $stats"
# 6. The packet path allocated nothing (thousands of packets went through it above).
mallocs=$(printf '%s' "$stats" | "$LAB_PY" "$here/lib/jq.py" packet_path_mallocs)
if [ -z "${LINKEMU_PRELOAD:-}" ] || [ "$mallocs" = null ]; then
  echo "SKIP: no malloc counter (gcc or perf/lib/malloccount.c missing): the allocation check"
elif [ "$mallocs" = 0 ]; then
  echo "ok: no allocation in the emulator's packet path"
else
  bad "the emulator's packet path allocated $mallocs times"
fi
[ $fail = 0 ] && echo "PASS linkemu" || echo "FAIL linkemu"
exit $fail
