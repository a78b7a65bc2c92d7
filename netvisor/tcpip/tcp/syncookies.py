"""SYN cookies (RFC 4987 3.6), in Linux's encoding (net/ipv4/syncookies.c).

The SYN-ACK's ISN encodes a keyed hash of the 4-tuple, a 64-second counter
and an index into a small MSS table. With timestamps the low 6 bits of our
TSval carry the peer's window scale (4 bits, 0xF = none), SACK-permitted and
ECN, so a connection resumed from a cookie keeps them (Linux
``cookie_init_timestamp``); without timestamps those options are lost, as in
Linux.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MSS_TABLE_V4: Final = (536, 1300, 1440, 1460)
MSS_TABLE_V6: Final = (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)
COOKIE_BITS: Final = 24
MAX_AGE: Final = 2  # counters (Linux MAX_SYNCOOKIE_AGE)
PERIOD: Final = 64.0  # seconds per counter tick (Linux uses one minute)
TS_OPT_WSCALE_MASK: Final = 0xF
TS_OPT_SACK: Final = 1 << 4
TS_OPT_ECN: Final = 1 << 5
TSBITS: Final = 6
TSMASK: Final = (1 << TSBITS) - 1


@dataclass(frozen=True, slots=True)
class CookieOptions:
    mss: int
    wscale: int | None
    sack: bool
    ecn: bool = False


class SynCookies:
    """Encode and check SYN cookies with a key from the stack's generator."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key[:32]

    def _h(self, salt: int, saddr: IPAddress, daddr: IPAddress, sport: int, dport: int,
           count: int) -> int:
        data = (bytes((salt,)) + saddr.packed + daddr.packed + sport.to_bytes(2, "big")
                + dport.to_bytes(2, "big") + count.to_bytes(4, "big"))
        return int.from_bytes(hashlib.blake2s(data, key=self._key, digest_size=4).digest(), "big")

    @staticmethod
    def _table(addr: IPAddress) -> tuple[int, ...]:
        return MSS_TABLE_V4 if addr.version == 4 else MSS_TABLE_V6

    def make(self, saddr: IPAddress, daddr: IPAddress, sport: int, dport: int, peer_isn: int,
             peer_mss: int, now: float) -> tuple[int, int]:
        """(cookie ISN, encoded MSS) for a SYN from saddr:sport to daddr:dport."""
        table = self._table(saddr)
        idx = 0
        for i, m in enumerate(table):
            if m <= peer_mss:
                idx = i
        count = int(now / PERIOD) & 0xFFFFFFFF
        cookie = (self._h(0, saddr, daddr, sport, dport, 0) + peer_isn + (count << COOKIE_BITS)
                  + ((self._h(1, saddr, daddr, sport, dport, count) + idx)
                     & ((1 << COOKIE_BITS) - 1)))
        return cookie & 0xFFFFFFFF, table[idx]

    def check(self, saddr: IPAddress, daddr: IPAddress, sport: int, dport: int, peer_isn: int,
              cookie: int, now: float) -> int | None:
        """The MSS encoded in a returned cookie, or None when invalid or too old."""
        v = (cookie - self._h(0, saddr, daddr, sport, dport, 0) - peer_isn) & 0xFFFFFFFF
        count = int(now / PERIOD) & 0xFFFFFFFF
        then = v >> COOKIE_BITS
        if ((count - then) & 0xFF) >= MAX_AGE:
            return None
        then = (count - ((count - then) & 0xFF)) & 0xFFFFFFFF
        idx = (v - self._h(1, saddr, daddr, sport, dport, then)) & ((1 << COOKIE_BITS) - 1)
        table = self._table(saddr)
        return table[idx] if idx < len(table) else None


def encode_ts(ts_now: int, opts: CookieOptions) -> int:
    """TSval for the cookie SYN-ACK carrying the options (Linux cookie_init_timestamp)."""
    bits = opts.wscale if opts.wscale is not None else TS_OPT_WSCALE_MASK
    if opts.sack:
        bits |= TS_OPT_SACK
    if opts.ecn:
        bits |= TS_OPT_ECN
    ts = (ts_now & ~TSMASK) | bits
    if ((ts - ts_now) & 0xFFFFFFFF) < (1 << 31) and ts != ts_now:
        ts -= TSMASK + 1
    return ts & 0xFFFFFFFF


def decode_ts(tsecr: int) -> tuple[int | None, bool, bool]:
    """(peer window scale or None, SACK permitted, ECN) from the echoed TSval."""
    ws = tsecr & TS_OPT_WSCALE_MASK
    return (None if ws == TS_OPT_WSCALE_MASK else min(ws, 14), bool(tsecr & TS_OPT_SACK),
            bool(tsecr & TS_OPT_ECN))
