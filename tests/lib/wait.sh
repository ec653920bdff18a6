# shellcheck shell=bash
# Waits with a deadline instead of sleeps, for test scripts that make their
# own namespaces (the lab has lab_wait_log and lab_wait_udp). A sleep before a
# check races whatever it waits for: too short and the test fails for
# nothing, and a counter read too early can make a test pass for nothing.
# Each function returns 1 once its deadline has passed; the caller says what
# failed.
#
# wait_until SECONDS cmd...            until cmd succeeds, tried every 0.1 s
# wait_tcp_listen NS PORT [SECONDS]    until something listens on TCP PORT in
#                                      namespace NS (default 5 s)
# wait_udp_listen NS PORT [SECONDS]    the same for UDP

wait_until() {
  local ms deadline
  ms=$(awk "BEGIN{printf \"%d\", ${1:?wait_until SECONDS cmd...} * 1000}") || return 1
  deadline=$(($(date +%s%3N) + ms))
  shift
  while :; do
    "$@" && return 0
    [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

_wait_listening() { # ss-flags NS PORT
  [ -n "$(ip netns exec "$2" ss -H "$1" "sport = :$3" 2>/dev/null)" ]
}

wait_tcp_listen() {
  wait_until "${3:-5}" _wait_listening -ltn "${1:?wait_tcp_listen NS PORT [SECONDS]}" "${2:?}"
}

wait_udp_listen() {
  wait_until "${3:-5}" _wait_listening -lun "${1:?wait_udp_listen NS PORT [SECONDS]}" "${2:?}"
}
