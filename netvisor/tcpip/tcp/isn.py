"""Initial sequence numbers (RFC 6528) and timestamp offsets.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 µs
clock (RFC 6528 3) and F a keyed BLAKE2s hash. The key comes from the
stack's seeded generator, so runs are reproducible under a fixed seed.
Linux uses SipHash and a 64 ns clock; the structure is the same.
"""

from __future__ import annotations

import hashlib
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MEMO_MAX = 4096


class IsnGenerator:
    """Keyed ISN and per-connection timestamp-offset source."""

    __slots__ = ("_key", "_memo", "clock_offset", "_offset_ms")

    def __init__(self, key: bytes) -> None:
        self._key = key[:32]
        self.clock_offset = 0.0
        """Seconds from the stack's ``now`` to the host's CLOCK_MONOTONIC (see
        :meth:`set_clock_offset`)."""
        self._offset_ms = 0
        self._memo: dict[tuple[int, ...], int] = {}
        """port_offset/ts_offset by their inputs: pure functions of the key and
        the addresses, asked for every connection (a BLAKE2s each, ~1.5 us),
        and a host talks to few peers."""

    def set_clock_offset(self, seconds: float) -> None:
        """Count ISNs and TSvals on the host's monotonic clock (since boot, as
        Linux does) instead of the driver's: with one key per boot, a later
        run's values toward a peer exceed an earlier run's, which a peer's
        TIME-WAIT requires of a SYN reusing the 4-tuple (PAWS, RFC 6191)."""
        self.clock_offset = seconds
        self._offset_ms = int(seconds * 1000)

    def _memoised(self, k: tuple[int, ...], *parts: bytes) -> int:
        v = self._memo.get(k)
        if v is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()  # many peers only churn it
            v = self._memo[k] = self._hash(*parts)
        return v

    def _hash(self, *parts: bytes) -> int:
        return int.from_bytes(hashlib.blake2s(b"".join(parts), key=self._key,
                                              digest_size=4).digest(), "big")

    def isn(self, laddr: IPAddress, lport: int, raddr: IPAddress, rport: int,
            now: float) -> int:
        """RFC 6528 3: the ISN for this 4-tuple at time ``now``."""
        f = self._hash(laddr.packed, raddr.packed, lport.to_bytes(2, "big"),
                       rport.to_bytes(2, "big"))
        return (f + int((now + self.clock_offset) * 250_000)) & 0xFFFFFFFF

    def port_offset(self, laddr: IPAddress, raddr: IPAddress, rport: int) -> int:
        """RFC 6056 3.3.3 F(local, remote, secret): where the ephemeral port search starts."""
        k = (0, laddr.version, laddr._ip, raddr._ip, rport)  # type: ignore[union-attr]
        return self._memoised(k, b"port", laddr.packed, raddr.packed, rport.to_bytes(2, "big"))

    def ts_offset(self, laddr: IPAddress, raddr: IPAddress) -> int:
        """Per address pair TSval offset (Linux secure_tcp_ts_off, RFC 7323 7.1)."""
        return (self._memoised((1, laddr.version, laddr._ip, raddr._ip),  # type: ignore[union-attr]
                               b"ts", laddr.packed, raddr.packed) + self._offset_ms) & 0xFFFFFFFF
