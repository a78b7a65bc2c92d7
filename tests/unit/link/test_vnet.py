"""virtio_net_hdr <-> Frame metadata."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from netvisor.frame import GSO_NONE, GSO_TCPV4, Frame
from netvisor.link.vnet import F_DATA_VALID, F_NEEDS_CSUM, PLAIN_HDR, emit, parse_into_frame


def test_known_bytes() -> None:
    hdr = struct.pack("<BBHHHH", F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
    f = parse_into_frame(hdr, b"data")
    assert (f.csum_start, f.csum_offset, f.csum_valid, f.gso_type, f.gso_size, f.hdr_len) == \
        (34, 16, True, GSO_TCPV4, 1448, 66)
    assert emit(f) == hdr
    valid = parse_into_frame(struct.pack("<BBHHHH", F_DATA_VALID, 0, 0, 0, 0, 0), b"x")
    assert valid.csum_valid and valid.csum_start == -1
    plain = parse_into_frame(PLAIN_HDR, b"x")
    assert not plain.csum_valid and plain.gso_type == GSO_NONE
    assert emit(Frame(b"x")) == PLAIN_HDR


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from([0, 1, 3, 4, 0x81]),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_round_trip_needs_csum(start: int, offset: int, gso: int, size: int, hlen: int) -> None:
    f = Frame(b"x", csum_start=start, csum_offset=offset, gso_type=gso, gso_size=size,
              hdr_len=hlen)
    back = parse_into_frame(emit(f), b"x")
    assert (back.csum_start, back.csum_offset, back.gso_type, back.gso_size, back.hdr_len) == \
        (start, offset, gso, size, hlen)
    assert back.csum_valid
