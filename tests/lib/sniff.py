#!/usr/bin/env python3
"""Capture one Whalescale DATA datagram (type 4, non-empty payload) to a UDP port,
seen on an interface, and write its UDP payload to a file. Used by tests to
replay a real packet. Usage: sniff.py IFACE PORT OUTFILE TIMEOUT_S"""
import socket, struct, sys, time

iface, port, out, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((iface, 0))
s.settimeout(0.2)
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
    udp = ip[ihl:]
    dport = struct.unpack("!H", udp[2:4])[0]
    payload = udp[8:]
    # DATA: type 4, 16-byte header, 16-byte tag; more than 32 bytes means it carries a packet.
    if dport == port and len(payload) > 32 and payload[0] == 4:
        open(out, "wb").write(payload)
        sys.exit(0)
sys.exit(1)
