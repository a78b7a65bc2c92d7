"""TCP header view and representation (RFC 9293 3.1) with options.

Options understood: EOL/NOP (RFC 9293), MSS (RFC 9293 3.2, RFC 6691), window
scale and timestamps (RFC 7323), SACK-permitted and SACK (RFC 2018).
Unknown options are skipped (their length is honoured). A known option with
the wrong length is ignored, as Linux's ``tcp_parse_options`` does; a
structurally broken option list (length < 2, or past the header's end) is a
:class:`MalformedPacket`.

``TcpView`` wraps a buffer and only checks lengths; ``TcpRepr`` carries the
meaning (``ack`` is ``None`` without the ACK flag; ``flags`` never holds ACK)
and is emitted in Linux's option layout (``tcp_options_write``).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Final, Literal

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire.checksum import checksum, fold, partial_sum, pseudo_header_sum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Buffer = bytes | bytearray | memoryview

HEADER_LEN: Final = 20
MAX_HEADER_LEN: Final = 60
MAX_OPTIONS_LEN: Final = 40
CHECKSUM_OFFSET: Final = 16
PROTOCOL: Final = 6

OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_MSS: Final = 2
OPT_WSCALE: Final = 3
OPT_SACK_PERM: Final = 4
OPT_SACK: Final = 5
OPT_TIMESTAMP: Final = 8

_HDR = struct.Struct("!HHIIBBHHH")
_ACK_BIT: Final = 0x10


class TcpFlags(enum.IntFlag):
    """The TCP control bits (RFC 9293 3.1, RFC 3168 for ECE/CWR)."""

    NONE = 0
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


_NOP_NOP_TS: Final = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
_TS_VALUES: Final = struct.Struct("!II")
_FLAGS: Final = tuple(TcpFlags(i) for i in range(256))
"""Every flags byte as a TcpFlags, built once (enum construction is slow on the hot path)."""


class TcpView:
    """A length-checked view over a TCP header and its payload (no copy)."""

    __slots__ = ("buf",)

    def __init__(self, buf: Buffer) -> None:
        self.buf = buf if isinstance(buf, memoryview) else memoryview(buf)

    @classmethod
    def checked(cls, buf: Buffer) -> "TcpView":
        """Wrap ``buf``; raise :class:`Truncated` unless the whole header is inside it."""
        view = cls(buf)
        if len(view.buf) < HEADER_LEN:
            raise Truncated(f"tcp: need {HEADER_LEN} bytes, have {len(view.buf)}")
        hl = view.header_len
        if hl < HEADER_LEN:
            raise MalformedPacket(f"tcp: data offset {hl // 4} < 5")
        if hl > len(view.buf):
            raise Truncated(f"tcp: data offset says {hl} bytes, have {len(view.buf)}")
        return view

    @property
    def src_port(self) -> int:
        return int.from_bytes(self.buf[0:2], "big")

    @property
    def dst_port(self) -> int:
        return int.from_bytes(self.buf[2:4], "big")

    @property
    def seq(self) -> int:
        return int.from_bytes(self.buf[4:8], "big")

    @property
    def ack_number(self) -> int:
        return int.from_bytes(self.buf[8:12], "big")

    @property
    def header_len(self) -> int:
        return (self.buf[12] >> 4) * 4

    @property
    def flags(self) -> TcpFlags:
        return TcpFlags(self.buf[13])

    @property
    def window(self) -> int:
        return int.from_bytes(self.buf[14:16], "big")

    @property
    def checksum(self) -> int:
        return int.from_bytes(self.buf[16:18], "big")

    @property
    def urgent(self) -> int:
        return int.from_bytes(self.buf[18:20], "big")

    @property
    def options(self) -> memoryview:
        return self.buf[HEADER_LEN:self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len:]

    def verify_checksum(self, src: IPAddress, dst: IPAddress) -> bool:
        """True when the checksum over pseudo-header + segment is correct."""
        total = partial_sum(self.buf, pseudo_header_sum(src, dst, PROTOCOL, len(self.buf)))
        return fold(total) == 0xFFFF


@dataclass(frozen=True, slots=True)
class TcpRepr:
    """The meaning of a TCP header (payload travels separately)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int | None
    flags: TcpFlags | int = TcpFlags.NONE
    """Control bits without ACK (plain ints are accepted: the hot path avoids enum ops)."""
    window: int = 0
    urgent: int = 0
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None

    @property
    def options_len(self) -> int:
        """Bytes of options ``emit`` writes, padded to a multiple of 4."""
        n = 0
        if self.mss is not None:
            n += 4
        if self.timestamps is not None:
            n += 12  # SACK-permitted rides in the TS option's NOP NOP slot.
        elif self.sack_permitted:
            n += 4
        if self.window_scale is not None:
            n += 4
        if self.sack_blocks:
            n += 4 + 8 * len(self.sack_blocks)
        return n

    @property
    def header_len(self) -> int:
        return HEADER_LEN + self.options_len

    @classmethod
    def parse(cls, view: TcpView, *, src: IPAddress | None = None, dst: IPAddress | None = None,
              verify_checksum: bool = True) -> "TcpRepr":
        """Decode ``view``; raise :class:`MalformedPacket` on a bad checksum or option list."""
        if verify_checksum:
            if src is None or dst is None:
                raise ValueError("checksum verification needs src and dst")
            if not view.verify_checksum(src, dst):
                raise MalformedPacket("tcp: bad checksum")
        sport, dport, seq, ackn, off, fl, win, _ck, urg = _HDR.unpack_from(view.buf, 0)
        ack = ackn if fl & _ACK_BIT else None
        flags = _FLAGS[fl & ~_ACK_BIT]
        mss = wscale = ts = None
        sack_perm = False
        blocks: tuple[tuple[int, int], ...] = ()
        hl = (off >> 4) * 4
        if hl > HEADER_LEN:
            mss, wscale, sack_perm, blocks, ts = _parse_options(view.buf[HEADER_LEN:hl])
        return cls(sport, dport, seq, ack, flags, win, urg, mss, wscale, sack_perm, blocks, ts)

    @classmethod
    def parse_segment(cls, buf: memoryview, *, src: IPAddress, dst: IPAddress,
                      verify_checksum: bool = True) -> tuple["TcpRepr", int]:
        """``parse(TcpView.checked(buf))`` in one step; returns the repr and the header length.

        The receive hot path: one unpack, and the two option layouts nearly
        every segment has (none; NOP NOP TIMESTAMP as Linux writes it) decoded
        without the general option walk. Same results and errors as the pair.
        """
        n = len(buf)
        if n < HEADER_LEN:
            raise Truncated(f"tcp: need {HEADER_LEN} bytes, have {n}")
        sport, dport, seq, ackn, off, fl, win, _ck, urg = _HDR.unpack_from(buf, 0)
        hl = (off >> 4) * 4
        if hl < HEADER_LEN:
            raise MalformedPacket(f"tcp: data offset {hl // 4} < 5")
        if hl > n:
            raise Truncated(f"tcp: data offset says {hl} bytes, have {n}")
        if verify_checksum and fold(partial_sum(buf, pseudo_header_sum(src, dst, PROTOCOL, n))) \
                != 0xFFFF:
            raise MalformedPacket("tcp: bad checksum")
        ack = ackn if fl & _ACK_BIT else None
        flags = _FLAGS[fl & ~_ACK_BIT]
        if hl == HEADER_LEN:
            return cls(sport, dport, seq, ack, flags, win, urg), hl
        if hl == 32 and buf[20:24] == _NOP_NOP_TS:
            return cls(sport, dport, seq, ack, flags, win, urg, None, None, False, (),
                       _TS_VALUES.unpack_from(buf, 24)), hl
        mss, wscale, sack_perm, blocks, ts = _parse_options(buf[HEADER_LEN:hl])
        return cls(sport, dport, seq, ack, flags, win, urg, mss, wscale, sack_perm, blocks, ts), hl

    def emit(self, buf: bytearray | memoryview, offset: int = 0, *, src: IPAddress,
             dst: IPAddress, payload: Buffer = b"", payload_len: int | None = None,
             checksum: Literal["full", "partial", "none"] = "full",
             pseudo: int | None = None) -> int:
        """Write the header and ``payload`` at ``buf[offset:]``; return the segment length.

        ``checksum='full'`` computes the checksum over pseudo-header, header and
        payload; ``'partial'`` writes only the folded pseudo-header sum for the
        NIC to complete (Linux CHECKSUM_PARTIAL); ``'none'`` leaves 0 (tests).
        ``payload_len`` instead of ``payload``: the caller already wrote that
        many payload bytes after the header (the zero-copy send path).
        ``pseudo``: ``pseudo_header_sum(src, dst, 6, 0)`` computed once by the
        caller (a connection's addresses never change; the length is added here).
        """
        hl = self.header_len
        if hl > MAX_HEADER_LEN:
            raise ValueError(f"tcp options too long: {hl - HEADER_LEN} bytes")
        total = hl + (len(payload) if payload_len is None else payload_len)
        if offset < 0 or offset + total > len(buf):
            raise ValueError("tcp emit: buffer too small")
        fl = int(self.flags) & ~_ACK_BIT
        if self.ack is not None:
            fl |= _ACK_BIT
        _HDR.pack_into(buf, offset, self.src_port, self.dst_port, self.seq & 0xFFFFFFFF,
                       (self.ack or 0) & 0xFFFFFFFF, (hl // 4) << 4, fl,
                       self.window & 0xFFFF, 0, self.urgent & 0xFFFF)
        self._emit_options(buf, offset + HEADER_LEN)
        if payload_len is None and payload:
            buf[offset + hl:offset + total] = payload
        if checksum != "none":
            ph = pseudo_header_sum(src, dst, PROTOCOL, total) if pseudo is None \
                else pseudo + total
            if checksum == "partial":
                value = fold(ph)
            else:
                value = _checksum_of(buf, offset, total, ph)
            struct.pack_into("!H", buf, offset + CHECKSUM_OFFSET, value)
        return total

    def to_bytes(self, *, src: IPAddress, dst: IPAddress, payload: Buffer = b"",
                 checksum: Literal["full", "partial", "none"] = "full") -> bytearray:
        """Header + payload as a new bytearray."""
        out = bytearray(self.header_len + len(payload))
        self.emit(out, 0, src=src, dst=dst, payload=payload, checksum=checksum)
        return out

    def _emit_options(self, buf: bytearray | memoryview, at: int) -> None:
        # Linux tcp_options_write layout: MSS, SACK_PERM+TS (or NOP NOP TS /
        # NOP NOP SACK_PERM), NOP WSCALE, NOP NOP SACK blocks.
        if self.mss is not None:
            struct.pack_into("!BBH", buf, at, OPT_MSS, 4, self.mss & 0xFFFF)
            at += 4
        if self.timestamps is not None:
            if self.sack_permitted:
                buf[at:at + 4] = bytes((OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10))
            else:
                buf[at:at + 4] = bytes((OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10))
            struct.pack_into("!II", buf, at + 4, self.timestamps[0] & 0xFFFFFFFF,
                             self.timestamps[1] & 0xFFFFFFFF)
            at += 12
        elif self.sack_permitted:
            buf[at:at + 4] = bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2))
            at += 4
        if self.window_scale is not None:
            buf[at:at + 4] = bytes((OPT_NOP, OPT_WSCALE, 3, self.window_scale & 0xFF))
            at += 4
        if self.sack_blocks:
            n = len(self.sack_blocks)
            buf[at:at + 4] = bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * n))
            at += 4
            for left, right in self.sack_blocks:
                struct.pack_into("!II", buf, at, left & 0xFFFFFFFF, right & 0xFFFFFFFF)
                at += 8


def _checksum_of(buf: bytearray | memoryview, offset: int, length: int, pseudo: int) -> int:
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    return checksum(mv[offset:offset + length], pseudo)


def _parse_options(opts: memoryview) -> tuple[int | None, int | None, bool,
                                               tuple[tuple[int, int], ...],
                                               tuple[int, int] | None]:
    mss = wscale = ts = None
    sack_perm = False
    blocks: tuple[tuple[int, int], ...] = ()
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise MalformedPacket(f"tcp: option {kind} without a length")
        length = opts[i + 1]
        if length < 2 or i + length > n:
            raise MalformedPacket(f"tcp: option {kind} has bad length {length}")
        # Known options with a wrong length are ignored (Linux tcp_parse_options).
        if kind == OPT_MSS and length == 4:
            mss = (opts[i + 2] << 8) | opts[i + 3]
        elif kind == OPT_WSCALE and length == 3:
            wscale = opts[i + 2]
        elif kind == OPT_SACK_PERM and length == 2:
            sack_perm = True
        elif kind == OPT_TIMESTAMP and length == 10:
            ts = struct.unpack_from("!II", opts, i + 2)
        elif kind == OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            vals = struct.unpack_from(f"!{(length - 2) // 4}I", opts, i + 2)
            blocks = tuple(zip(vals[0::2], vals[1::2]))
        i += length
    return mss, wscale, sack_perm, blocks, (ts[0], ts[1]) if ts else None
