"""SIOCGIF* answers against real ioctls on real sockets in the reference namespace.

Requests are made with the union pre-filled with junk, so that a byte the
kernel leaves alone but netvisor writes (or the reverse) shows.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from netvisor.syscall import ifreq as ir
from tests.unit.syscall_codecs.conftest import RefNet

pytestmark = pytest.mark.namespaces

JUNK = bytes(range(0xA0, 0xA0 + 24))
REQUESTS = [ir.SIOCGIFADDR, ir.SIOCGIFDSTADDR, ir.SIOCGIFBRDADDR, ir.SIOCGIFNETMASK,
            ir.SIOCGIFFLAGS, ir.SIOCGIFMETRIC, ir.SIOCGIFMTU, ir.SIOCGIFHWADDR,
            ir.SIOCGIFINDEX, ir.SIOCGIFTXQLEN, ir.SIOCGIFMAP]


def name_field(name: bytes) -> bytes:
    return name[:16].ljust(16, b"\0")


def cases(ref: RefNet) -> list[tuple[str, int, int, bytes]]:
    """(label, family, request, ifreq bytes)."""
    out: list[tuple[str, int, int, bytes]] = []
    a, b = ref.a.encode(), ref.b.encode()
    names = [b"lo", a, b, a + b":0", b"nvnnope", b"X" * 16, a + b"\0junk"]
    unions = {
        "junk": JUNK,
        # 4.4BSD-style: sin_family AF_INET + the secondary address selects it.
        "match7": struct.pack("=H2s4s", socket.AF_INET, b"\xee\xee", bytes([10, 9, 0, 7])) + JUNK[8:],
        "nomatch": struct.pack("=H2s4s", socket.AF_INET, b"\0\0", bytes([10, 9, 0, 99])) + JUNK[8:],
    }
    for family in (socket.AF_INET, socket.AF_INET6):
        for req in REQUESTS:
            for name in names:
                for uname, union in unions.items():
                    if uname != "junk" and (req not in ir.ADDRESS_IOCTLS or name != a):
                        continue
                    out.append((f"{family}/{req:#x}/{name!r}/{uname}", family, req,
                                name_field(name) + union))
    for index in (1, ref.index(ref.a), ref.index(ref.b), 9999, 0, -1):
        out.append((f"name/{index}", socket.AF_INET, ir.SIOCGIFNAME,
                    b"\x5a" * 16 + struct.pack("=i", index) + JUNK[4:]))
    for unknown in (0x8960, 0x89CF):  # unassigned numbers of the socket range
        out.append((f"unknown/{unknown:#x}", socket.AF_INET, unknown, name_field(a) + JUNK))
    return out


@pytest.fixture(scope="module")
def kernel_ioctls(refnet: RefNet) -> dict[str, dict[str, Any]]:
    cs = cases(refnet)
    res = refnet.probe({"ioctl": [{"family": f, "request": r, "arg": arg.hex()}
                                  for _l, f, r, arg in cs]})["ioctl"]
    return {label: r for (label, *_rest), r in zip(cs, res, strict=True)}


def test_every_ifreq_ioctl_matches_linux(refnet: RefNet,
                                         kernel_ioctls: dict[str, dict[str, Any]]) -> None:
    mismatches = []
    checked_ok = 0
    for label, family, req, arg in cases(refnet):
        theirs = kernel_ioctls[label]
        try:
            mine: dict[str, Any] = {"ok": ir.ifreq_ioctl(req, arg, refnet.interfaces,
                                                         family=family).hex()}
        except ir.IoctlError as e:
            mine = {"errno": e.errno}
        if mine != theirs:
            mismatches.append((label, mine, theirs))
        checked_ok += "ok" in theirs
    assert not mismatches, "\n".join(map(str, mismatches))
    assert checked_ok > 40  # most cases really answered


@pytest.mark.parametrize("size", [-1, 0, 39, 40, 80, 119, 200, 400])
def test_ifconf_matches_linux(refnet: RefNet, size: int) -> None:
    (theirs,) = refnet.probe({"ifconf": [size]})["ifconf"]
    length, data = ir.ifconf(refnet.interfaces, max(size, 0), buf_is_null=size < 0)
    assert length == theirs["len"]
    if size >= 0:
        # Linux writes whole entries and leaves the rest of the buffer alone.
        expected = bytes.fromhex(theirs["buf"])
        assert data == expected[:len(data)]
        assert set(expected[len(data):]) <= {0xA5}


def test_ifconf_struct_round_trip() -> None:
    raw = ir.encode_ifconf(80, 0x7FFF12345678)
    assert len(raw) == ir.IFCONF_SIZE
    assert ir.decode_ifconf(raw) == (80, 0x7FFF12345678)
