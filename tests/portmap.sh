#!/usr/bin/env bash
# Port mapping with a real gateway (Debian's miniupnpd, nftables backend) in the
# netns lab: a member behind a symmetric (fully-random) NAT whose router runs
# miniupnpd maps its port with PCP, then NAT-PMP, then UPnP-IGD (the daemon is
# told to use only that one: node.port_mapping), advertises the mapped endpoint
# (wsctl status node.endpoints with that source), and a member behind another
# symmetric NAT, with no gateway, reaches it directly (not relayed) through the
# mapping; after SIGTERM the mapping is gone from the router's nftables chain.
#
#                       ns <P>-internet (bridge br0; no uplink)
#        ┌──────────────────────┼─────────────────────────┐
#   a1 203.0.113.10        rg 11.0.0.3 edm + miniupnpd   rd 11.0.0.4 edm
#   anchor                 └ g1 192.168.3.10             └ d1 192.168.4.10
#
# Overlay ws0: a1 10.77.0.1, g1 .31, d1 .21. Everything lives in namespaces this
# test makes (lab_cleanup removes them and every process in them on any exit).
# Prints "SKIP: ..." (not a pass) for what this machine cannot do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"

if ! command -v miniupnpd >/dev/null; then
  echo "SKIP: miniupnpd is not installed (scripts/setup installs miniupnpd and miniupnpd-nftables)"
  exit 0
fi
if ! miniupnpd --version 2>&1 | grep -q nftables; then
  echo "SKIP: this miniupnpd is not the nftables build (miniupnpd-nftables)"
  exit 0
fi

lab_begin

lab_internet
lab_public a1 203.0.113.10
lab_router rg 11.0.0.3 192.168.3.1/24 edm
lab_router rd 11.0.0.4 192.168.4.1/24 edm
lab_host g1 rg 192.168.3.10
lab_host d1 rd 192.168.4.10

# miniupnpd on rg: its config, pid and lease files in the lab's temp dir (never /etc or /run).
cat >"$LAB_DIR/miniupnpd.conf" <<EOF
ext_ifname=wan
listening_ip=lan
port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
lease_file=$LAB_DIR/upnp.leases
minissdpdsocket=$LAB_DIR/no-minissdpd.sock
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.3.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
lab_bg rg upnpd miniupnpd -d -f "$LAB_DIR/miniupnpd.conf" -P "$LAB_DIR/miniupnpd.pid"
lab_wait_udp rg 5351 5 || fail "miniupnpd did not open NAT-PMP/PCP port 5351 (log: $(tail -5 "$(lab_log upnpd)"))"

nodes="a1 g1 d1"
declare -A ov=([a1]=1 [g1]=31 [d1]=21)
declare -A pub
for n in $nodes; do
  "$bin/wsctl" genkey >"$LAB_DIR/$n.key"
  chmod 600 "$LAB_DIR/$n.key"
  pub[$n]=$("$bin/wsctl" pubkey <"$LAB_DIR/$n.key")
done
# config NODE PORT_MAPPING
config() {
  local n=$1 anchor=false
  if [ "$n" = a1 ]; then anchor=true; fi
  {
    printf '[node]\nprivate_key_file = "%s"\ninterface = "ws0"\naddress = "10.77.0.%s/24"\nlisten_port = 51820\nanchor = %s\nstate_dir = "%s"\ncontrol_socket = "%s"\nport_mapping = %s\n' \
      "$LAB_DIR/$n.key" "${ov[$n]}" "$anchor" "$LAB_DIR/$n-state" "$LAB_DIR/$n.sock" "$2"
    for m in $nodes; do
      [ "$m" = "$n" ] && continue
      printf '\n[[peer]]\nname = "%s"\npublic_key = "%s"\naddress = "10.77.0.%s/32"\n' "$m" "${pub[$m]}" "${ov[$m]}"
      if [ "$m" = a1 ]; then printf 'endpoint = "203.0.113.10:51820"\nanchor = true\n'; fi
    done
  } >"$LAB_DIR/$n.toml"
}
config a1 '[]'
config d1 '[]'
lab_bg a1 d-a1 "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/a1.toml"
lab_bg d1 d-d1 "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/d1.toml"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
status() { "$bin/wsctl" status --socket "$LAB_DIR/$1.sock" --json 2>/dev/null; }
pingable() { lab_exec "$1" ping -c 1 -W 1 "10.77.0.${ov[$2]}" >/dev/null 2>&1; }
active_kind() {
  status "$1" | "$LAB_PY" -c "
import json,sys
s=json.load(sys.stdin)
p=[p for p in s['peers'] if p['name']=='$2'][0]
a=[x for x in p['paths'] if x['active']]
print(a[0]['kind'] if a else 'none')" 2>/dev/null || echo none
}
# endpoint_with NODE SOURCE: the first node.endpoints[].addr with that source
endpoint_with() {
  status "$1" | "$LAB_PY" -c "
import json,sys
s=json.load(sys.stdin)
e=[e['addr'] for e in s['node']['endpoints'] if e['source']=='$2']
print(e[0] if e else '')" 2>/dev/null || true
}
rules() { ip netns exec "$(lab_ns rg)" nft list chain inet filter prerouting_miniupnpd 2>/dev/null | grep -c 'dnat' || true; }

for proto in pcp natpmp upnp; do
  config g1 "[\"$proto\"]"
  t0=$(ms)
  lab_bg g1 "d-g1-$proto" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/g1.toml"
  gpid=$LAB_PID
  ep=
  for _ in $(seq 100); do
    ep=$(endpoint_with g1 "$proto")
    [ -n "$ep" ] && break
    sleep 0.1
  done
  [ -n "$ep" ] || fail "$proto: g1 shows no endpoint with source $proto (log: $(grep portmap "$(lab_log "d-g1-$proto")" | tail -3))"
  [ "$ep" = "11.0.0.3:51820" ] || fail "$proto: mapped endpoint $ep, expected 11.0.0.3:51820"
  [ "$(rules)" -ge 1 ] || fail "$proto: no DNAT rule in rg's prerouting_miniupnpd"
  echo "ok: $proto: g1 advertises $ep (source $proto) $(( $(ms) - t0 )) ms after start; rg forwards it"
  # d1 (symmetric NAT, no gateway) reaches g1 (symmetric NAT) through the mapping: direct, not relayed.
  up=0
  for _ in $(seq 100); do
    if pingable d1 g1 && pingable g1 d1; then up=1; break; fi
    sleep 0.2
  done
  [ $up = 1 ] || fail "$proto: d1 <-> g1 did not connect"
  k=none
  for _ in $(seq 50); do
    k=$(active_kind d1 g1)
    [ "$k" = direct ] && break
    pingable d1 g1 || true
    sleep 0.2
  done
  [ "$k" = direct ] || fail "$proto: d1 -> g1 is $k, not direct (symmetric <-> symmetric with a port mapping)"
  echo "ok: $proto: d1 <-> g1 up, d1 -> g1 direct ($(active_kind g1 d1) the other way), $(( $(ms) - t0 )) ms after start"
  # wsctl names the mapping in force (netcheck) and exports it (metrics).
  nc=$("$bin/wsctl" --socket "$LAB_DIR/g1.sock" netcheck) || fail "$proto: wsctl netcheck failed"
  grep -qx "port mapping: $proto 11.0.0.3:51820" <<<"$nc" || fail "$proto: wsctl netcheck does not name the mapping: $nc"
  m=$("$bin/wsctl" --socket "$LAB_DIR/g1.sock" metrics) || fail "$proto: wsctl metrics failed"
  grep -qxF "whalescale_port_mapping{protocol=\"$proto\",external=\"11.0.0.3:51820\"} 1" <<<"$m" || fail "$proto: metrics lack whalescale_port_mapping"
  echo "ok: $proto: wsctl netcheck and metrics name the mapping"
  kill -TERM "$gpid"
  for _ in $(seq 50); do kill -0 "$gpid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$gpid" 2>/dev/null || fail "$proto: g1 did not exit within 5 s of SIGTERM"
  # g1 sends the delete and waits up to 2 s for the gateway's answer; on a
  # loaded machine miniupnpd may remove the rule just after g1 gave up waiting.
  no_rules() { n=$(rules); [ "$n" = 0 ]; }
  wait_until 10 no_rules || fail "$proto: $n DNAT rule(s) left in rg's prerouting_miniupnpd after g1's SIGTERM"
  echo "ok: $proto: after SIGTERM the mapping is gone from rg"
done
