"""Pure helpers of the syscall plane: sockaddr codec, control messages, --publish."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest

from netvisor.syscall import sockaddr
from netvisor.syscall.supervisor import EmuSocket, RxMeta, _control_messages, _timeval
from netvisor.syscall.wiring import WiringError, parse_publish
from netvisor.tcpip.errors import NetError


def test_sockaddr_in_round_trip_matches_python() -> None:
    raw = sockaddr.encode(("10.1.2.3", 8080), socket.AF_INET)
    assert len(raw) == 16
    assert sockaddr.decode(raw, socket.AF_INET) == (socket.AF_INET, ("10.1.2.3", 8080))
    assert raw[:8] == struct.pack("<H", socket.AF_INET) + struct.pack("!H", 8080) + \
        socket.inet_aton("10.1.2.3")


def test_sockaddr_in6_with_scope_and_v4_mapped() -> None:
    raw = sockaddr.encode(("fe80::1", 53, 7, 2), socket.AF_INET6)
    assert len(raw) == 28
    assert sockaddr.decode(raw, socket.AF_INET6) == (socket.AF_INET6, ("fe80::1", 53, 7, 2))
    mapped = sockaddr.encode(("192.0.2.1", 1), socket.AF_INET6)
    assert sockaddr.decode(mapped, socket.AF_INET6)[1][0] == "::ffff:192.0.2.1"
    # The 24-byte RFC 2133 layout (no scope id) is accepted, as Linux does.
    assert sockaddr.decode(raw[:24], socket.AF_INET6)[1] == ("fe80::1", 53, 7, 0)


@pytest.mark.parametrize("raw", [b"\x02", b"\x02\x00" + bytes(10), b"\x0a\x00" + bytes(20)])
def test_short_sockaddr_is_einval(raw: bytes) -> None:
    with pytest.raises(NetError) as e:
        sockaddr.decode(raw, socket.AF_INET)
    assert e.value.errno == errno.EINVAL


def test_unspec_decodes_to_none() -> None:
    assert sockaddr.decode(bytes(16), socket.AF_INET) == (socket.AF_UNSPEC, None)


def test_timeval_option_values() -> None:
    assert _timeval(struct.pack("<qq", 1, 500000)) == 1.5
    assert _timeval(bytes(16)) is None                      # 0 = no timeout
    with pytest.raises(NetError) as e:
        _timeval(struct.pack("<qq", 1, 1_000_000))
    assert e.value.errno == errno.EDOM


def _es(*flags: str) -> EmuSocket:
    es = EmuSocket(socket.AF_INET, socket.SOCK_DGRAM, 17, None, None)  # type: ignore[arg-type]
    es.cmsg.update(flags)
    return es


def test_control_messages_layout_and_order() -> None:
    meta = RxMeta(1000.25, ipaddress.ip_address("10.0.0.2"), 3, 61)
    out = _control_messages(_es("timestamp", "pktinfo", "ttl"), meta)
    # cmsghdr {size_t len; int level; int type} + data, each padded to 8 bytes.
    length, level, ctype = struct.unpack_from("<QiI", out, 0)
    assert (length, level, ctype) == (32, socket.SOL_SOCKET, 29)
    assert struct.unpack_from("<qq", out, 16) == (1000, 250000)
    length, level, ctype = struct.unpack_from("<QiI", out, 32)
    assert (length, level, ctype) == (28, socket.IPPROTO_IP, 8)
    assert struct.unpack_from("<i4s4s", out, 48) == (3, bytes([10, 0, 0, 2]),
                                                     bytes([10, 0, 0, 2]))
    length, level, ctype = struct.unpack_from("<QiI", out, 64)
    assert (length, level, ctype, struct.unpack_from("<i", out, 80)[0]) == (20, 0, 2, 61)
    assert len(out) == 88


def test_control_messages_only_when_asked_and_known() -> None:
    assert _control_messages(_es(), RxMeta(1.0, ipaddress.ip_address("10.0.0.2"), 1, 64)) == b""
    assert _control_messages(_es("pktinfo", "ttl"), RxMeta(1.0)) == b""


@pytest.mark.parametrize("spec,expected", [
    ("8080:80", ("0.0.0.0", 8080, 80, "tcp")),
    ("127.0.0.1:5353:53/udp", ("127.0.0.1", 5353, 53, "udp")),
    ("[::1]:8443:443/TCP", ("::1", 8443, 443, "tcp")),
])
def test_parse_publish(spec: str, expected: tuple[str, int, int, str]) -> None:
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec", ["80", "a:b", "1:2/sctp", "0:80", "70000:80", "x.y:1:2"])
def test_parse_publish_rejects(spec: str) -> None:
    with pytest.raises(WiringError):
        parse_publish(spec)
