"""The Internet checksum: C and pure Python agree; fill/verify modes; pseudo-headers."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.wire import checksum as C
from netvisor.tcpip.wire.checksum import ChecksumMode

needs_c = pytest.mark.skipif(not C.HAVE_C, reason="C checksum not built (no compiler at install)")


def _reference(data: bytes) -> int:
    """RFC 1071 word by word, end-around carry: the definition."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("data,expected", [
    (b"", 0),
    (b"\x00\x00\x00", 0),
    (b"\x00\x01\xf2\x03\xf4\xf5\xf6\xf7", 0xDDF2),   # RFC 1071 4.1 example (folded sum)
    (b"\xff\xff", 0xFFFF),
    (b"\xff\xff\x00\x01", 0x0001),
    (b"\x01", 0x0100),
])
def test_known_sums(data: bytes, expected: int) -> None:
    assert C.fold(C._partial_sum_py(data)) == expected
    assert C.fold(C.partial_sum(data)) == expected
    assert _reference(data) == expected


@needs_c
@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 7), st.randoms(use_true_random=False))
def test_c_and_python_agree(length: int, align: int, rnd: object) -> None:
    data = bytes(rnd.getrandbits(8) for _ in range(length + align))  # type: ignore[attr-defined]
    view = memoryview(data)[align:]    # odd start addresses inside the buffer
    py = C._partial_sum_py(view)
    c = C._partial_sum_c(view)
    assert C.fold(c) == C.fold(py) == _reference(bytes(view))
    assert C.fold(C._partial_sum_c(view, 12345)) == C.fold(py + 12345)


@needs_c
def test_c_and_python_agree_every_length() -> None:
    # Every length 0..2000 once, with a fixed pattern that carries a lot (0xFF runs).
    base = bytes((i * 151 + 255) & 0xFF for i in range(2008))
    for length in range(2001):
        for align in (0, 1, 3):
            view = memoryview(base)[align:align + length]
            assert C.fold(C._partial_sum_c(view)) == C.fold(C._partial_sum_py(view)), (length, align)
    ones = b"\xff" * 2001
    for length in (0, 1, 2, 7, 8, 9, 31, 32, 33, 2000, 2001):
        assert C.fold(C._partial_sum_c(ones[:length])) == C.fold(C._partial_sum_py(ones[:length]))


@needs_c
def test_c_accepts_every_buffer_type() -> None:
    data = bytes(range(256)) * 3
    expected = C.fold(C._partial_sum_py(data))
    for buf in (data, bytearray(data), memoryview(data), memoryview(bytearray(data))[0:]):
        assert C.fold(C._partial_sum_c(buf)) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_checksum_verifies(data: bytes) -> None:
    buf = bytearray(b"\x00\x00" + data)
    struct.pack_into("!H", buf, 0, C.checksum(buf))
    assert C.verify(buf)
    if any(buf):
        buf[-1] ^= 0x01
        assert not C.verify(buf)


def test_pseudo_headers() -> None:
    a4, b4 = ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2")
    assert C.fold(C.pseudo_header_sum(a4, b4, 17, 8)) == _reference(a4.packed + b4.packed +
                                                                     bytes([0, 17, 0, 8]))
    a6, b6 = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("fe80::2")
    assert C.fold(C.pseudo_header_sum(a6, b6, 58, 70000)) == _reference(
        a6.packed + b6.packed + struct.pack("!I", 70000) + bytes([0, 0, 0, 58]))


@settings(max_examples=300)
@given(st.booleans(), st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1),
       st.sampled_from([0, 1, 0xFFFF, 0xFFFE, 0xFFFFFFFF]), st.integers(0, 255),
       st.integers(0, 70000))
def test_pseudo_header_sum_is_the_sum_of_the_packed_addresses(
        v6: bool, x: int, y: int, pattern: int, proto: int, length: int) -> None:
    """Summed from the address integers: the same value as over the packed bytes
    (the all-zero and 0xFFFF-multiple cases included)."""
    cls, bits = (ipaddress.IPv6Address, 128) if v6 else (ipaddress.IPv4Address, 32)
    for a, b in ((x, y), (pattern, 0), (0, 0), (pattern, pattern)):
        src, dst = cls(a % 2**bits), cls(b % 2**bits)
        assert C.pseudo_header_sum(src, dst, proto, length) == \
            C._partial_sum_py(src.packed + dst.packed, proto + length)


def test_fill_checksum_modes() -> None:
    pseudo = 0x1234
    full = bytearray(b"\xaa\xbb\x00\x00hello")
    v = C.fill_checksum(full, 0, len(full), 2, pseudo, ChecksumMode.FULL)
    assert struct.unpack_from("!H", full, 2)[0] == v and C.verify(full, pseudo)
    part = bytearray(b"\xaa\xbb\xcc\xddhello")
    C.fill_checksum(part, 0, len(part), 2, pseudo, ChecksumMode.PARTIAL)
    assert struct.unpack_from("!H", part, 2)[0] == C.fold(pseudo)
    struct.pack_into("!H", part, 2, C.checksum(part))   # what a NIC does with NEEDS_CSUM
    assert part == full
    none = bytearray(b"\xaa\xbb\xcc\xdd")
    assert C.fill_checksum(none, 0, 4, 2, pseudo, ChecksumMode.NONE) == 0
    assert none == b"\xaa\xbb\x00\x00"
    # A computed 0 becomes 0xFFFF only when asked (UDP).
    zero = bytearray(b"\xff\xff\x00\x00")
    assert C.fill_checksum(zero, 0, 4, 2, 0, ChecksumMode.FULL) == 0
    assert C.fill_checksum(zero, 0, 4, 2, 0, ChecksumMode.FULL, zero_is_ffff=True) == 0xFFFF


def test_modes_accept_plain_strings() -> None:
    # tcp.py passes "full"/"partial"/"none"; ChecksumMode is a StrEnum.
    a = bytearray(b"\x00\x00\x00\x00ab")
    b = bytearray(a)
    C.fill_checksum(a, 0, 6, 2, 7, "partial")
    C.fill_checksum(b, 0, 6, 2, 7, ChecksumMode.PARTIAL)
    assert a == b
    with pytest.raises(ValueError):
        C.fill_checksum(a, 0, 6, 2, 7, "fast")
