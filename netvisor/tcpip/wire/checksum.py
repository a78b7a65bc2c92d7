"""The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers.

``partial_sum`` returns an unfolded ones'-complement sum so that pieces
(pseudo-header, header, payload) can be added before one final ``fold``.
The pure-Python implementation sums the buffer as one big integer, which is
the fastest pure-Python way (int.from_bytes runs in C); a cffi C version
(``_checksum_c``, built at install when a compiler exists) is used when
present. Both must give identical results (tests/unit/test_checksum.py).

Checksum *policy* (verify received checksums or trust the device) lives with
the receiving layer, driven by ``Frame.csum_valid``; this module only computes.
"""

from __future__ import annotations

import ipaddress
from typing import Final

_MASK16: Final = 0xFFFF


def _partial_sum_py(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones'-complement sum of ``data`` as big-endian 16-bit words, folded to <= 32 bits."""
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\x00"
        n += 1
    if n == 0:
        return initial
    # Summing the whole buffer as one integer: the sum of its 16-bit words is
    # congruent to the integer modulo 0xFFFF (2^16 = 1 mod 0xFFFF).
    total = int.from_bytes(data, "big") % _MASK16
    # x % 0xFFFF loses the distinction between 0 and 0xFFFF; both fold the same
    # except for all-zero data, where the true sum is 0 (handled: total == 0).
    if total == 0 and any(data):
        total = _MASK16
    return initial + total


try:  # pragma: no cover - depends on the build
    from netvisor.tcpip.wire._checksum_c import lib as _lib, ffi as _ffi  # type: ignore[import-not-found]

    def _partial_sum_c(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
        return initial + int(_lib.nv_partial_sum(_ffi.from_buffer(data), len(data)))

    partial_sum = _partial_sum_c
    HAVE_C: bool = True
except ImportError:
    partial_sum = _partial_sum_py
    HAVE_C = False


def fold(total: int) -> int:
    """Fold a partial sum to 16 bits (no complement)."""
    while total >> 16:
        total = (total & _MASK16) + (total >> 16)
    return total


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit Internet checksum of ``data`` (plus an earlier partial sum)."""
    return ~fold(partial_sum(data, initial)) & _MASK16


def pseudo_header_sum(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                      dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
                      protocol: int, length: int) -> int:
    """Partial sum of the IPv4 (RFC 793 3.1) or IPv6 (RFC 8200 8.1) pseudo-header."""
    return _partial_sum_py(src.packed + dst.packed, protocol + length)
