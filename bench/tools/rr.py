"""1-byte TCP ping-pong: ``rr.py server HOST PORT`` / ``rr.py client HOST PORT SECONDS``.

The client prints one JSON line: round trips per second and the median round
trip in microseconds. Stdlib only so that it runs unmodified in any sandbox.
"""

import json
import socket
import statistics
import sys
import time


def server(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lst:
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(16)
        print("ready", flush=True)
        while True:
            conn, _ = lst.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:
                while True:
                    b = conn.recv(1)
                    if not b:
                        break
                    conn.sendall(b)


def client(host: str, port: int, seconds: float) -> None:
    conn = socket.create_connection((host, port), timeout=10)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            raise SystemExit("rr: connection closed")
        samples.append(time.perf_counter() - t0)
    conn.close()
    print(json.dumps({"round_trips_per_s": len(samples) / seconds,
                      "p50_us": statistics.median(samples) * 1e6}))


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        server(host, port)
    else:
        client(host, port, float(sys.argv[4]))
