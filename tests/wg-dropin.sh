#!/usr/bin/env bash
# The drop-in mode (issue 16): `whalescaled --wireguard IFNAME` in place of a
# userspace WireGuard, configured only with `ip` and `wg` (and wg-quick), laid
# out like WireGuard's own tests/netns.sh: a "physical" namespace that joins
# two namespaces which each hold a WireGuard interface.
#
#                      ns ws<pid>-internet: bridge br0 (the "physical" network)
#                ┌──────────────────────────┴───────────────────────────┐
#   ns ws<pid>-a  eth0 203.0.113.1                       ns ws<pid>-b  eth0 203.0.113.2
#   wga<pid>: 10.9.0.1/24, fd09::1/64, port 51820        wgb<pid>: 10.9.0.2/24, fd09::2/64, port 51820
#   whalescaled --wireguard (always)                     whalescaled --wireguard, then wireguard-go
#                                                        (Debian's, upstream's), then whalescaled by wg-quick
#   (b roams: a new listen port, then 203.0.113.3)
#
# Checked:
#  1. whalescaled on both sides: `wg show` before any key; keys, psk, peers,
#     endpoint and allowed IPs set with `wg set`; ping IPv4 and IPv6 both ways;
#     iperf3 TCP and UDP both ways; `wg show` handshake and transfer; `wg
#     showconf` | `wg setconf` / `wg syncconf` round trip (traffic continues); a
#     peer added and removed at runtime without touching b's session; bad UAPI input
#     answered with an errno; roaming (b's port, then b's address change: a's
#     `wg show` endpoint follows, traffic continues); an IPv6 endpoint; `wg set ... remove` stops
#     traffic; `ip link del` ends the daemon and removes its socket; SIGTERM
#     removes the interface and socket.
#  2. whalescaled on a, Debian's wireguard-go on b (ping and TCP both ways), and
#     upstream's (../shared/reference/wireguard-go/) when present (else SKIP);
#     removing whalescaled's socket file ends it (and its interface).
#  3. wg-quick up/down with a conf file on a (WG_QUICK_USERSPACE_IMPLEMENTATION
#     = dist/whalescaled-wg, as wg-quick runs wireguard-go where the kernel has
#     no WireGuard module), a full tunnel (AllowedIPs 0.0.0.0/0, ::/0: wg-quick's
#     policy routing, which only works if the daemon marks its own datagrams with
#     the fwmark): ping, then down removes the interface and the daemon.
#
# Interface names carry the pid, so two daemons never share a UAPI socket in
# /var/run/wireguard. Everything is removed on exit, also on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
bin=${WS_BIN:-$here/../.build/release}
ws=$bin/whalescaled
wrapper=$here/../dist/whalescaled-wg

for c in wg wg-quick iperf3 ping; do
  command -v $c >/dev/null || { echo "SKIP: $c not installed (scripts/setup installs it); drop-in mode not checked"; exit 0; }
done
[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun; drop-in mode not checked"; exit 0; }
[ -x "$ws" ] || { echo "FAIL: $ws not built"; exit 1; }

lab_init ws$$
IA=wga$$ IB=wgb$$
tmp=$(mktemp -d)
cleanup() {
  lab_cleanup
  rm -f "/var/run/wireguard/$IA.sock" "/var/run/wireguard/$IB.sock"
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$tmp"/*.log; do [ -e "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
  exit 1
}
ok() { echo "ok: $*"; }

lab_internet
lab_public a 203.0.113.1
lab_public b 203.0.113.2
NA=$(lab_ns a) NB=$(lab_ns b)
# The lab gives addresses as /32 with an on-link default route: a third address for b's roaming works the same way.

umask 077
wg genkey >"$tmp/ka"; wg genkey >"$tmp/kb"; wg genpsk >"$tmp/psk"
PA=$(wg pubkey <"$tmp/ka") PB=$(wg pubkey <"$tmp/kb")

# start_ws NS IFNAME: the daemon goes to the background once IFNAME and its socket exist.
start_ws() {
  LOG_LEVEL=debug ip netns exec "$1" "$ws" --wireguard "$2" --log-level debug >>"$tmp/$2.log" 2>&1 ||
    fail "whalescaled --wireguard $2 did not start"
  [ -S "/var/run/wireguard/$2.sock" ] || fail "$2: no UAPI socket once the daemon returned"
  ip -n "$1" link show "$2" >/dev/null 2>&1 || fail "$2: no interface once the daemon returned"
}
daemon_pid() { # NS IFNAME -> the pid of whalescaled serving IFNAME in NS
  local p
  for p in $(ip netns pids "$1"); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--wireguard $2" && { echo "$p"; return 0; }
  done
  return 1
}
addr_up() { # NS IFNAME N
  ip -n "$1" addr add "10.9.0.$3/24" dev "$2"
  ip -n "$1" addr add "fd09::$3/64" dev "$2" nodad
  ip -n "$1" link set "$2" up
}
pings() { # NS DST4 DST6: both families answer
  ip netns exec "$1" ping -c 1 -W 2 "$2" >/dev/null 2>&1 || ip netns exec "$1" ping -c 2 -W 3 "$2" >/dev/null 2>&1 || return 1
  ip netns exec "$1" ping -6 -c 1 -W 2 "$3" >/dev/null 2>&1 || ip netns exec "$1" ping -6 -c 2 -W 3 "$3" >/dev/null 2>&1 || return 1
}
# iperf_server NS: a one-off iperf3 server on port 5201, once the previous one
# has exited (its client returns a moment before it does, and a new server
# that finds the port still taken exits at once, while the old socket makes
# wait_tcp_listen pass).
iperf_srv=
iperf_server() {
  if [ -n "$iperf_srv" ]; then
    wait_until 10 bash -c "! kill -0 $iperf_srv 2>/dev/null" || kill "$iperf_srv" 2>/dev/null || true
    wait "$iperf_srv" 2>/dev/null || true
  fi
  ip netns exec "$1" iperf3 -s -1 -p 5201 >>"$tmp/iperf.log" 2>&1 &
  iperf_srv=$!
  wait_tcp_listen "$1" 5201 10 || fail "iperf3 server did not listen"
}
iperf_both() { # CLIENT-NS SERVER-NS SERVER-ADDR UDP?
  iperf_server "$2"
  ip netns exec "$1" iperf3 -c "$3" -p 5201 -t 2 $4 --connect-timeout 5000 >>"$tmp/iperf.log" 2>&1 || return 1
  iperf_server "$2"
  ip netns exec "$1" iperf3 -c "$3" -p 5201 -t 2 -R $4 --connect-timeout 5000 >>"$tmp/iperf.log" 2>&1 || return 1
}

# ── 1. whalescaled on both sides ─────────────────────────────────────────────
echo "== 1. whalescaled --wireguard on both sides"
start_ws "$NA" "$IA"
start_ws "$NB" "$IB"
ls -ld /var/run/wireguard | grep -q '^drwxr-xr-x' || fail "/var/run/wireguard is not 0755"
ls -l "/var/run/wireguard/$IA.sock" | grep -q '^srwx------' || fail "$IA.sock is not 0700"
out=$(ip netns exec "$NA" wg show "$IA")
[[ $out == "interface: $IA"* ]] || fail "wg show before configuration: $out"
[[ $out != *"public key"* && $out != *"peer:"* ]] || fail "a fresh device has a key or peers: $out"
ok "fresh device: wg show lists the interface with no key and no peers"

# b first: whalescaled starts a handshake with a peer as soon as it is
# configured with an endpoint, and an INIT that reaches a b without its key
# yet is dropped; the retry comes a REKEY_TIMEOUT (5 s) later, about all the
# first pings allow.
ip netns exec "$NB" wg set "$IB" private-key "$tmp/kb" listen-port 51820 \
  peer "$PA" preshared-key "$tmp/psk" allowed-ips 10.9.0.1/32,fd09::1/128
ip netns exec "$NA" wg set "$IA" private-key "$tmp/ka" listen-port 51820 \
  peer "$PB" preshared-key "$tmp/psk" allowed-ips 10.9.0.2/32,fd09::2/128 endpoint 203.0.113.2:51820
addr_up "$NA" "$IA" 1
addr_up "$NB" "$IB" 2
[ "$(ip netns exec "$NA" wg show "$IA" public-key)" = "$PA" ] || fail "wg show public-key is not the key wg set gave"
[ "$(ip netns exec "$NA" wg show "$IA" listen-port)" = 51820 ] || fail "listen-port not 51820"

pings "$NA" 10.9.0.2 fd09::2 || fail "ping a -> b (IPv4, IPv6)"
pings "$NB" 10.9.0.1 fd09::1 || fail "ping b -> a (IPv4, IPv6)"
ok "ping IPv4 and IPv6 both ways"
hs=$(ip netns exec "$NA" wg show "$IA" latest-handshakes | awk '{print $2}')
[ "${hs:-0}" -gt 0 ] || fail "wg show latest-handshakes: ${hs:-none}"
read -r _ rx tx < <(ip netns exec "$NB" wg show "$IB" transfer)
[ "$rx" -gt 0 ] && [ "$tx" -gt 0 ] || fail "wg show transfer: rx=$rx tx=$tx"
[ "$(ip netns exec "$NB" wg show "$IB" endpoints | awk '{print $2}')" = 203.0.113.1:51820 ] || fail "b did not learn a's endpoint"
ok "wg show: handshake, transfer ($rx B received, $tx B sent), learned endpoint"

iperf_both "$NA" "$NB" 10.9.0.2 "" || fail "iperf3 TCP a <-> b"
ok "iperf3 TCP both ways"
iperf_both "$NB" "$NA" 10.9.0.1 "-u -b 50M" || fail "iperf3 UDP a <-> b"
ok "iperf3 UDP both ways"

# Bad input: an errno answer, nothing changed, the daemon still serves.
uapi() { # IFNAME REQUEST -> the answer
  python3 - "/var/run/wireguard/$1.sock" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin-1'))
out = b""
while not out.endswith(b"\n\n"):
    b = s.recv(65536)
    if not b: break
    out += b
print(out.decode(errors="replace"), end="")
PY
}
[[ $(uapi "$IA" 'set=1\nlisten_port=99999\n\n') == "errno=22"* ]] || fail "listen_port=99999 not refused with errno=22"
[[ $(uapi "$IA" 'set=1\npublic_key=zz\n\n') == "errno=22"* ]] || fail "a bad public_key not refused with errno=22"
[[ $(uapi "$IA" 'set=1\nnonsense\n\n') == "errno=71"* ]] || fail "a line without '=' not refused with errno=71"
[[ $(uapi "$IA" 'bogus=1\n\n') == "errno=22"* ]] || fail "an unknown operation not refused with errno=22"
big=$(python3 - "/var/run/wireguard/$IA.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(10); s.connect(sys.argv[1])
try:
    s.sendall(b"set=1\n" + b"fwmark=1\n" * 150000 + b"\n")   # 1.3 MiB, over the 1 MiB limit
except OSError:
    pass  # the daemon answered and closed before we finished: its answer is still readable
out = b""
while True:
    try:
        b = s.recv(4096)
    except OSError:
        break
    if not b: break
    out += b
print(out.decode(errors="replace"), end="")
PY
)
[[ $big == "errno=90"* ]] || fail "an oversized request was not refused with errno=90: ${big:0:40}"
[ "$(ip netns exec "$NA" wg show "$IA" listen-port)" = 51820 ] || fail "a refused set changed the device"
refused=$("$bin/wsctl" --socket "/run/whalescale/$IA.sock" status --json | python3 "$here/lib/jq.py" counters.uapi_refused)
[ "$refused" = 5 ] || fail "wsctl status counters.uapi_refused = $refused, not 5"
ok "bad UAPI input: errno 22 / 71 / 90 (1.3 MiB), the device unchanged, counted (uapi_refused = 5 in wsctl status)"

ip netns exec "$NA" wg showconf "$IA" >"$tmp/a.conf"
grep -q "PresharedKey" "$tmp/a.conf" || fail "showconf lost the preshared key"
ip netns exec "$NA" wg setconf "$IA" "$tmp/a.conf" || fail "wg setconf of showconf's output"
ip netns exec "$NA" wg showconf "$IA" | diff "$tmp/a.conf" - >/dev/null || fail "showconf after setconf differs"
pings "$NA" 10.9.0.2 fd09::2 || fail "ping after setconf"
ip netns exec "$NA" wg syncconf "$IA" "$tmp/a.conf" || fail "wg syncconf"
ip netns exec "$NA" wg showconf "$IA" | diff "$tmp/a.conf" - >/dev/null || fail "showconf after syncconf differs"
ok "wg showconf | wg setconf (and syncconf) round trip, traffic continues"

# Runtime roster: adding and removing another peer leaves b's session as it was
# (no new handshake: the latest-handshake second stays, although a second passed).
hs0=$(ip netns exec "$NA" wg show "$IA" latest-handshakes | awk -v k="$PB" '$1 == k {print $2}')
sleep 1.1
PC=$(wg genkey | wg pubkey)
ip netns exec "$NA" wg set "$IA" peer "$PC" allowed-ips 10.9.0.3/32,fd09::3/128 endpoint 203.0.113.9:51820
[ "$(ip netns exec "$NA" wg show "$IA" peers | wc -l)" = 2 ] || fail "the added peer is not listed"
ip -n "$NA" route get 10.9.0.3 | grep -q "dev $IA" || fail "no route to the new peer's address"
pings "$NA" 10.9.0.2 fd09::2 || fail "ping a -> b after adding a peer"
ip netns exec "$NA" wg set "$IA" peer "$PC" remove
pings "$NA" 10.9.0.2 fd09::2 || fail "ping a -> b after removing the other peer"
hs1=$(ip netns exec "$NA" wg show "$IA" latest-handshakes | awk -v k="$PB" '$1 == k {print $2}')
[ "$hs0" = "$hs1" ] || fail "b's session was re-keyed by an unrelated peer change (handshake $hs0 -> $hs1)"
ok "a peer added and removed at runtime; b's session untouched (handshake still at $hs1)"

# Roaming: b moves to a new port, then to a new address; a follows its authenticated packets.
ip netns exec "$NB" wg set "$IB" listen-port 51821
pings "$NB" 10.9.0.1 fd09::1 || fail "ping b -> a from b's new port"
ep=$(ip netns exec "$NA" wg show "$IA" endpoints | awk '{print $2}')
[ "$ep" = 203.0.113.2:51821 ] || fail "a's endpoint for b after b's port change: $ep"
ip -n "$NB" addr add 203.0.113.3/32 dev eth0
ip -n "$NB" addr del 203.0.113.2/32 dev eth0
pings "$NB" 10.9.0.1 fd09::1 || fail "ping b -> a from b's new address"
ep=$(ip netns exec "$NA" wg show "$IA" endpoints | awk '{print $2}')
[ "$ep" = 203.0.113.3:51821 ] || fail "a's endpoint for b after b's address change: $ep"
pings "$NA" 10.9.0.2 fd09::2 || fail "ping a -> b after roaming"
ok "roaming: a's wg show follows b to 203.0.113.3:51821, traffic continues"

# An IPv6 endpoint ([addr]:port through the UAPI), on the same dual-stack socket.
ip -n "$NA" addr add 2001:db8:9::1/64 dev eth0 nodad
ip -n "$NB" addr add 2001:db8:9::2/64 dev eth0 nodad
ip netns exec "$NA" wg set "$IA" peer "$PB" endpoint "[2001:db8:9::2]:51821"
[ "$(ip netns exec "$NA" wg show "$IA" endpoints | awk '{print $2}')" = "[2001:db8:9::2]:51821" ] || fail "a's IPv6 endpoint for b not shown"
pings "$NA" 10.9.0.2 fd09::2 || fail "ping a -> b over the IPv6 endpoint"
ep=$(ip netns exec "$NB" wg show "$IB" endpoints | awk '{print $2}')
[ "$ep" = "[2001:db8:9::1]:51820" ] || fail "b's endpoint for a after a moved to IPv6: $ep"
ok "IPv6 endpoint: a sends to [2001:db8:9::2]:51821, b follows a to $ep"

ip netns exec "$NA" wg set "$IA" peer "$PB" remove
[ -z "$(ip netns exec "$NA" wg show "$IA" peers)" ] || fail "peer still listed after remove"
if ip netns exec "$NA" ping -c 2 -W 1 10.9.0.2 >/dev/null 2>&1; then fail "ping a -> b works after the peer was removed"; fi
if ip netns exec "$NB" ping -c 2 -W 1 10.9.0.1 >/dev/null 2>&1; then fail "ping b -> a works after a removed b"; fi
ok "peer removed: no traffic either way"

pa=$(daemon_pid "$NA" "$IA") || fail "no daemon for $IA"
ip -n "$NA" link del "$IA"
wait_until 10 bash -c "! kill -0 $pa 2>/dev/null" || fail "the daemon did not exit after ip link del"
[ ! -e "/var/run/wireguard/$IA.sock" ] || fail "the socket outlived ip link del"
ok "ip link del: the daemon exited and removed its socket"
pb=$(daemon_pid "$NB" "$IB") || fail "no daemon for $IB"
kill -TERM "$pb"
wait_until 10 bash -c "! kill -0 $pb 2>/dev/null" || fail "the daemon did not exit on SIGTERM"
[ ! -e "/var/run/wireguard/$IB.sock" ] || fail "the socket outlived SIGTERM"
if ip -n "$NB" link show "$IB" >/dev/null 2>&1; then fail "the interface outlived SIGTERM"; fi
ok "SIGTERM: interface and socket removed"
ip -n "$NB" addr add 203.0.113.2/32 dev eth0
ip -n "$NB" addr del 203.0.113.3/32 dev eth0

# ── 2. against wireguard-go ──────────────────────────────────────────────────
against() { # LABEL BINARY
  echo "== 2. whalescaled --wireguard against $1"
  start_ws "$NA" "$IA"
  ip netns exec "$NB" "$2" "$IB" >>"$tmp/wggo.log" 2>&1 || fail "$1 did not start"
  wait_until 10 test -S "/var/run/wireguard/$IB.sock" || fail "$1: no UAPI socket"
  # b (wireguard-go) first, as in section 1: a's first INIT goes out when a is configured.
  ip netns exec "$NB" wg set "$IB" private-key "$tmp/kb" listen-port 51820 \
    peer "$PA" preshared-key "$tmp/psk" allowed-ips 10.9.0.1/32,fd09::1/128 endpoint 203.0.113.1:51820
  ip netns exec "$NA" wg set "$IA" private-key "$tmp/ka" listen-port 51820 \
    peer "$PB" preshared-key "$tmp/psk" allowed-ips 10.9.0.2/32,fd09::2/128 endpoint 203.0.113.2:51820
  addr_up "$NA" "$IA" 1
  addr_up "$NB" "$IB" 2
  pings "$NA" 10.9.0.2 fd09::2 || fail "$1: ping a -> b"
  pings "$NB" 10.9.0.1 fd09::1 || fail "$1: ping b -> a"
  iperf_both "$NA" "$NB" 10.9.0.2 "" || fail "$1: iperf3 TCP both ways"
  ok "$1: ping IPv4/IPv6 and TCP both ways"
  # Removing the socket file stops a userspace WireGuard too (wireguard-go watches it; so do we).
  rm -f "/var/run/wireguard/$IA.sock"
  wait_until 10 bash -c "! ip -n $NA link show $IA >/dev/null 2>&1" || fail "whalescaled outlived its removed socket"
  ip -n "$NB" link del "$IB"
  wait_until 10 test ! -e "/var/run/wireguard/$IB.sock" || fail "$1 outlived its interface"
}
if command -v wireguard-go >/dev/null; then
  against "Debian's wireguard-go $(wireguard-go --version 2>/dev/null | awk '{print $2; exit}')" wireguard-go
else
  echo "SKIP: Debian's wireguard-go not installed (scripts/setup installs it)"
fi
# Beside this checkout (../shared/reference), or where the project machines keep it (/work/shared).
up=${WG_UPSTREAM:-$here/../../shared/reference/wireguard-go/wireguard-go-0.0.20250522}
[ -x "$up" ] || [ -n "${WG_UPSTREAM:-}" ] || up=/work/shared/reference/wireguard-go/wireguard-go-0.0.20250522
if [ -x "$up" ]; then
  against "upstream wireguard-go 0.0.20250522" "$up"
else
  echo "SKIP: upstream wireguard-go not found at $up (set WG_UPSTREAM)"
fi

# ── 3. wg-quick ──────────────────────────────────────────────────────────────
echo "== 3. wg-quick up/down with whalescaled as the userspace implementation"
start_ws "$NB" "$IB"
ip netns exec "$NB" wg set "$IB" private-key "$tmp/kb" listen-port 51820 peer "$PA" allowed-ips 10.9.0.1/32,fd09::1/128
addr_up "$NB" "$IB" 2
cat >"$tmp/$IA.conf" <<EOF
[Interface]
PrivateKey = $(cat "$tmp/ka")
Address = 10.9.0.1/24, fd09::1/64
ListenPort = 51820

[Peer]
PublicKey = $PB
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 203.0.113.2:51820
EOF
WHALESCALED=$ws LOG_LEVEL=debug WG_QUICK_USERSPACE_IMPLEMENTATION=$wrapper \
  ip netns exec "$NA" wg-quick up "$tmp/$IA.conf" >>"$tmp/wgquick.log" 2>&1 || fail "wg-quick up"
grep -q "whalescaled-wg $IA" "$tmp/wgquick.log" || fail "wg-quick did not run the userspace implementation"
fw=$(ip netns exec "$NA" wg show "$IA" fwmark)
[ "$fw" != off ] || fail "wg-quick's full tunnel set no fwmark"
ip -n "$NA" route get 203.0.113.2 | grep -q "dev $IA" || fail "the full tunnel does not route everything into $IA"
pings "$NA" 10.9.0.2 fd09::2 || fail "wg-quick: ping a -> b"
pings "$NB" 10.9.0.1 fd09::1 || fail "wg-quick: ping b -> a"
ok "wg-quick up, full tunnel (0.0.0.0/0, ::/0; fwmark $fw keeps the daemon's own datagrams out of it): ping IPv4 and IPv6 both ways"
pa=$(daemon_pid "$NA" "$IA") || fail "no daemon for $IA after wg-quick up"
ip netns exec "$NA" wg-quick down "$tmp/$IA.conf" >>"$tmp/wgquick.log" 2>&1 || fail "wg-quick down"
wait_until 10 bash -c "! kill -0 $pa 2>/dev/null" || fail "the daemon did not exit after wg-quick down"
[ ! -e "/var/run/wireguard/$IA.sock" ] || fail "the socket outlived wg-quick down"
[ -z "$(ip -n "$NA" rule show | grep -v -e 'lookup local' -e 'lookup main' -e 'lookup default')" ] || fail "wg-quick down left policy rules"
ok "wg-quick down: interface, daemon and socket gone"

echo "PASS: wg-dropin"
