"""Run inside a test namespace (``ip netns exec NS python3 kernel_probe.py``).

Reads a JSON job on stdin and prints the kernel's raw answers as JSON (hex):
netlink request -> reply datagrams, ioctl request -> result bytes or errno,
getsockopt (level, optname, buflen) -> bytes or errno. The tests feed the
same requests to netvisor's codecs and compare. Stdlib only, no netvisor.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import socket
import struct
import sys
from typing import Any

NETLINK_ROUTE = 0


def _terminal(gram: bytes, request: bytes) -> bool:
    """True when the datagram ends with a message after which Linux sends nothing."""
    off, last = 0, (0, 0)
    while off + 16 <= len(gram):
        length, mtype, flags = struct.unpack_from("=IHH", gram, off)
        last = (mtype, flags)
        off += max(16, (length + 3) & ~3)
    mtype, flags = last
    ack_wanted = len(request) >= 8 and struct.unpack_from("=H", request, 6)[0] & 4
    return mtype in (2, 3) or (not flags & 2 and not ack_wanted)


def netlink(requests: list[str]) -> list[list[str]]:
    out = []
    for req_hex in requests:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        s.bind((0, 0))
        request = bytes.fromhex(req_hex)
        s.settimeout(0.3)
        s.send(request)
        grams = []
        while True:
            try:
                d = s.recv(1 << 16)
            except TimeoutError:
                break
            grams.append(d.hex())
            if _terminal(d, request):
                # Anything after a final message would still show up quickly.
                s.settimeout(0.02)
        s.close()
        out.append(grams)
    return out


def ioctls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in requests:
        s = socket.socket(r.get("family", socket.AF_INET), socket.SOCK_DGRAM)
        try:
            res = fcntl.ioctl(s.fileno(), r["request"], bytes.fromhex(r["arg"]))
            out.append({"ok": res.hex()})
        except OSError as e:
            out.append({"errno": e.errno})
        finally:
            s.close()
    return out


def ifconfs(requests: list[int]) -> list[dict[str, Any]]:
    """SIOCGIFCONF with a buffer of N bytes (pre-filled with 0xA5), or NULL for -1."""
    out: list[dict[str, Any]] = []
    for n in requests:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        buf = ctypes.create_string_buffer(b"\xa5" * max(n, 0), max(n, 1))
        ptr = ctypes.addressof(buf) if n >= 0 else 0
        ifc = bytearray(struct.pack("=i4xQ", max(n, 0), ptr))
        try:
            fcntl.ioctl(s.fileno(), 0x8912, ifc, True)
            length = struct.unpack_from("=i", ifc)[0]
            out.append({"len": length, "buf": buf.raw[:max(n, 0)].hex()})
        except OSError as e:
            out.append({"errno": e.errno})
        finally:
            s.close()
    return out


def getsockopts(requests: list[list[int]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for family, sotype, level, optname, buflen in requests:
        s = socket.socket(family, sotype)
        try:
            out.append({"ok": s.getsockopt(level, optname, buflen).hex()})
        except OSError as e:
            out.append({"errno": e.errno})
        finally:
            s.close()
    return out


def main() -> None:
    job = json.load(sys.stdin)
    json.dump({
        "netlink": netlink(job.get("netlink", [])),
        "ioctl": ioctls(job.get("ioctl", [])),
        "getsockopt": getsockopts(job.get("getsockopt", [])),
        "ifconf": ifconfs(job.get("ifconf", [])),
    }, sys.stdout)


if __name__ == "__main__":
    main()
