# Members of a small test mesh on public lab nodes (tests/lib/lab.sh), the
# part the flood, soak, rekey, mtu, cipher and logging scripts share. Source it after lab.sh, with
# `bin` set to the directory of whalescaled and wsctl, and declare first:
#
#   declare -A ov=([a1]=1 [m1]=21) ip=([a1]=203.0.113.10 [m1]=203.0.113.21)
#
# ov[NODE] is the last byte of the node's overlay address 10.77.0.<ov>, ip[NODE]
# its public address (the peers' endpoints, port 51820).
#
#   mesh_keys NODE...                a key pair per node: $LAB_DIR/NODE.key (0600), pub[NODE]
#   mesh_conf NODE ANCHOR REACTORS PEER...
#                                    NODE's config on stdout: interface ws0, state_dir and
#                                    control socket in $LAB_DIR, each PEER with its endpoint
#                                    (none for the pairs in MESH_NO_ENDPOINT, e.g. "m1m3 m3m1"),
#                                    a1 marked as the anchor
#                                    MESH_ANCHOR_LINES: more [node] lines for an anchor
#   status NODE                      wsctl status --json of NODE
#   pid_of NODE                      the pid of NODE's daemon started as lab_bg NODE d-NODE ...
#   pingable FROM TO                 FROM pings TO's overlay address once (1 s) from its ws0

declare -gA pub

mesh_keys() {
  local n
  for n in "$@"; do
    "$bin/wsctl" genkey >"$LAB_DIR/$n.key"
    chmod 600 "$LAB_DIR/$n.key"
    pub[$n]=$("$bin/wsctl" pubkey <"$LAB_DIR/$n.key")
  done
}

mesh_conf() {
  local n=$1 anchor=$2 reactors=$3 p
  shift 3
  printf '[node]\nprivate_key_file = "%s"\ninterface = "ws0"\naddress = "10.77.0.%s/24"\nlisten_port = 51820\nanchor = %s\nreactors = %s\nstate_dir = "%s"\ncontrol_socket = "%s"\n' \
    "$LAB_DIR/$n.key" "${ov[$n]}" "$anchor" "$reactors" "$LAB_DIR/$n-state" "$LAB_DIR/$n.sock"
  [ "$anchor" = false ] || [ -z "${MESH_ANCHOR_LINES:-}" ] || printf '%s\n' "$MESH_ANCHOR_LINES"
  for p in "$@"; do
    printf '\n[[peer]]\nname = "%s"\npublic_key = "%s"\naddress = "10.77.0.%s/32"\n' "$p" "${pub[$p]}" "${ov[$p]}"
    case " ${MESH_NO_ENDPOINT:-} " in
      *" $n$p "*) ;;
      *) printf 'endpoint = "%s:51820"\n' "${ip[$p]}" ;;
    esac
    if [ "$p" = a1 ]; then printf 'anchor = true\n'; fi
  done
}

status() { "$bin/wsctl" status --socket "$LAB_DIR/$1.sock" --json; }
pid_of() { awk -v t="d-$1" '$2 == t {print $1}' "$LAB_DIR/pids" | tail -1; }
# -I ws0: on the lab's one segment a public node answers ARP for any address it
# has, its ws0's too, so without it a ping from a node whose ws0 is not up yet
# goes out on eth0 and is answered outside the tunnel.
pingable() { lab_exec "$1" ping -I ws0 -c 1 -W 1 "10.77.0.${ov[$2]}" >/dev/null 2>&1; }
