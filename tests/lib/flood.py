#!/usr/bin/env python3
"""Helpers for tests/flood.sh (security review Part C.4). No jq dependency.

  flood.py state < status.json
      The daemon state an attack must not move, one line: NAT mapping, each
      anchor's reachability, each peer's session state and active path.
  flood.py delta BEFORE.json AFTER.json NAME...
      Counter deltas: "NAME=d ... sum=S" (a counter absent from a status,
      never counted yet, is 0).
  flood.py snmp < /proc/net/snmp        (also reads /proc/net/snmp6 given as argv[2])
      Kernel UDP receive drops (RcvbufErrors + InErrors, IPv4 and IPv6): a datagram the
      kernel dropped before the daemon read it is not in the daemon's counters.
  flood.py ctl SOCKET
      F10, control-socket abuse, against the daemon's socket at SOCKET (as root):
      33 concurrent clients (32 served, the rest closed), a slow client (cut
      at 5 s), a line of 64 KiB + 1 (tooLong), 10 MB without a newline (cut),
      deep nesting and non-UTF-8 (refused); prints "ok: ..." lines, exits 1
      with "FAIL: ..." on the first broken expectation.
  flood.py sniff-init IFACE OUTFILE TIMEOUT SRC_IP DST_IP
      F11: capture one HANDSHAKE_INIT (type 1, 180 bytes) from SRC_IP to
      DST_IP on IFACE and write its UDP payload to OUTFILE; exit 1 if none
      came within TIMEOUT seconds. Prints "listening" once bound.
  flood.py connect SOCKET
      Connects and asks for the status; exits 0 on an answer, 13 on EACCES
      (run as a non-root user by the caller), 1 otherwise.
"""
import json
import os
import socket
import sys
import time


def state(s):
    nat = s.get("node", {}).get("nat", {}).get("mapping")
    anchors = ",".join("%s:%s" % (a["name"], "up" if a["reachable"] else "down") for a in s.get("anchors", []))
    peers = []
    for p in s.get("peers", []):
        act = [x for x in p.get("paths", []) if x.get("active")]
        path = "%s@%s" % (act[0]["kind"], act[0]["remote"]) if act else "none"
        peers.append("%s:%s:%s" % (p["name"], p["state"], path))
    return "nat=%s anchors=[%s] peers=[%s]" % (nat, anchors, " ".join(peers))


def delta(before, after, names):
    b = json.load(open(before)).get("counters", {})
    a = json.load(open(after)).get("counters", {})
    parts, total = [], 0
    for n in names:
        d = a.get(n, 0) - b.get(n, 0)
        total += d
        parts.append("%s=%d" % (n, d))
    return " ".join(parts + ["sum=%d" % total])


def snmp(paths):
    drops = 0
    for path in paths:
        try:
            lines = open(path).read().splitlines()
        except OSError:
            continue
        if path.endswith("snmp6"):
            for line in lines:
                k, _, v = line.partition(" ")
                if k in ("Udp6RcvbufErrors", "Udp6InErrors"):
                    drops += int(v.split()[0])
            continue
        rows = [l.split() for l in lines if l.startswith("Udp:")]
        if len(rows) >= 2:
            row = dict(zip(rows[0][1:], rows[1][1:]))
            drops += int(row.get("RcvbufErrors", 0)) + int(row.get("InErrors", 0))
    return drops


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def connect(path, timeout=5.0):
    # A UNIX socket whose listen backlog (16, CReactor_unix_listen) is full
    # refuses a non-blocking connect with EAGAIN at once (Python's timeouts make
    # the socket non-blocking) instead of waiting: 33 connects in a row can fill
    # it before reactor 0 gets to accept. A client waits and tries again.
    deadline = time.monotonic() + timeout
    while True:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(timeout)
        try:
            c.connect(path)
            return c
        except BlockingIOError:
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def read_all(c, limit=1 << 22):
    out = b""
    while len(out) < limit:
        try:
            b = c.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not b:
            break
        out += b
    return out


def is_closed(c):
    """True when the server closed c (EOF or reset) without sending anything."""
    c.setblocking(False)
    try:
        b = c.recv(1)
        return b == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        c.setblocking(True)


def ctl(path):
    req = b'{"verb":"status"}\n'
    # 33 concurrent clients: the daemon serves at most 32 at a time and closes
    # the others at once, so a local process cannot pile up connections.
    clients = [connect(path) for _ in range(33)]
    # Reactor 0 accepts them when it gets to it (a loaded machine: give it 3 s).
    closed, deadline = [], time.monotonic() + 3
    while not closed and time.monotonic() < deadline:
        time.sleep(0.1)
        closed = [i for i, c in enumerate(clients) if is_closed(c)]
    time.sleep(0.3)
    closed = [i for i, c in enumerate(clients) if is_closed(c)]
    if len(closed) != 1:
        fail("33 concurrent clients: %d closed at once (want 1: the 33rd)" % len(closed))
    served = 0
    for i, c in enumerate(clients):
        if i in closed:
            c.close()
            continue
        c.sendall(req)
        ans = read_all(c)
        c.close()
        if b'"ok":true' in ans:
            served += 1
    if served != 32:
        fail("33 concurrent clients: %d of the 32 kept were served" % served)
    print("ok: F10 33 concurrent clients: 32 served, 1 closed at once")

    # Slowloris: one byte per second, never a newline: cut at 5 s.
    c = connect(path, timeout=10)
    t0 = time.monotonic()
    cut = None
    for b in b'{"verb":"status"':
        try:
            c.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            cut = time.monotonic() - t0
            break
        if is_closed(c):
            cut = time.monotonic() - t0
            break
        time.sleep(1.0)
        if time.monotonic() - t0 > 8:
            break
    c.close()
    if cut is None or not 4.0 <= cut <= 7.0:
        fail("slow client: cut after %s s (want about 5 s)" % (None if cut is None else "%.1f" % cut))
    print("ok: F10 slow client (a byte a second, no newline) cut after %.1f s" % cut)

    # 64 KiB + 1 bytes and a newline: answered tooLong, then closed.
    c = connect(path)
    try:
        c.sendall(b"x" * (64 * 1024 + 1) + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    ans = read_all(c)
    c.close()
    if b'"ok":false' not in ans or b"longer than" not in ans:
        fail("64 KiB + 1 line: answer %r (want a tooLong error)" % ans[:120])
    print("ok: F10 line of 64 KiB + 1: %s" % ans.decode(errors="replace").strip())

    # 10 MB without a newline: the daemon answers tooLong once past the limit
    # and closes; the client cannot make it buffer the rest.
    c = connect(path)
    pushed = 0
    chunk = b"y" * 65536
    try:
        while pushed < 10 * 1024 * 1024:
            c.sendall(chunk)
            pushed += len(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    ans = read_all(c)
    c.close()
    if pushed >= 10 * 1024 * 1024 and b"longer than" not in ans:
        fail("10 MB without a newline: all %d bytes taken and no tooLong answer" % pushed)
    if b"longer than" not in ans:
        fail("10 MB without a newline: answer %r after %d bytes" % (ans[:120], pushed))
    print("ok: F10 10 MB without a newline: cut with tooLong after the client pushed %d KiB" % (pushed // 1024))

    # Deep nesting and non-UTF-8: refused with an error answer, nothing else.
    for name, line in (("nesting 100 deep", b"[" * 100 + b"]" * 100 + b"\n"), ("non-UTF-8", b"\xff\xfe\xfd\n")):
        c = connect(path)
        c.sendall(line)
        ans = read_all(c)
        c.close()
        try:
            refused = json.loads(ans).get("ok") is False
        except ValueError:
            refused = False
        if not refused:
            fail("%s: answer %r (want an error)" % (name, ans[:120]))
        print("ok: F10 %s refused: %s" % (name, ans.decode(errors="replace").strip()))


def sniff_init(iface, out, timeout, src, dst):
    import struct
    src, dst = socket.inet_aton(src), socket.inet_aton(dst)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    s.settimeout(0.2)
    print("listening", flush=True)
    end = time.time() + timeout
    while time.time() < end:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != 0x0800:
            continue
        ip = frame[14:]
        if ip[9] != 17 or ip[12:16] != src or ip[16:20] != dst:
            continue
        payload = ip[(ip[0] & 0x0F) * 4 + 8:]
        if len(payload) == 180 and payload[0] == 1:
            open(out, "wb").write(payload)
            return 0
    return 1


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "state":
        print(state(json.load(sys.stdin)))
    elif cmd == "delta":
        print(delta(sys.argv[2], sys.argv[3], sys.argv[4:]))
    elif cmd == "snmp":
        print(snmp(sys.argv[2:]))
    elif cmd == "sniff-init":
        sys.exit(sniff_init(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6]))
    elif cmd == "ctl":
        ctl(sys.argv[2])
    elif cmd == "connect":
        try:
            c = connect(sys.argv[2])
            c.sendall(b'{"verb":"status"}\n')
            ans = read_all(c)
        except PermissionError:
            print("EACCES")
            sys.exit(13)
        except OSError as e:
            print("error: %s" % e)
            sys.exit(1)
        print("answered %d bytes" % len(ans))
        sys.exit(0 if ans else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
