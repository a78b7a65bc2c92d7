"""Hypothesis strategies for the wire reprs (shared by the wire tests)."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from netvisor.tcpip.wire import ipv4 as ip4
from netvisor.tcpip.wire import ipv6ext

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6)
v4 = st.builds(ipaddress.IPv4Address, u32)
v6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
v6_unicast = v6.filter(lambda a: not a.is_multicast)


def aligned_bytes(unit: int, fixed: int = 0, max_units: int = 6) -> st.SearchStrategy[bytes]:
    """Bytes whose length + ``fixed`` is a multiple of ``unit``."""
    return st.integers(0, max_units).flatmap(
        lambda k: st.binary(min_size=max(0, k * unit - fixed), max_size=max(0, k * unit - fixed))
    ).filter(lambda b: (len(b) + fixed) % unit == 0)


ipv4_options = st.lists(
    st.tuples(st.sampled_from([ip4.OPT_RR, ip4.OPT_TS, ip4.OPT_RA, 130, 25]),
              st.binary(max_size=6)),
    max_size=4,
).map(lambda opts: ip4.build_options(opts)).filter(lambda b: len(b) <= 40)

ipv6_options = st.lists(
    st.builds(ipv6ext.Ipv6Option, st.integers(2, 255), st.binary(max_size=12)),
    max_size=4,
).map(tuple)
