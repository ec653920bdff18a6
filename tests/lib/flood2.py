#!/usr/bin/env python3
"""Helpers for tests/flood2.sh (security review 60ee9cd, Part C.4: F6-F9). No dependencies.

  flood2.py onpath IFACE SECONDS MODE TARGETS [ARGS...]
      An on-path attacker: the victims route their datagrams to TARGETS (a
      comma list of IPv4 addresses) through this namespace, whose kernel does
      not forward (ip_forward 0); this process reads every frame addressed to
      it on IFACE whose destination is a target and sends it on itself (raw
      socket, the original source kept, UDP checksum 0 = none, as veth offload
      may leave a partial one). Before it forwards, per MODE:
        forward                       nothing else
        probe-forge ANCHOR_KEY ALT,ALT  F6: for a PATH_PROBE (64 bytes, type 5),
                                      a forged PATH_PROBE_REPLY first, from the
                                      probe's destination, echoing its txid,
                                      the anchor's key, and an `observed`
                                      endpoint alternating over the ALTs
                                      (IP:PORT): the forgery always wins the race
        roam-race SRC_IP ALT,ALT      F9: for a DATA (type 4) from SRC_IP, a copy
                                      first from the next ALT (IP:PORT,
                                      alternating): the copy authenticates and
                                      the original arrives second (a replay)
      Prints "listening" once bound, then after SECONDS (or SIGTERM) one line:
        onpath mode=M forwarded=N forged=F copies=C
  flood2.py sink IFACE OUTFILE
      F8: log every IPv4 UDP datagram arriving on IFACE as "T SRC DST:DPORT"
      lines (T: seconds since start) until SIGTERM. Prints "listening".
  flood2.py sinkstats FILE SRC WINDOW
      Datagrams in FILE from SRC: total, distinct destinations, the most
      distinct destinations and the most datagrams in any WINDOW seconds, and
      the largest count to one destination:
      "total=N distinct=D window_max=W window_pkts=K per_target_max=P".
  flood2.py nested-relay OUTFILE TARGET_KEY_B64
      F7: a RELAY naming TARGET whose inner datagram is another RELAY (type 7
      inside type 7: relay chains must not exist), 96 bytes.
  flood2.py memberid KEY_B64
      The 8-byte member id (hex) of a public key: BLAKE2b-256(key)[0:8].
"""
import base64
import hashlib
import signal
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800


def member_id(key_b64):
    return hashlib.blake2b(base64.b64decode(key_b64), digest_size=32).digest()[:8]


def endpoint(text):
    ip, _, port = text.rpartition(":")
    return socket.inet_aton(ip), int(port)


def wire_endpoint(ip4, port):
    # WireEndpoint: family 4, port big-endian, 16 address bytes (IPv4 in the first 4).
    return bytes([4]) + struct.pack("!H", port) + ip4 + bytes(12)


def ipv4_udp(src, sport, dst, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    # The kernel fills in the IP checksum (and the id, left 0) for IP_HDRINCL.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    return ip + udp


def onpath(iface, seconds, mode, targets, args):
    targets = {socket.inet_aton(t) for t in targets.split(",")}
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))  # DGRAM: no link header
    rx.bind((iface, ETH_P_IP))
    rx.settimeout(0.2)
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    alts, k = [], 0
    if mode == "probe-forge":
        anchor_key = base64.b64decode(args[0])
        alts = [endpoint(a) for a in args[1].split(",")]
    elif mode == "roam-race":
        race_src = socket.inet_aton(args[0])
        alts = [endpoint(a) for a in args[1].split(",")]
    elif mode != "forward":
        sys.exit("unknown mode " + mode)
    stats = {"forwarded": 0, "forged": 0, "copies": 0}
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    print("listening", flush=True)
    end = time.monotonic() + seconds
    while not stop[0] and time.monotonic() < end:
        try:
            frame, addr = rx.recvfrom(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if addr[2] != socket.PACKET_HOST:
            continue
        ip = bytearray(frame)
        if len(ip) < 28 or ip[0] >> 4 != 4 or bytes(ip[16:20]) not in targets:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        ip = ip[:total]
        src, dst = bytes(ip[12:16]), bytes(ip[16:20])
        if ip[9] == 17 and len(ip) >= ihl + 8:
            sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
            ip[ihl + 6:ihl + 8] = b"\0\0"
            payload = bytes(ip[ihl + 8:])
            if mode == "probe-forge" and len(payload) == 64 and payload[0] == 5:
                ep_ip, ep_port = alts[k % len(alts)]
                k += 1
                reply = bytes([6, 0, 0, 0]) + payload[4:12] + wire_endpoint(ep_ip, ep_port) + anchor_key
                tx.sendto(ipv4_udp(dst, dport, src, sport, reply), (socket.inet_ntoa(src), 0))
                stats["forged"] += 1
            # DATA: type 4, byte 1 its header flags (docs/wire.md "Header flags"), bytes 2-3 zero.
            elif mode == "roam-race" and src == race_src and len(payload) >= 32 and payload[0] == 4 and payload[2:4] == b"\0\0":
                alt_ip, alt_port = alts[k % len(alts)]
                k += 1
                tx.sendto(ipv4_udp(alt_ip, alt_port, dst, dport, payload), (socket.inet_ntoa(dst), 0))
                stats["copies"] += 1
        tx.sendto(bytes(ip), (socket.inet_ntoa(dst), 0))
        stats["forwarded"] += 1
    print("onpath mode=%s forwarded=%d forged=%d copies=%d" % (mode, stats["forwarded"], stats["forged"], stats["copies"]),
          flush=True)


def sink(iface, out):
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))  # DGRAM: no link header
    rx.bind((iface, ETH_P_IP))
    rx.settimeout(0.2)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    t0 = time.monotonic()
    with open(out, "w") as f:
        print("listening", flush=True)
        while not stop[0]:
            try:
                frame, addr = rx.recvfrom(65535)
            except (socket.timeout, InterruptedError):
                continue
            if addr[2] == socket.PACKET_OUTGOING or len(frame) < 28 or frame[0] >> 4 != 4 or frame[9] != 17:
                continue
            ihl = (frame[0] & 0x0F) * 4
            dport = struct.unpack("!H", frame[ihl + 2:ihl + 4])[0]
            f.write("%.3f %s %s:%d\n" % (time.monotonic() - t0, socket.inet_ntoa(frame[12:16]),
                                         socket.inet_ntoa(frame[16:20]), dport))
            f.flush()


def sinkstats(path, src, window):
    rows = []
    for line in open(path):
        t, s, d = line.split()
        if s == src:
            rows.append((float(t), d))
    per = {}
    for _, d in rows:
        per[d] = per.get(d, 0) + 1
    wmax = wpk = 0
    for i, (t, _) in enumerate(rows):
        inside = [d for u, d in rows[i:] if u < t + window]
        wmax = max(wmax, len(set(inside)))
        wpk = max(wpk, len(inside))
    print("total=%d distinct=%d window_max=%d window_pkts=%d per_target_max=%d" %
          (len(rows), len(per), wmax, wpk, max(per.values(), default=0)))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    a = sys.argv[2:]
    if cmd == "onpath":
        onpath(a[0], float(a[1]), a[2], a[3], a[4:])
    elif cmd == "sink":
        sink(a[0], a[1])
    elif cmd == "sinkstats":
        sinkstats(a[0], a[1], float(a[2]))
    elif cmd == "nested-relay":
        mid = member_id(a[1])
        inner = bytes([7]) + bytes(7) + mid + bytes([4, 0, 0, 0]) + bytes(60)
        open(a[0], "wb").write(bytes([7]) + bytes(7) + mid + inner)
    elif cmd == "memberid":
        print(member_id(a[0]).hex())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
