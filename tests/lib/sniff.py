#!/usr/bin/env python3
"""Capture one Whalescale DATA datagram (type 4, non-empty payload) to a UDP port,
seen on an interface, and write its UDP payload to a file. Used by tests to
replay a real packet.
Usage: sniff.py IFACE PORT OUTFILE TIMEOUT_S [SRC_IP DST_IP [MIN_INNER]]

With SRC_IP and DST_IP only a datagram from SRC_IP to DST_IP is taken: when
both ends listen on PORT, the port alone does not say which way a packet went,
and a packet the replay target sent itself is not one it received.
With MIN_INNER only a DATA whose encrypted payload is at least MIN_INNER bytes
is taken: control messages (keepalives, path pings, gossip) are a few hundred
bytes at most, so a large MIN_INNER and a large ping make it an IP packet.
Prints "listening" once the socket is bound (the caller waits for it)."""
import socket, struct, sys, time

iface, port, out, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
src = socket.inet_aton(sys.argv[5]) if len(sys.argv) > 6 else None
dst = socket.inet_aton(sys.argv[6]) if len(sys.argv) > 6 else None
min_inner = int(sys.argv[7]) if len(sys.argv) > 7 else 1
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
    if len(frame) < 14 + 20 + 8 or struct.unpack("!H", frame[12:14])[0] != 0x0800:
        continue
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        continue
    if src is not None and (ip[12:16] != src or ip[16:20] != dst):
        continue
    udp = ip[ihl:]
    dport = struct.unpack("!H", udp[2:4])[0]
    payload = udp[8:]
    # DATA: type 4, 16-byte header, 16-byte tag; more than 32 bytes: not a keepalive.
    if dport == port and len(payload) >= 32 + min_inner and payload[0] == 4:
        open(out, "wb").write(payload)
        sys.exit(0)
sys.exit(1)
