"""NetlinkRouteSocket against the Linux kernel: same requests, compare the answers.

Both byte streams are decoded with pyroute2's message classes (an independent
decoder), and compared attribute by attribute for every attribute netvisor
emits; the framing (datagram split, flags, seq, pid, NLMSG_DONE, errors) is
compared exactly.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from netvisor.syscall import netlink as nl
from netvisor.syscall.ifdesc import NUD_PERMANENT
from tests.unit.syscall_codecs.conftest import RefNet

pytestmark = pytest.mark.namespaces

DECODERS: dict[int, Any] = {16: ifinfmsg, 20: ifaddrmsg, 24: rtmsg, 28: ndmsg}
SEQ = 4242

# Attributes whose values are counters or clocks, not configuration.
VOLATILE = {"IFLA_STATS64", "IFLA_STATS", "IFLA_CARRIER_CHANGES", "IFLA_CARRIER_UP_COUNT",
            "IFLA_CARRIER_DOWN_COUNT", "IFLA_NUM_TX_QUEUES", "IFLA_NUM_RX_QUEUES",
            "IFA_CACHEINFO", "RTA_CACHEINFO", "NDA_CACHEINFO"}


def req(mtype: int, flags: int, payload: bytes, seq: int = SEQ) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 0) + payload


def rta(t: int, v: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)


def split(gram: bytes) -> list[tuple[int, int, int, int, bytes]]:
    out = []
    off = 0
    while off < len(gram):
        ln, t, fl, seq, pid = struct.unpack_from("=IHHII", gram, off)
        assert ln >= 16 and off + ln <= len(gram)
        out.append((t, fl, seq, pid, gram[off:off + ln]))
        off += (ln + 3) & ~3
    assert off == len(gram), "message not padded to NLMSG_ALIGN"
    return out


def decode(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    t = struct.unpack_from("=H", raw, 4)[0]
    m = DECODERS[t](raw)
    m.decode()
    fields = {k: v for k, v in m.items() if k not in ("header", "attrs")}
    names = []
    attrs = {}
    for a in m["attrs"]:
        name, value = a[0], a[1]
        if name == "UNKNOWN":  # newer than pyroute2 (RTA_UID...): compare raw
            name = f"UNKNOWN_{value['header']['type']}"
            value = value["header"]["length"]
        names.append(name)
        attrs[name] = value
    return fields, attrs, names


def framing(grams: list[bytes]) -> list[list[tuple[int, int, int]]]:
    """Per datagram: (type, flags, seq) of each message."""
    return [[(t, fl, seq) for t, fl, seq, _pid, _raw in split(g)] for g in grams]


def messages(grams: list[bytes]) -> list[bytes]:
    return [raw for g in grams for t, *_rest, raw in split(g) if t in DECODERS]


def ours(ref: RefNet, request: bytes, pid: int = 777) -> list[bytes]:
    sock = nl.NetlinkRouteSocket(ref.interfaces, ref.routes, ref.neighbors, pid=pid)
    sock.handle_request(request)
    return sock.replies()


def kernel(ref: RefNet, *requests: bytes, as_nobody: bool = False) -> list[list[bytes]]:
    res = ref.probe({"netlink": [r.hex() for r in requests]}, as_nobody=as_nobody)
    return [[bytes.fromhex(g) for g in grams] for grams in res["netlink"]]


def assert_same_messages(mine: list[bytes], theirs: list[bytes], *,
                         ignore: frozenset[str] = frozenset()) -> None:
    assert len(mine) == len(theirs), (
        [decode(m)[1] for m in mine], [decode(t)[1] for t in theirs])
    for m, t in zip(mine, theirs, strict=True):
        mf, ma, morder = decode(m)
        tf, ta, _ = decode(t)
        assert struct.unpack_from("=HHI", m, 4) == struct.unpack_from("=HHI", t, 4)
        assert mf == tf, (ma, ta)
        for name in morder:
            assert name in ta, f"{name} not sent by Linux"
            if name in VOLATILE or name in ignore:
                continue
            assert ma[name] == ta[name], (name, ma[name], ta[name])
        # Fixed-size binary attributes must have the kernel's length.
        for name in SIZED:
            if name in ma:
                assert raw_attr_len(m, name) == raw_attr_len(t, name), name


# Codes of the fixed-size attributes whose lengths are compared (pyroute2
# decoded them under these names, which checks the codes).
SIZED = {"IFLA_STATS64": 23, "IFLA_STATS": 7, "IFA_CACHEINFO": 6, "RTA_CACHEINFO": 12,
         "NDA_CACHEINFO": 3}


def raw_attr_len(raw: bytes, name: str) -> int:
    """Payload length of attribute ``name`` (walked here, not with netvisor's parser)."""
    t = struct.unpack_from("=H", raw, 4)[0]
    off = 16 + {16: 16, 20: 8, 24: 12, 28: 12}[t]
    while off + 4 <= len(raw):
        length, code = struct.unpack_from("=HH", raw, off)
        if code == SIZED[name]:
            return int(length) - 4
        off += (length + 3) & ~3
    raise AssertionError(f"{name} missing")


def check_dump(ref: RefNet, request: bytes, *, ignore: frozenset[str] = frozenset(),
               keep: Any = None) -> None:
    (theirs,) = kernel(ref, request)
    pid = split(theirs[0])[0][3]
    mine = ours(ref, request, pid=pid)
    tmsgs = messages(theirs)
    if keep is not None:
        tmsgs = [t for t in tmsgs if keep(t)]
    assert_same_messages(messages(mine), tmsgs, ignore=ignore)
    # Every message from the socket carries its pid, and the request's seq.
    for g in mine:
        for t, fl, seq, p, raw in split(g):
            assert (seq, p) == (SEQ, pid)
    last = split(mine[-1])[-1]
    assert last[0] == nl.NLMSG_DONE and last[1] == nl.NLM_F_MULTI
    assert last[4][16:] == struct.pack("=i", 0)
    tlast = split(theirs[-1])
    # DONE alone in its datagram exactly when Linux does so.
    assert (len(split(mine[-1])) == 1) == (len(tlast) == 1)
    assert all(len(g) <= nl.NLMSG_GOODSIZE for g in mine)


def test_getlink_dump(refnet: RefNet) -> None:
    check_dump(refnet, req(nl.RTM_GETLINK, 0x301, bytes(16)))


def test_getlink_dump_glibc_rtgenmsg(refnet: RefNet) -> None:
    # glibc's getifaddrs sends a bare struct rtgenmsg padded to 4 bytes.
    check_dump(refnet, req(nl.RTM_GETLINK, 0x301, bytes([0, 0, 0, 0])))


def test_getaddr_dump_all_and_per_family(refnet: RefNet) -> None:
    check_dump(refnet, req(nl.RTM_GETADDR, 0x301, bytes([0, 0, 0, 0])))
    check_dump(refnet, req(nl.RTM_GETADDR, 0x301, bytes([2]) + bytes(7)))
    check_dump(refnet, req(nl.RTM_GETADDR, 0x301, bytes([10]) + bytes(7)))


def test_getroute_dumps(refnet: RefNet) -> None:
    check_dump(refnet, req(nl.RTM_GETROUTE, 0x301, bytes([2]) + bytes(11)))
    check_dump(refnet, req(nl.RTM_GETROUTE, 0x301, bytes([10]) + bytes(11)))


def test_getneigh_dump(refnet: RefNet) -> None:
    # The kernel also holds NOARP multicast entries it made for MLD; the
    # description lists the configured (permanent) ones.
    def permanent(raw: bytes) -> bool:
        return bool(struct.unpack_from("=H", raw, 16 + 8)[0] == NUD_PERMANENT)

    check_dump(refnet, req(nl.RTM_GETNEIGH, 0x301, bytes(12)), keep=permanent)


def test_getlink_by_index_and_name_with_ack(refnet: RefNet) -> None:
    a = refnet.index(refnet.a)
    requests = [
        req(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK,
            struct.pack("=BxHiII", 0, 0, a, 0, 0)),
        req(nl.RTM_GETLINK, nl.NLM_F_REQUEST,
            bytes(16) + rta(nl.IFLA_IFNAME, refnet.b.encode() + b"\0")),
    ]
    for request, theirs in zip(requests, kernel(refnet, *requests), strict=True):
        pid = split(theirs[0])[0][3]
        mine = ours(refnet, request, pid=pid)
        assert framing(mine) == framing(theirs)
        assert_same_messages(messages(mine), messages(theirs))
        assert [raw for g in mine for t, *_r, raw in split(g) if t == nl.NLMSG_ERROR] == \
            [raw for g in theirs for t, *_r, raw in split(g) if t == nl.NLMSG_ERROR]


@pytest.mark.parametrize("dst", ["10.9.0.5", "10.99.0.1", "10.20.1.1", "10.9.0.1", "10.9.0.7",
                                 "127.0.0.1", "127.1.2.3", "10.9.0.255", "fd00:9::1", "::1",
                                 "fd00:9::5", "fd00:99::1"])
def test_route_get(refnet: RefNet, dst: str) -> None:
    import ipaddress

    ip = ipaddress.ip_address(dst)
    fam = 2 if ip.version == 4 else 10
    request = req(nl.RTM_GETROUTE, nl.NLM_F_REQUEST,
                  struct.pack("=BBBBBBBBI", fam, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
                  + rta(nl.RTA_DST, ip.packed))
    (theirs,) = kernel(refnet, request)
    pid = split(theirs[0])[0][3]
    mine = ours(refnet, request, pid=pid)
    assert framing(mine) == framing(theirs)
    assert_same_messages(messages(mine), messages(theirs))


def raw_errors(grams: list[bytes]) -> list[bytes]:
    return [raw for g in grams for t, *_r, raw in split(g)]


ERROR_CASES: list[tuple[str, bytes]] = [
    ("newaddr", req(nl.RTM_NEWADDR, nl.NLM_F_REQUEST | nl.NLM_F_ACK | 0x600,
                    struct.pack("=BBBBI", 2, 24, 0, 0, 1) + rta(2, bytes([10, 1, 1, 1])))),
    ("delroute", req(nl.RTM_DELROUTE, nl.NLM_F_REQUEST, bytes([2]) + bytes(11))),
    ("newlink", req(nl.RTM_NEWLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, bytes(16))),
    ("setlink", req(nl.RTM_SETLINK, nl.NLM_F_REQUEST, bytes(16))),
    ("type_above_max", req(nl.RTM_MAX + 1, nl.NLM_F_REQUEST, bytes(16))),
    ("type_far_above_max", req(300, nl.NLM_F_REQUEST | nl.NLM_F_DUMP, bytes(16))),
    ("not_a_request_ack", req(nl.RTM_GETLINK, nl.NLM_F_ACK, bytes(16))),
    ("not_a_request_noack", req(nl.RTM_GETLINK, 0, bytes(16))),
    ("noop_ack", req(nl.NLMSG_NOOP, nl.NLM_F_REQUEST | nl.NLM_F_ACK, b"")),
    ("empty_payload_ack", req(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, b"")),
    ("getlink_unknown_index", req(nl.RTM_GETLINK, nl.NLM_F_REQUEST,
                                  struct.pack("=BxHiII", 0, 0, 9999, 0, 0))),
    ("getlink_unknown_name", req(nl.RTM_GETLINK, nl.NLM_F_REQUEST,
                                 bytes(16) + rta(nl.IFLA_IFNAME, b"nvnnope\0"))),
    ("getlink_no_key", req(nl.RTM_GETLINK, nl.NLM_F_REQUEST, bytes(16))),
    ("getlink_short", req(nl.RTM_GETLINK, nl.NLM_F_REQUEST | nl.NLM_F_ACK, bytes(4))),
    ("truncated_header", req(nl.RTM_GETLINK, 0x301, bytes(16))[:12]),
    ("length_past_end", struct.pack("=IHHII", 64, nl.RTM_GETLINK, 0x301, SEQ, 0) + bytes(16)),
]


@pytest.fixture(scope="module")
def unprivileged_answers(refnet: RefNet) -> dict[str, list[bytes]]:
    """The kernel's answers to ERROR_CASES for a process without CAP_NET_ADMIN (one probe)."""
    answers = kernel(refnet, *(m for _n, m in ERROR_CASES), as_nobody=True)
    return {name: grams for (name, _m), grams in zip(ERROR_CASES, answers, strict=True)}


@pytest.mark.parametrize("name,msg", ERROR_CASES, ids=[n for n, _m in ERROR_CASES])
def test_errors_and_acks_like_unprivileged_linux(refnet: RefNet, name: str, msg: bytes,
                                                  unprivileged_answers: dict[str, list[bytes]],
                                                  ) -> None:
    """Byte-exact, against the kernel answering a process without CAP_NET_ADMIN."""
    theirs = unprivileged_answers[name]
    mine = ours(refnet, msg, pid=0)
    if theirs:
        pid = split(theirs[0])[0][3]
        mine = ours(refnet, msg, pid=pid)
    assert mine == theirs, (name, [g.hex() for g in mine], [g.hex() for g in theirs])


def test_several_requests_in_one_datagram(refnet: RefNet) -> None:
    both = req(nl.RTM_NEWADDR, nl.NLM_F_REQUEST | nl.NLM_F_ACK, bytes(8), seq=1) + \
        req(nl.RTM_GETADDR, 0x301, bytes([10]) + bytes(7), seq=2)
    (theirs,) = kernel(refnet, both, as_nobody=True)
    pid = split(theirs[0])[0][3]
    mine = ours(refnet, both, pid=pid)
    assert framing(mine) == framing(theirs)
    assert mine[0] == theirs[0]


def test_cap_ack_quotes_only_the_header(refnet: RefNet) -> None:
    sock = nl.NetlinkRouteSocket(refnet.interfaces, refnet.routes, refnet.neighbors, pid=5)
    sock.cap_ack = True
    request = req(nl.RTM_NEWROUTE, nl.NLM_F_REQUEST, bytes(12))
    sock.handle_request(request)
    (gram,) = sock.replies()
    ((t, fl, seq, pid, raw),) = split(gram)
    assert (t, fl, seq, pid) == (nl.NLMSG_ERROR, nl.NLM_F_CAPPED, SEQ, 5)
    assert raw[16:] == struct.pack("=i", -1) + request[:16]


def test_big_dump_is_split_into_goodsize_datagrams(refnet: RefNet) -> None:
    import dataclasses
    import ipaddress

    from netvisor.syscall.ifdesc import AddressInfo

    ia = next(i for i in refnet.interfaces if i.name == refnet.a)
    many = tuple(AddressInfo(ipaddress.ip_interface(f"10.50.{n // 250}.{n % 250 + 1}/16"))
                 for n in range(200))
    itfs = [dataclasses.replace(ia, addresses=many)]
    sock = nl.NetlinkRouteSocket(itfs, [], [], pid=9)
    sock.handle_request(req(nl.RTM_GETADDR, 0x301, bytes([2]) + bytes(7)))
    grams = sock.replies()
    assert len(grams) > 3
    assert all(len(g) <= nl.NLMSG_GOODSIZE for g in grams)
    got = [decode(raw)[1]["IFA_LOCAL"] for raw in messages(grams)]
    assert got == [str(a.address.ip) for a in many]


def _raw_attrs(buf: bytes) -> dict[int, bytes]:
    """Walk rtattrs here (pyroute2 cannot decode AF_INET6 IFLA_PROTINFO)."""
    out = {}
    off = 0
    while off + 4 <= len(buf):
        length, code = struct.unpack_from("=HH", buf, off)
        out[code] = buf[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def test_getlink_dump_inet6_family(refnet: RefNet) -> None:
    """`ip -6 addr` asks for links with family AF_INET6: inet6_fill_ifinfo's message."""
    request = req(nl.RTM_GETLINK, 0x301, bytes([10]) + bytes(15))
    (theirs,) = kernel(refnet, request)
    pid = split(theirs[0])[0][3]
    mine = ours(refnet, request, pid=pid)
    assert framing(mine) == framing(theirs)
    for m, t in zip(messages(mine), messages(theirs), strict=True):
        assert m[16:32] == t[16:32]  # ifinfomsg
        ma, ta = _raw_attrs(m[32:]), _raw_attrs(t[32:])
        for code in (nl.IFLA_IFNAME, nl.IFLA_ADDRESS, nl.IFLA_MTU, nl.IFLA_OPERSTATE):
            assert ma[code] == ta[code], code
        assert set(ma) <= set(ta)
        mp, tp = _raw_attrs(ma[nl.IFLA_PROTINFO]), _raw_attrs(ta[nl.IFLA_PROTINFO])
        # IF_READY as Linux; router-solicitation state bits (IF_RS_SENT...) are
        # not modelled: the stack does no SLAAC.
        assert mp[nl.IFLA_INET6_FLAGS] == struct.pack(
            "=I", struct.unpack("=I", tp[nl.IFLA_INET6_FLAGS])[0] & nl.IF_READY)
        assert mp[nl.IFLA_INET6_TOKEN] == tp[nl.IFLA_INET6_TOKEN]
        assert all(len(mp[k]) == len(tp[k]) for k in mp)
