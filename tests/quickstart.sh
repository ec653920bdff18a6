#!/usr/bin/env bash
# docs/quickstart.md, run in the lab: the three config files, the server's
# firewall rule and the systemd unit are taken from the doc and the repo as
# they are (the blocks marked "<!-- file: NAME -->"), with only the paths under
# /etc, /var/lib and /run moved into this run's temp directory and the
# "<... public key>" placeholders filled in.
#
#                  ns <P>-internet (bridge br0; no uplink)
#          ┌───────────────────┼──────────────────────┐
#   server 203.0.113.10    home 11.0.0.1 (eim)      cafe 11.0.0.2 (eim)
#   anchor, overlay .1     └ laptop1 192.168.1.10    └ laptop2 192.168.2.10
#   input policy drop          overlay 10.77.0.11        overlay 10.77.0.12
#
# Checks: keys are owner-only; --check-config accepts every config, and the
# laptops' warn about the single anchor as the doc says; the unit passes
# systemd-analyze verify (SKIP without it); without the doc's firewall rule the
# server is unreachable, with it the laptops reach it; laptop1 <-> laptop2 ping
# and `wsctl status` shows the server direct, the observed endpoint, the NAT
# unclassified (one anchor), laptop2 direct.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${WS_BIN:-$root/.build/release}
doc=$root/docs/quickstart.md
. "$here/lib/lab.sh"
. "$here/lib/wait.sh"
lab_begin

# block NAME: the fenced block after "<!-- file: NAME -->" in the doc
block() {
  awk -v want="<!-- file: $1 -->" '
    $0 == want { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    found && inside { print }' "$doc"
}
for f in server.toml laptop1.toml laptop2.toml server-firewall.sh; do
  [ -n "$(block "$f")" ] || fail "docs/quickstart.md has no block '<!-- file: $f -->'"
done

lab_internet
lab_public server 203.0.113.10
lab_router home 11.0.0.1 192.168.1.1/24 eim
lab_router cafe 11.0.0.2 192.168.2.1/24 eim
lab_host laptop1 home 192.168.1.10
lab_host laptop2 cafe 192.168.2.10
nodes="server laptop1 laptop2"

# Step 2: keys, as the doc makes them (in each node's own "/etc/whalescale").
declare -A pub
for n in $nodes; do
  etc=$LAB_DIR/$n/etc/whalescale
  mkdir -p "$(dirname "$etc")"
  install -d -m 700 "$etc"
  (umask 077; "$bin/wsctl" genkey >"$etc/ws0.key")
  [ "$(stat -c %a "$etc/ws0.key")" = 600 ] || fail "$n's key is mode $(stat -c %a "$etc/ws0.key"), not 600"
  pub[$n]=$("$bin/wsctl" pubkey <"$etc/ws0.key")
done
echo "ok: step 2: keys made owner-only (0600)"

# Step 3: the doc's configs; paths moved into LAB_DIR, the defaults made explicit there.
for n in $nodes; do
  d=$LAB_DIR/$n
  block "$n.toml" |
    sed -e "s|/etc/whalescale|$d/etc/whalescale|g" \
        -e "s|<server's public key>|${pub[server]}|; s|<laptop1's public key>|${pub[laptop1]}|; s|<laptop2's public key>|${pub[laptop2]}|" |
    awk -v sd="$d/state" -v cs="$d/ws0.sock" '{ print } /^\[node\]$/ { print "state_dir = \"" sd "\""; print "control_socket = \"" cs "\"" }' \
      >"$d/etc/whalescale/ws0.toml"
  grep -q '<' "$d/etc/whalescale/ws0.toml" && fail "$n.toml: a placeholder is left: $(grep '<' "$d/etc/whalescale/ws0.toml")"
  out=$("$bin/whalescaled" --check-config "$d/etc/whalescale/ws0.toml" 2>&1) || fail "$n.toml does not check: $out"
  echo "ok: step 3: $n: $(echo "$out" | tail -1 | sed "s|$d/etc/whalescale/||")"
  case $n in
    laptop*) echo "$out" | grep -q 'ok (interface ws0, 2 peers, 1 anchor, 1 warning)' || fail "$n: not the doc's '2 peers, 1 anchor, 1 warning': $out"
             echo "$out" | grep -q 'only one anchor' || fail "$n: no single-anchor warning: $out" ;;
    server) echo "$out" | grep -q 'ok (interface ws0, 2 peers, 0 anchors)' || fail "server: not '2 peers, 0 anchors' without warnings: $out" ;;
  esac
done

# Step 5's unit: systemd-analyze verify, with ExecStart and the config path pointing here.
if command -v systemd-analyze >/dev/null; then
  u=$LAB_DIR/unit
  mkdir -p "$u"
  sed -e "s|/usr/local/bin/whalescaled|$bin/whalescaled|g" -e "s|/etc/whalescale/%i.toml|$LAB_DIR/server/etc/whalescale/%i.toml|g" \
    "$root/dist/systemd/whalescale@.service" >"$u/whalescale@ws0.service"
  out=$(systemd-analyze verify "$u/whalescale@ws0.service" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || echo "note: systemd-analyze verify said: $out"
  echo "ok: step 5: the unit passes systemd-analyze verify"
else
  echo "SKIP: systemd-analyze is not installed: the unit file was not verified"
fi

# Step 4: a server whose input chain drops by default; first without the doc's rule.
lab_exec server nft -f - <<'NFT'
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
  }
}
NFT
for n in $nodes; do
  lab_bg "$n" "d-$n" "$bin/whalescaled" --config "$LAB_DIR/$n/etc/whalescale/ws0.toml"
  lab_wait_log "d-$n" "whalescaled up" 60 || fail "$n did not start: $(tail -3 "$(lab_log "d-$n")")"
done
pingable() { lab_exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
sleep_check() { ! wait_until 3 pingable laptop1 10.77.0.1; }
sleep_check || fail "laptop1 reached the server before the firewall rule: the test cannot tell the rule matters"
echo "ok: step 4: with the server's input dropping, laptop1 cannot reach it"
# The doc's rule, as written.
lab_exec server bash -c "$(block server-firewall.sh)"
for n in laptop1 laptop2; do
  wait_until 60 pingable "$n" 10.77.0.1 || fail "$n cannot reach the server after the doc's firewall rule"
done
echo "ok: step 4: after the doc's rule both laptops reach the server"

# Step 6.
wait_until 30 pingable laptop1 10.77.0.12 || fail "laptop1 cannot reach laptop2"
wait_until 30 pingable laptop2 10.77.0.11 || fail "laptop2 cannot reach laptop1"
echo "ok: step 6: laptop1 <-> laptop2"
st() { "$bin/wsctl" status --socket "$LAB_DIR/$1/ws0.sock"; }
direct_to() { st laptop1 | grep -qE "^laptop2 .* direct 11\.0\.0\.2:[0-9]+"; }
wait_until 30 direct_to || fail "laptop1 does not reach laptop2 directly (two cone NATs): $(st laptop1)"
st laptop1 | grep -qE '^server .* direct 203\.0\.113\.10:51820' || fail "laptop1's status does not show the server direct: $(st laptop1)"
# The observed endpoint comes with the server's first authenticated pong after
# the session (re)starts (a probe reply alone is a hint): wait for it.
observed() { st laptop1 | grep -qE '^endpoints: .*11\.0\.0\.1:[0-9]+ \(observed\)'; }
t_obs=$(date +%s)
wait_until 30 observed || fail "laptop1's status does not show its observed endpoint: $(st laptop1)"
echo "ok: laptop1 shows its observed endpoint ($(( $(date +%s) - t_obs )) s after laptop2 was direct)"
st laptop1 | grep -q '^nat: unknown' || fail "the doc says nat: stays unknown with one anchor: $(st laptop1)"
echo "ok: step 6: laptop1's wsctl status, as the doc describes it:"
st laptop1 | sed 's/^/    /'
echo "quickstart: all checks passed"
