#!/usr/bin/env bash
# Every wsctl verb against live daemons in the netns lab (issue 15): status
# (table and JSON), ping (answered, with the path named; unanswered exits 1),
# netcheck (names the NAT type with each anchor's evidence), explain (names the
# paths and why), metrics (wsctl and the daemon's HTTP listener, which a
# malformed or silent client cannot break), and the control socket refusing
# another uid (by its mode, and by SO_PEERCRED when the mode is opened) while
# serving a member of node.control_group.
#
#                    ns <P>-internet (bridge br0; no uplink)
#     ┌──────────────┬──────────────┴──┬───────────────┬───────────────┐
#   a1 203.0.113.10  a2 203.0.113.20  re1 11.0.0.1 eim re2 11.0.0.2 eim rd1 11.0.0.3 edm  rd2 11.0.0.4 edm
#   anchor           anchor           └ e1 .10         └ e2 .10         └ d1 .10           └ d2 .10
#
# Overlay ws0: a1 10.77.0.1, a2 .2, e1 .11, e2 .12, d1 .21, d2 .22. e1 also
# lists "ghost" (10.77.0.99), a member that never runs: its ping must fail.
# e1 serves metrics on 127.0.0.1:9586 (inside its namespace); d2's control
# socket is also for the group nogroup.
# Everything lives in namespaces this test makes; lab_cleanup removes them on any exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
lab_begin
ok() { echo "ok: $*"; }

lab_internet
lab_public a1 203.0.113.10
lab_public a2 203.0.113.20
lab_router re1 11.0.0.1 192.168.1.1/24 eim
lab_router re2 11.0.0.2 192.168.2.1/24 eim
lab_router rd1 11.0.0.3 192.168.3.1/24 edm
lab_router rd2 11.0.0.4 192.168.4.1/24 edm
lab_host e1 re1 192.168.1.10
lab_host e2 re2 192.168.2.10
lab_host d1 rd1 192.168.3.10
lab_host d2 rd2 192.168.4.10

nodes="a1 a2 e1 e2 d1 d2"
declare -A ov=([a1]=1 [a2]=2 [e1]=11 [e2]=12 [d1]=21 [d2]=22)
declare -A pub
for n in $nodes ghost; do
  "$bin/wsctl" genkey >"$LAB_DIR/$n.key"
  chmod 600 "$LAB_DIR/$n.key"
  pub[$n]=$("$bin/wsctl" pubkey <"$LAB_DIR/$n.key")
done
group_ok=; getent group nogroup >/dev/null && id nobody >/dev/null 2>&1 && group_ok=1
for n in $nodes; do
  anchor=false; case $n in a*) anchor=true;; esac
  {
    printf '[node]\nprivate_key_file = "%s"\ninterface = "ws0"\naddress = "10.77.0.%s/24"\nlisten_port = 51820\nanchor = %s\nstate_dir = "%s"\ncontrol_socket = "%s"\nport_mapping = []\n' \
      "$LAB_DIR/$n.key" "${ov[$n]}" "$anchor" "$LAB_DIR/$n-state" "$LAB_DIR/run/$n.sock"
    # d2's socket is for root and the group nogroup too (nobody's primary group on Debian).
    [ "$n" = d2 ] && [ -n "$group_ok" ] && printf 'control_group = "nogroup"\n' 
    for m in $nodes; do
      [ "$m" = "$n" ] && continue
      printf '\n[[peer]]\nname = "%s"\npublic_key = "%s"\naddress = "10.77.0.%s/32"\n' "$m" "${pub[$m]}" "${ov[$m]}"
      case $m in
        a1) printf 'endpoint = "203.0.113.10:51820"\nanchor = true\n';;
        a2) printf 'endpoint = "203.0.113.20:51820"\nanchor = true\n';;
      esac
    done
    if [ "$n" = e1 ]; then
      printf '\n[[peer]]\nname = "ghost"\npublic_key = "%s"\naddress = "10.77.0.99/32"\n' "${pub[ghost]}"
      printf '\n[metrics]\nlisten = "127.0.0.1:9586"\n'
    fi
  } >"$LAB_DIR/$n.toml"
done

for n in $nodes; do lab_bg "$n" "d-$n" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml"; done

ctl() { local n=$1; shift; "$bin/wsctl" --socket "$LAB_DIR/run/$n.sock" "$@"; }
json() { ctl "$1" status --json; }
# active_kind NODE PEER: kind of the active path NODE uses to PEER (direct|lan|relay|none)
active_kind() {
  json "$1" 2>/dev/null | "$LAB_PY" -c "
import json,sys
s=json.load(sys.stdin)
p=[p for p in s['peers'] if p['name']=='$2'][0]
a=[x for x in p['paths'] if x['active']]
print(a[0]['kind'] if a and p['state']=='up' else 'none')"
}
is_kind() { [ "$(active_kind "$1" "$2")" = "$3" ]; }
nat_is() { [ "$(json "$1" 2>/dev/null | "$LAB_PY" -c 'import json,sys; print(json.load(sys.stdin)["node"]["nat"]["mapping"])')" = "$2" ]; }
# Traffic makes the sessions: one ping each way through the tunnel.
kick() { lab_exec "$1" ping -c 1 -W 1 "10.77.0.${ov[$2]}" >/dev/null 2>&1 || true; }

for n in $nodes; do wait_until 60 test -S "$LAB_DIR/run/$n.sock" || fail "$n: no control socket"; done
wait_until 60 nat_is d1 endpoint-dependent || fail "d1 never classified its NAT: $(ctl d1 netcheck)"
wait_until 60 nat_is e1 endpoint-independent || fail "e1 never classified its NAT: $(ctl e1 netcheck)"
wait_until 60 nat_is d2 endpoint-dependent || fail "d2 never classified its NAT"
kick e1 e2; kick d1 d2
wait_until 90 is_kind e1 e2 direct || { kick e1 e2; fail "e1 -> e2 not direct: $(ctl e1 explain e2)"; }
wait_until 90 is_kind d1 d2 relay || { kick d1 d2; fail "d1 -> d2 not relayed: $(ctl d1 explain d2)"; }
ok "lab up: e1-e2 direct, d1-d2 relayed"

# ── status ───────────────────────────────────────────────────────────────────
t=$(ctl e1 status)
grep -Eq '^PEER +ADDRESS +STATE +REACHED +RTT +HANDSHAKE +RX +TX +RECORD$' <<<"$t" || fail "status header: $t"
# The direct path can be active a moment before its first RTT sample (the row shows "-" until then).
e2_row() { t=$(ctl e1 status); grep -Eq '^e2 +10\.77\.0\.12/32 +up +direct 11\.0\.0\.2:[0-9]+ +[0-9.]+ms ' <<<"$t"; }
wait_until 20 e2_row || fail "status row for e2: $t"
grep -Eq '^nat: endpoint-independent \(a[12] saw 11\.0\.0\.1:' <<<"$t" || fail "status nat line: $t"
grep -q '^anchors: a1 reachable, a2 reachable$' <<<"$t" || fail "status anchors: $t"
out=$(ctl d1 status); grep -Eq '^d2 +10\.77\.0\.22/32 +up +relay via a[12] ' <<<"$out" || fail "d1's status row for d2: $(ctl d1 status)"
json e1 | "$LAB_PY" -c 'import json,sys; s=json.load(sys.stdin); assert s["version"]==1 and len(s["node"]["nat"]["evidence"])==2, s["node"]' \
  || fail "status --json lacks the NAT evidence"
ok "status table and json"

# ── ping ─────────────────────────────────────────────────────────────────────
out=$(ctl e1 ping -c 3 -i 0.2 e2) || fail "ping e2 exited non-zero: $out"
[ "$(grep -Ec '^pong from e2 \(10\.77\.0\.12\) via direct 11\.0\.0\.2:[0-9]+ in [0-9.]+ ms$' <<<"$out")" = 3 ] || fail "ping e2: $out"
grep -Eq '^--- e2: 3 sent, 3 received, 0% lost; rtt min/avg/max [0-9.]+/[0-9.]+/[0-9.]+ ms$' <<<"$out" || fail "ping summary: $out"
out=$(ctl d1 ping -c 2 -i 0.2 10.77.0.22) || fail "ping d2 by address exited non-zero: $out"
grep -Eq '^pong from d2 \(10\.77\.0\.22\) via relay a[12] \(203\.0\.113\.[12]0:51820\) in [0-9.]+ ms$' <<<"$out" || fail "ping d2 via relay: $out"
out=$(ctl d2 ping -c 1 "${pub[d1]}") || fail "ping d1 by key: $out"
grep -q '^pong from d1 ' <<<"$out" || fail "ping by key: $out"
# ghost never runs: the request goes out (relayed while a path is sought, as data would), nothing answers.
if out=$(ctl e1 ping -c 2 -i 0.1 --timeout 0.5 ghost 2>&1); then fail "ping ghost answered?! $out"; fi
[ "$(grep -c '^no pong from ghost (10.77.0.99) within 500 ms$' <<<"$out")" = 2 ] || fail "ping ghost: $out"
grep -q '^--- ghost: 2 sent, 0 received, 100% lost$' <<<"$out" || fail "ping ghost summary: $out"
if out=$(ctl e1 ping -c 1 nosuchpeer 2>&1); then fail "ping of an unknown peer succeeded: $out"; fi
grep -q 'no peer "nosuchpeer"' <<<"$out" || fail "unknown peer message: $out"
ok "ping: direct, relay, by address and key, unanswered exits 1, unknown peer refused"

# ── netcheck ─────────────────────────────────────────────────────────────────
out=$(ctl d1 netcheck)
grep -q '^nat: endpoint-dependent$' <<<"$out" || fail "netcheck d1: $out"
grep -Eq '^  a1 saw 11\.0\.0\.3:[0-9]+ ' <<<"$out" || fail "netcheck d1 evidence a1: $out"
grep -Eq '^  a2 saw 11\.0\.0\.3:[0-9]+ ' <<<"$out" || fail "netcheck d1 evidence a2: $out"
grep -q 'different public ports' <<<"$out" || fail "netcheck d1 verdict: $out"
grep -q '^port mapping: none in force' <<<"$out" || fail "netcheck port mapping: $out"
grep -Eq '^ipv4: yes \(local 192\.168\.3\.10; public 11\.0\.0\.3\)$' <<<"$out" || fail "netcheck ipv4: $out"
grep -q '^lan peers: none$' <<<"$out" || fail "netcheck lan peers: $out"
out=$(ctl e1 netcheck); grep -q '^nat: endpoint-independent$' <<<"$out" || fail "netcheck e1: $(ctl e1 netcheck)"
ctl d1 netcheck --json | "$LAB_PY" -c 'import json,sys; r=json.load(sys.stdin); assert r["nat_mapping"]=="endpoint-dependent" and len(r["evidence"])==2 and r["ipv4"]["available"], r' \
  || fail "netcheck --json"
ok "netcheck names the NAT type with evidence"

# ── explain ──────────────────────────────────────────────────────────────────
out=$(ctl d1 explain d2)
grep -Eq '^\* relay via a[12] \(203\.0\.113\.[12]0:51820\)' <<<"$out" || fail "explain d2: active relay path: $out"
grep -Eq '^active: relay via a[12]$' <<<"$out" || fail "explain d2 active: $out"
grep -q '^why: ' <<<"$out" || fail "explain d2 why: $out"
grep -q '^to make it direct: .*endpoint-dependent.*port mapping' <<<"$out" || fail "explain d2 fix: $out"
out=$(ctl e1 explain 10.77.0.12)
grep -Eq '^\* direct 11\.0\.0\.2:[0-9]+ .*answers pings' <<<"$out" || fail "explain e2 path: $out"
grep -q '^why: a direct path answers its pings' <<<"$out" || fail "explain e2 why: $out"
# e2's signed record reaches e1 by gossip, which may come a moment after the path.
e2_record() { out=$(ctl e1 explain 10.77.0.12); grep -Eq '^gossip record: seq [0-9]+' <<<"$out"; }
wait_until 30 e2_record || fail "explain e2 gossip record: $out"
ok "explain names the paths and why"
show() { sed 's/^/    | /'; }
{ echo "  e1: wsctl status"; ctl e1 status | show; echo "  d1: wsctl netcheck"; ctl d1 netcheck | show
  echo "  d1: wsctl explain d2"; ctl d1 explain d2 | show; echo "  e1: wsctl explain e2"; ctl e1 explain e2 | show; }

# ── metrics: wsctl, then HTTP ────────────────────────────────────────────────
out=$(ctl e1 metrics); grep -q '^whalescale_peer_up{peer="e2"} 1$' <<<"$out" || fail "wsctl metrics"
wait_tcp_listen "$(lab_ns e1)" 9586 10 || fail "metrics listener not up"
http() { lab_exec e1 curl -s -m 5 -o "$LAB_DIR/http.body" -w '%{http_code}' "$@"; }
[ "$(http http://127.0.0.1:9586/metrics)" = 200 ] || fail "GET /metrics"
grep -q '^whalescale_peer_up{peer="e2"} 1$' "$LAB_DIR/http.body" || fail "HTTP metrics body: $(head -20 "$LAB_DIR/http.body")"
grep -q '^# TYPE whalescale_counter_total counter$' "$LAB_DIR/http.body" || fail "HTTP metrics TYPE lines"
grep -Eq '^whalescale_peer_handshakes_total\{peer="e2",result="completed"\} [1-9]' "$LAB_DIR/http.body" || fail "HTTP metrics: no completed handshake with e2"
grep -Eq '^whalescale_peer_rx_packets_total\{peer="e2"\} [1-9]' "$LAB_DIR/http.body" || fail "HTTP metrics: no packets from e2"
[ "$(http http://127.0.0.1:9586/)" = 404 ] || fail "GET / not 404"
[ "$(http -X POST http://127.0.0.1:9586/metrics)" = 405 ] || fail "POST not 405"
# A silent client, a malformed one and an oversized head, all at once; the daemon keeps serving.
lab_exec e1 "$LAB_PY" - <<'EOF' || fail "misbehaving HTTP clients"
import socket, time
silent = socket.create_connection(("127.0.0.1", 9586))
bad = socket.create_connection(("127.0.0.1", 9586)); bad.sendall(b"\x00\x01garbage\r\n\r\n")
assert bad.recv(100).startswith(b"HTTP/1.1 400"), "malformed: no 400"
big = socket.create_connection(("127.0.0.1", 9586)); big.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000)
got = big.recv(100)
assert got.startswith(b"HTTP/1.1 431"), got
ok = socket.create_connection(("127.0.0.1", 9586)); ok.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
data = b""
while True:
    d = ok.recv(65536)
    if not d: break
    data += d
assert data.startswith(b"HTTP/1.1 200") and b"whalescale_info" in data, data[:200]
silent.settimeout(15)
assert silent.recv(10) == b"", "silent client not cut off"
EOF
json e1 | "$LAB_PY" -c '
import json,sys; c=json.load(sys.stdin)["counters"]
assert c.get("metrics_http_timeouts",0)>=1 and c.get("metrics_http_bad_requests",0)>=4 and c.get("metrics_http_requests",0)>=2, c' \
  || fail "metrics_http counters: $(json e1 | grep metrics_http)"
ok "metrics over HTTP; bad clients answered, cut off and counted"

# ── the control socket refuses other users ──────────────────────────────────
# The daemon makes it 0600: another uid cannot connect at all.
[ "$(stat -c %a "$LAB_DIR/run/e1.sock")" = 600 ] || fail "control socket mode $(stat -c %a "$LAB_DIR/run/e1.sock")"
install -m 0755 "$bin/wsctl" "$LAB_DIR/run/wsctl"
chmod 0711 "$LAB_DIR"; chmod 0755 "$LAB_DIR/run"
if out=$(runuser -u nobody -- "$LAB_DIR/run/wsctl" --socket "$LAB_DIR/run/e1.sock" status 2>&1); then fail "nobody read the status: $out"; fi
grep -q 'Permission denied' <<<"$out" || fail "nobody, 0600 socket: $out"
# Even when the file mode is opened by mistake, the daemon checks the peer's uid (SO_PEERCRED).
chmod 0666 "$LAB_DIR/run/e1.sock"
if out=$(runuser -u nobody -- "$LAB_DIR/run/wsctl" --socket "$LAB_DIR/run/e1.sock" status 2>&1); then fail "nobody read the status through a 0666 socket: $out"; fi
grep -q 'permission denied: uid 65534' <<<"$out" || fail "nobody, 0666 socket: $out"
if runuser -u nobody -- "$LAB_DIR/run/wsctl" --socket "$LAB_DIR/run/e1.sock" ping -c 1 e2 >/dev/null 2>&1; then fail "nobody could ping"; fi
# With node.control_group the socket is 0660 for that group, and its members are served.
if [ -n "$group_ok" ]; then
  [ "$(stat -c '%a %G' "$LAB_DIR/run/d2.sock")" = "660 nogroup" ] || fail "d2's socket: $(stat -c '%a %G' "$LAB_DIR/run/d2.sock")"
  out=$(runuser -u nobody -- "$LAB_DIR/run/wsctl" --socket "$LAB_DIR/run/d2.sock" status 2>&1) || fail "nobody (group nogroup) refused by d2: $out"
  grep -Eq '^d1 +10\.77\.0\.21/32 +up ' <<<"$out" || fail "nobody's status of d2: $out"
  ok "control_group: a member of the group is served"
else
  echo "SKIP: control_group: this host has no user nobody or group nogroup"
fi
chmod 0700 "$LAB_DIR"
[ "$(json e1 | "$LAB_PY" -c 'import json,sys; print(json.load(sys.stdin)["counters"].get("control_refused",0))')" -ge 2 ] || fail "control_refused not counted"
ctl e1 status >/dev/null || fail "root's status after the refusals"
ok "control socket refuses uid 65534 (file mode, then SO_PEERCRED), counted"

# ── a peer that stops answering: ping says so and exits 1 ───────────────────
lab_kill_tag d-e2
if out=$(ctl e1 ping -c 2 -i 0.1 --timeout 0.5 e2 2>&1); then fail "ping of a stopped e2 answered: $out"; fi
[ "$(grep -c '^no pong from e2 (10.77.0.12) within 500 ms$' <<<"$out")" = 2 ] || fail "ping stopped e2: $out"
grep -q '^--- e2: 2 sent, 0 received, 100% lost$' <<<"$out" || fail "ping stopped e2 summary: $out"
ok "ping of a stopped peer: no pong, exit 1"

echo "PASS: wsctl verbs against live daemons"
