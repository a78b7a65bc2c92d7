"""TCP connection rate: ``cps.py server HOST PORT`` / ``cps.py client HOST PORT SECONDS``.

Each client iteration connects, sends one byte, waits for the server's close
and closes; the client prints connections per second as one JSON line.
"""

import json
import socket
import sys
import time


def server(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as lst:
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, port))
        lst.listen(1024)
        print("ready", flush=True)
        while True:
            conn, _ = lst.accept()
            with conn:
                conn.recv(1)


def client(host: str, port: int, seconds: float) -> None:
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(b"x")
            conn.recv(1)  # the server's close
        count += 1
    print(json.dumps({"connections_per_s": count / seconds}))


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        server(host, port)
    else:
        client(host, port, float(sys.argv[4]))
