#!/usr/bin/env python3
"""UDP integrity through a tunnel: numbered datagrams with checkable payloads.

  Addresses are IP:PORT or [IPv6]:PORT.

  udpcheck.py recv --bind IP:PORT --count N [--timeout S]
      Receive until N datagrams came, or S seconds (default 20) passed, or
      2 s passed without one; check each payload against its number. Prints
      "received K of N, distinct D, corrupt C" and exits 0 when C == 0.

  udpcheck.py send --to IP:PORT --count N [--size BYTES] [--burst B]
      Send N datagrams of BYTES (default 1200) from one connected socket, in
      bursts of B (default 32) back to back, 2 ms apart: back-to-back
      datagrams of one flow are what the receiving daemon may write to its
      TUN device as one UDP GSO super-packet.

Payload of datagram k: 8 bytes k (big-endian), then byte i = (k * 131 + i) mod 251.
"""
import argparse
import socket
import struct
import sys
import time


def payload(k, size):
    body = bytes((k * 131 + i) % 251 for i in range(size - 8))
    return struct.pack(">Q", k) + body


def addr(text):
    """ip:port or [ipv6]:port -> (family, (host, port))."""
    host, port = text.rsplit(":", 1)
    if host.startswith("["):
        return socket.AF_INET6, (host[1:-1], int(port))
    return socket.AF_INET, (host, int(port))


def recv(a):
    family, where = addr(a.bind)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(where)
    print("listening", flush=True)
    seen, corrupt, got = set(), 0, 0
    deadline = time.time() + a.timeout
    s.settimeout(a.timeout)
    while got < a.count and time.time() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        s.settimeout(2.0)
        got += 1
        if len(data) < 8:
            corrupt += 1
            continue
        k = struct.unpack(">Q", data[:8])[0]
        if data != payload(k, len(data)):
            corrupt += 1
            continue
        seen.add(k)
    print(f"received {got} of {a.count}, distinct {len(seen)}, corrupt {corrupt}", flush=True)
    return 0 if corrupt == 0 else 1


def send(a):
    family, where = addr(a.to)
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.connect(where)
    k = 0
    while k < a.count:
        for _ in range(min(a.burst, a.count - k)):
            s.send(payload(k, a.size))
            k += 1
        time.sleep(0.002)
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv")
    r.add_argument("--bind", required=True)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--timeout", type=float, default=20.0)
    t = sub.add_parser("send")
    t.add_argument("--to", required=True)
    t.add_argument("--count", type=int, required=True)
    t.add_argument("--size", type=int, default=1200)
    t.add_argument("--burst", type=int, default=32)
    a = p.parse_args()
    return recv(a) if a.cmd == "recv" else send(a)


if __name__ == "__main__":
    sys.exit(main())
