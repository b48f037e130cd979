"""A process for the process, netstat and yara module tests to investigate.

Reads a marker line on stdin and keeps it in memory (as str and as bytes), opens a TCP listener
and a bound UDP socket on 127.0.0.1 (and a TCP listener on ::1 when IPv6 is up), connects to its
own TCP listener, prints what it holds as one JSON line, then waits until stdin closes.
"""

import json
import os
import socket
import sys

marker = sys.stdin.readline().strip()
held = [marker, marker.encode("utf-8") + b"\x00\x01\x02"]  # kept alive until exit

tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.bind(("127.0.0.1", 0))
tcp.listen()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
tcp6_port = None
try:
    tcp6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    tcp6.bind(("::1", 0))
    tcp6.listen()
    tcp6_port = tcp6.getsockname()[1]
except OSError:
    pass
client = socket.create_connection(tcp.getsockname())
server_side, _ = tcp.accept()

print(
    json.dumps(
        {
            "pid": os.getpid(),
            "tcp_port": tcp.getsockname()[1],
            "udp_port": udp.getsockname()[1],
            "tcp6_port": tcp6_port,
            "client_port": client.getsockname()[1],
        }
    ),
    flush=True,
)
sys.stdin.read()
