"""sockopt_codec against real kernel sockets in the reference namespace."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Sequence
from typing import Any

import pytest

from netvisor.syscall import sockopt_codec as so
from tests.unit.syscall_codecs.conftest import RefNet

pytestmark = pytest.mark.namespaces

KINDS = [(f, t) for f in (socket.AF_INET, socket.AF_INET6)
         for t in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]
# Scan ranges: every optname Linux 6.18 defines at these levels lies below.
# (Scanned up to 2000 once: nothing else answers on this kernel.)
LEVELS = [(so.SOL_SOCKET, 100), (so.SOL_IP, 220), (so.SOL_IPV6, 220), (so.SOL_TCP, 60),
          (so.SOL_UDP, 110), (255, 3), (999, 3)]
BENIGN = {errno.ENOPROTOOPT, errno.EOPNOTSUPP}
# Answers that differ between Linux builds, where the table keeps one of them:
# multicast routing options on a non-raw socket are EOPNOTSUPP with
# CONFIG_IP(V6)_MROUTE and ENOPROTOOPT without; setsockopt(IPV6_ADDRFORM) is
# ENOPROTOOPT on kernels that dropped it (seen on 6.18.44).
BUILD_DEPENDENT: dict[tuple[str, int, int], set[int]] = {
    **{(op, lvl, opt): {errno.EOPNOTSUPP, errno.ENOPROTOOPT}
       for op in ("get", "set") for lvl in (so.SOL_IP, so.SOL_IPV6) for opt in range(200, 213)},
    ("set", so.SOL_IPV6, 1): {errno.ENOPROTOOPT},
}


def build_dependent(op: str, level: int, opt: int, theirs: dict[str, Any]) -> bool:
    """True when the kernel gave one of the answers Linux builds differ on."""
    return theirs.get("errno") in BUILD_DEPENDENT.get((op, level, opt), ())


def get(level: int, opt: int, buflen: int = 256) -> dict[str, Any]:
    return {"op": "get", "level": level, "opt": opt, "buflen": buflen}


def put(level: int, opt: int, value: bytes) -> dict[str, Any]:
    return {"op": "set", "level": level, "opt": opt, "value": value.hex()}


def run(ref: RefNet, jobs: Sequence[tuple[int, int, list[dict[str, Any]]]]) -> list[list[Any]]:
    res = ref.probe({"sockseq": [{"family": f, "type": t, "steps": steps}
                                 for f, t, steps in jobs]})["sockseq"]
    return res  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def scan(refnet: RefNet) -> dict[tuple[str, int, int, int, int], dict[str, Any]]:
    """getsockopt(256-byte buffer) and setsockopt(int 0) of every optname, fresh sockets."""
    jobs = []
    keys = []
    for f, t in KINDS:
        for level, top in LEVELS:
            for opt in range(top):
                for op in ("get", "set"):
                    jobs.append((f, t, [get(level, opt) if op == "get"
                                        else put(level, opt, bytes(4))]))
                    keys.append((op, f, t, level, opt))
    return {k: r[0] for k, r in zip(keys, run(refnet, jobs), strict=True)}


def test_table_predicts_every_get(scan: dict[tuple[str, int, int, int, int], dict[str, Any]]
                                  ) -> None:
    wrong: list[tuple[Any, ...]] = []
    for (op, f, t, level, opt), theirs in scan.items():
        if op != "get" or build_dependent(op, level, opt, theirs):
            continue
        try:
            spec = so.lookup(f, t, level, opt, get=True)
        except so.SockoptError as e:
            if theirs != {"errno": e.errno}:
                wrong.append(((f, t, level, opt), "mine", e.errno, theirs))
            continue
        if "ok" in theirs:
            got = len(theirs["ok"]) // 2
            if spec.size is not None and got != min(spec.size, 256):
                wrong.append(((f, t, level, opt), spec.name, spec.size, got))
        elif theirs["errno"] in BENIGN:
            wrong.append(((f, t, level, opt), spec.name, "known", theirs))
        elif spec.unconnected_errno and theirs["errno"] != spec.unconnected_errno:
            wrong.append(((f, t, level, opt), spec.name, spec.unconnected_errno, theirs))
    assert not wrong, "\n".join(map(str, wrong))


def test_table_predicts_every_set(scan: dict[tuple[str, int, int, int, int], dict[str, Any]]
                                  ) -> None:
    wrong: list[tuple[Any, ...]] = []
    for (op, f, t, level, opt), theirs in scan.items():
        if op != "set" or build_dependent(op, level, opt, theirs):
            continue
        try:
            spec = so.lookup(f, t, level, opt, get=False)
        except so.SockoptError as e:
            if theirs != {"errno": e.errno}:
                wrong.append(((f, t, level, opt), "mine", e.errno, theirs))
            continue
        if theirs.get("errno") == errno.ENOPROTOOPT:
            wrong.append(((f, t, level, opt), spec.name, "known", theirs))
    assert not wrong, "\n".join(map(str, wrong))


def test_every_int_option_reads_back_as_linux_for_short_buffers(refnet: RefNet) -> None:
    """getsockopt into 1..3 byte buffers, after setting values below and above 255."""
    cases = [  # (level, opt, value to set or None for the default)
        (so.SOL_SOCKET, 18, 70000), (so.SOL_SOCKET, 9, 1), (so.SOL_SOCKET, 36, 0x1234567),
        (so.SOL_IP, 2, 200), (so.SOL_IP, 1, 0x10), (so.SOL_IP, 51, 40000 | 50000 << 16),
        (so.SOL_IP, 10, None), (so.SOL_IPV6, 16, 200), (so.SOL_IPV6, 67, None),
        (so.SOL_TCP, 4, 7200), (so.SOL_TCP, 1, 1), (so.SOL_UDP, 103, 1400),
        (so.SOL_UDP, 1, None),
    ]
    jobs = []
    for level, opt, value in cases:
        t = socket.SOCK_DGRAM if level == so.SOL_UDP else socket.SOCK_STREAM
        steps = [] if value is None else [put(level, opt, struct.pack("=I", value))]
        steps += [get(level, opt, n) for n in (4, 1, 2, 3)]
        jobs.append((socket.AF_INET6, t, steps))
    for (level, opt, value), results in zip(cases, run(refnet, jobs), strict=True):
        results = results[0 if value is None else 1:]
        full = struct.unpack("=I", bytes.fromhex(results[0]["ok"]))[0]
        if value is not None:
            assert full == value
        for n, r in zip((1, 2, 3), results[1:], strict=True):
            assert so.encode_int_for_get(level, full, n).hex() == r["ok"], (level, opt, n)


def test_int_set_buffer_lengths_as_linux(refnet: RefNet) -> None:
    cases = [(so.SOL_SOCKET, 9), (so.SOL_IP, 2), (so.SOL_IP, 12), (so.SOL_IP, 34),
             (so.SOL_IP, 1), (so.SOL_IP, 15), (so.SOL_IP, 21), (so.SOL_IP, 33),
             (so.SOL_IP, 49), (so.SOL_IP, 50), (so.SOL_IPV6, 16), (so.SOL_TCP, 1),
             (so.SOL_UDP, 1)]
    booleans = {(so.SOL_SOCKET, 9), (so.SOL_IP, 12), (so.SOL_IP, 34), (so.SOL_TCP, 1),
                (so.SOL_UDP, 1), (so.SOL_IP, 15), (so.SOL_IP, 49)}
    # Value 1 is valid for all; 5 only where any small number is (not for the
    # 0/1-only ones like IP_MULTICAST_ALL, nor IP_UNICAST_IF's ifindex).
    payloads = [b"", b"\x01", b"\x01\x00", b"\x01\x00\x00", b"\x01\x00\x00\x00",
                b"\x01\x00\x00\x00\xff"]
    any_small = {(so.SOL_IP, 2), (so.SOL_IP, 1), (so.SOL_IP, 21), (so.SOL_IP, 33),
                 (so.SOL_IPV6, 16), (so.SOL_SOCKET, 9), (so.SOL_TCP, 1), (so.SOL_UDP, 1),
                 (so.SOL_IP, 12)}
    jobs = []
    index = []
    for level, opt in cases:
        extra = [b"\x05", b"\x05\x00\x00"] if (level, opt) in any_small else []
        for p in payloads + extra:
            # UDP for IP options: multicast ones are EINVAL on TCP whatever the length.
            t = socket.SOCK_DGRAM if level in (so.SOL_UDP, so.SOL_IP) else socket.SOCK_STREAM
            jobs.append((socket.AF_INET6, t, [put(level, opt, p), get(level, opt, 4)]))
            index.append((level, opt, p))
    for (level, opt, p), (setres, getres) in zip(index, run(refnet, jobs), strict=True):
        try:
            want = so.decode_int_for_set(level, opt, p)
        except so.SockoptError as e:
            assert setres == {"errno": e.errno}, (level, opt, p)
            continue
        if (level, opt) == (so.SOL_IP, 50):
            # IP_UNICAST_IF: an ifindex in network order (1 << 24 here): only
            # the length rule is ours to check.
            assert setres != {"errno": errno.EINVAL}, p
            continue
        assert setres == {"ok": ""}, (level, opt, p)
        got = struct.unpack("=i", bytes.fromhex(getres["ok"]))[0]
        if (level, opt) in booleans:
            assert got == int(bool(want)), (level, opt, p)
        else:
            assert got == want, (level, opt, p)


@pytest.mark.parametrize("opt", [so.SO_RCVTIMEO_OLD, so.SO_SNDTIMEO_OLD, so.SO_RCVTIMEO_NEW,
                                 so.SO_SNDTIMEO_NEW])
def test_timeouts_round_like_linux(refnet: RefNet, opt: int) -> None:
    values = [(1, 1), (0, 1), (0, 999_999), (2, 4000), (0, 3999), (0, 4001), (5, 123456),
              (0, 0), (-3, 5), (0, 1_000_000), (0, -1)]
    jobs = [(socket.AF_INET, socket.SOCK_STREAM,
             [put(so.SOL_SOCKET, opt, so.encode_timeval(s, u)), get(so.SOL_SOCKET, opt, 16)])
            for s, u in values]
    jobs.append((socket.AF_INET, socket.SOCK_STREAM,
                 [put(so.SOL_SOCKET, opt, so.encode_timeval(1, 0)[:12])]))
    results = run(refnet, jobs)
    for (s, u), (setres, getres) in zip(values, results[:-1], strict=True):
        try:
            sec, usec = so.decode_timeval(so.encode_timeval(s, u))
        except so.SockoptError as e:
            assert setres == {"errno": e.errno}, (s, u)
            continue
        assert setres == {"ok": ""}
        assert so.encode_timeval(*so.round_timeval(sec, usec)).hex() == getres["ok"], (s, u)
    with pytest.raises(so.SockoptError) as ei:
        so.decode_timeval(so.encode_timeval(1, 0)[:12])
    assert results[-1] == [{"errno": ei.value.errno}]


def test_struct_options_truncate_like_linux(refnet: RefNet) -> None:
    """encode_get for struct kinds against getsockopt with short buffers."""
    rcvtimeo = so.BY_NAME["SO_RCVTIMEO_OLD"]
    linger = so.BY_NAME["SO_LINGER"]
    ttl = so.BY_NAME["IP_TTL"]
    (res,) = run(refnet, [(socket.AF_INET, socket.SOCK_DGRAM, [
        put(1, rcvtimeo.optname, so.encode_timeval(3, 8000)),
        get(1, rcvtimeo.optname, 10), get(1, rcvtimeo.optname, 16),
        put(1, linger.optname, so.encode_linger(1, 9)), get(1, linger.optname, 3),
        put(0, ttl.optname, b"\x07"), get(0, ttl.optname, 1), get(0, ttl.optname, 4)])])
    tv = so.decode_set(rcvtimeo, so.encode_timeval(3, 8000))
    assert isinstance(tv, tuple)
    assert res[1]["ok"] == so.encode_get(rcvtimeo, so.round_timeval(*tv), 10).hex()
    assert res[2]["ok"] == so.encode_get(rcvtimeo, so.round_timeval(*tv), 16).hex()
    lg = so.decode_set(linger, so.encode_linger(1, 9))
    assert res[4]["ok"] == so.encode_get(linger, lg, 3).hex()
    value = so.decode_set(ttl, b"\x07")
    assert value == 7
    assert res[6]["ok"] == so.encode_get(ttl, value, 1).hex()
    assert res[7]["ok"] == so.encode_get(ttl, value, 4).hex()


def test_linger_and_ucred_layouts(refnet: RefNet) -> None:
    (res,) = run(refnet, [(socket.AF_INET, socket.SOCK_STREAM, [
        put(so.SOL_SOCKET, 13, so.encode_linger(1, 7)), get(so.SOL_SOCKET, 13, 8),
        get(so.SOL_SOCKET, 13, 5), put(so.SOL_SOCKET, 13, so.encode_linger(1, 7)[:4]),
        get(so.SOL_SOCKET, 17, 12)])])
    assert res[1]["ok"] == so.encode_linger(1, 7).hex()
    assert res[2]["ok"] == so.encode_truncated(so.encode_linger(1, 7), 5).hex()
    with pytest.raises(so.SockoptError) as ei:
        so.decode_linger(so.encode_linger(1, 7)[:4])
    assert res[3] == {"errno": ei.value.errno}
    pid, uid, gid = so.decode_ucred(bytes.fromhex(res[4]["ok"]))
    assert so.encode_ucred(pid, uid, gid).hex() == res[4]["ok"]
    assert pid == 0  # no peer process behind an inet socket


def test_membership_structs_are_accepted_by_linux(refnet: RefNet) -> None:
    """Joins and then drops: a wrong layout gives EINVAL/ENODEV/EADDRNOTAVAIL."""
    idx = refnet.index(refnet.a)
    here = ipaddress.IPv4Address("10.9.0.1")
    g1, g2, g3 = (ipaddress.IPv4Address(f"239.1.2.{n}") for n in (1, 2, 3))
    mreq = so.encode_ip_mreq(so.IpMreq(g1, here))
    mreqn = so.encode_ip_mreq(so.IpMreq(g2, ipaddress.IPv4Address(0), idx), mreqn=True)
    greq = so.encode_group_req(so.GroupReq(idx, (socket.AF_INET, str(g3), 0)))
    g6 = ipaddress.IPv6Address("ff15::1:2")
    mreq6 = so.encode_ipv6_mreq(g6, idx)
    greq6 = so.encode_group_req(so.GroupReq(idx, (socket.AF_INET6, "ff15::9", 0)))
    res = run(refnet, [
        (socket.AF_INET, socket.SOCK_DGRAM, [put(0, 35, mreq), put(0, 36, mreq)]),
        (socket.AF_INET, socket.SOCK_DGRAM, [put(0, 35, mreqn), put(0, 36, mreqn)]),
        (socket.AF_INET, socket.SOCK_DGRAM, [put(0, 42, greq), put(0, 45, greq)]),
        (socket.AF_INET6, socket.SOCK_DGRAM, [put(41, 20, mreq6), put(41, 21, mreq6)]),
        (socket.AF_INET6, socket.SOCK_DGRAM, [put(41, 42, greq6), put(41, 45, greq6)]),
        # Dropping what was never joined fails: the checks above can fail.
        (socket.AF_INET, socket.SOCK_DGRAM, [put(0, 36, mreq)]),
    ])
    assert res[:5] == [[{"ok": ""}, {"ok": ""}]] * 5
    assert res[5] == [{"errno": errno.EADDRNOTAVAIL}]
    assert so.decode_ip_mreq(mreqn) == so.IpMreq(g2, ipaddress.IPv4Address(0), idx)
    assert so.decode_ipv6_mreq(mreq6) == (g6, idx)
    assert so.decode_group_req(greq6).group == (socket.AF_INET6, "ff15::9", 0)
    assert len(greq) == so.GROUP_REQ_SIZE


CMSG_CASES: list[dict[str, Any]] = [
    {"family": socket.AF_INET, "controllen": 256,
     "rx_opts": [[0, 8, 1], [0, 12, 1], [0, 13, 1], [1, so.SO_TIMESTAMP_OLD, 1]],
     "tx_opts": [[0, 1, 0x28]]},
    {"family": socket.AF_INET6, "controllen": 256,
     "rx_opts": [[41, 49, 1], [41, 51, 1], [41, 66, 1], [1, so.SO_TIMESTAMPNS_OLD, 1]],
     "tx_opts": [[41, 67, 0x28]]},
    # Too small for all: truncation and MSG_CTRUNC.
    {"family": socket.AF_INET, "controllen": 40,
     "rx_opts": [[0, 8, 1], [0, 12, 1], [0, 13, 1]]},
    {"family": socket.AF_INET, "controllen": 20,
     "rx_opts": [[0, 8, 1], [0, 12, 1]]},
    {"family": socket.AF_INET, "controllen": 256, "error": True, "rx_opts": [[0, 11, 1]]},
    {"family": socket.AF_INET6, "controllen": 256, "error": True, "rx_opts": [[41, 25, 1]]},
]


@pytest.fixture(scope="module")
def cmsgs(refnet: RefNet) -> list[dict[str, Any]]:
    return refnet.probe({"cmsg": CMSG_CASES})["cmsg"]  # type: ignore[no-any-return]


def items_of(case: dict[str, Any]) -> list[so.Cmsg]:
    return [(lvl, typ, bytes.fromhex(d)) for lvl, typ, d in case["parsed"]]


@pytest.mark.parametrize("n", range(len(CMSG_CASES)))
def test_cmsg_framing_matches_linux(cmsgs: list[dict[str, Any]], n: int) -> None:
    case = CMSG_CASES[n]
    got = cmsgs[n]
    raw = bytes.fromhex(got["raw"])
    packed, truncated = so.pack_cmsgs(items_of(got), case["controllen"])
    # Linux leaves CMSG_SPACE padding untouched (the probe pre-fills 0xee); we zero it.
    assert len(packed) == len(raw)
    assert all(m == r or (r == 0xEE and m == 0) for m, r in zip(packed, raw, strict=True)), \
        (packed.hex(), raw.hex())
    assert truncated == bool(got["flags"] & so.MSG_CTRUNC)
    if not truncated:
        assert so.unpack_cmsgs(raw) == items_of(got)


def test_cmsg_payloads_decode(cmsgs: list[dict[str, Any]]) -> None:
    v4 = {(lvl, typ): d for lvl, typ, d in items_of(cmsgs[0])}
    idx, spec_dst, addr = so.decode_in_pktinfo(v4[(0, so.IP_PKTINFO)])
    assert (idx, str(spec_dst), str(addr)) == (1, "127.0.0.1", "127.0.0.1")
    assert v4[(0, so.IP_TTL)] == so.cmsg_payload_int(64)
    assert v4[(0, so.IP_TOS)] == so.cmsg_payload_tos(0x28)
    sec, usec = struct.unpack("=qq", v4[(1, so.SCM_TIMESTAMP)])
    assert v4[(1, so.SCM_TIMESTAMP)] == so.cmsg_payload_timestamp(sec, usec)
    assert 0 <= usec < 1_000_000 and sec > 1_600_000_000
    v6 = {(lvl, typ): d for lvl, typ, d in items_of(cmsgs[1])}
    addr6, idx6 = so.decode_in6_pktinfo(v6[(41, so.IPV6_PKTINFO)])
    assert (str(addr6), idx6) == ("::1", 1)
    assert v6[(41, so.IPV6_HOPLIMIT)] == so.cmsg_payload_int(64)
    assert v6[(41, so.IPV6_TCLASS)] == so.cmsg_payload_int(0x28)
    assert len(v6[(1, so.SCM_TIMESTAMPNS)]) == 16


def test_recverr_layout(cmsgs: list[dict[str, Any]]) -> None:
    ((lvl, typ, data),) = items_of(cmsgs[4])
    assert (lvl, typ) == (0, so.IP_RECVERR)
    e = so.decode_extended_err(data)
    assert (e.errno, e.origin, e.type, e.code) == (errno.ECONNREFUSED, so.SO_EE_ORIGIN_ICMP, 3, 3)
    assert so.decode_sockaddr(e.offender) == (socket.AF_INET, "127.0.0.1", 0)
    assert so.encode_extended_err(e) == data
    ((lvl, typ, data),) = items_of(cmsgs[5])
    assert (lvl, typ) == (41, so.IPV6_RECVERR)
    e = so.decode_extended_err(data)
    assert (e.errno, e.origin, e.type, e.code) == (errno.ECONNREFUSED, so.SO_EE_ORIGIN_ICMP6,
                                                   1, 4)
    assert so.decode_sockaddr(e.offender)[:2] == (socket.AF_INET6, "::1")
    assert so.encode_extended_err(e, family=socket.AF_INET6) == data


def test_unpack_rejects_bad_lengths() -> None:
    good, _ = so.pack_cmsgs([(0, 2, so.cmsg_payload_int(5))])
    assert so.unpack_cmsgs(good) == [(0, 2, so.cmsg_payload_int(5))]
    bad = struct.pack("=Qii", 8, 0, 2)
    with pytest.raises(so.SockoptError):
        so.unpack_cmsgs(bad)
    with pytest.raises(so.SockoptError):
        so.unpack_cmsgs(struct.pack("=Qii", 64, 0, 2) + bytes(8))


def test_ip_multicast_if_forms(refnet: RefNet) -> None:
    here = ipaddress.IPv4Address("10.9.0.1")
    zero = ipaddress.IPv4Address(0)
    idx = refnet.index(refnet.a)
    forms = [here.packed, so.encode_ip_mreq(so.IpMreq(ipaddress.IPv4Address("239.0.0.1"), here)),
             so.encode_ip_mreq(so.IpMreq(zero, zero, idx), mreqn=True), b"\x0a\x09", b""]
    jobs = [(socket.AF_INET, socket.SOCK_DGRAM,
             [put(0, 32, here.packed), put(0, 32, f), get(0, 32, 4)]) for f in forms]
    for f, (_first, setres, getres) in zip(forms, run(refnet, jobs), strict=True):
        if len(f) < 4:
            with pytest.raises(so.SockoptError) as ei:
                so.decode_ip_multicast_if(f)
            assert setres == {"errno": ei.value.errno}
            continue
        assert setres == {"ok": ""}, f
        assert getres["ok"] == so.decode_ip_multicast_if(f).interface.packed.hex(), f


def _i(v: int) -> bytes:
    return struct.pack("=i", v)


SEND_CASES: list[tuple[int, list[tuple[int, int, bytes]]]] = [
    (socket.AF_INET, [(0, so.IP_TTL, _i(5))]),
    (socket.AF_INET, [(0, so.IP_TTL, _i(0))]),
    (socket.AF_INET, [(0, so.IP_TTL, _i(256))]),
    (socket.AF_INET, [(0, so.IP_TTL, b"\x05")]),
    (socket.AF_INET, [(0, so.IP_TOS, b"\x10")]),
    (socket.AF_INET, [(0, so.IP_TOS, _i(0x10))]),
    (socket.AF_INET, [(0, so.IP_TOS, _i(300))]),
    (socket.AF_INET, [(0, so.IP_TOS, b"\x10\x00")]),
    (socket.AF_INET, [(0, so.IP_PKTINFO, so.encode_in_pktinfo(
        1, ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address(0)))]),
    (socket.AF_INET, [(0, so.IP_PKTINFO, bytes(8))]),
    (socket.AF_INET, [(0, 99, _i(1))]),
    (socket.AF_INET, [(41, so.IPV6_HOPLIMIT, _i(5))]),         # other level: ignored
    (socket.AF_INET, [(1, 99, _i(1))]),
    (socket.AF_INET6, [(41, so.IPV6_HOPLIMIT, _i(5))]),
    (socket.AF_INET6, [(41, so.IPV6_HOPLIMIT, _i(-1))]),
    (socket.AF_INET6, [(41, so.IPV6_HOPLIMIT, _i(-2))]),
    (socket.AF_INET6, [(41, so.IPV6_HOPLIMIT, b"\x05")]),
    (socket.AF_INET6, [(41, so.IPV6_TCLASS, _i(0x28))]),
    (socket.AF_INET6, [(41, so.IPV6_TCLASS, _i(256))]),
    (socket.AF_INET6, [(41, so.IPV6_PKTINFO, so.encode_in6_pktinfo(
        ipaddress.IPv6Address("::1"), 1))]),
    (socket.AF_INET6, [(41, so.IPV6_PKTINFO, bytes(16))]),
    (socket.AF_INET6, [(41, 99, _i(1))]),
    (socket.AF_INET6, [(0, so.IP_TTL, _i(0))]),                # other level: ignored
]


def test_send_cmsgs_checked_like_linux(refnet: RefNet) -> None:
    res = refnet.probe({"sendmsg": [
        {"family": f, "cmsgs": [[lv, t, d.hex()] for lv, t, d in cm]} for f, cm in SEND_CASES
    ]})["sendmsg"]
    for (family, cm), theirs in zip(SEND_CASES, res, strict=True):
        try:
            ctl = so.parse_send_cmsgs(family, cm)
        except so.SockoptError as e:
            assert theirs == {"errno": e.errno}, cm
            continue
        assert theirs == {"ok": ""}, (cm, ctl)
    ok = so.parse_send_cmsgs(socket.AF_INET, [(0, so.IP_TTL, _i(5)), (0, so.IP_TOS, b"\x10")])
    assert (ok.ttl, ok.tos) == (5, 0x10)
