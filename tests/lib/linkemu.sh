# shellcheck shell=bash
# One emulated path between two hosts, through `ws-bench linkemu` in a router
# namespace (this kernel has no netem). Sourced after tests/lib/lab.sh, by
# tests/linkemu.sh and perf/linkemu.
#
#   ns <P>-<L>               ns <P>-<N> (router, ws-bench linkemu)                 ns <P>-<R>
#   eth0 198.18.<2k>.2 ──── vl 198.18.<2k>.1    vr 198.18.<2k+1>.1 ──── eth0 198.18.<2k+1>.2
#                            │ ip rule iif vl → dev ea   ip rule iif vr → dev eb
#                            └ ea ⇄ [ab: ea→eb, ba: eb→ea] ⇄ eb (TUNs, routed by main)
#
# Addresses are from 198.18.0.0/15 (RFC 2544, benchmarking), inside the
# namespaces only. k = 0..63 picks the pair of /24s, so several paths can coexist.
#
#   linkemu_path N L R K 'SETTINGS_AB' ['SETTINGS_BA']   builds it and starts the emulator
#   linkemu_join N L R K IFL IFR 'SETTINGS_AB' ['SETTINGS_BA']
#                                                        the same between two nodes that exist
#                                                        already, on new interfaces IFL / IFR, with
#                                                        a route to the other side's /24 instead of a
#                                                        default route (a host may have several paths:
#                                                        tests/lib/multipath.sh)
#   linkemu_ctl N 'down ab'                              a control line (see ws-bench linkemu --help)
#   linkemu_stats N                                      the emulator's counters, one JSON line
#   linkemu_addr_left K / linkemu_addr_right K

linkemu_addr_left() { echo "198.18.$((2 * $1)).2"; }
linkemu_addr_right() { echo "198.18.$((2 * $1 + 1)).2"; }

linkemu_path() {
  local n=${1:?linkemu_path N L R K AB [BA]} l=${2:?} r=${3:?} k=${4:?} ab=${5:?} ba=${6:-$5}
  _lab_new_node "$l" host || return 1
  _lab_new_node "$r" host || return 1
  _linkemu_wire "$n" "$l" "$r" "$k" eth0 eth0 "$ab" "$ba" || return 1
  ip -n "$(lab_ns "$l")" route add default via "198.18.$((2 * k)).1"
  ip -n "$(lab_ns "$r")" route add default via "198.18.$((2 * k + 1)).1"
}

linkemu_join() {
  local n=${1:?linkemu_join N L R K IFL IFR AB [BA]} l=${2:?} r=${3:?} k=${4:?} ifl=${5:?} ifr=${6:?} ab=${7:?} ba=${8:-$7}
  _linkemu_wire "$n" "$l" "$r" "$k" "$ifl" "$ifr" "$ab" "$ba" || return 1
  ip -n "$(lab_ns "$l")" route add "198.18.$((2 * k + 1)).0/24" via "198.18.$((2 * k)).1" dev "$ifl" || return 1
  ip -n "$(lab_ns "$r")" route add "198.18.$((2 * k)).0/24" via "198.18.$((2 * k + 1)).1" dev "$ifr" || return 1
}

# _linkemu_wire N L R K IFL IFR AB BA: the router namespace N with its emulator, and a veth
# from it to IFL in L and to IFR in R (L and R exist), addressed for pair K.
_linkemu_wire() {
  local n=$1 l=$2 r=$3 k=$4 ifl=$5 ifr=$6 ab=$7 ba=$8
  local a=$((2 * k)) b=$((2 * k + 1)) nsn nsl nsr i
  [ -x "${WS_BIN:?WS_BIN must point at the release build}/ws-bench" ] || _lab_die "no $WS_BIN/ws-bench" || return 1
  _lab_new_node "$n" emu || return 1
  nsn=$(lab_ns "$n") nsl=$(lab_ns "$l") nsr=$(lab_ns "$r") || return 1
  ip link add "$ifl" netns "$nsl" type veth peer name vl netns "$nsn" || return 1
  ip link add "$ifr" netns "$nsr" type veth peer name vr netns "$nsn" || return 1
  ip -n "$nsl" addr add "198.18.$a.2/24" dev "$ifl"
  ip -n "$nsr" addr add "198.18.$b.2/24" dev "$ifr"
  ip -n "$nsn" addr add "198.18.$a.1/24" dev vl
  ip -n "$nsn" addr add "198.18.$b.1/24" dev vr
  for i in "$nsl:$ifl" "$nsr:$ifr" "$nsn:vl" "$nsn:vr"; do ip -n "${i%%:*}" link set "${i#*:}" up; done
  ip netns exec "$nsn" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  _lab_set "$n" ctl "$LAB_DIR/$n.ctl"
  _lab_set "$n" out "$(lab_log "emu-$n")"
  # LINKEMU_PRELOAD=perf/lib/malloccount.so (built): the stats line then counts allocations.
  lab_bg "$n" "emu-$n" env ${LINKEMU_PRELOAD:+"LD_PRELOAD=$LINKEMU_PRELOAD"} "$WS_BIN/ws-bench" linkemu --a ea --b eb --ab "$ab" --ba "$ba" --control "$LAB_DIR/$n.ctl" || return 1
  _lab_set "$n" pid "$LAB_PID"
  # The emulator makes the TUNs; route into them once they are up.
  wait_until 60 _linkemu_up "$nsn" "$LAB_DIR/$n.ctl" || { cat "$(lab_log "emu-$n")" >&2; _lab_die "linkemu $n did not bring ea/eb up"; return 1; }
  ip netns exec "$nsn" sysctl -qw net.ipv4.conf.ea.rp_filter=0 net.ipv4.conf.eb.rp_filter=0
  ip -n "$nsn" route add default dev ea table 100
  ip -n "$nsn" route add default dev eb table 101
  ip -n "$nsn" rule add iif vl lookup 100 pref 100
  ip -n "$nsn" rule add iif vr lookup 101 pref 101
}

_linkemu_up() {
  [ -p "$2" ] && ip -n "$1" link show ea 2>/dev/null | grep -q ',UP' && ip -n "$1" link show eb 2>/dev/null | grep -q ',UP'
}

linkemu_ctl() {
  local ctl
  ctl=$(lab_get "${1:?linkemu_ctl N LINE}" ctl) || return 1
  printf '%s\n' "${2:?}" >"$ctl"
}

# linkemu_stats N: asks for the counters and prints the newest stats line.
linkemu_stats() {
  local log before
  log=$(lab_log "emu-${1:?linkemu_stats N}")
  before=$(grep -c '^{"ab"' "$log" 2>/dev/null)
  linkemu_ctl "$1" stats || return 1
  wait_until 10 _linkemu_more "$log" "$before" || return 1
  grep '^{"ab"' "$log" | tail -1
}

_linkemu_more() { [ "$(grep -c '^{"ab"' "$1" 2>/dev/null)" -gt "$2" ]; }
