#!/usr/bin/env python3
"""A numbered UDP stream, to count lost datagrams exactly (tests/rekey.sh,
tests/flood2.sh F9, tests/soak.sh). No dependencies.

  seqstream.py send --to IP:PORT --rate PPS --seconds S [--size BYTES]
      Datagram k carries k (8 bytes, big-endian) and the send time; paced at
      PPS. Prints "sent N" at the end.
  seqstream.py recv --bind IP:PORT --seconds S [--idle I]
      Receive until S seconds passed, or I seconds (default 3) passed without
      a datagram after the first one. Prints "listening", then one line:
        recv received=R distinct=D max=M missing=K dup=U gaps=START+LEN@T,...
      where missing counts the numbers 0..M not seen, and each gap (up to 20
      listed) says where it began and at what second of the stream (the send
      time of the datagram after it) it happened.
"""
import argparse
import socket
import struct
import time


def addr(text):
    host, port = text.rsplit(":", 1)
    if host.startswith("["):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


def send(a):
    family, where = addr(a.to)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.connect(where)
    pad = bytes(max(0, a.size - 16))
    t0 = time.monotonic()
    n = 0
    while True:
        now = time.monotonic()
        if now - t0 >= a.seconds:
            break
        due = int((now - t0) * a.rate)
        while n < due:
            try:
                s.send(struct.pack(">Qd", n, time.monotonic() - t0) + pad)
            except OSError:
                pass  # counted as missing by the receiver, as any loss
            n += 1
        time.sleep(0.001)
    print("sent %d" % n, flush=True)


def recv(a):
    family, where = addr(a.bind)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(where)
    s.settimeout(0.2)
    print("listening", flush=True)
    seen = {}
    received = dup = 0
    end = time.monotonic() + a.seconds
    last = None
    while time.monotonic() < end:
        if last is not None and time.monotonic() - last > a.idle:
            break
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        if len(b) < 16:
            continue
        k, t = struct.unpack(">Qd", b[:16])
        received += 1
        last = time.monotonic()
        if k in seen:
            dup += 1
        else:
            seen[k] = t
    top = max(seen) if seen else -1
    gaps, k = [], 0
    while k <= top:
        if k not in seen:
            j = k
            while j <= top and j not in seen:
                j += 1
            gaps.append("%d+%d@%.1f" % (k, j - k, seen.get(j, 0.0)))
            k = j
        else:
            k += 1
    missing = (top + 1) - len(seen)
    print("recv received=%d distinct=%d max=%d missing=%d dup=%d gaps=%s" %
          (received, len(seen), top, missing, dup, ",".join(gaps[:20]) or "-"), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("send")
    ps.add_argument("--to", required=True)
    ps.add_argument("--rate", type=float, required=True)
    ps.add_argument("--seconds", type=float, required=True)
    ps.add_argument("--size", type=int, default=200)
    pr = sub.add_parser("recv")
    pr.add_argument("--bind", required=True)
    pr.add_argument("--seconds", type=float, required=True)
    pr.add_argument("--idle", type=float, default=3.0)
    a = p.parse_args()
    send(a) if a.cmd == "send" else recv(a)


if __name__ == "__main__":
    main()
