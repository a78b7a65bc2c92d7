"""Answers for the interface ioctls a program makes on a socket (SIOCGIF*), as Linux gives them.

Pure functions over bytes: the syscall plane reads the program's ``struct
ifreq`` (40 bytes on x86_64) or ``struct ifconf`` (16 bytes), calls
:func:`ifreq_ioctl` / :func:`ifconf`, and writes the returned bytes back
(or answers the errno of :class:`IoctlError`). No I/O here.

Layouts (include/uapi/linux/if.h, x86_64)::

    struct ifreq  { char ifr_name[16]; union { struct sockaddr; short flags;
                    int ivalue/mtu/ifindex/qlen; struct ifmap (24 B); ... } }  40 B
    struct ifconf { int ifc_len; /* 4 B padding */ char *ifc_buf; }            16 B

Linux behaviour mirrored (net/socket.c sock_do_ioctl, net/core/dev_ioctl.c
dev_ioctl/dev_ifsioc_locked/dev_ifconf, net/ipv4/devinet.c devinet_ioctl and
inet_gifconf):

- The kernel copies the whole ifreq in, changes only the fields the request
  sets, and copies the whole ifreq out, so every other byte keeps what the
  program passed (SIOCGIFFLAGS writes 2 bytes, SIOCGIFHWADDR the family and 6
  of the 14 sa_data bytes). ``ifr_name[15]`` is forced to NUL for every
  request (get_user_ifreq), SIOCGIFNAME included.
- Requests of the socket-ioctl range that Linux does not know: ENOTTY
  (others, such as the SIOCDEVPRIVATE range, are the syscall plane's call).
- A name may carry an alias suffix (``eth0:1``): the device is looked up
  without it; for the address ioctls the full name must match an IPv4
  address label (4.4BSD style: with ``sin_family == AF_INET`` in the request,
  the label *and* the address are tried first).
- Unknown device: ENODEV; device without a matching IPv4 address:
  EADDRNOTAVAIL. The address ioctls exist only on AF_INET sockets; on an
  AF_INET6 socket Linux answers ENOTTY.
- SIOCGIFCONF lists IPv4 addresses only, one ifreq per address (name = its
  label, sockaddr_in with the local address, all else zero), devices in
  ifindex order; with a NULL buffer it reports the length needed; with a
  short buffer it fills as many whole entries as fit.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Final

from netvisor.syscall.ifdesc import AF_INET, IFNAMSIZ, InterfaceInfo

SIOCGIFNAME: Final = 0x8910
SIOCGIFCONF: Final = 0x8912
SIOCGIFFLAGS: Final = 0x8913
SIOCGIFADDR: Final = 0x8915
SIOCGIFDSTADDR: Final = 0x8917
SIOCGIFBRDADDR: Final = 0x8919
SIOCGIFNETMASK: Final = 0x891B
SIOCGIFMETRIC: Final = 0x891D
SIOCGIFMTU: Final = 0x8921
SIOCGIFHWADDR: Final = 0x8927
SIOCGIFINDEX: Final = 0x8933
SIOCGIFTXQLEN: Final = 0x8942
SIOCGIFMAP: Final = 0x8970

IFREQ_SIZE: Final = 40
IFCONF_SIZE: Final = 16
_UNION: Final = IFNAMSIZ  # offset of the union in struct ifreq

ENODEV: Final = 19
EADDRNOTAVAIL: Final = 99
ENOTTY: Final = 25
EINVAL: Final = 22

# The requests answered here (all read-only).
ADDRESS_IOCTLS: Final = frozenset({SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR,
                                   SIOCGIFNETMASK})
DEVICE_IOCTLS: Final = frozenset({SIOCGIFFLAGS, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR,
                                  SIOCGIFINDEX, SIOCGIFTXQLEN, SIOCGIFMAP, SIOCGIFNAME})
IFREQ_IOCTLS: Final = ADDRESS_IOCTLS | DEVICE_IOCTLS


class IoctlError(Exception):
    """The ioctl fails with this errno (the ifreq is then not written back)."""

    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


def ifreq_name(ifreq: bytes) -> str:
    """``ifr_name`` as the kernel reads it: up to the first NUL, at most 15 bytes."""
    raw = ifreq[:IFNAMSIZ - 1]
    return raw.split(b"\x00", 1)[0].decode("latin-1")


def encode_ifreq(name: str, union: bytes = b"") -> bytes:
    """A struct ifreq with ``name`` and the union's first bytes (rest zero)."""
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ValueError("interface name too long")
    return (raw.ljust(IFNAMSIZ, b"\x00") + union).ljust(IFREQ_SIZE, b"\x00")[:IFREQ_SIZE]


def _sockaddr_in(ip: ipaddress.IPv4Address) -> bytes:
    return struct.pack("=H2x4s8x", AF_INET, ip.packed)


def ifreq_ioctl(request: int, ifreq: bytes, interfaces: Sequence[InterfaceInfo], *,
                family: int = AF_INET) -> bytes:
    """Answer one SIOCGIF* ioctl: the 40-byte ifreq to copy back to the program.

    ``ifreq`` is the program's struct as read (shorter input is an error the
    caller reports as EFAULT; here it raises ValueError). ``family`` is the
    socket's. Raises :class:`IoctlError` with Linux's errno.
    """
    if len(ifreq) < IFREQ_SIZE:
        raise ValueError(f"struct ifreq is {IFREQ_SIZE} bytes, got {len(ifreq)}")
    buf = bytearray(ifreq[:IFREQ_SIZE])
    buf[IFNAMSIZ - 1] = 0  # get_user_ifreq, for every request
    if request == SIOCGIFNAME:
        # dev_ifname: by ifr_ifindex; strcpy of the name, nothing else touched.
        index = struct.unpack_from("=i", buf, _UNION)[0]
        itf = next((i for i in interfaces if i.index == index), None)
        if itf is None:
            raise IoctlError(ENODEV)
        raw = itf.name.encode() + b"\x00"
        buf[:len(raw)] = raw
        return bytes(buf)
    if request in ADDRESS_IOCTLS and family != AF_INET:
        raise IoctlError(ENOTTY)
    if request not in IFREQ_IOCTLS:
        raise IoctlError(ENOTTY)
    full = ifreq_name(bytes(buf))
    devname = full.split(":", 1)[0]
    itf = next((i for i in interfaces if i.name == devname), None)
    if request in ADDRESS_IOCTLS:
        return _address_ioctl(request, buf, full, itf)
    if itf is None:
        raise IoctlError(ENODEV)
    if request == SIOCGIFFLAGS:
        # (short) dev_get_flags(): IFF_LOWER_UP and above do not fit.
        struct.pack_into("=H", buf, _UNION, itf.flags & 0xFFFF)
    elif request == SIOCGIFMETRIC:
        struct.pack_into("=i", buf, _UNION, 0)
    elif request == SIOCGIFMTU:
        struct.pack_into("=i", buf, _UNION, itf.mtu)
    elif request == SIOCGIFINDEX:
        struct.pack_into("=i", buf, _UNION, itf.index)
    elif request == SIOCGIFTXQLEN:
        struct.pack_into("=i", buf, _UNION, itf.txqlen)
    elif request == SIOCGIFHWADDR:
        # dev_get_mac_address: sa_family = dev->type, addr_len (6) bytes of sa_data.
        struct.pack_into("=H", buf, _UNION, itf.arphrd)
        buf[_UNION + 2:_UNION + 8] = itf.mac
    elif request == SIOCGIFMAP:
        # struct ifmap {ulong mem_start, mem_end; ushort base_addr; uchar irq, dma, port}:
        # fields set one by one (all zero for virtual devices), padding untouched.
        struct.pack_into("=QQHBBB", buf, _UNION, 0, 0, 0, 0, 0, 0)
    return bytes(buf)


def _address_ioctl(request: int, buf: bytearray, label: str,
                   itf: InterfaceInfo | None) -> bytes:
    """devinet_ioctl for the four "get address" requests."""
    orig_family, orig_addr = struct.unpack_from("=H2x4s", buf, _UNION)
    try_match = orig_family == AF_INET
    # memset(sin, 0) + sin_family = AF_INET happen before the device lookup,
    # but the ifreq is only copied back on success, so that is invisible.
    if itf is None:
        raise IoctlError(ENODEV)
    candidates = [a for a in itf.ipv4() if (a.label or itf.name) == label]
    chosen = None
    if try_match:
        chosen = next((a for a in candidates if a.address.ip.packed == orig_addr), None)
    if chosen is None and candidates:
        chosen = candidates[0]
    if chosen is None:
        raise IoctlError(EADDRNOTAVAIL)
    iface = chosen.address
    assert isinstance(iface, ipaddress.IPv4Interface)
    if request == SIOCGIFADDR:
        value = iface.ip
    elif request == SIOCGIFBRDADDR:
        value = chosen.broadcast or ipaddress.IPv4Address(0)
    elif request == SIOCGIFDSTADDR:
        value = iface.ip  # ifa_address: the peer on point-to-point links, else local
    else:
        value = iface.netmask
    buf[_UNION:_UNION + 16] = _sockaddr_in(value)
    return bytes(buf)


def decode_ifconf(data: bytes) -> tuple[int, int]:
    """``struct ifconf`` -> (ifc_len, ifc_buf address; 0 for NULL)."""
    if len(data) < IFCONF_SIZE:
        raise ValueError(f"struct ifconf is {IFCONF_SIZE} bytes, got {len(data)}")
    ifc_len, ptr = struct.unpack_from("=i4xQ", data)
    return ifc_len, ptr


def encode_ifconf(ifc_len: int, ptr: int) -> bytes:
    return struct.pack("=i4xQ", ifc_len, ptr)


def ifconf(interfaces: Sequence[InterfaceInfo], ifc_len: int, *,
           buf_is_null: bool) -> tuple[int, bytes]:
    """SIOCGIFCONF (dev_ifconf + inet_gifconf).

    Returns ``(new ifc_len, bytes to write at ifc_buf)``. With a NULL buffer
    the length is the size needed for every IPv4 address and nothing is
    written; otherwise as many whole 40-byte entries as fit in ``ifc_len``.
    """
    entries: list[bytes] = []
    for itf in sorted(interfaces, key=lambda i: i.index):
        for a in itf.ipv4():
            assert isinstance(a.address, ipaddress.IPv4Interface)
            entries.append(encode_ifreq(a.label or itf.name, _sockaddr_in(a.address.ip)))
    if buf_is_null:
        return IFREQ_SIZE * len(entries), b""
    fit = max(ifc_len, 0) // IFREQ_SIZE
    out = b"".join(entries[:fit])
    return len(out), out


__all__ = [
    "IFCONF_SIZE",
    "IFREQ_IOCTLS",
    "IFREQ_SIZE",
    "IoctlError",
    "decode_ifconf",
    "encode_ifconf",
    "encode_ifreq",
    "ifconf",
    "ifreq_ioctl",
    "ifreq_name",
]
