# shellcheck shell=bash
# The integration lab: an isolated "internet" in network namespaces, anchors
# with public addresses on it, home NAT routers (nftables) with hosts behind
# them. Sourced by tests/*.sh and perf/* scripts; needs root, iproute2,
# nftables and python3.
#
#                 ns <P>-internet: bridge br0 = "the internet" (no uplink to the real host)
#        ┌──────────────────┬─────────────┴────┬──────────────────────────┐
#   ns <P>-a1 eth0     ns <P>-a2 eth0     ns <P>-r1 wan              ns <P>-r2 wan
#   203.0.113.10       203.0.113.20       11.0.0.1                   11.0.0.2
#   anchor             anchor             nftables NAT, MODE eim     nftables NAT, MODE edm
#                                         bridge lan 192.168.1.1/24  bridge lan 192.168.1.1/24
#                                          ├─ ns <P>-h1 eth0 .10      └─ ns <P>-h3 eth0 .10
#                                          └─ ns <P>-h2 eth0 .11
#                                         (h1 and h2 share one LAN: ARP and multicast
#                                          reach each other directly, never through the NAT)
#
# Usage (every test puts lab_cleanup in its EXIT trap, so nothing survives a failure):
#
#   . tests/lib/lab.sh
#   lab_init ws$$ ; trap lab_cleanup EXIT
#   lab_internet
#   lab_public a1 203.0.113.10
#   lab_router r1 11.0.0.1 192.168.1.1/24 eim
#   lab_host   h1 r1 192.168.1.10
#   lab_bg a1 obs "$LAB_PY" "$LAB_UDP" observe --port 3478   # background, logged, killed at cleanup
#   lab_udp h1 client 203.0.113.10:3478                       # -> "203.0.113.10:3478 SEEN 11.0.0.1:41234 rtt-ms=0.05"
#
# Address plan (everything exists only inside the namespaces a run creates;
# the internet bridge has no uplink, so nothing is ever sent to a real address):
#
#   203.0.113.0/24  anchors and other public hosts (RFC 5737 TEST-NET-3, as in
#                   the README's example config). Documentation addresses:
#                   obviously lab-only.
#   11.0.0.0/8      NAT routers' WAN addresses. Not reserved in miniupnpd's
#                   list (it refuses TEST-NET, RFC 1918, 100.64/10, 198.18/15
#                   ... on its WAN interface; its own test suite uses
#                   11.250.42.12 as a public address), so a router can later run
#                   the real UPnP/NAT-PMP/PCP gateway. Renumbering picks another
#                   11.x address.
#   192.168.N.0/24  LANs behind routers; two routers may use the same LAN
#                   prefix, as real homes do.
#   Any other address works: the internet is one flat L2 segment where every
#   public node has its address as a /32 and an on-link default route
#   ("default dev eth0"), so it ARPs for any destination; public addresses of
#   different prefixes reach each other without a router in between.
#   IPv4 only for now (interfaces keep their IPv6 link-local addresses only).
#
# Names: NAME is [a-z][a-z0-9]{0,11}; node NAME lives in namespace <P>-NAME
# (lab_ns NAME). Interfaces: public nodes and hosts "eth0"; routers "wan" and
# the LAN bridge "lan"; in the internet namespace the port "i-NAME"; in a
# router the port "h-NAME" of each host.
#
# ── API ─────────────────────────────────────────────────────────────────────
#
# lab_init PREFIX          Start a lab. PREFIX is unique per run and starts
#                          with "ws" (e.g. ws$$): every namespace is PREFIX-*.
#                          Sets LAB_DIR (a temp dir: logs, pids, node records),
#                          LAB_UDP (path to tests/lib/udp.py) and LAB_PY (the
#                          python3 interpreter itself, resolved once: a pyenv
#                          shim costs ~0.3 s per start, which adds up).
# lab_cleanup              Kill every process in the lab's namespaces (and the
#                          ones lab_bg started), delete the namespaces (veths
#                          and bridges go with them), remove LAB_DIR (kept and
#                          printed if LAB_KEEP=1). Safe to call twice, and
#                          after a partial set-up.
# lab_internet             The namespace <P>-internet with bridge br0.
# lab_public NAME IP       A host with a public address on the internet
#                          (anchors, observers, relays).
# lab_router NAME WAN_IP LAN_CIDR MODE
#                          A home NAT router: WAN_IP on "wan" (on the
#                          internet), bridge "lan" with LAN_CIDR (the router's
#                          own LAN address and prefix, e.g. 192.168.1.1/24),
#                          ip_forward on, and the nftables ruleset below.
#                          MODE (RFC 4787 terms; see "What the modes really do"):
#                            eim      masquerade: endpoint-independent mapping,
#                                     address-and-port-dependent filtering
#                                     ("port-restricted cone", most home routers)
#                            edm      masquerade fully-random: address-and-port-
#                                     dependent mapping and filtering ("symmetric")
#                            eim-adf  eim + address-dependent filtering
#                                     ("restricted cone", emulated with nft sets)
#                            eim-eif  eim + endpoint-independent filtering
#                                     ("full cone", emulated with an nft map)
# lab_host NAME ROUTER LAN_IP
#                          A host on ROUTER's LAN, default route via the router.
#                          LAN_IP may carry a prefix; otherwise the LAN's.
# lab_lan_host NAME ROUTER LAN_IP
#                          The same, named for tests where several hosts share
#                          one LAN (LAN discovery): every host of a router is on
#                          one bridge, so they reach each other directly.
# lab_renumber ROUTER NEW_WAN_IP
#                          The ISP gives the router a new public address: add
#                          the new one, remove the old one, flush the router's
#                          conntrack table so every old mapping dies (a flow
#                          that kept its entry would keep leaving from the old
#                          address, which answers nothing any more).
# lab_udp_timeouts ROUTER UNREPLIED STREAM
#                          The router's UDP mapping lifetimes in seconds
#                          (Linux: 30 s before a reply is seen, 120 s after).
#                          Short values let a test watch a mapping expire.
#
# lab_exec NAME cmd...     Run cmd in NAME's namespace (ip netns exec).
# lab_udp NAME args...     Run tests/lib/udp.py in NAME's namespace
#                          (observe, client, send, punch: see its --help).
# lab_bg NAME TAG cmd...   Start cmd in the background in NAME's namespace;
#                          stdout+stderr go to $(lab_log TAG); sets LAB_PID.
#                          Several processes may share a TAG.
# lab_kill_tag TAG         TERM (then KILL after 1 s) the processes of TAG.
# lab_log TAG              Path of TAG's log.
# lab_wait_log TAG REGEX [SECONDS]
#                          Wait until TAG's log matches REGEX (default 5 s);
#                          returns 1 on timeout.
# lab_wait_udp NAME PORT [SECONDS]
#                          Wait until something listens on UDP PORT in NAME.
#
# lab_ns NAME              The namespace name (for ip -n / ip netns exec).
# lab_get NAME KEY         A node record: kind (public|router|host), ns,
#                          addr (public IP, router WAN IP, host LAN IP),
#                          wan and lan (routers: current WAN IP, LAN CIDR),
#                          mode (routers), router (hosts).
# lab_wan NAME             The current public address NAME is seen from:
#                          its own for a public node, its router's for a host.
# lab_ct_flush NAME        Flush NAME's conntrack table (conntrack -F when the
#                          tool is installed, else one ctnetlink message).
# lab_ct_list NAME         NAME's conntrack entries (/proc/net/nf_conntrack).
# lab_dump                 Nodes, addresses, routers' rulesets with counters,
#                          conntrack tables and the tail of every log: for a
#                          failing test's output.
#
# ── What the modes really do with Linux conntrack ───────────────────────────
#
# Mapping. masquerade keeps the host's source port when the resulting
# connection tuple is unique, and a host that already has a mapping reuses it
# toward new destinations while that stays unique: endpoint-independent
# mapping. Uniqueness is per (public addr:port, remote addr:port), so a second
# LAN host on the SAME local port (two nodes both on 51820 behind one router)
# gets another, random public port toward any remote the first host talks to,
# then reuses it; but if it first talked to a remote the first host does not
# use, it kept the original port there, and the common remotes see the random
# one: the second host looks endpoint-dependent, depending on the order.
# masquerade fully-random draws a random port for every new conntrack entry,
# i.e. for every new remote address:port: address-and-port-dependent mapping.
#
# Filtering. Conntrack alone lets in only replies of an existing entry, whose
# tuple names the remote address AND port: address-and-port-dependent
# filtering, in both eim and edm. Anything else addressed to the router is
# unsolicited: the input chain drops it (policy drop; LAN, loopback and
# established/related accepted), as home routers do. That drop matters: an
# unsolicited packet that is accepted (even just answered by an ICMP port
# unreachable) leaves a confirmed conntrack entry remote -> router:port, and
# when the host then sends to that remote from that port, masquerade finds the
# tuple taken and remaps the host to another port: a peer's early punch packet
# would break hole punching for any implementation. A dropped packet's entry
# is never confirmed, so it leaves no trace.
# eim-adf and eim-eif emulate the looser filters: a postrouting chain after
# masquerade learns public port -> LAN addr:port (and, for eim-adf, which
# remote addresses the port has sent to), and the NAT prerouting chain DNATs a
# new inbound flow to the learned host when allowed. Entries live 120 s after
# the last outbound packet.
# No hairpinning: a LAN host sending to its own router's public address:port
# reaches the router itself (dropped or refused), never another LAN host.
#
# The ruleset is the one table miniupnpd (nftables backend) expects, with its
# empty chains already jumped to, so a later test can start miniupnpd with
# upnp_table_name=filter, upnp_nat_table_name=filter, upnp_forward_chain=miniupnpd,
# upnp_nat_chain=prerouting_miniupnpd, upnp_nat_postrouting_chain=postrouting_miniupnpd.
# (Tried once by hand: miniupnpd 2.3.1 with ext_ifname=wan, listening_ip=lan
# and those keys starts on an 11.x WAN address without complaint, and a NAT-PMP
# mapping requested from a host lets an anchor's packets through to it.)

LAB_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_UDP=$LAB_LIB/udp.py
LAB_PY=${LAB_PY:-}
LAB_PREFIX=${LAB_PREFIX:-}
LAB_DIR=${LAB_DIR:-}
LAB_PID=

_lab_die() { echo "lab: $*" >&2; return 1; }

_lab_name_ok() {
  [[ $1 =~ ^[a-z][a-z0-9]{0,11}$ ]] && [ "$1" != internet ] ||
    _lab_die "bad node name '$1' (want [a-z][a-z0-9]{0,11}, not 'internet')"
}

_lab_new_node() { # NAME KIND -> creates the namespace and the record
  _lab_name_ok "$1" || return 1
  [ -n "$LAB_DIR" ] || _lab_die "lab_init first" || return 1
  [ ! -e "$LAB_DIR/node/$1" ] || _lab_die "node $1 exists" || return 1
  local ns="$LAB_PREFIX-$1"
  mkdir -p "$LAB_DIR/node/$1"
  echo "$ns" >>"$LAB_DIR/namespaces"
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up
  _lab_set "$1" kind "$2"
  _lab_set "$1" ns "$ns"
}

_lab_set() { printf '%s\n' "$3" >"$LAB_DIR/node/$1/$2"; }

lab_get() {
  [ -r "$LAB_DIR/node/$1/$2" ] || _lab_die "no $2 for node $1" || return 1
  cat "$LAB_DIR/node/$1/$2"
}

lab_ns() { lab_get "$1" ns; }

lab_wan() {
  case $(lab_get "$1" kind) in
    public) lab_get "$1" addr ;;
    router) lab_get "$1" wan ;;
    host) lab_get "$(lab_get "$1" router)" wan ;;
  esac
}

# lab_begin: how a test script starts its lab: lab_init "ws<script PID>",
# and on any exit (TERM from timeout(1) and INT included) a dump of the lab
# when the script failed, then lab_cleanup; and fail MESSAGE, which prints
# "FAIL: MESSAGE" and exits 1. Traps set here are the script's.
lab_begin() {
  lab_init "ws$$"
  trap 'rc=$?; [ $rc = 0 ] || lab_dump >&2 || true; lab_cleanup; exit $rc' EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  fail() { echo "FAIL: $*"; exit 1; }
}

lab_init() {
  local prefix=${1:?lab_init PREFIX}
  [[ $prefix =~ ^ws[A-Za-z0-9]{1,20}$ ]] || _lab_die "prefix '$prefix' must be ws[A-Za-z0-9]+" || return 1
  [ "$(id -u)" = 0 ] || _lab_die "the lab needs root (network namespaces, nftables)" || return 1
  local t
  for t in ip nft python3; do command -v $t >/dev/null || _lab_die "$t not found" || return 1; done
  if ip netns list | awk '{print $1}' | grep -q "^$prefix-"; then
    _lab_die "namespaces $prefix-* already exist" || return 1
  fi
  [ -n "$LAB_PY" ] || LAB_PY=$(python3 -c 'import sys; print(sys.executable)') || return 1
  LAB_PREFIX=$prefix
  LAB_DIR=$(mktemp -d "/tmp/$prefix-lab.XXXXXX")
  mkdir -p "$LAB_DIR/node" "$LAB_DIR/log"
  : >"$LAB_DIR/namespaces"
  : >"$LAB_DIR/pids"
}

lab_cleanup() {
  [ -n "$LAB_PREFIX" ] || return 0
  local nss=() ns p pids=()
  if [ -n "$LAB_DIR" ] && [ -r "$LAB_DIR/namespaces" ]; then
    while read -r ns; do nss+=("$ns"); done <"$LAB_DIR/namespaces"
  fi
  # Also anything named PREFIX-* (e.g. made after a failure to record it).
  while read -r ns _; do nss+=("$ns"); done < <(ip netns list 2>/dev/null | grep "^$LAB_PREFIX-" || true)
  if [ -n "$LAB_DIR" ] && [ -r "$LAB_DIR/pids" ]; then
    while read -r p _; do pids+=("$p"); done <"$LAB_DIR/pids"
  fi
  for ns in "${nss[@]}"; do
    [ -e "/run/netns/$ns" ] || continue
    while read -r p; do pids+=("$p"); done < <(ip netns pids "$ns" 2>/dev/null)
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      p=0
      local q
      for q in "${pids[@]}"; do kill -0 "$q" 2>/dev/null && p=1; done
      [ $p = 1 ] || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for ns in "${nss[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ -n "$LAB_DIR" ] && [ -d "$LAB_DIR" ]; then
    if [ "${LAB_KEEP:-0}" = 1 ]; then echo "lab: kept $LAB_DIR" >&2; else rm -rf "$LAB_DIR"; fi
  fi
  LAB_DIR=
}

# ── topology ────────────────────────────────────────────────────────────────

lab_internet() {
  [ -n "$LAB_DIR" ] || _lab_die "lab_init first" || return 1
  local ns="$LAB_PREFIX-internet"
  echo "$ns" >>"$LAB_DIR/namespaces"
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" link set br0 up
}

# _lab_plug NAME IFNAME: a veth IFNAME in NAME's namespace, its peer i-NAME on the internet bridge.
_lab_plug() {
  local ns inet="$LAB_PREFIX-internet"
  ns=$(lab_ns "$1") || return 1
  [ -e "/run/netns/$inet" ] || _lab_die "lab_internet first" || return 1
  ip link add "$2" netns "$ns" type veth peer name "i-$1" netns "$inet" || return 1
  ip -n "$inet" link set "i-$1" master br0 up
  ip -n "$ns" link set "$2" up
}

_lab_addr() { [[ $1 == */* ]] && echo "$1" || echo "$1/32"; }

lab_public() {
  local name=${1:?lab_public NAME IP} ip=${2:?lab_public NAME IP} ns
  _lab_new_node "$name" public || return 1
  ns=$(lab_ns "$name")
  _lab_plug "$name" eth0 || return 1
  ip -n "$ns" addr add "$(_lab_addr "$ip")" dev eth0 || return 1
  ip -n "$ns" route add default dev eth0
  _lab_set "$name" addr "${ip%/*}"
}

_lab_ruleset() { # MODE -> nft ruleset on stdout
  local masq="masquerade" learn="" dnat=""
  case $1 in
    eim) ;;
    edm) masq="masquerade fully-random" ;;
    eim-eif | eim-adf)
      learn='
  map cone { type inet_service : ipv4_addr . inet_service; flags dynamic, timeout; timeout 120s; }
  set seen { type inet_service . ipv4_addr; flags dynamic, timeout; timeout 120s; }
  chain cone_learn {
    type filter hook postrouting priority srcnat + 10; policy accept;
    oifname "wan" meta l4proto udp ct status snat update @cone { ct reply proto-dst : ct original ip saddr . ct original proto-src }
    oifname "wan" meta l4proto udp ct status snat update @seen { ct reply proto-dst . ip daddr }
  }'
      if [ "$1" = eim-eif ]; then
        dnat='iifname "wan" meta l4proto udp dnat ip to udp dport map @cone'
      else
        dnat='iifname "wan" udp dport . ip saddr @seen dnat ip to udp dport map @cone'
      fi
      ;;
    *) _lab_die "router mode '$1' is not eim, edm, eim-adf or eim-eif"; return 1 ;;
  esac
  cat <<NFT
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    iifname "lan" accept
    ct state established,related accept
    counter comment "unsolicited: dropped by the policy"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
    iifname "lan" oifname "lan" accept comment "LAN to LAN: bridged, seen here when br_netfilter is loaded"
    jump miniupnpd
    ct status dnat accept
    counter comment "dropped by the policy"
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump prerouting_miniupnpd
    $dnat
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump postrouting_miniupnpd
    oifname "wan" $masq
  }
  chain postrouting_miniupnpd {
  }$learn
}
NFT
}

lab_router() {
  local name=${1:?lab_router NAME WAN_IP LAN_CIDR MODE} wan=${2:?WAN_IP} lan=${3:?LAN_CIDR} mode=${4:?MODE} ns
  [[ $lan == */* ]] || _lab_die "LAN_CIDR '$lan' needs a prefix, e.g. 192.168.1.1/24" || return 1
  _lab_ruleset "$mode" >/dev/null || return 1
  _lab_new_node "$name" router || return 1
  ns=$(lab_ns "$name")
  _lab_plug "$name" wan || return 1
  ip -n "$ns" addr add "$(_lab_addr "$wan")" dev wan || return 1
  ip -n "$ns" route add default dev wan
  ip -n "$ns" link add lan type bridge
  ip -n "$ns" addr add "$lan" dev lan || return 1
  ip -n "$ns" link set lan up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  _lab_ruleset "$mode" | ip netns exec "$ns" nft -f - || return 1
  _lab_set "$name" addr "${wan%/*}"
  _lab_set "$name" wan "${wan%/*}"
  _lab_set "$name" lan "$lan"
  _lab_set "$name" mode "$mode"
}

lab_host() {
  local name=${1:?lab_host NAME ROUTER LAN_IP} router=${2:?ROUTER} ip=${3:?LAN_IP} ns rns lan
  [ "$(lab_get "$router" kind 2>/dev/null)" = router ] || _lab_die "$router is not a router" || return 1
  rns=$(lab_ns "$router")
  lan=$(lab_get "$router" lan)
  [[ $ip == */* ]] || ip="$ip/${lan#*/}"
  _lab_new_node "$name" host || return 1
  ns=$(lab_ns "$name")
  ip link add eth0 netns "$ns" type veth peer name "h-$name" netns "$rns" || return 1
  ip -n "$rns" link set "h-$name" master lan up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$ip" dev eth0 || return 1
  ip -n "$ns" route add default via "${lan%/*}" dev eth0 || return 1
  _lab_set "$name" addr "${ip%/*}"
  _lab_set "$name" router "$router"
}

lab_lan_host() { lab_host "$@"; }

lab_renumber() {
  local router=${1:?lab_renumber ROUTER NEW_WAN_IP} new=${2:?NEW_WAN_IP} ns old
  [ "$(lab_get "$router" kind 2>/dev/null)" = router ] || _lab_die "$router is not a router" || return 1
  ns=$(lab_ns "$router")
  old=$(lab_get "$router" wan)
  # New first, then old: the interface is never without an address.
  ip -n "$ns" addr add "$(_lab_addr "$new")" dev wan || return 1
  ip -n "$ns" addr del "$old/32" dev wan 2>/dev/null || ip -n "$ns" addr del "$old" dev wan || return 1
  ip -n "$ns" route replace default dev wan
  # masquerade itself forgets the entries of a removed address (from a work
  # queue; here it was already done when `ip addr del` returned). The flush
  # makes it certain and also ends the cone emulation's DNAT entries and
  # flows that were never masqueraded.
  lab_ct_flush "$router" || return 1
  if ip netns exec "$ns" nft list map inet filter cone >/dev/null 2>&1; then
    ip netns exec "$ns" nft flush map inet filter cone
    ip netns exec "$ns" nft flush set inet filter seen
  fi
  _lab_set "$router" wan "${new%/*}"
  _lab_set "$router" addr "${new%/*}"
}

lab_udp_timeouts() {
  local ns
  ns=$(lab_ns "${1:?lab_udp_timeouts ROUTER UNREPLIED STREAM}") || return 1
  ip netns exec "$ns" sysctl -qw net.netfilter.nf_conntrack_udp_timeout="${2:?}" \
    net.netfilter.nf_conntrack_udp_timeout_stream="${3:?}"
}

lab_ct_flush() {
  local ns
  ns=$(lab_ns "${1:?lab_ct_flush NAME}") || return 1
  if command -v conntrack >/dev/null; then
    ip netns exec "$ns" conntrack -F >/dev/null 2>&1
    return
  fi
  # IPCTNL_MSG_CT_DELETE without a tuple = flush (what conntrack -F sends).
  ip netns exec "$ns" "$LAB_PY" - <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)           # struct nfgenmsg
msg_type = (1 << 8) | 2                                       # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_DELETE
s.send(struct.pack("=LHHLL", 16 + len(body), msg_type, 1 | 4, 1, 0) + body)  # NLM_F_REQUEST|NLM_F_ACK
reply = s.recv(4096)
err = struct.unpack("=i", reply[16:20])[0] if struct.unpack("=H", reply[4:6])[0] == 2 else 0
if err:
    sys.exit("lab: conntrack flush failed: errno %d" % -err)
PY
}

lab_ct_list() {
  local ns
  ns=$(lab_ns "${1:?lab_ct_list NAME}") || return 1
  ip netns exec "$ns" cat /proc/net/nf_conntrack 2>/dev/null ||
    ip netns exec "$ns" conntrack -L 2>/dev/null
}

# lab_block NAME PEER [TABLE]: NAME drops UDP port 51820 to and from every
# address of PEER's eth0 (IPv4 and IPv6, link-local included: two hosts on
# one segment find each other's fe80:: addresses through LAN discovery, so a
# rule on the IPv4 address alone leaves a direct path open). `nft delete
# table inet TABLE` in NAME lifts it.
lab_block() {
  local who=${1:?lab_block NAME PEER [TABLE]} peer=${2:?lab_block NAME PEER [TABLE]} table=${3:-labblock}
  local a rules="" ns
  ns=$(lab_ns "$peer") || return 1
  # The link-local address comes with the link (tentative at first): wait for it.
  for a in 1 2 3 4 5 6 7 8 9 10; do
    ip -n "$ns" -6 -o addr show dev eth0 scope link 2>/dev/null | grep -q inet6 && break
    sleep 0.2
  done
  for a in $(ip -n "$ns" -o addr show dev eth0 | awk '$3 == "inet" || $3 == "inet6" {sub(/\/.*/, "", $4); print $3 "=" $4}'); do
    case $a in
      inet=*) rules="$rules ip saddr ${a#*=} udp dport 51820 drop; ip daddr ${a#*=} udp sport 51820 drop;" ;;
      inet6=*) rules="$rules ip6 saddr ${a#*=} udp dport 51820 drop; ip6 daddr ${a#*=} udp sport 51820 drop;" ;;
    esac
  done
  [ -n "$rules" ] || { echo "lab_block: $peer has no address on eth0" >&2; return 1; }
  printf 'table inet %s {\n  chain in { type filter hook input priority 0; %s }\n  chain out { type filter hook output priority 0; %s }\n}\n' \
    "$table" "$rules" "$rules" | lab_exec "$who" nft -f -
}

# ── processes ───────────────────────────────────────────────────────────────

lab_exec() {
  local ns
  ns=$(lab_ns "${1:?lab_exec NAME cmd...}") || return 1
  shift
  ip netns exec "$ns" "$@"
}

lab_udp() {
  local who=${1:?lab_udp NAME args...}
  shift
  lab_exec "$who" "$LAB_PY" "$LAB_UDP" "$@"
}

lab_log() { echo "$LAB_DIR/log/${1:?lab_log TAG}.log"; }

lab_bg() {
  local ns tag=${2:?lab_bg NAME TAG cmd...}
  ns=$(lab_ns "${1:?}") || return 1
  shift 2
  [[ $tag =~ ^[A-Za-z0-9_.-]+$ ]] || _lab_die "bad tag '$tag'" || return 1
  ip netns exec "$ns" "$@" >>"$(lab_log "$tag")" 2>&1 &
  LAB_PID=$!
  echo "$LAB_PID $tag" >>"$LAB_DIR/pids"
}

lab_kill_tag() {
  local tag=${1:?lab_kill_tag TAG} p t pids=() keep
  [ -r "$LAB_DIR/pids" ] || return 0
  while read -r p t; do [ "$t" = "$tag" ] && pids+=("$p"); done <"$LAB_DIR/pids"
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    keep=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && keep=1; done
    [ $keep = 1 ] || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  grep -v " $tag\$" "$LAB_DIR/pids" >"$LAB_DIR/pids.new" || true
  mv "$LAB_DIR/pids.new" "$LAB_DIR/pids"
}

lab_wait_log() {
  local f i n
  f=$(lab_log "${1:?lab_wait_log TAG REGEX [SECONDS]}")
  n=$(awk "BEGIN{print int(${3:-5} * 20)}")
  for ((i = 0; i < n; i++)); do
    grep -Eq -- "${2:?}" "$f" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

lab_wait_udp() {
  local ns i n port=${2:?lab_wait_udp NAME PORT [SECONDS]}
  ns=$(lab_ns "${1:?}") || return 1
  n=$(awk "BEGIN{print int(${3:-5} * 20)}")
  for ((i = 0; i < n; i++)); do
    [ -n "$(ip netns exec "$ns" ss -Hlun "sport = :$port" 2>/dev/null)" ] && return 0
    sleep 0.05
  done
  return 1
}

lab_dump() {
  local n k f
  [ -d "$LAB_DIR/node" ] || return 0
  echo "=== lab $LAB_PREFIX ($LAB_DIR)"
  for n in "$LAB_DIR"/node/*; do
    n=${n##*/}
    printf '  %-12s' "$n"
    for k in kind addr wan lan mode router; do
      [ -r "$LAB_DIR/node/$n/$k" ] && printf ' %s=%s' "$k" "$(cat "$LAB_DIR/node/$n/$k")"
    done
    echo
  done
  for n in "$LAB_DIR"/node/*; do
    n=${n##*/}
    [ "$(lab_get "$n" kind)" = router ] || continue
    echo "--- $n: nft ruleset"
    lab_exec "$n" nft list ruleset 2>&1 | sed 's/^/  /'
    echo "--- $n: conntrack"
    lab_ct_list "$n" | sed 's/^/  /'
  done
  for f in "$LAB_DIR"/log/*.log; do
    [ -e "$f" ] || continue
    echo "--- log ${f##*/}"
    tail -20 "$f" | sed 's/^/  /'
  done
}
