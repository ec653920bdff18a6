#!/usr/bin/env bash
# Site to site (docs/site-to-site.md): two offices, each with an edge router
# that runs whalescaled; the hosts on their LANs run no Whalescale at all and
# reach each other through the tunnel, by their LAN addresses, with no NAT in
# between. Each edge router is a member whose `address` includes its LAN.
#
#                         ns <P>-internet (bridge br0; no uplink)
#              ┌────────────────────────┴───────────────────────┐
#      edge1 wan 11.0.0.1                                edge2 wan 11.0.0.2
#      ws0 10.77.0.1/24                                  ws0 10.77.0.2/24
#      lan 192.168.10.1/24 (nftables: NAT to wan,        lan 192.168.20.1/24
#          forward policy drop, as lab_router makes it)
#       └─ pc1 192.168.10.10 (default via .1)             └─ pc2 192.168.20.10 (default via .1)
#
#   edge1's config: peer edge2, address = ["10.77.0.2/32", "192.168.20.0/24"], endpoint 11.0.0.2:51820
#   edge2's config: peer edge1, address = ["10.77.0.1/32", "192.168.10.0/24"], endpoint 11.0.0.1:51820
#
# Checks, in the order of the doc's steps:
#   1. the daemon routes each peer's extra subnet to ws0 (ip route on the edge);
#   2. the edges reach each other over the overlay;
#   3. without the forward rules the router's drop policy stops pc1 -> pc2
#      (the doc's nftables step is needed, and this test can tell);
#   4. with them (ip_forward, ws0 <-> lan accepted, MSS clamped): pc1 pings pc2
#      and back, TCP (iperf3) runs pc1 -> pc2, and pc2 sees pc1's own address;
#   5. cryptokey routing still holds: a packet from site 1 whose source is not
#      in 192.168.10.0/24 is sealed by edge1 but dropped by edge2
#      (inner_source_not_allowed), not delivered.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
lab_begin
command -v iperf3 >/dev/null || fail "iperf3 not installed (scripts/setup installs it)"

lab_internet
lab_router edge1 11.0.0.1 192.168.10.1/24 eim
lab_router edge2 11.0.0.2 192.168.20.1/24 eim
lab_host pc1 edge1 192.168.10.10
lab_host pc2 edge2 192.168.20.10

declare -A pub ov=([edge1]=1 [edge2]=2) lan=([edge1]=192.168.10.0/24 [edge2]=192.168.20.0/24) wan=([edge1]=11.0.0.1 [edge2]=11.0.0.2)
for n in edge1 edge2; do
  "$bin/wsctl" genkey >"$LAB_DIR/$n.key"
  pub[$n]=$("$bin/wsctl" pubkey <"$LAB_DIR/$n.key")
done
for n in edge1 edge2; do
  m=edge1; [ $n = edge1 ] && m=edge2
  cat >"$LAB_DIR/$n.toml" <<TOML
[node]
private_key_file = "$LAB_DIR/$n.key"
interface = "ws0"
address = "10.77.0.${ov[$n]}/24"
listen_port = 51820
state_dir = "$LAB_DIR/$n-state"
control_socket = "$LAB_DIR/$n.sock"
port_mapping = []

[[peer]]
name = "$m"
public_key = "${pub[$m]}"
address = ["10.77.0.${ov[$m]}/32", "${lan[$m]}"]
endpoint = "${wan[$m]}:51820"
persistent_keepalive = 25
TOML
  "$bin/whalescaled" --check-config "$LAB_DIR/$n.toml" >/dev/null || fail "$n's config does not check"
done

# The doc's firewall step for the tunnel itself: the edge accepts the daemon's UDP
# port, and what comes out of the tunnel to the router itself (its overlay address).
for n in edge1 edge2; do
  lab_exec $n nft add rule inet filter input udp dport 51820 accept
  lab_exec $n nft add rule inet filter input iifname "ws0" accept
done
for n in edge1 edge2; do lab_bg $n "d-$n" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml"; done
for n in edge1 edge2; do lab_wait_log "d-$n" "whalescaled up" 60 || fail "$n's daemon did not start"; done

# 1. Routes for the peer's LAN on ws0.
for n in edge1 edge2; do
  m=edge1; [ $n = edge1 ] && m=edge2
  lab_exec $n ip -4 route show "${lan[$m]}" | grep -q "dev ws0" || fail "$n has no route ${lan[$m]} dev ws0: $(lab_exec $n ip -4 route)"
done
echo "ok: each edge routes the other site's LAN to ws0 (from the peer's address list)"

# 2. The overlay between the edges.
pingable() { lab_exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
wait_until 30 pingable edge1 10.77.0.2 || fail "edge1 cannot reach edge2 over the overlay"
wait_until 30 pingable edge2 10.77.0.1 || fail "edge2 cannot reach edge1 over the overlay"
echo "ok: edge1 <-> edge2 over the overlay"

# 3. The router's forward policy (drop) stops LAN <-> tunnel until the doc's rules are in.
if lab_exec pc1 ping -c 2 -W 1 192.168.20.10 >/dev/null 2>&1; then
  fail "pc1 reached pc2 before the forward rules: this test would not notice them missing"
fi
echo "ok: without forward rules pc1 -> pc2 is dropped by edge1's forward policy"

# 4. The doc's forwarding step on both edges, as docs/site-to-site.md writes it for
# Debian's stock nftables.conf (table inet filter, chain forward): here the chain
# is lab_router's, whose policy is drop like a careful router's.
for n in edge1 edge2; do
  lab_exec $n sysctl -qw net.ipv4.ip_forward=1
  lab_exec $n nft insert rule inet filter forward iifname "lan" oifname "ws0" accept
  lab_exec $n nft insert rule inet filter forward iifname "ws0" oifname "lan" accept
  lab_exec $n nft insert rule inet filter forward oifname "ws0" tcp flags syn tcp option maxseg size set rt mtu
done
wait_until 30 pingable pc1 192.168.20.10 || fail "pc1 cannot reach pc2 through the tunnel"
wait_until 30 pingable pc2 192.168.10.10 || fail "pc2 cannot reach pc1 through the tunnel"
echo "ok: pc1 (192.168.10.10) <-> pc2 (192.168.20.10) ping through the tunnel, no Whalescale on either"
# The round-trip summary, for the reader: a lost echo here is not a failure,
# and under pipefail it would end the script without a FAIL line.
{ lab_exec pc1 ping -c 3 -i 0.2 192.168.20.10 || true; } | tail -1 | sed 's/^/    /'

lab_bg pc2 iperf iperf3 -s -1 -B 192.168.20.10
wait_until 10 lab_exec pc2 sh -c "ss -Hltn 'sport = :5201' | grep -q ." || fail "iperf3 server on pc2 did not start"
rx0=$("$bin/wsctl" status --socket "$LAB_DIR/edge2.sock" --json | "$LAB_PY" "$here/lib/jq.py" peers.0.rx_bytes)
out=$(lab_exec pc1 iperf3 -c 192.168.20.10 -t 2 2>&1) || fail "TCP pc1 -> pc2 failed: $out"
echo "$out" | grep -E "sender|receiver" | sed 's/^/    /'
wait_until 10 grep -q "Accepted connection from 192.168.10.10" "$(lab_log iperf)" ||
  fail "pc2 did not see pc1's own address (NAT in the path?): $(cat "$(lab_log iperf)")"
rx1=$("$bin/wsctl" status --socket "$LAB_DIR/edge2.sock" --json | "$LAB_PY" "$here/lib/jq.py" peers.0.rx_bytes)
[ "$rx1" -gt $((rx0 + 1000000)) ] || fail "edge2 received only $((rx1 - rx0)) bytes from edge1 during the transfer: not through the tunnel?"
echo "ok: TCP pc1 -> pc2 through the tunnel ($(( (rx1 - rx0) / 1000000 )) MB into edge2 from edge1), pc2 saw 192.168.10.10"

# 5. A source outside site 1's subnet: edge1 routes it into the tunnel, edge2 refuses it.
drops() { "$bin/wsctl" status --socket "$LAB_DIR/edge2.sock" --json | "$LAB_PY" -c "import json,sys; print(json.load(sys.stdin)['counters'].get('inner_source_not_allowed', 0))"; }
d0=$(drops)
lab_exec edge1 ip addr add 192.168.99.1/32 dev lan
lab_exec edge1 ping -c 3 -i 0.2 -W 1 -I 192.168.99.1 192.168.20.10 >/dev/null 2>&1 &&
  fail "a packet from 192.168.99.1 (not in edge1's addresses at edge2) was answered"
dropped3() { [ "$(drops)" -ge $((d0 + 3)) ]; }
wait_until 10 dropped3 || true
d1=$(drops)
[ "$d1" -ge $((d0 + 3)) ] || fail "edge2's inner_source_not_allowed went $d0 -> $d1, expected +3"
echo "ok: a source outside 192.168.10.0/24 is dropped at edge2 (inner_source_not_allowed $d0 -> $d1)"
echo "site-to-site: all checks passed"
