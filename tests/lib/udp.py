#!/usr/bin/env python3
"""A tiny UDP tool for the netns lab (tests/lib/lab.sh): what does a NAT do?

  udp.py observe [--port 3478]
      Answer every datagram with the source address it was seen from:
      "SEEN ip:port". Prints "from ip:port" per datagram. Runs until killed.

  udp.py client [--port P] [--timeout S] [--listen S] [OBSERVER...]
      From ONE local socket (port P, 0 = any), ask each OBSERVER (ip:port)
      what it sees, retrying every 0.2 s until --timeout; print one line per
      observer: "ip:port SEEN seen-ip:seen-port rtt-ms=N" or "ip:port none".
      With --listen S, then print "listening" and, for S seconds, one line
      "unsolicited ip:port payload" per datagram that arrives on that socket;
      a datagram "STOP" from 127.0.0.1 ends the listening early (so a test
      need not guess how long its senders take on a loaded machine).
      Exits 1 if an observer did not answer.

  udp.py send [--port P] [--count N] TARGET [PAYLOAD]
      Fire N datagrams at TARGET (ip:port) from local port P, 0.05 s apart.

  udp.py punch --port P --peer ip:port [--at EPOCH] [--timeout S]
      Hole punching: from local port P, starting at wall-clock time EPOCH (so
      two hosts start together), send "PUNCH" to the peer's observed address
      every 0.05 s and answer each PUNCH from it with "ACK". Succeeds once a
      datagram from exactly ip:port has arrived and the peer has acknowledged
      ours (or 1 s after hearing it). Prints "punch ok ..." and exits 0, or
      "punch failed ..." (with whatever else was heard) and exits 1.
      No port prediction: a datagram from the peer's address on another port
      is reported, never used.
"""
import argparse
import select
import socket
import sys
import time


def addr(s):
    host, _, port = s.rpartition(":")
    return (host, int(port))


def fmt(a):
    return "%s:%d" % a


def out(*words):
    print(*words, flush=True)


def sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    return s


def recv(s, until):
    """One datagram before the monotonic deadline `until`, or None."""
    left = until - time.monotonic()
    if left <= 0 or not select.select([s], [], [], left)[0]:
        return None
    return s.recvfrom(2048)


def observe(a):
    s = sock(a.port)
    out("observing", a.port)
    while True:
        data, src = s.recvfrom(2048)
        out("from", fmt(src))
        s.sendto(b"SEEN " + fmt(src).encode(), src)


def client(a):
    s = sock(a.port)
    answers = {}
    observers = [addr(o) for o in a.observers]
    for o in observers:
        deadline = time.monotonic() + a.timeout
        next_send = sent = 0.0
        rtt = None
        while o not in answers and time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                s.sendto(b"OBSERVE", o)
                sent = time.monotonic()
                next_send = sent + 0.2
            got = recv(s, min(deadline, next_send))
            if got and got[1] in observers and got[0].startswith(b"SEEN "):
                answers[got[1]] = got[0][5:].decode()
                if got[1] == o:
                    rtt = (time.monotonic() - sent) * 1000
        if o in answers:
            out(fmt(o), "SEEN", answers[o], "rtt-ms=%.2f" % rtt if rtt is not None else "rtt-ms=?")
        else:
            out(fmt(o), "none")
    if a.listen > 0:
        out("listening")
        until = time.monotonic() + a.listen
        while (got := recv(s, until)) is not None:
            if got[1] in observers and got[0].startswith(b"SEEN "):
                continue  # a late answer to a retry, not unsolicited
            if got[1][0] == "127.0.0.1" and got[0] == b"STOP":
                break
            out("unsolicited", fmt(got[1]), got[0][:64].decode(errors="replace"))
    return 0 if len(answers) == len(observers) else 1


def send(a):
    s = sock(a.port)
    for i in range(a.count):
        if i:
            time.sleep(0.05)
        s.sendto(a.payload.encode(), addr(a.target))
    return 0


def punch(a):
    s = sock(a.port)
    peer = addr(a.peer)
    if a.at:
        time.sleep(max(0.0, a.at - time.time()))
    start = time.monotonic()
    deadline = start + a.timeout
    heard = acked = None
    others = set()
    next_send = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if heard is not None and (acked is not None or now - heard > 1.0):
            break
        if now >= next_send:
            s.sendto(b"PUNCH", peer)
            next_send = now + 0.05
        got = recv(s, min(deadline, next_send))
        if got is None:
            continue
        data, src = got
        if src != peer:
            others.add(fmt(src))
            continue
        if heard is None:
            heard = time.monotonic()
        if data == b"PUNCH":
            s.sendto(b"ACK", peer)
        elif data == b"ACK" and acked is None:
            acked = time.monotonic()
    if heard is None:
        extra = (" (heard only from " + ",".join(sorted(others)) + ")") if others else ""
        out("punch failed: nothing from", fmt(peer), "in %.1f s" % a.timeout + extra)
        return 1
    out("punch ok peer=%s heard-after-ms=%.1f acked=%s" % (
        fmt(peer), (heard - start) * 1000, "yes" if acked else "no"))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    o = sub.add_parser("observe")
    o.add_argument("--port", type=int, default=3478)
    c = sub.add_parser("client")
    c.add_argument("--port", type=int, default=0)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--listen", type=float, default=0.0)
    c.add_argument("observers", nargs="*")
    s = sub.add_parser("send")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--count", type=int, default=3)
    s.add_argument("target")
    s.add_argument("payload", nargs="?", default="HELLO")
    u = sub.add_parser("punch")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--peer", required=True)
    u.add_argument("--at", type=float, default=0.0)
    u.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    return {"observe": observe, "client": client, "send": send, "punch": punch}[a.mode](a)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
