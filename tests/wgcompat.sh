#!/usr/bin/env bash
# WireGuard compatibility, live (issue 16): whalescaled with a stock WireGuard
# peer (Debian's wireguard-go, configured with `wg`) and a normal Whalescale
# peer, both on the same UDP port of the node under test.
#
#                       ns ws<pid>-br: bridge br0 (192.0.2.0/24, TEST-NET-1, lab only)
#        ┌──────────────────────────────┼───────────────────────────────┐
#   ns ws<pid>-w  eth0 192.0.2.2    ns ws<pid>-n  eth0 192.0.2.1    ns ws<pid>-s  eth0 192.0.2.3
#   wireguard-go wgt<pid>           whalescaled (node under test)   whalescaled (Whalescale peer)
#   overlay 10.78.0.2               overlay 10.78.0.1, port 51820   overlay 10.78.0.3
#   (roams to 192.0.2.4)            peer "wg": wireguard = true,    peer "n"
#                                   preshared key; peer "s"
#
# Checked: the WireGuard handshake both ways (wireguard-go initiates, then the
# node after a restart), ping, TCP and UDP both ways through the tunnel; the
# Whalescale peer's ping and TCP at the same time on the same port; a rekey
# (WS_TEST_REKEY_AFTER_S shortens REKEY_AFTER_TIME on the node, which then
# initiates it; wireguard-go's latest-handshake moves); wireguard-go restarted;
# the WireGuard peer roaming to a new address (reported in status, taken under
# Whalescale's rules); a WireGuard handshake from an unknown key refused and
# counted (notMember); `wsctl status` kind and `wsctl show-wg`.
#
# The overlay is dual-stack (10.78.0.0/24 and fd78::/64): ping both ways over both.
#
# Run against Debian's wireguard-go and, when its binary is there, current
# upstream's (../shared/reference/wireguard-go/, or WG_UPSTREAM=path): each in
# its own run of this script (WGCOMPAT_IMPL names the binary).
#
# wireguard-go keeps its control socket in /var/run/wireguard/: its interface
# is wgt<pid>, and the socket is removed with it. Everything this script makes
# is removed on exit, also on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/wait.sh"
bin=${WS_BIN:-$here/../.build/release}
if [ -z "${WGCOMPAT_IMPL:-}" ]; then
  rc=0
  WGCOMPAT_IMPL=wireguard-go bash "$0" || rc=1
  # Beside this checkout (../shared/reference), or where the project machines keep it (/work/shared).
  up=${WG_UPSTREAM:-$here/../../shared/reference/wireguard-go/wireguard-go-0.0.20250522}
  [ -x "$up" ] || [ -n "${WG_UPSTREAM:-}" ] || up=/work/shared/reference/wireguard-go/wireguard-go-0.0.20250522
  if [ -x "$up" ]; then
    WGCOMPAT_IMPL=$up bash "$0" || rc=1
  else
    echo "SKIP: upstream wireguard-go not found at $up (set WG_UPSTREAM): checked against Debian's only"
  fi
  exit $rc
fi
wggo=$WGCOMPAT_IMPL
label=$("$wggo" --version 2>/dev/null | head -1 || echo "$wggo")
echo "== against $label ($wggo)"
P=ws$$
BR=$P-br W=$P-w N=$P-n S=$P-s
WGIF=wgt$$ WGX=wgx$$
tmp=$(mktemp -d)
pids=()
wgpids=()
cleanup() {
  for p in "${pids[@]}" "${wgpids[@]}"; do kill "$p" 2>/dev/null || true; done
  # iperf3 servers and anything else started inside this run's namespaces.
  for n in $W $N $S; do for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; done
  sleep 0.3
  for p in "${pids[@]}" "${wgpids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in $W $N $S $BR; do ip netns del "$n" 2>/dev/null || true; done
  rm -f "/var/run/wireguard/$WGIF.sock" "/var/run/wireguard/$WGX.sock"
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.log; do echo "--- $f"; tail -25 "$f"; done; exit 1; }

for c in "$wggo" wg iperf3; do
  command -v $c >/dev/null || { echo "SKIP: $c not installed (scripts/setup installs it); WireGuard interop not checked"; exit 0; }
done
[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun; WireGuard interop not checked"; exit 0; }

# ── the network ──────────────────────────────────────────────────────────────
ip netns add $BR
ip -n $BR link add br0 type bridge
ip -n $BR link set br0 up
i=0
for pair in "$N:192.0.2.1" "$W:192.0.2.2" "$S:192.0.2.3"; do
  ns=${pair%%:*} addr=${pair#*:}
  i=$((i + 1))
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "p$$x$i" netns $BR type veth peer name eth0 netns "$ns"
  ip -n $BR link set "p$$x$i" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
done

# ── keys and configs ─────────────────────────────────────────────────────────
umask 077
"$bin/wsctl" genkey >"$tmp/n.key"
"$bin/wsctl" genkey >"$tmp/s.key"
wg genkey >"$tmp/w.key"
wg genkey >"$tmp/x.key"
wg genpsk >"$tmp/psk"
pn=$("$bin/wsctl" pubkey <"$tmp/n.key")
pn_wg=$("$bin/wsctl" pubkey --wireguard <"$tmp/n.key")
ps=$("$bin/wsctl" pubkey <"$tmp/s.key")
pw=$(wg pubkey <"$tmp/w.key")

cat >"$tmp/n.toml" <<TOML
[node]
private_key_file = "$tmp/n.key"
address = ["10.78.0.1/24", "fd78::1/64"]
state_dir = "$tmp/n-state"
control_socket = "$tmp/n.sock"

[[peer]]
name = "wg"
wireguard = true
public_key = "$pw"
preshared_key_file = "$tmp/psk"
address = ["10.78.0.2/32", "fd78::2/128"]
endpoint = "192.0.2.2:51820"

[[peer]]
name = "s"
public_key = "$ps"
address = "10.78.0.3/32"
endpoint = "192.0.2.3:51820"
TOML
cat >"$tmp/s.toml" <<TOML
[node]
private_key_file = "$tmp/s.key"
address = "10.78.0.3/24"
state_dir = "$tmp/s-state"
control_socket = "$tmp/s.sock"

[[peer]]
name = "n"
public_key = "$pn"
address = "10.78.0.1/32"
endpoint = "192.0.2.1:51820"
TOML

start_node() { # extra env assignments...
  ip netns exec $N env "$@" "$bin/whalescaled" --config "$tmp/n.toml" 2>>"$tmp/n.log" & npid=$!
  pids+=($npid)
}
stop_node() { kill "$npid"; wait "$npid" 2>/dev/null || true; }
start_wg() { # wireguard-go in W, configured with wg (as any wireguard-go script would)
  ip netns exec $W env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 "$wggo" -f $WGIF >>"$tmp/wg.log" 2>&1 & wgpid=$!
  wgpids+=($wgpid)
  wait_until 10 test -S "/var/run/wireguard/$WGIF.sock" || fail "wireguard-go did not create its socket"
  ip netns exec $W wg set $WGIF private-key "$tmp/w.key" listen-port 51820 \
    peer "$pn_wg" preshared-key "$tmp/psk" endpoint 192.0.2.1:51820 allowed-ips 10.78.0.1/32,fd78::1/128
  ip -n $W addr add 10.78.0.2/24 dev $WGIF
  ip -n $W addr add fd78::2/64 dev $WGIF nodad
  ip -n $W link set $WGIF up
}
stop_wg() { kill "$wgpid"; wait "$wgpid" 2>/dev/null || true; wait_until 5 test ! -e "/var/run/wireguard/$WGIF.sock" || true; }
status() { "$bin/wsctl" --socket "$tmp/n.sock" status --json; }
jqn() { status | python3 "$here/lib/jq.py" "$1"; }
ping_from() { ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
wg_latest() { ip netns exec $W wg show $WGIF latest-handshakes | awk '{print $2}'; }

start_node WS_TEST_REKEY_AFTER_S=8
# The Whalescale peer runs the node's session timers: the node's test value
# applies to every peer, and with the default ones here s would keep using a
# session the node has let expire (REJECT_AFTER_TIME 2 x 8 + 15 s after the
# node's restart below, with no traffic to s since) and only start a new
# handshake after KEEPALIVE + REKEY_TIMEOUT (15 s), past the final check's wait.
ip netns exec $S env WS_TEST_REKEY_AFTER_S=8 "$bin/whalescaled" --config "$tmp/s.toml" 2>"$tmp/s.log" & pids+=($!)
start_wg

# ── 1. wireguard-go initiates ────────────────────────────────────────────────
wait_until 30 ping_from $W 10.78.0.1 || fail "wireguard-go -> node: no ping (WireGuard handshake not completed)"
echo "ok: wireguard-go initiated a WireGuard handshake with whalescaled (psk), ping W -> N"
ping_from $N 10.78.0.2 || fail "node -> wireguard-go: no ping"
echo "ok: ping N -> W"
wait_until 10 ping_from $W fd78::1 || fail "IPv6 overlay W -> N"
ping_from $N fd78::2 || fail "IPv6 overlay N -> W"
echo "ok: IPv6 overlay both ways"
[ "$(jqn peers.0.kind)" = wireguard ] || fail "status: peer wg has kind $(jqn peers.0.kind)"
[ "$(jqn peers.1.kind)" = whalescale ] || fail "status: peer s has kind $(jqn peers.1.kind)"
[ "$(jqn node.wireguard_public_key)" = "$pn_wg" ] || fail "status: wireguard_public_key is not wsctl pubkey --wireguard"
"$bin/wsctl" --socket "$tmp/n.sock" show-wg >"$tmp/show-wg.out"
grep -q "^peer: $pw\$" "$tmp/show-wg.out" && grep -q "latest handshake:" "$tmp/show-wg.out" &&
  grep -q "allowed ips: 10.78.0.2/32" "$tmp/show-wg.out" || { cat "$tmp/show-wg.out"; fail "show-wg layout"; }
if grep -q "$ps" "$tmp/show-wg.out"; then fail "show-wg lists the Whalescale peer"; fi
echo "ok: wsctl status kind wireguard/whalescale; wsctl show-wg in wg show's layout"

# ── 2. the Whalescale peer on the same port, at the same time ────────────────
wait_until 30 ping_from $S 10.78.0.1 || fail "Whalescale peer -> node: no ping"
# One iperf3 server per client: a server runs one test at a time.
ip netns exec $N iperf3 -s -p 5201 >"$tmp/iperf-n.log" 2>&1 & pids+=($!)
ip netns exec $N iperf3 -s -p 5202 >"$tmp/iperf-n2.log" 2>&1 & pids+=($!)
wait_tcp_listen $N 5201 || fail "iperf3 server on N"
wait_tcp_listen $N 5202 || fail "second iperf3 server on N"
ip netns exec $S iperf3 -c 10.78.0.1 -p 5202 -t 3 >"$tmp/iperf-s.log" 2>&1 & s_iperf=$!
ip netns exec $W iperf3 -c 10.78.0.1 -p 5201 -n 2M >"$tmp/iperf-w.log" 2>&1 ||
  { sleep 4; ip netns exec $W iperf3 -c 10.78.0.1 -p 5201 -n 2M >"$tmp/iperf-w.log" 2>&1; } || fail "TCP W -> N"
wait $s_iperf || fail "TCP S -> N (Whalescale peer)"
ip netns exec $W iperf3 -c 10.78.0.1 -p 5201 -n 2M -R >"$tmp/iperf-wr.log" 2>&1 || fail "TCP N -> W"
echo "ok: TCP both ways with wireguard-go, and TCP from the Whalescale peer on the same port"
ip netns exec $W python3 "$here/lib/udpcheck.py" recv --bind 10.78.0.2:5300 --count 500 >"$tmp/udp-w.log" 2>&1 & udp_pid=$!
wait_until 5 grep -qs listening "$tmp/udp-w.log" || fail "UDP receiver on W"
ip netns exec $N python3 "$here/lib/udpcheck.py" send --to 10.78.0.2:5300 --count 500 --size 1000 --burst 8 || fail "UDP sender N"
wait $udp_pid || fail "UDP N -> W: $(tail -1 "$tmp/udp-w.log")"
echo "ok: UDP N -> W: $(tail -1 "$tmp/udp-w.log")"
ip netns exec $N python3 "$here/lib/udpcheck.py" recv --bind 10.78.0.1:5301 --count 500 >"$tmp/udp-n.log" 2>&1 & udp_pid=$!
wait_until 5 grep -qs listening "$tmp/udp-n.log" || fail "UDP receiver on N"
ip netns exec $W python3 "$here/lib/udpcheck.py" send --to 10.78.0.1:5301 --count 500 --size 1000 --burst 8 || fail "UDP sender W"
wait $udp_pid || fail "UDP W -> N: $(tail -1 "$tmp/udp-n.log")"
echo "ok: UDP W -> N: $(tail -1 "$tmp/udp-n.log")"

# ── 3. the node restarts and initiates; then it rekeys (8 s) ─────────────────
stop_node
start_node WS_TEST_REKEY_AFTER_S=8
before=$(wg_latest)
wait_until 30 ping_from $N 10.78.0.2 || fail "node restarted -> wireguard-go: no ping (node-initiated handshake)"
first=$(wg_latest)
[ "$first" != "$before" ] || fail "wireguard-go saw no new handshake after the node restarted"
echo "ok: whalescaled restarted and initiated the WireGuard handshake"
rekeyed() { ping_from $N 10.78.0.2 && [ "$(wg_latest)" != "$first" ]; }
wait_until 40 rekeyed || fail "no rekey within 40 s (REKEY_AFTER_TIME 8 s on the node)"
ping_from $W 10.78.0.1 || fail "ping after the rekey"
echo "ok: rekey after REKEY_AFTER_TIME (test value 8 s), traffic kept flowing"

# ── 4. wireguard-go restarts ─────────────────────────────────────────────────
stop_wg
start_wg
wait_until 30 ping_from $W 10.78.0.1 || fail "wireguard-go restarted: no ping W -> N"
wait_until 30 ping_from $N 10.78.0.2 || fail "wireguard-go restarted: no ping N -> W"
echo "ok: wireguard-go restarted; both directions again"

# ── 5. wireguard-go roams to a new address ───────────────────────────────────
ip -n $W addr flush dev eth0
ip -n $W addr add 192.0.2.4/24 dev eth0
wait_until 30 ping_from $W 10.78.0.1 || fail "after roaming: no ping W -> N"
roam_seen() { [ "$(jqn peers.0.roam.new_sources)" -ge 1 ] 2>/dev/null; }
wait_until 10 roam_seen || fail "roaming not reported: $(jqn peers.0.roam)"
wait_until 15 ping_from $N 10.78.0.2 || fail "after roaming: no ping N -> W (roam: $(jqn peers.0.roam))"
echo "ok: roaming reported ($(jqn peers.0.roam)); endpoint now $(jqn peers.0.endpoint)"
[ "$(jqn peers.0.endpoint)" = "192.0.2.4:51820" ] || fail "endpoint after roaming is $(jqn peers.0.endpoint)"

# ── 6. a WireGuard handshake from an unknown key: refused and counted ────────
ip netns exec $W env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 "$wggo" -f $WGX >>"$tmp/wgx.log" 2>&1 & wgpids+=($!)
wait_until 10 test -S "/var/run/wireguard/$WGX.sock" || fail "second wireguard-go"
ip netns exec $W wg set $WGX private-key "$tmp/x.key" listen-port 51821 \
  peer "$pn_wg" endpoint 192.0.2.1:51820 allowed-ips 10.78.9.1/32
ip -n $W addr add 10.78.9.2/24 dev $WGX
ip -n $W link set $WGX up
ip netns exec $W ping -c 2 -W 1 10.78.9.1 >/dev/null 2>&1 || true
not_member() { [ "$(jqn counters.notMember)" -ge 1 ] 2>/dev/null; }
wait_until 15 not_member || fail "a stranger's WireGuard handshake was not counted (counters: $(jqn counters))"
ping_from $W 10.78.0.1 || fail "the configured WireGuard peer stopped working"
# Idle since step 2 and rekeyed on the test timer: give it a few pings, as TCP would.
wait_until 5 ping_from $S 10.78.0.1 || fail "the Whalescale peer stopped working"
echo "ok: a WireGuard handshake from an unknown key refused (notMember=$(jqn counters.notMember)); both peers still up"
echo "PASS: wgcompat against $label"
