#!/usr/bin/env bash
# The tunnel's MTU follows its smallest active path (docs/multipath.md, "MTU"):
# two real daemons on two public nodes, one uplink's MTU changed under them.
#
#   ns <P>-internet ── a1 eth0 203.0.113.10 (overlay 10.77.0.1, fd77::1, 10.78.0.1; no [node] mtu)
#                   └─ a2 eth0 203.0.113.20 (overlay 10.77.0.2, fd77::2, 10.78.0.2; mtu = 1420: a cap)
#
#   1. path up (IPv4, direct): a1's ws0 1500 - 20 - 8 - 32 = 1440, in
#      `node.mtu` and the path's `mtu`; a2's ws0 stays at its cap 1420
#   2. a1's eth0 to 1400: a1's ws0 follows to 1340 within seconds; a ping with
#      DF one byte too big fails locally ("message too long"), the new maximum
#      (1340 - 28 bytes of ICMP payload; over IPv6 1340 - 48) gets through
#   3. a1's ws0 forced back to 1440 by hand: packets above the path's 1340
#      reach the daemon, which drops them and writes an ICMP error into the
#      TUN (the kernel checks its checksums): a TCP transfer still completes
#      (its full-size segments, TSO super-packets, are answered with
#      frag-needed and TCP lowers its MSS), ping reports "Frag needed ... mtu
#      = 1340", ping -6 "Packet too big: mtu=1340"; counters mtu_exceeded and
#      mtu_icmp_sent count
#   4. eth0 to 1300: the path would allow 1240; ws0 keeps 1280, mtu_below_minimum counts
#   5. eth0 back to 1500: ws0 back to 1440
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin

lab_internet
lab_public a1 203.0.113.10
lab_public a2 203.0.113.20
declare -A ov=([a1]=1 [a2]=2) ip=([a1]=203.0.113.10 [a2]=203.0.113.20)
mesh_keys a1 a2
config() { # NODE EXTRA
  local n=$1 m=a1
  [ "$n" = a1 ] && m=a2
  cat >"$LAB_DIR/$n.toml" <<TOML
[node]
private_key_file = "$LAB_DIR/$n.key"
address = ["10.77.0.${ov[$n]}/24", "fd77::${ov[$n]}/64", "10.78.0.${ov[$n]}/32"]
anchor = true
state_dir = "$LAB_DIR/$n-state"
control_socket = "$LAB_DIR/$n.sock"
port_mapping = []
lan_discovery = false
$2

[[peer]]
name = "$m"
public_key = "${pub[$m]}"
address = ["10.77.0.${ov[$m]}/32", "fd77::${ov[$m]}/128", "10.78.0.${ov[$m]}/32"]
endpoint = "${ip[$m]}:51820"
anchor = true
TOML
}
config a1 ""
config a2 "mtu = 1420"

field() { status "$1" | python3 "$here/lib/jq.py" "$2"; }
counter() { # NODE NAME -> its value, 0 when absent
  local v
  v=$(field "$1" "counters.$2")
  [ "$v" = null ] && v=0
  echo "$v"
}
tun_mtu() { lab_exec "$1" cat /sys/class/net/ws0/mtu; }
tun_mtu_is() { [ "$(tun_mtu "$1")" = "$2" ]; }
node_mtu_is() { [ "$(field "$1" node.mtu)" = "$2" ]; }

lab_bg a1 a1 "$bin/whalescaled" --config "$LAB_DIR/a1.toml"
lab_bg a2 a2 "$bin/whalescaled" --config "$LAB_DIR/a2.toml"
lab_wait_log a1 "whalescaled up" 60 || fail "a1 did not start"
lab_wait_log a2 "whalescaled up" 60 || fail "a2 did not start"
wait_until 30 lab_exec a1 ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 || fail "a1 cannot reach a2"

# 1. The path's MTU: 1500 - 20 (IPv4) - 8 - 32 = 1440; a2 capped at 1420.
wait_until 10 tun_mtu_is a1 1440 || fail "a1's ws0 MTU is $(tun_mtu a1), not 1440"
node_mtu_is a1 1440 || fail "a1's node.mtu is $(field a1 node.mtu), not 1440"
[ "$(field a1 peers.0.paths.0.mtu)" = 1440 ] || fail "a1's path mtu is $(field a1 peers.0.paths.0.mtu), not 1440"
wait_until 10 lab_exec a2 ping -c 1 -W 1 10.77.0.1 >/dev/null 2>&1 || fail "a2 cannot reach a1"
tun_mtu_is a2 1420 || fail "a2's ws0 MTU is $(tun_mtu a2): its [node] mtu = 1420 is a cap"
node_mtu_is a2 1420 || fail "a2's node.mtu is $(field a2 node.mtu), not 1420"
lab_wait_log a1 "mtu: 1404 -> 1440 \(smallest path: a2 direct 203.0.113.20:51820 via eth0\)" 5 \
  || fail "a1 did not log its MTU change: $(grep mtu: "$(lab_log a1)")"
echo "ok: ws0 MTU 1440 over a 1500-byte IPv4 uplink; capped at 1420 on a2"

# 2. The uplink's MTU falls: ws0 follows.
lab_exec a1 ip link set eth0 mtu 1400
wait_until 10 tun_mtu_is a1 1340 || fail "a1's ws0 MTU is $(tun_mtu a1) after eth0 went to 1400, not 1340"
node_mtu_is a1 1340 || fail "a1's node.mtu is $(field a1 node.mtu), not 1340"
out=$(lab_exec a1 ping -M do -s 1313 -c 1 -W 2 10.77.0.2 2>&1) && fail "a ping of 1341 bytes with DF went through: $out"
grep -qiE "message too long|frag needed" <<<"$out" || fail "a too-big ping did not say so: $out"
lab_exec a1 ping -M do -s 1312 -c 2 -W 3 10.77.0.2 >/dev/null 2>&1 || fail "a ping of the new maximum (1340 bytes) did not pass"
wait_until 10 lab_exec a1 ping -6 -M do -s 1292 -c 1 -W 1 fd77::2 >/dev/null 2>&1 || fail "an IPv6 ping of 1340 bytes did not pass"
out=$(lab_exec a1 ping -6 -M do -s 1293 -c 1 -W 2 fd77::2 2>&1) && fail "an IPv6 ping of 1341 bytes went through: $out"
echo "ok: eth0 1400 -> ws0 1340; 1341 bytes refused with DF, 1340 pass (IPv4 and IPv6)"

# 3. A packet above the path MTU reaches the daemon anyway: dropped, answered with ICMP frag-needed.
lab_exec a1 ip link set ws0 mtu 1440
head -c 2000000 /dev/urandom >"$LAB_DIR/blob"
lab_bg a2 sink "$LAB_PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5201)); s.listen(1); c, _ = s.accept()
with open(sys.argv[1], "wb") as f:
    while True:
        b = c.recv(65536)
        if not b: break
        f.write(b)
' "$LAB_DIR/got"
wait_until 10 lab_exec a2 sh -c 'ss -ltn | grep -q 10.77.0.2:5201' || fail "no TCP listener on a2"
lab_exec a1 timeout 60 "$LAB_PY" -c '
import socket, sys
s = socket.create_connection(("10.77.0.2", 5201), timeout=30)
s.sendall(open(sys.argv[1], "rb").read()); s.close()
' "$LAB_DIR/blob" || fail "a TCP transfer through a ws0 whose MTU is above the path's did not complete"
wait_until 20 sh -c "[ \$(stat -c %s '$LAB_DIR/got' 2>/dev/null || echo 0) = 2000000 ]" || fail "not all TCP bytes arrived"
cmp -s "$LAB_DIR/blob" "$LAB_DIR/got" || fail "the TCP bytes changed in the tunnel"
[ "$(counter a1 mtu_icmp_sent)" -ge 1 ] || fail "the TCP transfer crossed without one ICMP error: its segments were not above the path MTU?"
echo "ok: 2 MB of TCP through ws0 at 1440 over a 1340-byte path: segments answered with frag-needed ($(counter a1 mtu_icmp_sent) ICMP errors), TCP adapted"
# (The TCP's frag-needed left a 1340 PMTU exception for 10.77.0.2: ping another address of a2.)
out=$(lab_exec a1 ping -M do -s 1400 -c 1 -W 2 10.78.0.2 2>&1) && fail "a 1428-byte packet crossed a 1340-byte path: $out"
grep -qE "Frag needed.*mtu = 1340" <<<"$out" || fail "no ICMP frag-needed with mtu 1340 came back: $out; counters: $(field a1 counters); $(lab_exec a1 ip route get 10.77.0.2)"
[ "$(counter a1 mtu_exceeded)" -ge 1 ] || fail "mtu_exceeded did not count"
[ "$(counter a1 mtu_icmp_sent)" -ge 1 ] || fail "mtu_icmp_sent did not count"
echo "ok: a packet above the path MTU dropped and answered: $(grep -o 'Frag needed.*' <<<"$out" | head -1)"
out=$(lab_exec a1 ping -6 -M do -s 1380 -c 1 -W 2 fd77::2 2>&1) && fail "a 1428-byte IPv6 packet crossed a 1340-byte path: $out"
grep -qE "Packet too big: mtu=1340" <<<"$out" || fail "no ICMPv6 Packet Too Big with mtu 1340 came back: $out"
echo "ok: the same over IPv6: $(grep -o 'Packet too big.*' <<<"$out" | head -1)"

# 4. Below IPv6's minimum: 1280 kept, counted.
lab_exec a1 ip link set eth0 mtu 1300
wait_until 10 tun_mtu_is a1 1280 || fail "a1's ws0 MTU is $(tun_mtu a1) with eth0 at 1300, not 1280"
[ "$(counter a1 mtu_below_minimum)" -ge 1 ] || fail "mtu_below_minimum did not count"
echo "ok: eth0 1300 -> ws0 1280 (the floor), counted"

# 5. Restored. (The frag-needed of step 3 left a 1340 PMTU exception for
# 10.77.0.2; the kernel lifts it with ws0's MTU, and the flush makes sure.)
lab_exec a1 ip link set eth0 mtu 1500
lab_exec a1 ip route flush cache
wait_until 10 tun_mtu_is a1 1440 || fail "a1's ws0 MTU is $(tun_mtu a1) after eth0 went back to 1500, not 1440"
lab_exec a1 ping -M do -s 1412 -c 2 -W 3 10.77.0.2 >/dev/null 2>&1 || fail "a ping of 1440 bytes did not pass after the restore"
[ "$(counter a1 mtu_changes)" -ge 4 ] || fail "mtu_changes is $(counter a1 mtu_changes), expected at least 4"
echo "ok: eth0 back to 1500 -> ws0 1440"
echo "PASS"
