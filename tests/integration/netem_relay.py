"""A userspace stand-in for ``tc qdisc ... netem``: an impairing bridge between two interfaces.

    netem_relay.py IF_A IF_B [--loss 0.02] [--duplicate 0.01] [--reorder 0.25]
                   [--delay 0.010] [--seed 1]

This machine kind's kernel is built without sch_netem (CONFIG_NET_SCH_NETEM
is not set, and there is no module tree), so the TCP interop tests put this
relay on the path instead: it reads every frame arriving on IF_A or IF_B
(AF_PACKET, outgoing frames ignored) and writes it out of the other one, with
netem's semantics per frame and per direction:

- ``loss``: the frame is dropped with this probability;
- ``duplicate``: a second copy is sent with this probability;
- ``delay`` with ``reorder``: like ``netem delay D reorder P``, a fraction P
  of frames goes out at once and the others wait D, so the immediate ones
  overtake those still waiting (netem's reordering needs a delay too).

The interfaces must not hand it GSO super-frames: the caller turns TSO/GSO
off on the veths (see :func:`disable_offloads`). Decisions come from one
seeded generator, so a run is repeatable given the same frame sequence.
Prints ``ready`` once both sockets are bound, and a JSON line of counters on
SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import json
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
SIOCETHTOOL = 0x8946
# struct ethtool_value {u32 cmd; u32 data}: set TX checksum, TSO, GSO, GRO.
ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO = 0x17, 0x1F, 0x24, 0x2C


def disable_offloads(ifname: str) -> None:
    """Turn TX checksum offload, TSO, GSO and GRO off on ``ifname``, as ``ethtool -K``.

    TX checksum too: a veth hands its peer CHECKSUM_PARTIAL frames, which an
    AF_PACKET reader sees with only the pseudo-header sum in the field.
    """
    for cmd in (ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO):
        value = ctypes.create_string_buffer(struct.pack("II", cmd, 0), 8)
        ifr = bytearray(40)
        ifr[:len(ifname)] = ifname.encode()
        struct.pack_into("P", ifr, 16, ctypes.addressof(value))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)


def _open(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("if_a")
    p.add_argument("if_b")
    p.add_argument("--loss", type=float, default=0.02)
    p.add_argument("--duplicate", type=float, default=0.01)
    p.add_argument("--reorder", type=float, default=0.25)
    p.add_argument("--delay", type=float, default=0.010)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-offload-off", action="store_true",
                   help="leave the interfaces' offloads alone")
    args = p.parse_args(argv)
    if not args.no_offload_off:
        for name in (args.if_a, args.if_b):
            disable_offloads(name)
    a, b = _open(args.if_a), _open(args.if_b)
    other = {a.fileno(): b, b.fileno(): a}
    rng = random.Random(args.seed)
    stats = {"frames": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "immediate": 0,
             "send_errors": 0}
    pending: list[tuple[float, int, socket.socket, bytes]] = []  # (due, seq, out, frame)
    seq = 0
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    def put(out: socket.socket, frame: bytes) -> None:
        try:
            out.send(frame)
        except OSError:
            stats["send_errors"] += 1

    print("ready", flush=True)
    poller = select.poll()
    poller.register(a.fileno(), select.POLLIN)
    poller.register(b.fileno(), select.POLLIN)
    while not stop:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _due, _s, out, frame = heapq.heappop(pending)
            put(out, frame)
        timeout_ms = max(0, (pending[0][0] - now) * 1000) if pending else 200
        try:
            events = poller.poll(timeout_ms)
        except InterruptedError:
            continue
        for fd, _ev in events:
            src = a if fd == a.fileno() else b
            out = other[fd]
            for _ in range(256):
                try:
                    frame = src.recv(65536)
                except BlockingIOError:
                    break
                stats["frames"] += 1
                # Always draw the same numbers per frame (repeatable fault sequence).
                r_loss, r_dup, r_order = rng.random(), rng.random(), rng.random()
                if r_loss < args.loss:
                    stats["dropped"] += 1
                    continue
                copies = 2 if r_dup < args.duplicate else 1
                if copies == 2:
                    stats["duplicated"] += 1
                for _c in range(copies):
                    if args.delay <= 0 or r_order < args.reorder:
                        stats["immediate"] += 1
                        put(out, frame)
                    else:
                        stats["delayed"] += 1
                        seq += 1
                        heapq.heappush(pending, (time.monotonic() + args.delay, seq, out, frame))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
