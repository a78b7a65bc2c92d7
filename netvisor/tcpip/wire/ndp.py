"""Neighbor Discovery for IPv6 (RFC 4861): RS, RA, NS, NA, Redirect and options.

Messages are ICMPv6 types 133..137 parsed from an :class:`Icmpv6View`
(checksum as ICMPv6). :func:`parse_ndp` applies the validity checks of
RFC 4861 6.1.1 / 6.1.2 / 7.1.1 / 7.1.2 / 8.1 that the message itself can
show (code 0, minimum length, no zero-length option, target not multicast,
no source link-layer option from the unspecified address, solicited flag
off towards multicast); the IP hop limit of 255 and the link-local source
of RA/Redirect are the caller's checks (they live in the IPv6 header).

Options: source/target link-layer address (Ethernet only: option length 1,
6 bytes), prefix information, MTU, redirected header are decoded; any other
option (RDNSS, route information, nonce, ...) and a known option of the
wrong length (link-layer other than 1, prefix other than 4, MTU other than
1) are kept raw in ``NdpOptions.unknown`` and re-emitted, so a repr
round-trips; the stack thereby ignores them, as Linux ignores a prefix
option that is too short (addrconf_prefix_rcv) rather than the whole RA. Emission order: source LL, target LL, MTU, prefixes,
redirected header, unknown (the order Linux's ndisc uses for what it sends).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire._util import ReadableBuffer, ToBytesV6, WritableBuffer, as_view, check_room
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.icmpv6 import (
    NEIGHBOR_ADVERT,
    NEIGHBOR_SOLICIT,
    REDIRECT,
    ROUTER_ADVERT,
    ROUTER_SOLICIT,
    Icmpv6View,
    checksum_ok,
    fill_checksum,
)

IPv6Address = ipaddress.IPv6Address

# Option types (RFC 4861 4.6, IANA "IPv6 Neighbor Discovery Option Formats").
OPT_SOURCE_LL: Final = 1
OPT_TARGET_LL: Final = 2
OPT_PREFIX_INFO: Final = 3
OPT_REDIRECTED_HEADER: Final = 4
OPT_MTU: Final = 5
OPT_NONCE: Final = 14          # RFC 3971
OPT_ROUTE_INFO: Final = 24     # RFC 4191
OPT_RDNSS: Final = 25          # RFC 8106
OPT_DNSSL: Final = 31          # RFC 8106

INFINITE_LIFETIME: Final = 0xFFFFFFFF

_SOLICITED_NODE_PREFIX: Final = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13]
"""ff02::1:ff00:0/104 (RFC 4291 2.7.1), as the first 13 bytes."""

# Fixed part of each message, ICMPv6 header included (RFC 4861 4.1-4.5).
_FIXED_LEN: Final = {ROUTER_SOLICIT: 8, ROUTER_ADVERT: 16, NEIGHBOR_SOLICIT: 24,
                     NEIGHBOR_ADVERT: 24, REDIRECT: 40}

_PREFIX_FLAG_L: Final = 0x80
_PREFIX_FLAG_A: Final = 0x40
_RA_FLAG_M: Final = 0x80
_RA_FLAG_O: Final = 0x40
_NA_FLAG_R: Final = 0x80
_NA_FLAG_S: Final = 0x40
_NA_FLAG_O: Final = 0x20


@dataclass(frozen=True, slots=True)
class NdpPrefixInfo:
    """Prefix Information option (RFC 4861 4.6.2). Lifetimes in seconds,
    0xFFFFFFFF = infinity. ``flags`` keeps the other 6 flag bits (e.g. RFC
    6275's R) so they round-trip."""

    prefix: IPv6Address
    prefix_len: int
    on_link: bool
    autonomous: bool
    valid_lifetime: int
    preferred_lifetime: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class NdpOption:
    """An option kept raw: ``data`` is everything after type and length."""

    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class NdpOptions:
    """The options of an ND message."""

    source_ll: bytes | None = None
    target_ll: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[NdpPrefixInfo, ...] = ()
    redirected: bytes | None = None
    """Redirected Header option: the quoted packet (RFC 4861 4.6.3), padding included."""
    unknown: tuple[NdpOption, ...] = ()

    @classmethod
    def parse(cls, data: ReadableBuffer) -> NdpOptions:
        """Decode options; ``MalformedPacket`` on a zero length (RFC 4861 4.6),
        ``Truncated`` when one runs past the end. A repeated single-valued
        option: the first wins (Linux ndisc_parse_options warns and keeps
        the first)."""
        mv = as_view(data)
        source_ll = target_ll = redirected = None
        mtu = None
        prefixes: list[NdpPrefixInfo] = []
        unknown: list[NdpOption] = []
        i, n = 0, len(mv)
        while i < n:
            if i + 2 > n:
                raise Truncated("ndp option: header past the end")
            kind, units = mv[i], mv[i + 1]
            if units == 0:
                raise MalformedPacket(f"ndp option {kind}: length 0")
            end = i + units * 8
            if end > n:
                raise Truncated(f"ndp option {kind}: {units * 8} bytes past the end")
            body = bytes(mv[i + 2:end])
            if kind in (OPT_SOURCE_LL, OPT_TARGET_LL) and units == 1:
                if kind == OPT_SOURCE_LL and source_ll is None:
                    source_ll = body[:6]
                elif kind == OPT_TARGET_LL and target_ll is None:
                    target_ll = body[:6]
            elif kind == OPT_PREFIX_INFO and units == 4:
                plen, flags, valid, preferred = struct.unpack_from("!BBII", body, 0)
                prefixes.append(NdpPrefixInfo(
                    prefix=IPv6Address(body[14:30]), prefix_len=plen,
                    on_link=bool(flags & _PREFIX_FLAG_L), autonomous=bool(flags & _PREFIX_FLAG_A),
                    valid_lifetime=valid, preferred_lifetime=preferred,
                    flags=flags & ~(_PREFIX_FLAG_L | _PREFIX_FLAG_A) & 0xFF))
            elif kind == OPT_MTU and units == 1:
                if mtu is None:
                    mtu = int(struct.unpack_from("!I", body, 2)[0])
            elif kind == OPT_REDIRECTED_HEADER:
                if redirected is None:
                    redirected = body[6:]
            else:
                unknown.append(NdpOption(kind, body))
            i = end
        return cls(source_ll=source_ll, target_ll=target_ll, mtu=mtu, prefixes=tuple(prefixes),
                   redirected=redirected, unknown=tuple(unknown))

    @property
    def buffer_len(self) -> int:
        n = 8 * ((self.source_ll is not None) + (self.target_ll is not None)
                 + (self.mtu is not None)) + 32 * len(self.prefixes)
        if self.redirected is not None:
            n += 8 + len(self.redirected) + (-len(self.redirected) % 8)
        for opt in self.unknown:
            n += 2 + len(opt.data) + (-(2 + len(opt.data)) % 8)
        return n

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        """Write the options at ``buf[offset:]``; returns their length."""
        total = self.buffer_len
        check_room(buf, offset, total, "ndp options")
        pos = offset
        for kind, mac in ((OPT_SOURCE_LL, self.source_ll), (OPT_TARGET_LL, self.target_ll)):
            if mac is not None:
                if len(mac) != 6:
                    raise ValueError("ndp link-layer address must be 6 bytes (Ethernet)")
                struct.pack_into("!BB6s", buf, pos, kind, 1, mac)
                pos += 8
        if self.mtu is not None:
            struct.pack_into("!BBHI", buf, pos, OPT_MTU, 1, 0, self.mtu)
            pos += 8
        for p in self.prefixes:
            flags = ((_PREFIX_FLAG_L if p.on_link else 0) | (_PREFIX_FLAG_A if p.autonomous else 0)
                     | p.flags)
            struct.pack_into("!BBBBIII16s", buf, pos, OPT_PREFIX_INFO, 4, p.prefix_len, flags,
                             p.valid_lifetime, p.preferred_lifetime, 0, p.prefix.packed)
            pos += 32
        if self.redirected is not None:
            length = 8 + len(self.redirected) + (-len(self.redirected) % 8)
            if length > 255 * 8:
                raise ValueError("ndp redirected header too long")
            struct.pack_into("!BB6x", buf, pos, OPT_REDIRECTED_HEADER, length // 8)
            buf[pos + 8:pos + length] = self.redirected + b"\x00" * (length - 8 - len(self.redirected))
            pos += length
        for opt in self.unknown:
            length = 2 + len(opt.data) + (-(2 + len(opt.data)) % 8)
            if length > 255 * 8:
                raise ValueError("ndp option too long")
            buf[pos] = opt.type
            buf[pos + 1] = length // 8
            buf[pos + 2:pos + length] = opt.data + b"\x00" * (length - 2 - len(opt.data))
            pos += length
        return total


def _emit_message(msg: NdpRepr, fixed: bytes, buf: WritableBuffer, offset: int,
                  src: IPv6Address, dst: IPv6Address, checksum: ChecksumMode | str) -> int:
    total = len(fixed) + msg.options.buffer_len
    check_room(buf, offset, total, "ndp")
    buf[offset:offset + len(fixed)] = fixed
    msg.options.emit(buf, offset + len(fixed))
    fill_checksum(buf, offset, total, src, dst, checksum)
    return total


@dataclass(frozen=True, slots=True)
class RouterSolicit(ToBytesV6):
    """Router Solicitation (RFC 4861 4.1)."""

    options: NdpOptions = field(default_factory=NdpOptions)

    type = ROUTER_SOLICIT

    @property
    def buffer_len(self) -> int:
        return 8 + self.options.buffer_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        """Write the whole ICMPv6 message; returns its length."""
        fixed = struct.pack("!BBHI", ROUTER_SOLICIT, 0, 0, 0)
        return _emit_message(self, fixed, buf, offset, src, dst, checksum)


@dataclass(frozen=True, slots=True)
class RouterAdvert(ToBytesV6):
    """Router Advertisement (RFC 4861 4.2). Times: lifetime in seconds,
    reachable/retrans in milliseconds, 0 = unspecified. ``flags`` keeps the
    other 6 flag bits (RFC 4191 preference, RFC 5175 ...)."""

    cur_hop_limit: int = 0
    managed: bool = False
    other: bool = False
    router_lifetime: int = 0
    reachable_time: int = 0
    retrans_timer: int = 0
    options: NdpOptions = field(default_factory=NdpOptions)
    flags: int = 0

    type = ROUTER_ADVERT

    @property
    def buffer_len(self) -> int:
        return 16 + self.options.buffer_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        flags = (_RA_FLAG_M if self.managed else 0) | (_RA_FLAG_O if self.other else 0) | self.flags
        fixed = struct.pack("!BBHBBHII", ROUTER_ADVERT, 0, 0, self.cur_hop_limit, flags,
                            self.router_lifetime, self.reachable_time, self.retrans_timer)
        return _emit_message(self, fixed, buf, offset, src, dst, checksum)


@dataclass(frozen=True, slots=True)
class NeighborSolicit(ToBytesV6):
    """Neighbor Solicitation (RFC 4861 4.3)."""

    target: IPv6Address
    options: NdpOptions = field(default_factory=NdpOptions)

    type = NEIGHBOR_SOLICIT

    @property
    def buffer_len(self) -> int:
        return 24 + self.options.buffer_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        fixed = struct.pack("!BBHI16s", NEIGHBOR_SOLICIT, 0, 0, 0, self.target.packed)
        return _emit_message(self, fixed, buf, offset, src, dst, checksum)


@dataclass(frozen=True, slots=True)
class NeighborAdvert(ToBytesV6):
    """Neighbor Advertisement (RFC 4861 4.4)."""

    target: IPv6Address
    router: bool = False
    solicited: bool = False
    override: bool = False
    options: NdpOptions = field(default_factory=NdpOptions)

    type = NEIGHBOR_ADVERT

    @property
    def buffer_len(self) -> int:
        return 24 + self.options.buffer_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        flags = ((_NA_FLAG_R if self.router else 0) | (_NA_FLAG_S if self.solicited else 0)
                 | (_NA_FLAG_O if self.override else 0))
        fixed = struct.pack("!BBHB3x16s", NEIGHBOR_ADVERT, 0, 0, flags, self.target.packed)
        return _emit_message(self, fixed, buf, offset, src, dst, checksum)


@dataclass(frozen=True, slots=True)
class Redirect(ToBytesV6):
    """Redirect (RFC 4861 4.5): ``target`` is the better first hop (or the
    destination itself when on-link), ``destination`` the redirected address."""

    target: IPv6Address
    destination: IPv6Address
    options: NdpOptions = field(default_factory=NdpOptions)

    type = REDIRECT

    @property
    def buffer_len(self) -> int:
        return 40 + self.options.buffer_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        fixed = struct.pack("!BBHI16s16s", REDIRECT, 0, 0, 0, self.target.packed,
                            self.destination.packed)
        return _emit_message(self, fixed, buf, offset, src, dst, checksum)


NdpRepr = RouterSolicit | RouterAdvert | NeighborSolicit | NeighborAdvert | Redirect
NDP_TYPES: Final = frozenset(_FIXED_LEN)


def parse_ndp(view: Icmpv6View, *, src: IPv6Address | None = None,
              dst: IPv6Address | None = None, verify_checksum: bool = True) -> NdpRepr:
    """Parse an ND message (ICMPv6 type 133..137).

    Raises ``MalformedPacket`` for another type, a bad checksum (when asked;
    needs src and dst), a non-zero code, a message shorter than its fixed
    part, a zero-length option, a multicast target in NS/NA, an NS from the
    unspecified address with a source link-layer option or not sent to a
    solicited-node group (RFC 4861 7.1.1), a solicited NA to a multicast
    destination (7.1.2), or a Redirect whose destination is multicast or
    whose target is neither link-local nor the destination (8.1). ``src``/``dst`` enable
    the address checks even when the checksum is not verified.
    """
    icmp_type = view.type
    fixed = _FIXED_LEN.get(icmp_type)
    if fixed is None:
        raise MalformedPacket(f"ndp: ICMPv6 type {icmp_type} is not ND")
    if verify_checksum:
        if src is None or dst is None:
            raise TypeError("ndp: verifying the checksum needs src and dst")
        if not checksum_ok(view.buf, src, dst):
            raise MalformedPacket("ndp: bad checksum")
    if view.code != 0:
        raise MalformedPacket(f"ndp: code {view.code}")
    b = view.buf
    if len(b) < fixed:
        raise MalformedPacket(f"ndp type {icmp_type}: {len(b)} bytes < {fixed}")
    options = NdpOptions.parse(b[fixed:])
    msg: NdpRepr
    if icmp_type == ROUTER_SOLICIT:
        if src is not None and src.is_unspecified and options.source_ll is not None:
            raise MalformedPacket("ndp RS: source link-layer option from ::")  # RFC 4861 6.1.1
        msg = RouterSolicit(options)
    elif icmp_type == ROUTER_ADVERT:
        hop, flags, lifetime, reachable, retrans = struct.unpack_from("!BBHII", b, 4)
        msg = RouterAdvert(cur_hop_limit=hop, managed=bool(flags & _RA_FLAG_M),
                           other=bool(flags & _RA_FLAG_O), router_lifetime=lifetime,
                           reachable_time=reachable, retrans_timer=retrans, options=options,
                           flags=flags & ~(_RA_FLAG_M | _RA_FLAG_O) & 0xFF)
    elif icmp_type == NEIGHBOR_SOLICIT:
        target = IPv6Address(bytes(b[8:24]))
        if target.is_multicast:
            raise MalformedPacket("ndp NS: multicast target")
        if src is not None and src.is_unspecified:
            # RFC 4861 7.1.1: DAD probes carry no SLLA and go to solicited-node groups.
            if options.source_ll is not None:
                raise MalformedPacket("ndp NS: source link-layer option from ::")
            if dst is not None and dst.packed[:13] != _SOLICITED_NODE_PREFIX:
                raise MalformedPacket("ndp NS from :: not to a solicited-node group")
        msg = NeighborSolicit(target, options)
    elif icmp_type == NEIGHBOR_ADVERT:
        flags = b[4]
        target = IPv6Address(bytes(b[8:24]))
        if target.is_multicast:
            raise MalformedPacket("ndp NA: multicast target")
        solicited = bool(flags & _NA_FLAG_S)
        if solicited and dst is not None and dst.is_multicast:
            raise MalformedPacket("ndp NA: solicited flag towards multicast")
        msg = NeighborAdvert(target, router=bool(flags & _NA_FLAG_R), solicited=solicited,
                             override=bool(flags & _NA_FLAG_O), options=options)
    else:
        target = IPv6Address(bytes(b[8:24]))
        destination = IPv6Address(bytes(b[24:40]))
        # RFC 4861 8.1: destination not multicast; target a link-local router
        # or the destination itself (on-link).
        if destination.is_multicast:
            raise MalformedPacket("ndp redirect: multicast destination")
        if not target.is_link_local and target != destination:
            raise MalformedPacket("ndp redirect: target neither link-local nor the destination")
        msg = Redirect(target, destination, options)
    return msg
