#!/usr/bin/env bash
# LAN discovery with real daemons in the netns lab (issue 13, seed 2.7): two
# members on one LAN behind a NAT router WITHOUT hairpin find each other by
# signed mDNS announcements and talk over a `lan` path; a third-party mDNS
# browser (python3-zeroconf) sees the announcements; forged announcements
# (a member's id with a bad signature, or with none) are counted and never
# give a path.
#
#                 ns <P>-internet (bridge br0; no uplink)
#          ┌───────────────┴────────────────┐
#   a1 203.0.113.10 (anchor)         r1 wan 11.0.0.1  nftables NAT eim, no hairpin
#                                    lan bridge 192.168.1.1/24
#                                     ├─ h1 .10  fd55::10  whalescaled
#                                     ├─ h2 .11  fd55::11  whalescaled
#                                     └─ h3 .12  fd55::12  zeroconf browser, forger, IPv6 listener
#
# Overlay ws0: a1 10.77.0.1, h1 .11, h2 .12. h1 and h2 have no endpoint for each other.
# Phase 1: with the anchor: a `lan` path, and h1 holds h2's announcement (source lan);
#          a raw listener on h3 joined to ff02::fb receives both announcements over IPv6
#          with their ULA AAAA records (or SKIP: why, if this lab cannot carry IPv6 multicast).
# Then h2 is stopped: its goodbye (records with TTL 0) reaches the LAN.
# Phase 2: anchor stopped, h1 and h2 restarted with fresh state: only the LAN
#          announcements can tell them where the other is, and they still connect.
#          With IPv6 on, h1 drops IPv4 mDNS and must take h2's announcement over ff02::fb.
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
lab_begin
MDNS="$here/lib/mdns.py"

lab_internet
lab_public a1 203.0.113.10
lab_router r1 11.0.0.1 192.168.1.1/24 eim
lab_lan_host h1 r1 192.168.1.10
lab_lan_host h2 r1 192.168.1.11
lab_lan_host h3 r1 192.168.1.12
# Another VPN's tunnel on h2: a TUN (point-to-point) with a private address. Its
# address must not be announced nor become a path: that would carry Whalescale
# inside the other VPN.
lab_exec h2 ip tuntap add dev vpn0 mode tun
lab_exec h2 ip addr add 10.80.0.2/24 dev vpn0
lab_exec h2 ip link set vpn0 up

# IPv6 on the LAN (ULA fd55::/64, link-local too): on by sysctl in each namespace, the
# bridge floods multicast (no MLD snooping to wait for), addresses without DAD.
v6_skip=
for n in r1 h1 h2 h3; do
  lab_exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 2>/dev/null ||
    { v6_skip="IPv6 cannot be enabled in the lab namespaces (sysctl net.ipv6.conf.all.disable_ipv6)"; break; }
done
if [ -z "$v6_skip" ]; then
  ip -n "$(lab_ns r1)" link set lan type bridge mcast_snooping 0 2>/dev/null || true
  declare -A ula=([h1]=fd55::10 [h2]=fd55::11 [h3]=fd55::12)
  for n in h1 h2 h3; do
    lab_exec "$n" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0 2>/dev/null || true
    lab_exec "$n" ip -6 addr add "${ula[$n]}/64" dev eth0 nodad 2>/dev/null || { v6_skip="cannot add ${ula[$n]} on $n"; break; }
  done
fi
if [ -z "$v6_skip" ]; then
  v6_ready() { for n in h1 h2 h3; do lab_exec "$n" ip -6 addr show dev eth0 | grep -q 'inet6 fe80' || return 1
    ! lab_exec "$n" ip -6 addr show dev eth0 tentative | grep -q inet6 || return 1; done; }
  wait_until 10 v6_ready || v6_skip="the lab hosts have no settled IPv6 link-local address"
fi

# The router has no hairpin: h2 opens a mapping toward a1 (its public address:port
# as a1 sees it), h1 sends to that public address:port, and nothing reaches h2.
lab_bg a1 obs "$LAB_PY" "$LAB_UDP" observe --port 3478
lab_wait_udp a1 3478 10 || fail "observer on a1 did not start"
lab_bg h2 hp "$LAB_PY" "$LAB_UDP" client --port 40000 --timeout 5 --listen 20 203.0.113.10:3478
lab_wait_log hp "SEEN" 10 || fail "h2 got no answer from a1's observer"
mapped=$(grep -o 'SEEN [0-9.:]*' "$(lab_log hp)" | head -1 | cut -d' ' -f2)
[[ $mapped == 11.0.0.1:* ]] || fail "h2 is not seen behind r1: $mapped"
lab_udp h1 send --count 5 "$mapped" HAIRPIN >/dev/null
lab_udp h2 send --count 1 127.0.0.1:40000 STOP >/dev/null
wait_until 10 bash -c "! kill -0 $LAB_PID 2>/dev/null" || true
! grep -q HAIRPIN "$(lab_log hp)" || fail "r1 hairpins: h1's datagram to $mapped reached h2"
echo "ok: r1 has no hairpin (h1 -> $mapped never reaches h2)"

nodes="a1 h1 h2"
declare -A ov=([a1]=1 [h1]=11 [h2]=12)
declare -A pub
for n in $nodes; do
  "$bin/wsctl" genkey >"$LAB_DIR/$n.key"
  chmod 600 "$LAB_DIR/$n.key"
  pub[$n]=$("$bin/wsctl" pubkey <"$LAB_DIR/$n.key")
done
config() { # NODE STATE_DIR
  local n=$1 anchor=false m
  [ "$n" = a1 ] && anchor=true
  printf '[node]\nprivate_key_file = "%s"\ninterface = "ws0"\naddress = "10.77.0.%s/24"\nlisten_port = 51820\nanchor = %s\nstate_dir = "%s"\ncontrol_socket = "%s"\nport_mapping = []\n' \
    "$LAB_DIR/$n.key" "${ov[$n]}" "$anchor" "$2" "$LAB_DIR/$n.sock"
  for m in $nodes; do
    [ "$m" = "$n" ] && continue
    printf '\n[[peer]]\nname = "%s"\npublic_key = "%s"\naddress = "10.77.0.%s/32"\n' "$m" "${pub[$m]}" "${ov[$m]}"
    [ "$m" = a1 ] && printf 'endpoint = "203.0.113.10:51820"\nanchor = true\n'
  done
  return 0
}
for n in $nodes; do config "$n" "$LAB_DIR/$n-state" >"$LAB_DIR/$n.toml"; done
start() { lab_bg "$1" "d-$1" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$1.toml"; }
for n in $nodes; do start "$n"; done

status() { "$bin/wsctl" status --socket "$LAB_DIR/$1.sock" --json; }
counter() { status "$1" | "$LAB_PY" -c "import json,sys; print(json.load(sys.stdin)['counters'].get('$2', 0))"; }
# active NODE PEER: "kind remote" of NODE's active path to PEER (or "none")
active() {
  status "$1" | "$LAB_PY" -c "
import json,sys
p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='$2'][0]
a=[x for x in p['paths'] if x['active']]
print(a[0]['kind']+' '+a[0]['remote'] if a else 'none')"
}
# lan_of NODE PEER: "addr source" of PEER's LAN announcement as NODE holds it (or "none")
lan_of() {
  status "$1" | "$LAB_PY" -c "
import json,sys
p=[p for p in json.load(sys.stdin)['peers'] if p['name']=='$2'][0]
l=p.get('lan')
print(l['addr']+' '+l['source'] if l else 'none')"
}
pingable() { lab_exec "$1" ping -c 1 -W 1 "10.77.0.${ov[$2]}" >/dev/null 2>&1; }
both() { pingable h1 h2 && pingable h2 h1; }
# is_lan NODE PEER V4_ENDPOINT: a `lan` path to the peer's LAN IPv4 endpoint or, with IPv6
# on the LAN, to its ULA (each node's candidates include its ULA, which is on the LAN too).
lan_eps() { echo "lan $3"; [ -n "$v6_skip" ] || echo "lan [${ula[$2]}]:51820"; }
is_lan() { lan_eps "$@" | grep -qxF -- "$(active "$1" "$2")"; }

# ── Phase 1: with the anchor ────────────────────────────────────────────────
wait_until 30 [ -S "$LAB_DIR/h1.sock" ] || fail "h1 did not start"
wait_until 30 [ -S "$LAB_DIR/h2.sock" ] || fail "h2 did not start"
wait_until 30 bash -c "[ \"\$('$bin/wsctl' status --socket '$LAB_DIR/h1.sock' --json | '$LAB_PY' -c 'import json,sys; print(json.load(sys.stdin)[\"counters\"].get(\"lan_announce_accepted\",0))')\" -gt 0 ]" ||
  fail "h1 accepted no LAN announcement"
holds() { [ "$(lan_of "$1" "$2")" = "$3 lan" ]; }
wait_until 30 holds h1 h2 192.168.1.11:51820 || fail "h1 holds h2's announcement as '$(lan_of h1 h2)'"
wait_until 30 holds h2 h1 192.168.1.10:51820 || fail "h2 holds h1's announcement as '$(lan_of h2 h1)'"
echo "ok: h1 and h2 took each other's signed announcement (peers[].lan: $(lan_of h1 h2) / $(lan_of h2 h1))"
wait_until 30 both || fail "h1 <-> h2 do not ping through the tunnel"
wait_until 20 is_lan h1 h2 192.168.1.11:51820 || fail "h1 -> h2 is '$(active h1 h2)', not $(lan_eps h1 h2 192.168.1.11:51820 | paste -sd/)"
wait_until 20 is_lan h2 h1 192.168.1.10:51820 || fail "h2 -> h1 is '$(active h2 h1)', not $(lan_eps h2 h1 192.168.1.10:51820 | paste -sd/)"
both || fail "h1 <-> h2 stopped answering on the lan path"
echo "ok: h1 <-> h2 ping over a lan path ($(active h1 h2) / $(active h2 h1))"
grep -q "lan: announcing .*192.168.1.11" "$(lab_log d-h2)" || fail "h2 does not announce 192.168.1.11: $(grep 'lan:' "$(lab_log d-h2)" | head -2)"
grep "lan: announcing" "$(lab_log d-h2)" | grep -q "10.80.0.2" && fail "h2 announces its other VPN's address 10.80.0.2: $(grep 'lan: announcing' "$(lab_log d-h2)" | head -1)"
status h1 | grep -q '10.80.0.2' && fail "h1 knows h2's other VPN's address 10.80.0.2 (a path inside that tunnel)"
echo "ok: h2's other VPN (TUN vpn0, 10.80.0.2) is neither announced nor a candidate on h1"
"$bin/wsctl" status --socket "$LAB_DIR/h1.sock" | grep -qF "$(active h1 h2)" || fail "wsctl status (table) does not show '$(active h1 h2)'"
echo "ok: wsctl status shows: $("$bin/wsctl" status --socket "$LAB_DIR/h1.sock" | grep -E '^(h2|on this lan)' | tr -s ' ' | paste -sd';')"

# ── A third-party browser sees both nodes ───────────────────────────────────
# Debian's python3-zeroconf belongs to Debian's interpreter (LAB_PY may be another one, e.g. pyenv's).
zc_py=${WS_ZEROCONF_PY:-/usr/bin/python3}
[ -x "$zc_py" ] || zc_py=$LAB_PY
out=$(lab_exec h3 "$zc_py" "$MDNS" browse --timeout 30 --expect 2 2>&1) && rc=0 || rc=$?
if [ $rc = 77 ]; then
  echo "$out"  # "SKIP: python3-zeroconf is not installed"
else
  [ $rc = 0 ] || fail "zeroconf browser on h3: $out"
  hex() { "$LAB_PY" -c "import base64,sys; print(base64.b64decode(sys.argv[1]).hex())" "$1"; }
  for n in h1 h2; do
    grep -q "id=$(hex "${pub[$n]}")" <<<"$out" || fail "the browser did not see $n's id: $out"
  done
  grep -q "port=51820" <<<"$out" || fail "the browser saw no port 51820: $out"
  echo "ok: python3-zeroconf on h3 resolves both nodes:"
  sed 's/^/    /' <<<"$out"
  # On h1 itself, beside the daemon: both bind 5353 (SO_REUSEPORT) and both get
  # the group's datagrams. The browser's query makes h2 answer; h1's daemon
  # receives that answer too (the same sequence again: lan_duplicate rises).
  dup0=$(counter h1 lan_duplicate)
  out=$(lab_exec h1 "$zc_py" "$MDNS" browse --timeout 30 --expect 2 2>&1) || fail "zeroconf browser beside h1's daemon: $out"
  wait_until 10 bash -c "[ \$('$bin/wsctl' status --socket '$LAB_DIR/h1.sock' --json | '$LAB_PY' -c 'import json,sys; print(json.load(sys.stdin)[\"counters\"].get(\"lan_duplicate\",0))') -gt $dup0 ]" ||
    fail "h1's daemon heard no announcement while a browser shared port 5353 (lan_duplicate stayed $dup0)"
  echo "ok: a zeroconf browser on h1 shares port 5353 with the daemon: it resolves both nodes, and the daemon still hears h2 (lan_duplicate $dup0 -> $(counter h1 lan_duplicate))"
fi

# ── IPv6: ff02::fb ──────────────────────────────────────────────────────────
# A raw socket on h3 (tests/lib/mdns.py listen6, not our code) joins ff02::fb on
# eth0 and asks for the service; both daemons must answer over IPv6 with their
# ULA address among the AAAA records.
if [ -n "$v6_skip" ]; then
  echo "SKIP: IPv6 mDNS: $v6_skip"
else
  for n in h1 h2; do
    wait_until 15 grep -q "lan: announcing .*${ula[$n]}" "$(lab_log "d-$n")" ||
      fail "$n does not announce ${ula[$n]}: $(grep 'lan:' "$(lab_log "d-$n")" | tail -3)"
  done
  h1hex=$("$LAB_PY" -c "import base64,sys; print(base64.b64decode(sys.argv[1]).hex())" "${pub[h1]}")
  h2hex6=$("$LAB_PY" -c "import base64,sys; print(base64.b64decode(sys.argv[1]).hex())" "${pub[h2]}")
  out=$(lab_exec h3 "$LAB_PY" "$MDNS" listen6 --dev eth0 --timeout 15 --expect "$h1hex=${ula[h1]}" --expect "$h2hex6=${ula[h2]}" 2>&1) && rc=0 || rc=$?
  if [ $rc = 77 ]; then
    echo "$out"
  else
    [ $rc = 0 ] || fail "no IPv6 announcements on h3: $out"
    grep -q "^v6 from fe80::" <<<"$out" || grep -q "^v6 from fd55::" <<<"$out" || fail "odd IPv6 sources: $out"
    echo "ok: a listener on h3 joined to ff02::fb receives both announcements over IPv6 with their AAAA records:"
    sed 's/^/    /' <<<"$out"
  fi
fi

# ── Forged announcements: counted, never a path ─────────────────────────────
h2hex=$("$LAB_PY" -c "import base64,sys; print(base64.b64decode(sys.argv[1]).hex())" "${pub[h2]}")
bad0=$(counter h1 lan_bad_signature) mal0=$(counter h1 lan_malformed) acc0=$(counter h1 lan_announce_accepted)
lab_exec h3 "$LAB_PY" "$MDNS" spoof --id "$h2hex" --addr 192.168.1.12 --port 51820 --mode badsig
lab_exec h3 "$LAB_PY" "$MDNS" spoof --id "$h2hex" --addr 192.168.1.12 --port 51820 --mode unsigned
wait_until 10 bash -c "[ \$('$bin/wsctl' status --socket '$LAB_DIR/h1.sock' --json | '$LAB_PY' -c 'import json,sys; c=json.load(sys.stdin)[\"counters\"]; print(int(c.get(\"lan_bad_signature\",0) > $bad0 and c.get(\"lan_malformed\",0) > $mal0))') = 1 ]" ||
  fail "h1 did not count the forgeries: lan_bad_signature $bad0 -> $(counter h1 lan_bad_signature), lan_malformed $mal0 -> $(counter h1 lan_malformed)"
[ "$(counter h1 lan_announce_accepted)" = "$acc0" ] || fail "h1 accepted an announcement while only forgeries were sent? ($acc0 -> $(counter h1 lan_announce_accepted))"
[ "$(lan_of h1 h2)" = "192.168.1.11:51820 lan" ] || fail "a forgery moved h2's LAN endpoint on h1: $(lan_of h1 h2)"
status h1 | grep -q '192.168.1.12' && fail "h1 has a path or endpoint at the forger's 192.168.1.12"
is_lan h1 h2 192.168.1.11:51820 || fail "h1 -> h2 moved after the forgeries: $(active h1 h2)"
"$bin/wsctl" metrics --socket "$LAB_DIR/h1.sock" | grep -q '^whalescale_counter_total{name="lan_bad_signature"} [1-9]' ||
  fail "wsctl metrics does not show lan_bad_signature: $("$bin/wsctl" metrics --socket "$LAB_DIR/h1.sock" | grep lan_ | tr '\n' ' ')"
echo "ok: forged announcements counted (lan_bad_signature $bad0 -> $(counter h1 lan_bad_signature), lan_malformed $mal0 -> $(counter h1 lan_malformed)), no path to the forger"

# ── Goodbye: h2 stopped withdraws its records (TTL 0, RFC 6762 §10.1) ───────
lab_bg h3 bye "$LAB_PY" "$MDNS" goodbye --id "$h2hex" --timeout 30
lab_wait_log bye listening 10 || fail "the goodbye listener on h3 did not start"
lab_kill_tag d-h2
lab_wait_log bye "^goodbye $h2hex" 15 || fail "no goodbye from h2 after SIGTERM: $(tail -1 "$(lab_log bye)")"
echo "ok: h2 stopped (SIGTERM) and multicast its goodbye (every TTL 0)"

# ── Phase 2: no anchor, fresh state: the LAN alone ──────────────────────────
lab_kill_tag d-a1
lab_kill_tag d-h1
for n in h1 h2; do config "$n" "$LAB_DIR/$n-state2" >"$LAB_DIR/$n.toml"; done
# With IPv6 on, h1 drops every IPv4 datagram to port 5353: it can learn h2 only from
# h2's announcement over ff02::fb (from h2's signed link-local address).
v6_only=
if [ -z "$v6_skip" ]; then
  if printf 'table ip lanv6 {\n chain in {\n  type filter hook input priority 0;\n  udp dport 5353 drop\n }\n}\n' | lab_exec h1 nft -f - 2>/dev/null; then
    v6_only=1
  else
    echo "SKIP: h1 hearing mDNS over IPv6 only: nft refused the rule in h1's namespace"
  fi
fi
start h1
start h2
wait_until 30 both || fail "without an anchor, h1 <-> h2 do not ping (LAN discovery alone)"
wait_until 20 is_lan h1 h2 192.168.1.11:51820 || fail "without an anchor, h1 -> h2 is '$(active h1 h2)'"
echo "ok: without any anchor, from fresh state: h1 <-> h2 over $(active h1 h2) (found only by LAN announcements)"
if [ -n "$v6_only" ]; then
  wait_until 20 holds h1 h2 "[${ula[h2]}]:51820" || fail "h1 (IPv4 mDNS dropped) holds h2's announcement as '$(lan_of h1 h2)', not [${ula[h2]}]:51820"
  [ "$(counter h1 lan_wrong_source)" = 0 ] || fail "h1 counted lan_wrong_source $(counter h1 lan_wrong_source) for genuine IPv6 announcements"
  echo "ok: h1, hearing mDNS over IPv6 only, took h2's announcement from its signed link-local source: peers[].lan $(lan_of h1 h2), active $(active h1 h2)"
fi
