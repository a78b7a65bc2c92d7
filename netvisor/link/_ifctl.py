"""Small interface ioctls (index, MTU, flags) on the calling thread's namespace.

Used by the TAP and AF_PACKET endpoints at construction; addressing and routes
are the callers' business (pyroute2).
"""

from __future__ import annotations

import fcntl
import socket
import struct
from typing import Final

SIOCGIFFLAGS: Final = 0x8913
SIOCSIFFLAGS: Final = 0x8914
SIOCGIFMTU: Final = 0x8921
SIOCSIFMTU: Final = 0x8922
SIOCGIFHWADDR: Final = 0x8927
SIOCGIFINDEX: Final = 0x8933
IFF_UP: Final = 0x1
IFNAMSIZ: Final = 16
_IFREQ: Final = 40  # sizeof(struct ifreq) on x86_64


def _ifreq(name: str, fmt: str = "", *values: int) -> bytearray:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise ValueError(f"bad interface name {name!r} (1..15 bytes)")
    buf = bytearray(_IFREQ)
    buf[: len(raw)] = raw
    if fmt:
        struct.pack_into(fmt, buf, IFNAMSIZ, *values)
    return buf


def _ioctl(req: int, buf: bytearray) -> bytearray:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        fcntl.ioctl(s.fileno(), req, buf)
    return buf


def ifindex(name: str) -> int:
    return int(struct.unpack_from("i", _ioctl(SIOCGIFINDEX, _ifreq(name)), IFNAMSIZ)[0])


def get_mtu(name: str) -> int:
    return int(struct.unpack_from("i", _ioctl(SIOCGIFMTU, _ifreq(name)), IFNAMSIZ)[0])


def set_mtu(name: str, mtu: int) -> None:
    _ioctl(SIOCSIFMTU, _ifreq(name, "i", mtu))


def get_hwaddr(name: str) -> bytes:
    # struct sockaddr: sa_family (2 bytes), then the address bytes.
    return bytes(_ioctl(SIOCGIFHWADDR, _ifreq(name))[IFNAMSIZ + 2: IFNAMSIZ + 8])


def set_up(name: str) -> None:
    buf = _ioctl(SIOCGIFFLAGS, _ifreq(name))
    flags = struct.unpack_from("H", buf, IFNAMSIZ)[0]
    _ioctl(SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))
