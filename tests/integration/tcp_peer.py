"""The kernel side of the TCP interop tests and bench/tcp_host.py (run under ``ip netns exec``).

    tcp_peer.py send HOST PORT LENGTH SEED      # to a discard service: bulk kernel -> peer
    tcp_peer.py recv HOST PORT LENGTH SEED      # from a source service: bulk peer -> kernel
    tcp_peer.py echo HOST PORT CONNS SIZE       # CONNS concurrent echo connections of SIZE bytes
    tcp_peer.py idle HOST PORT CONNS            # hold CONNS established connections until stdin closes
    tcp_peer.py rr HOST PORT SECONDS            # 1-byte round trips against an echo service
    tcp_peer.py serve HOST PORT                 # kernel discard+source+echo server (the baseline)

Protocols are those of :mod:`netvisor.services` (discard answers count +
SHA-256 at EOF; source takes length + seed). Every client prints one JSON
line. Blocking sockets carry a timeout (``NV_PEER_TIMEOUT``, default 60 s)
so a stalled transfer fails instead of hanging.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
from typing import Any

from netvisor.services import BLOCK_SIZE, REPORT, REQUEST, expected_sha256, stream_block

TIMEOUT = float(os.environ.get("NV_PEER_TIMEOUT", "60"))
CHUNK = 256 * 1024


def _connect(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect((host, port))
    return s


def _tcp_options(s: socket.socket) -> int:
    """tcpi_options of the kernel's TCP_INFO: 1 timestamps, 2 SACK, 4 window scaling."""
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[5]


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def send(host: str, port: int, length: int, seed: int) -> None:
    s = _connect(host, port)
    block = memoryview(stream_block(seed))
    t0 = time.perf_counter()
    left = length
    while left:
        piece = block[:min(left, BLOCK_SIZE)]
        s.sendall(piece)
        left -= len(piece)
    s.shutdown(socket.SHUT_WR)
    raw = _recv_exact(s, REPORT.size)
    dt = time.perf_counter() - t0
    options = _tcp_options(s)
    s.close()
    count, digest = REPORT.unpack(raw) if len(raw) == REPORT.size else (-1, b"")
    _emit(bytes=count, sha256=digest.hex(), expected=expected_sha256(seed, length),
          seconds=dt, gbit_s=length * 8 / dt / 1e9, tcp_options=options)


def recv(host: str, port: int, length: int, seed: int) -> None:
    s = _connect(host, port)
    t0 = time.perf_counter()
    s.sendall(REQUEST.pack(length, seed))
    h = hashlib.sha256()
    total = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = s.recv_into(buf)
        if not n:
            break
        h.update(view[:n])
        total += n
    dt = time.perf_counter() - t0
    options = _tcp_options(s)
    s.close()
    _emit(bytes=total, sha256=h.hexdigest(), expected=expected_sha256(seed, length),
          seconds=dt, gbit_s=total * 8 / dt / 1e9, tcp_options=options)


def _raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n + 64)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))


def echo(host: str, port: int, conns: int, size: int, batch: int = 50) -> None:
    """``conns`` connections open at once, each writes ``size`` bytes and reads them back.

    Connections are opened ``batch`` at a time (each batch connected before
    the next starts), so the server's SYN queue never overflows into SYN
    cookies; then all of them transfer concurrently. A burst of 1,000 SYNs at
    a small backlog makes cookie handshakes whose dropped final ACK (full
    accept queue) turns the next segments into RSTs, on Linux as here
    (cookie_v4_check fails for seq != ISN + 1); that is the SYN-flood test's
    subject, not this one's.
    """
    _raise_nofile(conns)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter()
    deadline = time.monotonic() + TIMEOUT
    socks: list[tuple[socket.socket, bytes]] = []
    for first in range(0, conns, batch):
        waiting = selectors.DefaultSelector()
        for i in range(first, min(conns, first + batch)):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            payload = hashlib.sha256(i.to_bytes(4, "big")).digest() * (size // 32 + 1)
            socks.append((s, payload[:size]))
            waiting.register(s, selectors.EVENT_WRITE)
        while waiting.get_map() and time.monotonic() < deadline:
            for key, _mask in waiting.select(timeout=1.0):
                waiting.unregister(key.fileobj)
        waiting.close()
    connected_s = time.perf_counter() - t0
    state: dict[int, dict[str, Any]] = {}
    for s, want in socks:
        st: dict[str, Any] = {"sock": s, "out": memoryview(want), "in": bytearray(), "want": want}
        state[s.fileno()] = st
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, st)
    done = failed = 0
    errors: dict[str, int] = {}
    while done + failed < conns and time.monotonic() < deadline:
        for key, mask in sel.select(timeout=1.0):
            st = key.data
            s = st["sock"]
            try:
                if mask & selectors.EVENT_WRITE:
                    out = st["out"]
                    if out:
                        n = s.send(out)
                        st["out"] = out[n:]
                    if not st["out"]:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ, st)
                if mask & selectors.EVENT_READ:
                    data = s.recv(CHUNK)
                    if data:
                        st["in"] += data
                        continue
                    sel.unregister(s)
                    s.close()
                    if st["in"] == st["want"]:
                        done += 1
                    else:
                        failed += 1
                        errors["mismatch"] = errors.get("mismatch", 0) + 1
            except BlockingIOError:
                continue
            except OSError as exc:
                sel.unregister(s)
                s.close()
                failed += 1
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
    _emit(ok=done, failed=failed, unfinished=conns - done - failed, errors=errors,
          connect_seconds=connected_s, seconds=time.perf_counter() - t0)


def idle(host: str, port: int, conns: int) -> None:
    """Open ``conns`` connections, print when all are established, hold them until stdin closes."""
    _raise_nofile(conns)
    socks = []
    t0 = time.perf_counter()
    for _ in range(conns):
        socks.append(_connect(host, port))
    _emit(established=len(socks), seconds=time.perf_counter() - t0)
    sys.stdin.read()
    for s in socks:
        s.close()


def rr(host: str, port: int, seconds: float) -> None:
    s = _connect(host, port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise SystemExit("rr: connection closed")
        samples.append(time.perf_counter() - t0)
    s.close()
    _emit(round_trips_per_s=len(samples) / seconds, p50_us=statistics.median(samples) * 1e6)


# ------------------------------------------------- kernel baseline server

def _serve_conn(kind: str, c: socket.socket) -> None:
    with c:
        if kind == "discard":
            h = hashlib.sha256()
            total = 0
            buf = bytearray(CHUNK)
            while n := c.recv_into(buf):
                h.update(memoryview(buf)[:n])
                total += n
            c.sendall(REPORT.pack(total, h.digest()))
        elif kind == "source":
            length, seed = REQUEST.unpack(_recv_exact(c, REQUEST.size))
            block = memoryview(stream_block(seed))
            while length:
                piece = block[:min(length, BLOCK_SIZE)]
                c.sendall(piece)
                length -= len(piece)
        else:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := c.recv(CHUNK):
                c.sendall(data)


def serve(host: str, port: int) -> None:
    """discard on PORT, source on PORT+1, echo on PORT+2 (threads; for baselines only)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listeners = []
    for kind, p in (("discard", port), ("source", port + 1), ("echo", port + 2)):
        lst = socket.socket(family, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((host, p))
        lst.listen(128)
        listeners.append((kind, lst))

    def loop(kind: str, lst: socket.socket) -> None:
        while True:
            c, _ = lst.accept()
            threading.Thread(target=_serve_conn, args=(kind, c), daemon=True).start()

    for kind, lst in listeners:
        threading.Thread(target=loop, args=(kind, lst), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def main(argv: list[str]) -> None:
    mode, host, port = argv[0], argv[1], int(argv[2])
    rest = argv[3:]
    if mode == "send":
        send(host, port, int(rest[0]), int(rest[1]))
    elif mode == "recv":
        recv(host, port, int(rest[0]), int(rest[1]))
    elif mode == "echo":
        echo(host, port, int(rest[0]), int(rest[1]))
    elif mode == "idle":
        idle(host, port, int(rest[0]))
    elif mode == "rr":
        rr(host, port, float(rest[0]))
    elif mode == "serve":
        serve(host, port)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
