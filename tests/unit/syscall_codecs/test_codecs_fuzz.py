"""Arbitrary input to the ifreq and sockopt codecs: an answer or their own error, nothing else."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.syscall import ifreq as ir
from netvisor.syscall import sockopt_codec as so
from netvisor.syscall.ifdesc import AddressInfo, InterfaceInfo, linux_flags

ETH = InterfaceInfo(index=2, name="eth0", mac=bytes.fromhex("020000000001"), mtu=1500,
                    flags=linux_flags("ether"), kind="ether",
                    addresses=(AddressInfo(ipaddress.ip_interface("10.0.0.2/24")),))
LO = InterfaceInfo(index=1, name="lo", mac=bytes(6), mtu=65536, flags=linux_flags("loopback"),
                   kind="loopback",
                   addresses=(AddressInfo(ipaddress.ip_interface("127.0.0.1/8")),))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(ir.IFREQ_IOCTLS) + [0x8960]), st.binary(min_size=40, max_size=40),
       st.sampled_from([2, 10]))
def test_ifreq_any_bytes(request: int, data: bytes, family: int) -> None:
    try:
        out = ir.ifreq_ioctl(request, data, [LO, ETH], family=family)
    except ir.IoctlError:
        return
    assert len(out) == ir.IFREQ_SIZE
    assert out[15] == 0  # ifr_name always terminated


@settings(max_examples=200, deadline=None)
@given(st.integers(-100, 500), st.booleans())
def test_ifconf_lengths(ifc_len: int, null: bool) -> None:
    length, data = ir.ifconf([LO, ETH], ifc_len, buf_is_null=null)
    assert length % ir.IFREQ_SIZE == 0
    assert length <= max(ifc_len, 0) or null
    assert len(data) == (0 if null else length)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120))
def test_cmsg_and_struct_decoders(data: bytes) -> None:
    for fn in (so.unpack_cmsgs, so.decode_linger, so.decode_timeval, so.decode_ucred,
               so.decode_ip_mreq, so.decode_ipv6_mreq, so.decode_group_req,
               so.decode_in_pktinfo, so.decode_in6_pktinfo, so.decode_extended_err,
               so.decode_ip_multicast_if):
        try:
            fn(data)
        except so.SockoptError:
            pass


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([2, 10]),
       st.lists(st.tuples(st.sampled_from([0, 1, 41, 6]), st.integers(0, 80),
                          st.binary(max_size=24)), max_size=4))
def test_send_cmsgs_any(family: int, cmsgs: list[tuple[int, int, bytes]]) -> None:
    try:
        so.parse_send_cmsgs(family, cmsgs)
    except so.SockoptError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(list(so.OPTIONS.values())), st.binary(max_size=16),
       st.integers(-1, 300))
def test_set_then_get_any(spec: so.OptSpec, optval: bytes, optlen: int) -> None:
    try:
        value = so.decode_set(spec, optval)
    except so.SockoptError:
        return
    try:
        out = so.encode_get(spec, value, optlen)
    except so.SockoptError:
        assert optlen < 0
        return
    assert len(out) <= max(optlen, 0)
