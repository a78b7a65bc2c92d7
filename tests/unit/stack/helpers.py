"""Helpers for the sans-IO stack tests: a stack with one Ethernet NIC, scapy frames."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

from netvisor.frame import Frame
from netvisor.tcpip.config import StackConfig
from netvisor.tcpip.stack import Stack

OUR_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
OUR4 = "10.0.0.2"
PEER4 = "10.0.0.1"
OUR6 = "fd00::2"
PEER6 = "fd00::1"
PEER_LL = "fe80::2"


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def make_stack(*, dad: bool = False, mtu: int = 1500, seed: int = 1, v6: bool = True,
               **cfg: Any) -> tuple[Stack, int]:
    """A stack with NIC ``eth0`` (10.0.0.2/24, fd00::2/64) at t=0, DAD off unless asked."""
    cfg.setdefault("robustness", 1)
    config = StackConfig(rng=random.Random(seed), **cfg)
    if not dad:
        config.dad_transmits = 0
        config.router_solicitations = 0
    stack = Stack(config)
    stack.now = 0.0
    nic = stack.add_nic("eth0", mac(OUR_MAC), mtu)
    stack.add_address(nic, ipaddress.ip_interface(f"{OUR4}/24"))
    if v6:
        stack.add_address(nic, ipaddress.ip_interface(f"{OUR6}/64"))
    stack.handle_timer(0.0)  # initial MLD reports
    stack.frames_to_send(nic)
    return stack, nic


def feed(stack: Stack, nic: int, pkt: Any, now: float | None = None, **frame_kw: Any) -> None:
    """Hand a scapy packet (or raw bytes) to the stack as a received frame."""
    if now is None:
        now = stack.now
    stack.now = now
    data = bytes(pkt)
    stack.handle_frame(nic, Frame(data, **frame_kw), now)


def sent(stack: Stack, nic: int) -> list[Any]:
    """Frames the stack queued on ``nic``, parsed by scapy."""
    return [Ether(bytes(f.data)) for f in stack.frames_to_send(nic)]


def tick(stack: Stack, until: float, step: float | None = None) -> None:
    """Advance time to ``until``, running each timer at exactly its deadline."""
    for _ in range(100000):
        d = stack.next_deadline()
        if d is None or d > until:
            break
        t = max(d, stack.now)
        stack.now = t
        stack.handle_timer(t)
    stack.now = until
    stack.handle_timer(until)


def learn_peer(stack: Stack, nic: int) -> None:
    """Put the peer in the neighbour caches (as if it had ARPed / NSed us)."""
    stack.add_neighbor(nic, ipaddress.ip_address(PEER4), mac(PEER_MAC))
    stack.add_neighbor(nic, ipaddress.ip_address(PEER6), mac(PEER_MAC))
    stack.add_neighbor(nic, ipaddress.ip_address(PEER_LL), mac(PEER_MAC))
