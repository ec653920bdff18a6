#!/usr/bin/env bash
# The daemon's logging (docs/config.md, "Logging"): swift-log to stderr, one
# line per event with its level, quiet by default, the level set by
# --log-level, and a misspelt level refused rather than read as "info".
#
#   ns <P>-internet ── a1 203.0.113.10 (anchor, overlay 10.77.0.1)
#                   └─ a2 203.0.113.20 (anchor, overlay 10.77.0.2)
#
# Checks:
#   1. --log-level loud: refused (exit 64, the valid levels named), nothing started;
#   2. default (info): the start and the session are logged, one line each, each
#      line "<timestamp> <level> whalescaled: ..."; no debug or trace line; a
#      ping through the tunnel adds no line (nothing per packet);
#   3. --log-level debug adds debug lines (the route it installs for a2's extra prefix);
#   4. --log-level warning: no info line at all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${WS_BIN:-$here/../.build/release}
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
. "$here/lib/mesh.sh"
lab_begin

lab_internet
lab_public a1 203.0.113.10
lab_public a2 203.0.113.20
declare -A ov=([a1]=1 [a2]=2) ip=([a1]=203.0.113.10 [a2]=203.0.113.20)
mesh_keys a1 a2
# a1 routes one more prefix to a2 (outside its own /24): the daemon installs that
# route and says so at debug level, the one debug line every start has.
declare -A extra=([a1]=', "10.88.2.0/24"' [a2]='')
for n in a1 a2; do
  m=a1; [ $n = a1 ] && m=a2
  cat >"$LAB_DIR/$n.toml" <<TOML
[node]
private_key_file = "$LAB_DIR/$n.key"
address = "10.77.0.${ov[$n]}/24"
anchor = true
state_dir = "$LAB_DIR/$n-state"
control_socket = "$LAB_DIR/$n.sock"
port_mapping = []
# No LAN discovery: a2's announcement is logged when it arrives (once, and
# again every announcement interval after a miss), which would land in the
# window where this test counts the lines 20 pings add. tests/lan.sh covers it.
lan_discovery = false

[[peer]]
name = "$m"
public_key = "${pub[$m]}"
address = ["10.77.0.${ov[$m]}/32"${extra[$n]}]
endpoint = "${ip[$m]}:51820"
anchor = true
TOML
done

# 1. A misspelt level.
set +e
out=$(lab_exec a1 timeout 20 "$bin/whalescaled" --log-level loud --config "$LAB_DIR/a1.toml" 2>&1)
rc=$?
set -e
[ $rc = 64 ] || fail "--log-level loud exited $rc, not 64 (usage error): $out"
echo "$out" | grep -q 'not one of: trace, debug, info, notice, warning, error, critical' || fail "no list of levels in: $out"
lab_exec a1 ip link show ws0 >/dev/null 2>&1 && fail "--log-level loud still created ws0"
echo "ok: --log-level loud is refused (exit 64) and names the levels"

# 2. The default level.
start() { # NODE TAG [ARGS...]
  local n=$1 tag=$2
  shift 2
  lab_bg "$n" "$tag" "$bin/whalescaled" "$@" --config "$LAB_DIR/$n.toml"
  lab_wait_log "$tag" "whalescaled up" 60 || fail "$n ($tag) did not start"
}
start a1 d-a1
start a2 d-a2
lab_wait_log d-a1 "session established" 30 || fail "a1 logged no session"
wait_until 30 lab_exec a1 ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 || fail "a1 cannot reach a2"
log=$(lab_log d-a1)
bad=$(grep -vE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+[+-][0-9]{4} (info|notice|warning|error|critical) whalescaled: ' "$log" || true)
[ -z "$bad" ] || fail "lines not of the form '<time> <level> whalescaled: ...' at the default level: $bad"
grep -qE ' (debug|trace) ' "$log" && fail "debug or trace lines at the default level"
[ "$(grep -c 'session established' "$log")" = 1 ] || fail "'session established' not logged exactly once: $(cat "$log")"
# The events that follow the first session (the anchor found reachable, the
# NAT classified once a2's authenticated observation arrives) are logged when
# they happen, which can be after the first ping, or during the 20 below: wait
# for them, so that the count sees only what the pings themselves add.
lab_wait_log d-a1 "anchor a2 reachable" 30 || fail "a1 did not log a2 as a reachable anchor: $(cat "$log")"
lab_wait_log d-a1 "NAT mapping: " 30 || fail "a1 did not log its NAT mapping: $(cat "$log")"
before=$(wc -l <"$log")
lab_exec a1 ping -c 20 -i 0.05 -q 10.77.0.2 >/dev/null || fail "ping a1 -> a2 failed"
after=$(wc -l <"$log")
[ "$after" = "$before" ] || fail "20 pings added $((after - before)) log lines: $(tail -n +$((before + 1)) "$log")"
echo "ok: default level: $(wc -l <"$log") lines, each '<time> <level> whalescaled: ...', none per packet"
sed 's/^/    /' "$log"
lab_kill_tag d-a1

# 3. debug
start a1 dbg-a1 --log-level debug
lab_wait_log dbg-a1 ' debug whalescaled: .*route 10\.88\.2\.0/24 dev ws0' 30 || fail "--log-level debug did not log the route it installed: $(cat "$(lab_log dbg-a1)")"
echo "ok: --log-level debug adds debug lines, e.g.: $(grep -m1 ' debug ' "$(lab_log dbg-a1)")"
lab_kill_tag dbg-a1

# 4. warning
lab_bg a1 warn-a1 "$bin/whalescaled" --log-level warning --config "$LAB_DIR/a1.toml"
wait_until 30 lab_exec a1 ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 || fail "a1 (--log-level warning) cannot reach a2"
lab_kill_tag warn-a1
grep -q ' info ' "$(lab_log warn-a1)" && fail "--log-level warning still logged info lines: $(cat "$(lab_log warn-a1)")"
echo "ok: --log-level warning: no info line ($(wc -l <"$(lab_log warn-a1)") lines in all)"
echo "logging: all checks passed"
