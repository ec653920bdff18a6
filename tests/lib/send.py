#!/usr/bin/env python3
"""Send a file's bytes as one UDP datagram. Usage: send.py HOST PORT FILE [SRCPORT]"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if len(sys.argv) > 4:
    s.bind(("0.0.0.0", int(sys.argv[4])))
s.sendto(open(sys.argv[3], "rb").read(), (sys.argv[1], int(sys.argv[2])))
