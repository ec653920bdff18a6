#!/usr/bin/env bash
# The transport cipher, negotiated per session (`[node] cipher`, docs/wire.md
# "Cipher negotiation"): two real daemons, a tunnel under each cipher.
#
#   ns <P>-internet ── a1 203.0.113.10 (anchor, overlay 10.77.0.1)
#                   └─ a2 203.0.113.20 (anchor, overlay 10.77.0.2)
#
# Runs (a1's setting, a2's setting -> the cipher both must report):
#   1. auto, auto                           -> aes256gcm where this CPU has AES-NI
#                                              (SKIP: without it, both chacha20poly1305)
#   2. auto, chacha20poly1305               -> chacha20poly1305
#   3. chacha20poly1305, auto               -> chacha20poly1305
#   4. auto, auto, a2 with checksum_offload = false -> (as 1), checksum_offload false
# Each: the session comes up, `peers[].cipher` of `wsctl status --json` on both
# ends names the expected cipher (and the table's `ciphers:` line on a1), a ping and a TCP transfer of 2 MB pass (payload
# checked), and no DATA failed authentication (counter authFailed stays absent or 0).
# DATA header flags (docs/wire.md "Header flags"): both TUNs have offloads, so
# `peers[].checksum_offload` is true on both ends in runs 1-3 (the 2 MB then travel
# as segments whose checksums were left partial, completed by a2's kernel), and
# false on both when one end turns it off (run 4); the bytes arrive intact either way.
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

config() { # NODE CIPHER [CHECKSUM_OFFLOAD]
  local n=$1 m=a1
  [ "$n" = a1 ] && m=a2
  cat >"$LAB_DIR/$n.toml" <<TOML
[node]
private_key_file = "$LAB_DIR/$n.key"
address = "10.77.0.${ov[$n]}/24"
anchor = true
state_dir = "$LAB_DIR/$n-state"
control_socket = "$LAB_DIR/$n.sock"
port_mapping = []
lan_discovery = false
cipher = "$2"
checksum_offload = ${3:-true}

[[peer]]
name = "$m"
public_key = "${pub[$m]}"
address = "10.77.0.${ov[$m]}/32"
endpoint = "${ip[$m]}:51820"
anchor = true
TOML
}

# peer_field NODE FIELD: FIELD of the one peer in NODE's status.
peer_field() { status "$1" | python3 "$here/lib/jq.py" "peers.0.$2"; }
auth_failed() {
  local v
  v=$(status "$1" | python3 "$here/lib/jq.py" counters.authFailed)
  [ "$v" = null ] && v=0
  echo "$v"
}
cipher_is() { [ "$(peer_field "$1" cipher)" = "\"$2\"" ] || [ "$(peer_field "$1" cipher)" = "$2" ]; }

aesni=0
if grep -qw aes /proc/cpuinfo && grep -qw pclmulqdq /proc/cpuinfo; then aesni=1; fi

run() { # A1_SETTING A2_SETTING EXPECTED [A2_CHECKSUM_OFFLOAD]
  local s1=$1 s2=$2 want=$3 offload=${4:-true}
  local tag="$1-$2-$offload"
  config a1 "$s1"
  config a2 "$s2" "$offload"
  lab_bg a1 "a1-$tag" "$bin/whalescaled" --config "$LAB_DIR/a1.toml"
  lab_bg a2 "a2-$tag" "$bin/whalescaled" --config "$LAB_DIR/a2.toml"
  lab_wait_log "a1-$tag" "whalescaled up" 60 || fail "a1 ($tag) did not start"
  lab_wait_log "a2-$tag" "whalescaled up" 60 || fail "a2 ($tag) did not start"
  wait_until 30 lab_exec a1 ping -c 1 -W 1 10.77.0.2 >/dev/null 2>&1 || fail "$tag: a1 cannot reach a2"
  wait_until 10 cipher_is a1 "$want" || fail "$tag: a1 reports cipher $(peer_field a1 cipher), not $want"
  wait_until 10 cipher_is a2 "$want" || fail "$tag: a2 reports cipher $(peer_field a2 cipher), not $want"
  for n in a1 a2; do
    got=$(peer_field $n checksum_offload | tr '[:upper:]' '[:lower:]')
    [ "$got" = "$offload" ] || fail "$tag: $n reports checksum_offload $got, not $offload"
  done
  t=$("$bin/wsctl" status --socket "$LAB_DIR/a1.sock")
  grep -qx "ciphers: a2 $want" <<<"$t" || fail "$tag: wsctl status of a1 lacks 'ciphers: a2 $want': $t"
  # 2 MB over TCP through the tunnel, checked byte for byte.
  head -c 2000000 /dev/urandom >"$LAB_DIR/blob"
  lab_bg a2 "nc-$tag" "$LAB_PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5201)); s.listen(1); c, _ = s.accept()
with open(sys.argv[1], "wb") as f:
    while True:
        b = c.recv(65536)
        if not b: break
        f.write(b)
' "$LAB_DIR/got-$tag"
  wait_until 10 lab_exec a2 sh -c 'ss -ltn | grep -q 10.77.0.2:5201' || fail "$tag: no listener"
  lab_exec a1 timeout 60 "$LAB_PY" -c '
import socket, sys
s = socket.create_connection(("10.77.0.2", 5201), timeout=30)
s.sendall(open(sys.argv[1], "rb").read()); s.close()
' "$LAB_DIR/blob" || fail "$tag: TCP transfer failed"
  wait_until 20 sh -c "[ \$(stat -c %s '$LAB_DIR/got-$tag' 2>/dev/null || echo 0) = 2000000 ]" || fail "$tag: not all bytes arrived"
  cmp -s "$LAB_DIR/blob" "$LAB_DIR/got-$tag" || fail "$tag: the bytes changed in the tunnel"
  [ "$(auth_failed a1)" = 0 ] || fail "$tag: a1 counted $(auth_failed a1) authFailed"
  [ "$(auth_failed a2)" = 0 ] || fail "$tag: a2 counted $(auth_failed a2) authFailed"
  echo "ok: a1 $s1, a2 $s2 (checksum_offload $offload): both report $want and checksum_offload $offload; ping and 2 MB over TCP intact, no authFailed"
  lab_kill_tag "a1-$tag"
  lab_kill_tag "a2-$tag"
  lab_kill_tag "nc-$tag"
}

if [ $aesni = 1 ]; then
  run auto auto aes256gcm
else
  echo "SKIP: this CPU has no AES-NI/PCLMULQDQ: AES-256-GCM cannot be negotiated here (auto, auto runs as ChaCha)"
  run auto auto chacha20poly1305
fi
run auto chacha20poly1305 chacha20poly1305
run chacha20poly1305 auto chacha20poly1305
if [ $aesni = 1 ]; then run auto auto aes256gcm false; else run auto auto chacha20poly1305 false; fi
echo "cipher: all checks passed"
