# shellcheck shell=bash
# Two emulated paths between one sender with two uplinks and one receiver, for
# perf/multipath and tests/multipath.sh. Sourced after tests/lib/lab.sh,
# tests/lib/wait.sh and tests/lib/linkemu.sh.
#
#                         ns <P>-emu0: ws-bench linkemu (path 0)
#   ns <P>-snd  up0 198.18.0.2 ── vl 198.18.0.1 [ea ⇄ eb] vr 198.18.1.1 ── dn0 198.18.1.2  ns <P>-rcv
#               up1 198.18.2.2 ── vl 198.18.2.1 [ea ⇄ eb] vr 198.18.3.1 ── dn1 198.18.3.2
#                         ns <P>-emu1: ws-bench linkemu (path 1)
#
#   ab = sender → receiver (the data), ba = the ACKs.
#   Routes: 198.18.1.0/24 via up0, 198.18.3.0/24 via up1 (the remote picks the uplink).
#   MPTCP's second subflow goes from 198.18.2.2 (up1) to the receiver's first address
#   198.18.1.2: the sender routes "from 198.18.2.2" by table 102 (via emu1), emu1 routes
#   198.18.1.0/24 to dn1, and the receiver answers 198.18.2.0/24 via dn1; so each subflow
#   crosses exactly one emulator, whose counters show its bytes.
#   Whalescale (mp_daemons): overlay 10.77.0.1 (snd) ⇄ 10.77.0.2 (rcv), UDP port 51820;
#   the sender is configured with the receiver's path-0 address as its endpoint.
#
#   mp_lab 'SETTINGS0' 'SETTINGS1'    builds it (settings as ws-bench linkemu --ab, both directions)
#   mp_set K 'SETTINGS'               new settings for path K, both directions
#   mp_bytes K                        bytes path K delivered sender → receiver so far (IP packets)
#   mp_mptcp                          the kernel MPTCP endpoints and limits (SKIP reason on stdout, 1, if not)
#   mp_daemons BIN [SND_EXTRA] [RCV_EXTRA]
#                                     keys, configs (the extra lines go into each one's [node]),
#                                     both daemons; waits for a ping through the tunnel
#   mp_status snd|rcv                 `wsctl status --json`
#   mp_active_remote                  the sender's active path's remote address (host only)
#   mp_settings RATE_MBIT RTT_MS [LOSS]  linkemu settings for a path: delay = RTT/2 each way,
#                                     drop-tail queue of 2 × RTT (at least 20 ms)

MP_RCV0=198.18.1.2
MP_RCV1=198.18.3.2
MP_SND0=198.18.0.2
MP_SND1=198.18.2.2

mp_settings() {
  awk -v r="${1:?mp_settings RATE RTT [LOSS]}" -v t="${2:?}" -v l="${3:-0}" 'BEGIN{
    q = 2 * t; if (q < 20) q = 20
    printf "rate=%gmbit,delay=%gms,queue=%gms,loss=%g", r, t / 2, q, l }'
}

mp_lab() {
  local s0=${1:?mp_lab SETTINGS0 SETTINGS1} s1=${2:?} snd rcv e1
  _lab_new_node snd host || return 1
  _lab_new_node rcv host || return 1
  linkemu_join emu0 snd rcv 0 up0 dn0 "$s0" || return 1
  linkemu_join emu1 snd rcv 1 up1 dn1 "$s1" || return 1
  snd=$(lab_ns snd) rcv=$(lab_ns rcv) e1=$(lab_ns emu1)
  ip netns exec "$rcv" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.dn0.rp_filter=0 net.ipv4.conf.dn1.rp_filter=0
  ip netns exec "$snd" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  ip -n "$snd" route add default via 198.18.2.1 dev up1 table 102
  ip -n "$snd" rule add from "$MP_SND1" lookup 102 pref 102
  ip -n "$e1" route add 198.18.1.0/24 via "$MP_RCV1" dev vr
}

mp_set() { linkemu_ctl "emu${1:?mp_set K SETTINGS}" "set both ${2:?}"; }

mp_bytes() {
  linkemu_stats "emu${1:?mp_bytes K}" | "$LAB_PY" -c 'import json,sys; print(json.load(sys.stdin)["ab"]["delivered_bytes"])'
}

mp_mptcp() {
  local n
  [ "$(lab_exec snd sysctl -n net.mptcp.enabled 2>/dev/null)" = 1 ] || { echo "this kernel has no MPTCP (net.mptcp.enabled)"; return 1; }
  command -v mptcpize >/dev/null || { echo "mptcpize not installed (scripts/setup installs it)"; return 1; }
  for n in snd rcv; do
    lab_exec "$n" ip mptcp limits set subflow 2 add_addr_accepted 2 || { echo "ip mptcp limits refused in $n"; return 1; }
  done
  lab_exec snd ip mptcp endpoint add "$MP_SND1" dev up1 subflow || { echo "ip mptcp endpoint add refused"; return 1; }
}

mp_daemons() {
  local bin=${1:?mp_daemons BIN [SND_EXTRA] [RCV_EXTRA]} n me other ep pub extra
  for n in snd rcv; do
    "$bin/wsctl" genkey >"$LAB_DIR/$n.key" || return 1
    chmod 600 "$LAB_DIR/$n.key"
  done
  for n in snd rcv; do
    if [ $n = snd ]; then me=1 other=rcv ep="endpoint = \"$MP_RCV0:51820\"" extra=${2:-}; else me=2 other=snd ep= extra=${3:-}; fi
    pub=$("$bin/wsctl" pubkey <"$LAB_DIR/$other.key") || return 1
    cat >"$LAB_DIR/$n.toml" <<TOML
[node]
private_key_file = "$LAB_DIR/$n.key"
interface = "ws0"
address = "10.77.0.$me/24"
listen_port = 51820
state_dir = "$LAB_DIR/$n-state"
control_socket = "$LAB_DIR/$n.sock"
port_mapping = []
lan_discovery = false
$extra

[[peer]]
name = "$other"
public_key = "$pub"
address = "10.77.0.$((3 - me))/32"
$ep
TOML
    lab_bg "$n" "d-$n" "$bin/whalescaled" --log-level "${WS_LOG:-info}" --config "$LAB_DIR/$n.toml" || return 1
  done
  wait_until 60 lab_exec snd ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 || { _lab_die "no ping through the tunnel"; return 1; }
}

mp_status() { "$WS_BIN/wsctl" status --socket "$LAB_DIR/${1:?mp_status snd|rcv}.sock" --json; }

mp_active_remote() {
  mp_status snd | "$LAB_PY" -c '
import json, sys
s = json.load(sys.stdin)
for p in s.get("peers", []):
    for q in p.get("paths", []):
        if q.get("active"):
            print(q["remote"].rsplit(":", 1)[0].strip("[]")); sys.exit(0)
print("none")'
}
