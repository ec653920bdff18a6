#!/usr/bin/env bash
# Two real daemons over an IPv6-only link: the one UDP port is dual-stack, so
# peers configured with [IPv6]:port endpoints find each other, and the overlay
# (node.address a list: an IPv6 and an IPv4 address) carries IPv6 and IPv4 (TCP with TSO over IPv6, UDP datagrams coalesced into
# UDP GSO super-packets over IPv6, checked byte for byte).
#
#   ns ws6a-$$  va fd00:55::1/64 ═══ veth ═══ vb fd00:55::2/64  ns ws6b-$$
#   overlay ws0: fd77::1/64 + 10.77.0.1/24  ⇄  fd77::2/64 + 10.77.0.2/24
#
# Everything it makes is removed on exit, also on failure. A check this kernel
# cannot support is reported as "SKIP: ..." (scripts/test counts those), never
# as passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/wait.sh"
bin=${WS_BIN:-$here/../.build/release}
A=ws6a-$$ B=ws6b-$$
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in $A $B; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -20 "$f"; done; exit 1; }

ip netns add $A
ip netns add $B
ip link add va netns $A type veth peer name vb netns $B
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set va up
ip -n $B link set vb up
ip -n $A addr add fd00:55::1/64 dev va nodad
ip -n $B addr add fd00:55::2/64 dev vb nodad

"$bin/wsctl" genkey >"$tmp/a.key"
"$bin/wsctl" genkey >"$tmp/b.key"
chmod 600 "$tmp"/*.key
pa=$("$bin/wsctl" pubkey <"$tmp/a.key")
pb=$("$bin/wsctl" pubkey <"$tmp/b.key")
conf() { # me my-index other-name other-pub other-index
  cat <<TOML
[node]
private_key_file = "$tmp/$1.key"
address = ["fd77::$2/64", "10.77.0.$2/24"]
state_dir = "$tmp/$1-state"
control_socket = "$tmp/$1.sock"

[[peer]]
name = "$3"
public_key = "$4"
address = ["fd77::$5/128", "10.77.0.$5/32"]
endpoint = "[fd00:55::$5]:51820"
TOML
}
conf a 1 node-b "$pb" 2 >"$tmp/a.toml"
conf b 2 node-a "$pa" 1 >"$tmp/b.toml"

ip netns exec $A "$bin/whalescaled" --config "$tmp/a.toml" 2>"$tmp/a.log" & pids+=($!)
ip netns exec $B "$bin/whalescaled" --config "$tmp/b.toml" 2>"$tmp/b.log" & pids+=($!)

# A pings B within 10 s (one ping at a time, each waiting up to 1 s for its reply).
ping_b() { ip netns exec $A ping -c 1 -W 1 fd77::2 >/dev/null 2>&1; }
wait_until 10 ping_b || fail "no ping over the IPv6 underlay"
ep=$("$bin/wsctl" --socket "$tmp/a.sock" status --json | python3 "$here/lib/jq.py" peers.0.endpoint)
[ "$ep" = "[fd00:55::2]:51820" ] || fail "endpoint is $ep"
echo "ok: IPv6 overlay over an IPv6-only link, peer at $ep"
ip netns exec $B ping -c 2 -i 0.2 -W 1 10.77.0.1 >/dev/null || fail "IPv4 overlay over the IPv6 link"
addrs=$("$bin/wsctl" --socket "$tmp/b.sock" status --json | python3 "$here/lib/jq.py" node.addresses)
echo "ok: IPv4 overlay over the same IPv6 link (node.address is a list: $addrs)"

ip netns exec $B iperf3 -s -1 >"$tmp/iperf-s.log" 2>&1 & pids+=($!)
wait_tcp_listen $B 5201 || fail "iperf3 server not listening"
ip netns exec $A iperf3 -c fd77::2 -n 20M >"$tmp/iperf-c.log" 2>&1 || fail "TCP over IPv6"
echo "ok: 20 MB of TCP over the IPv6 overlay"

ip netns exec $B python3 "$here/lib/udpcheck.py" recv --bind "[fd77::2]:5300" --count 3000 >"$tmp/udp-recv.log" 2>&1 & udp_pid=$!
wait_until 5 grep -qs listening "$tmp/udp-recv.log" || fail "UDP receiver did not start"
ip netns exec $A python3 "$here/lib/udpcheck.py" send --to "[fd77::2]:5300" --count 3000 --size 1200 --burst 32 || fail "UDP sender"
wait $udp_pid || fail "UDP over IPv6: $(tail -1 "$tmp/udp-recv.log")"
# Distinct datagrams: "received" would count a duplicate twice.
got=$(sed -n 's/^received [0-9]* of [0-9]*, distinct \([0-9]*\),.*/\1/p' "$tmp/udp-recv.log")
[ "${got:-0}" -ge 2700 ] || fail "UDP over IPv6: $(tail -1 "$tmp/udp-recv.log") (fewer than 90% distinct)"
echo "ok: UDP over the IPv6 overlay intact: $(tail -1 "$tmp/udp-recv.log")"
# Coalescing: B writes same-flow runs to its TUN device as UDP GSO super-packets
# where the device has USO. B's counters are read once they stopped moving: with
# one reactor per core, another reactor's counts arrive up to 0.5 s late.
coalesced_now() { "$bin/wsctl" --socket "$tmp/b.sock" status --json | python3 "$here/lib/jq.py" counters.tun_coalesced_udp; }
prev=$(coalesced_now)
settle() { sleep 1; cur=$(coalesced_now); [ "$cur" = "$prev" ] && return 0; prev=$cur; return 1; }
wait_until 15 settle || fail "B's tun_coalesced_udp still moving after 15 s"
[[ $cur =~ ^[0-9]+$ ]] || fail "counter tun_coalesced_udp missing from B's status ($cur)"
if grep -q "uso4,uso6" "$tmp/b.log"; then  # the coalescer writes UDP only with both
  [ "$cur" -gt 0 ] || fail "UDP over IPv6: the TUN device has USO but no datagram was coalesced"
  echo "ok: $cur datagrams written inside UDP GSO super-packets over IPv6"
else
  echo "SKIP: UDP GSO coalescing over IPv6 not checked: B's TUN device has no USO (Linux 6.2+); $cur datagrams coalesced"
fi
