"""Send/receive buffers against a plain bytearray model (random operations)."""

from __future__ import annotations

import random

import pytest

from netvisor.tcpip.tcp.recv_buffer import RecvBuffer
from netvisor.tcpip.tcp.send_buffer import SendBuffer


@pytest.mark.parametrize("seed", range(20))
def test_send_buffer_matches_a_bytearray_model(seed: int) -> None:
    rng = random.Random(seed)
    base = rng.randrange(1 << 40)
    buf = SendBuffer(base)
    model = bytearray()
    model_base = base
    for _ in range(300):
        op = rng.random()
        if op < 0.45:
            n = rng.choice([1, 7, 100, 1448, 16384, 20000, 65536, 262144])
            raw = rng.randbytes(n)
            kind = rng.randrange(4)
            data: bytes | bytearray | memoryview
            if kind == 0:
                data = raw
            elif kind == 1:
                data = bytearray(raw)
            elif kind == 2:
                data = memoryview(raw)
            else:
                scratch = bytearray(raw)
                data = memoryview(scratch)
            buf.append(data)
            model += raw
            if kind == 1:
                data[:] = b"\0" * n  # type: ignore[index]  # caller reuses its buffer
            elif kind == 3:
                scratch[:] = b"\0" * n
                data.release()  # type: ignore[union-attr]
        elif op < 0.7 and len(model):
            k = rng.randrange(len(model) + 1)
            assert buf.consume(model_base + k) == k
            del model[:k]
            model_base += k
        elif len(model):
            s = rng.randrange(len(model))
            e = rng.randrange(s, min(len(model), s + 70000) + 1)
            out = bytearray(b"\xee" * (e - s + 10))
            buf.copy_into(out, 5, model_base + s, model_base + e)
            assert out[5:5 + e - s] == model[s:e]
            assert out[:5] == b"\xee" * 5 and out[5 + e - s:] == b"\xee" * 5
        assert len(buf) == len(model) and buf.base == model_base
        assert buf.end == model_base + len(model)


def test_send_buffer_keeps_immutable_writes_by_reference() -> None:
    big = bytes(100_000)
    buf = SendBuffer(0)
    buf.append(big)
    assert buf._chunks[0] is big  # no copy of the application's bytes


@pytest.mark.parametrize("seed", range(10))
def test_recv_buffer_reads_match_appends(seed: int) -> None:
    rng = random.Random(seed)
    buf = RecvBuffer()
    model = bytearray()
    for _ in range(400):
        if rng.random() < 0.5:
            raw = rng.randbytes(rng.choice([1, 100, 1448, 65000]))
            frame = bytearray(raw)
            buf.append(memoryview(frame)[0:len(raw)])
            model += raw
        else:
            n = rng.choice([1, 10, 1000, 100_000, 1 << 20])
            peek = rng.random() < 0.2
            got = buf.read(n, peek)
            assert got == bytes(model[:n])
            if not peek:
                del model[:n]
        assert len(buf) == len(model)


@pytest.mark.parametrize("mode", ["full", "partial"])
@pytest.mark.parametrize("src,dst", [("10.0.0.1", "10.9.8.7"), ("fd00::1", "2001:db8::ff")])
def test_emit_with_precomputed_pseudo_header_sum(mode: str, src: str, dst: str) -> None:
    """The connection's cached pseudo-header sum gives the same checksum as computing it."""
    import ipaddress

    from netvisor.tcpip.wire.checksum import pseudo_header_sum
    from netvisor.tcpip.wire.tcp import TcpRepr

    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    rep = TcpRepr(1234, 80, 99, 1000, 0x18, 5000, timestamps=(1, 2), sack_blocks=((5, 9),))
    rng = random.Random(len(src) + len(mode))
    for n in (0, 1, 1447, 65000):
        payload = rng.randbytes(n)
        a = rep.to_bytes(src=s, dst=d, payload=payload, checksum=mode)  # type: ignore[arg-type]
        b = bytearray(len(a))
        rep.emit(b, 0, src=s, dst=d, payload=payload, checksum=mode,  # type: ignore[arg-type]
                 pseudo=pseudo_header_sum(s, d, 6, 0))
        assert a == b
