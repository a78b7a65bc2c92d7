"""IP_MTU_DISCOVER / IPV6_MTU_DISCOVER on TCP sockets, as Linux: accepted with
the six modes, read back, inherited by accepted sockets, and the IPv4 DF bit
follows ip_dont_fragment() (DF for IP_PMTUDISC_DO and WANT only)."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest

from netvisor.tcpip import consts
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp.constants import AF_INET, AF_INET6
from tests.unit.tcp.harness import Raw

I32 = struct.Struct("i")
IPPROTO_IP, IPPROTO_IPV6 = 0, 41


def _get(s: Any, level: int, opt: int) -> int:
    return int(I32.unpack(s.getsockopt(level, opt, 4)[:4])[0])


def test_default_is_want_and_round_trips() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    assert _get(s, IPPROTO_IP, consts.IP_MTU_DISCOVER) == consts.IP_PMTUDISC_WANT
    for mode in range(6):   # DONT WANT DO PROBE INTERFACE OMIT
        s.setsockopt(IPPROTO_IP, consts.IP_MTU_DISCOVER, I32.pack(mode))
        assert _get(s, IPPROTO_IP, consts.IP_MTU_DISCOVER) == mode
    for bad in (-1, 6):
        with pytest.raises(NetError) as ei:
            s.setsockopt(IPPROTO_IP, consts.IP_MTU_DISCOVER, I32.pack(bad))
        assert ei.value.errno == errno.EINVAL


def test_ipv6_round_trip() -> None:
    s = Raw().tcp.socket(AF_INET6)
    assert _get(s, IPPROTO_IPV6, consts.IPV6_MTU_DISCOVER) == 1
    s.setsockopt(IPPROTO_IPV6, consts.IPV6_MTU_DISCOVER, I32.pack(3))
    assert _get(s, IPPROTO_IPV6, consts.IPV6_MTU_DISCOVER) == 3
    with pytest.raises(NetError) as ei:
        s.setsockopt(IPPROTO_IPV6, consts.IPV6_MTU_DISCOVER, I32.pack(9))
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("mode,df", [(0, False), (1, True), (2, True), (3, False),
                                     (4, False), (5, False)])
def test_df_follows_the_mode(mode: int, df: bool) -> None:
    raw = Raw()
    seen: list[bool | None] = []
    real = raw.ctx.output

    def output(*a: Any, dont_fragment: bool | None = None, **kw: Any) -> None:
        seen.append(dont_fragment)
        real(*a, dont_fragment=dont_fragment, **kw)
    raw.ctx.output = output  # type: ignore[method-assign]
    s, _ = raw.client(setup=lambda s: s.setsockopt(IPPROTO_IP, consts.IP_MTU_DISCOVER,
                                                    I32.pack(mode)))
    seen.clear()
    s.send(b"data")
    raw.out()
    assert seen, "nothing sent"
    # None: the stack's default (DF on unfragmented TCP: Linux WANT/DO); False: no DF.
    assert all((d is None) == df and (d is None or d is False) for d in seen)
