#!/usr/bin/env python3
"""mDNS helpers for tests/lan.sh (LAN discovery), run inside a lab namespace.

  mdns.py browse [--timeout S] [--expect N]
      A third-party DNS-SD browser (python3-zeroconf, not our code): browse
      _whalescale._udp.local. and print one line per resolved instance:
      "found NAME port=P id=HEX addrs=A,B". Exits 0 once N distinct ids were
      seen, 1 at the timeout, 77 when python3-zeroconf is missing.

  mdns.py goodbye --id HEX [--timeout S]
      Listen on 224.0.0.251:5353 (sharing the port) for a Whalescale response
      whose TXT has id=HEX and whose records all have TTL 0 (the goodbye, RFC
      6762 §10.1). Prints "listening" once joined, then "goodbye HEX" and
      exits 0; exits 1 at the timeout.

  mdns.py listen6 --dev IF --expect ID=ADDR [--expect ...] [--timeout S]
      Join ff02::fb on interface IF (a plain socket on [::]:5353, sharing the
      port; not our code), send one PTR query for the service to
      [ff02::fb%IF]:5353, and read Whalescale responses arriving over IPv6.
      Prints "v6 from SRC id=HEX aaaa=A,B" per new (id, source); exits 0 once
      every expected id was seen with ADDR among its AAAA records, 1 at the
      timeout, 77 (with "SKIP: why") if IPv6 multicast cannot be set up here.

  mdns.py spoof --id HEX --addr IP --port P --mode badsig|unsigned [--seq N] [--count C]
      Multicast C (default 3) forged Whalescale announcements to
      224.0.0.251:5353, 0.2 s apart: a member's id (HEX, 64 hex digits) with a
      random signature (badsig) or with no sig key at all (unsigned), claiming
      IP:P. Built by hand here (RFC 1035 layout), so it shares no code with
      the daemon's encoder.
"""
import argparse
import os
import socket
import struct
import sys
import time

SERVICE = "_whalescale._udp.local."


def browse(args):
    try:
        from zeroconf import ServiceBrowser, Zeroconf, IPVersion
    except ImportError:
        print("SKIP: python3-zeroconf is not installed")
        return 77
    found = {}

    class Listener:
        def add_service(self, zc, type_, name):
            info = zc.get_service_info(type_, name, timeout=3000)
            if info is None:
                return
            props = {k.decode(): (v.decode() if v is not None else "") for k, v in info.properties.items()}
            ident = props.get("id", "")
            addrs = ",".join(info.parsed_addresses())
            if ident and ident not in found:
                found[ident] = name
                print("found %s port=%d id=%s seq=%s addrs=%s" % (name, info.port, ident, props.get("seq", "?"), addrs), flush=True)

        def update_service(self, zc, type_, name):
            self.add_service(zc, type_, name)

        def remove_service(self, zc, type_, name):
            pass

    zc = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        ServiceBrowser(zc, SERVICE, Listener())
        deadline = time.time() + args.timeout
        while time.time() < deadline and len(found) < args.expect:
            time.sleep(0.1)
    finally:
        zc.close()
    if len(found) >= args.expect:
        return 0
    print("browse: %d of %d instances seen" % (len(found), args.expect))
    return 1


def name(labels):
    out = b""
    for l in labels:
        b = l.encode()
        out += bytes([len(b)]) + b
    return out + b"\x00"


def record(rname, rtype, ttl, rdata, flush=False):
    cls = 1 | (0x8000 if flush else 0)
    return rname + struct.pack("!HHIH", rtype, cls, ttl, len(rdata)) + rdata


def announcement(ident, addr, port, seq, mode):
    inst = "ws-" + ident[:16]
    service = ["_whalescale", "_udp", "local"]
    txt = ["txtvers=1", "id=" + ident, "port=%d" % port, "seq=%d" % seq]
    if mode == "badsig":
        txt.append("sig=" + os.urandom(64).hex())
    rd_txt = b"".join(bytes([len(s)]) + s.encode() for s in txt)
    recs = [
        record(name(service), 12, 4500, name([inst] + service)),
        record(name([inst] + service), 33, 120, struct.pack("!HHH", 0, 0, port) + name([inst, "local"]), True),
        record(name([inst] + service), 16, 4500, rd_txt, True),
        record(name([inst, "local"]), 1, 120, socket.inet_aton(addr), True),
    ]
    return struct.pack("!HHHHHH", 0, 0x8400, 0, len(recs), 0, 0) + b"".join(recs)


def read_name(b, at):
    """A DNS name at `at` (compression followed); returns (labels, offset after it)."""
    labels, end, jumps = [], None, 0
    while True:
        n = b[at]
        if n & 0xC0 == 0xC0:
            if end is None:
                end = at + 2
            at = (n & 0x3F) << 8 | b[at + 1]
            jumps += 1
            if jumps > 16:
                raise ValueError("pointer loop")
            continue
        if n == 0:
            return labels, (end if end is not None else at + 1)
        labels.append(b[at + 1:at + 1 + n].decode("utf-8", "replace"))
        at += 1 + n


def records(b):
    """(type, ttl, rdata) of every answer, authority and additional record."""
    qd, an, ns, ar = struct.unpack("!HHHH", b[4:12])
    at = 12
    for _ in range(qd):
        _, at = read_name(b, at)
        at += 4
    out = []
    for _ in range(an + ns + ar):
        _, at = read_name(b, at)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", b[at:at + 10])
        at += 10
        out.append((rtype, ttl, b[at:at + rdlen]))
        at += rdlen
    return out


def goodbye(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", 5353))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("224.0.0.251") + socket.inet_aton("0.0.0.0"))
    s.settimeout(0.2)
    print("listening", flush=True)
    deadline = time.time() + args.timeout
    want = ("id=" + args.id).encode()
    while time.time() < deadline:
        try:
            b = s.recv(9000)
        except socket.timeout:
            continue
        try:
            recs = records(b)
        except (ValueError, IndexError, struct.error):
            continue
        if not (struct.unpack("!H", b[2:4])[0] & 0x8000) or not recs:
            continue
        txt = [r for r in recs if r[0] == 16]
        if any(want in r[2] for r in txt) and all(r[1] == 0 for r in recs):
            print("goodbye " + args.id, flush=True)
            return 0
    print("goodbye: none from " + args.id)
    return 1


def listen6(args):
    want = {}
    for e in args.expect:
        ident, addr = e.split("=", 1)
        want[ident] = socket.inet_pton(socket.AF_INET6, addr)
    try:
        index = socket.if_nametoindex(args.dev)
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("::", 5353))
        group = socket.inet_pton(socket.AF_INET6, "ff02::fb")
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", index))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        q = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + name(["_whalescale", "_udp", "local"]) + struct.pack("!HH", 12, 1)
        s.sendto(q, ("ff02::fb", 5353, 0, index))
    except OSError as e:
        print("SKIP: no IPv6 multicast on %s here (%s)" % (args.dev, e))
        return 77
    print("listening", flush=True)
    s.settimeout(0.2)
    seen, done = set(), set()
    deadline = time.time() + args.timeout
    while time.time() < deadline and done != set(want):
        try:
            b, src = s.recvfrom(9000)
        except socket.timeout:
            continue
        try:
            recs = records(b)
        except (ValueError, IndexError, struct.error):
            continue
        if not (struct.unpack("!H", b[2:4])[0] & 0x8000):
            continue
        ident = None
        for r in recs:
            if r[0] == 16:
                at = 0
                while at < len(r[2]):
                    n = r[2][at]
                    kv = r[2][at + 1:at + 1 + n]
                    if kv.startswith(b"id="):
                        ident = kv[3:].decode()
                    at += 1 + n
        if ident is None:
            continue
        aaaa = [r[2] for r in recs if r[0] == 28 and len(r[2]) == 16]
        if (ident, src[0]) not in seen:
            seen.add((ident, src[0]))
            print("v6 from %s id=%s aaaa=%s" % (src[0], ident, ",".join(socket.inet_ntop(socket.AF_INET6, a) for a in aaaa)), flush=True)
        if ident in want and want[ident] in aaaa:
            done.add(ident)
    if done == set(want):
        return 0
    print("listen6: over IPv6 saw %s, wanted %s" % (sorted(done), sorted(want)))
    return 1


def spoof(args):
    msg = announcement(args.id, args.addr, args.port, args.seq, args.mode)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    for i in range(args.count):
        s.sendto(msg, ("224.0.0.251", 5353))
        if i + 1 < args.count:
            time.sleep(0.2)
    print("spoof: sent %d %s announcement(s) of %s... claiming %s:%d" % (args.count, args.mode, args.id[:16], args.addr, args.port))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("browse")
    b.add_argument("--timeout", type=float, default=20)
    b.add_argument("--expect", type=int, default=1)
    g = sub.add_parser("goodbye")
    g.add_argument("--id", required=True)
    g.add_argument("--timeout", type=float, default=20)
    l6 = sub.add_parser("listen6")
    l6.add_argument("--dev", required=True)
    l6.add_argument("--expect", action="append", default=[])
    l6.add_argument("--timeout", type=float, default=20)
    s = sub.add_parser("spoof")
    s.add_argument("--id", required=True)
    s.add_argument("--addr", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--mode", choices=["badsig", "unsigned"], required=True)
    s.add_argument("--seq", type=int, default=2**62)
    s.add_argument("--count", type=int, default=3)
    a = p.parse_args()
    return {"browse": browse, "goodbye": goodbye, "listen6": listen6, "spoof": spoof}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
