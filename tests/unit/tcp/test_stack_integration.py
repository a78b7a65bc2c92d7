"""TcpTransport inside the real network-layer Stack, over its loopback NIC."""

from __future__ import annotations

import random

import pytest

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp.constants import AF_INET, AF_INET6

stack_mod = pytest.importorskip("netvisor.tcpip.stack")
config_mod = pytest.importorskip("netvisor.tcpip.config")


class Loop:
    def __init__(self) -> None:
        self.st = stack_mod.Stack(config_mod.StackConfig(rng=random.Random(1)))
        self.now = 0.0
        self.st.now = 0.0
        self.tcp = self.st.transports[6]

    def pump(self, until: float) -> None:
        for _ in range(100_000):
            self.st.now = self.now
            self.st.handle_timer(self.now)
            d = self.st.next_deadline()
            if d is None or d > until:
                break
            self.now = max(self.now, d)
        self.now = until
        self.st.now = until
        self.st.handle_timer(until)


@pytest.mark.parametrize("family,host", [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")])
def test_loopback_transfer_through_stack(family: int, host: str) -> None:
    lp = Loop()
    ls = lp.tcp.socket(family)
    ls.bind((host, 8080))
    ls.listen(4)
    c = lp.tcp.socket(family)
    with pytest.raises(NetError):
        c.connect((host, 8080))
    lp.pump(0.01)
    s, _ = ls.accept()
    c.connect((host, 8080))
    data = random.Random(3).randbytes(2_000_000)
    sent = 0
    got = bytearray()
    for _ in range(10_000):
        while sent < len(data):
            try:
                sent += c.send(data[sent:sent + 262144])
            except NetError:
                break
        while True:
            try:
                got += s.recv(1 << 20)
            except NetError:
                break
        if len(got) == len(data):
            break
        lp.pump(lp.now + 0.0001)
    assert bytes(got) == data
    c.close()
    lp.pump(lp.now + 0.01)
    assert s.recv(10) == b""
