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
import time
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


def sockseqs(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    """Several set/get steps on one fresh socket each: results per step
    ({"ok": hex} for a get, {"ok": ""} for a set, or {"errno": n})."""
    out = []
    for job in jobs:
        s = socket.socket(job["family"], job["type"])
        results: list[Any] = []
        for step in job["steps"]:
            try:
                if step["op"] == "set":
                    s.setsockopt(step["level"], step["opt"], bytes.fromhex(step["value"]))
                    results.append({"ok": ""})
                else:
                    results.append({"ok": s.getsockopt(step["level"], step["opt"],
                                                       step["buflen"]).hex()})
            except OSError as e:
                results.append({"errno": e.errno})
        s.close()
        out.append(results)
    return out


def sendmsgs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """sendmsg on a fresh UDP socket to the loopback discard port with the given cmsgs."""
    out: list[dict[str, Any]] = []
    for job in jobs:
        fam = job["family"]
        s = socket.socket(fam, socket.SOCK_DGRAM)
        host = "127.0.0.1" if fam == socket.AF_INET else "::1"
        anc = [(lvl, typ, bytes.fromhex(d)) for lvl, typ, d in job["cmsgs"]]
        try:
            s.sendmsg([b"x"], anc, 0, (host, 9))
            out.append({"ok": ""})
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


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(_Iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


def _raw_recvmsg(fd: int, controllen: int, flags: int) -> tuple[bytes, int]:
    """recvmsg through libc: the raw control buffer (as the kernel wrote it) and msg_flags."""
    libc = ctypes.CDLL(None, use_errno=True)
    data = ctypes.create_string_buffer(2048)
    ctrl = ctypes.create_string_buffer(b"\xee" * max(controllen, 1), max(controllen, 1))
    iov = _Iovec(ctypes.addressof(data), 2048)
    msg = _Msghdr(None, 0, ctypes.pointer(iov), 1, ctypes.addressof(ctrl), controllen, 0)
    n = libc.recvmsg(fd, ctypes.byref(msg), flags)
    if n < 0:
        raise OSError(ctypes.get_errno(), "recvmsg")
    return ctrl.raw[:msg.controllen], msg.flags


def cmsg_case(case: dict[str, Any]) -> dict[str, Any]:
    """UDP over loopback with receive options on; the receiver's control data
    (raw, and as Python's own recvmsg parses it). ``error`` sends to a closed
    port instead and reads the error queue (IP_RECVERR / IPV6_RECVERR)."""
    fam = case["family"]
    host = "127.0.0.1" if fam == socket.AF_INET else "::1"
    rx = socket.socket(fam, socket.SOCK_DGRAM)
    tx = socket.socket(fam, socket.SOCK_DGRAM)
    for level, opt, value in case["rx_opts"]:
        (tx if case.get("error") else rx).setsockopt(level, opt, value)
    for level, opt, value in case.get("tx_opts", []):
        tx.setsockopt(level, opt, value)
    rx.bind((host, 0))
    port = rx.getsockname()[1]
    if case.get("error"):
        rx.close()  # nobody listens there now: ICMP port unreachable
        # Two errors: the peek below dequeues one (the error queue ignores
        # MSG_PEEK), the raw read takes the other.
        sent = 0
        for _ in range(6):
            try:
                tx.sendto(b"x", (host, port))
                sent += 1
            except ConnectionRefusedError:
                pass  # the previous error, reported once through sk_err; nothing sent
            time.sleep(0.05)
            if sent == 2:
                break
        sock, flags = tx, int(socket.MSG_ERRQUEUE)
    else:
        tx.sendto(b"hello", (host, port))
        sock, flags = rx, 0
    peek = sock.recvmsg(2048, 4096, flags | socket.MSG_PEEK)
    raw, mflags = _raw_recvmsg(sock.fileno(), case["controllen"], flags)
    return {"parsed": [[lvl, typ, d.hex()] for lvl, typ, d in peek[1]],
            "raw": raw.hex(), "flags": mflags}


def main() -> None:
    job = json.load(sys.stdin)
    json.dump({
        "netlink": netlink(job.get("netlink", [])),
        "ioctl": ioctls(job.get("ioctl", [])),
        "getsockopt": getsockopts(job.get("getsockopt", [])),
        "ifconf": ifconfs(job.get("ifconf", [])),
        "sockseq": sockseqs(job.get("sockseq", [])),
        "sendmsg": sendmsgs(job.get("sendmsg", [])),
        "cmsg": [cmsg_case(c) for c in job.get("cmsg", [])],
    }, sys.stdout)


if __name__ == "__main__":
    main()
