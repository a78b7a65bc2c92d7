"""Test tools for sans-IO TCP: a fake TransportContext and a seeded fake network.

``FakeCtx`` records what a TcpTransport outputs. ``Net`` connects several
transports through a deterministic discrete-event link that can drop,
duplicate, reorder and delay segments (seeded), and cut TSO super-segments
the way a NIC would. Time only moves when the test says so.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netvisor.tcpip.api import Route
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp import TcpConfig, TcpTransport
from netvisor.tcpip.wire.tcp import TcpFlags, TcpRepr, TcpView

IP = ipaddress.ip_address


@dataclass
class Out:
    """One segment a transport handed to ``ctx.output``."""

    src: Any
    dst: Any
    data: bytes
    gso_size: int
    checksum_offset: int
    nic_id: int = 1

    @property
    def repr(self) -> TcpRepr:
        return TcpRepr.parse(TcpView.checked(self.data), verify_checksum=False)

    @property
    def payload(self) -> bytes:
        return bytes(TcpView.checked(self.data).payload)


class FakeCtx:
    """A TransportContext for one host: one NIC, every destination on-link."""

    def __init__(self, addrs: list[str], seed: int = 1, mtu: int = 1500, gso: int = 0,
                 offload: bool = False) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.addrs = {IP(a) for a in addrs}
        self.mtu = mtu
        self.gso = gso
        self.offload = offload
        self.out: list[Out] = []
        self.woken: list[Any] = []
        self.room = True
        self.unreachable: set[Any] = set()
        self.confirmed: list[tuple[Any, Any]] = []

    def route(self, dst: Any, *, src: Any = None, bound_nic: int | None = None) -> Route:
        if dst in self.unreachable:
            raise NetError(errno.ENETUNREACH)
        if src is None:
            src = next(a for a in sorted(self.addrs, key=str) if a.version == dst.version)
        return Route(src=src, next_hop=None, nic_id=1, mtu=self.mtu, gso_max_size=self.gso,
                     checksum_offload=self.offload)

    def is_local_address(self, addr: Any) -> bool:
        return addr in self.addrs

    def output(self, route: Route, dst: Any, protocol: int, transport: Any, *,
               ttl: int | None = None, tos: int = 0, dont_fragment: bool | None = None,
               checksum_offset: int = -1, gso_size: int = 0) -> None:
        assert protocol == 6
        self.out.append(Out(route.src, dst, bytes(transport), gso_size, checksum_offset,
                            route.nic_id))

    def egress_has_room(self, nic_id: int) -> bool:
        return self.room

    def readiness_changed(self, sock: Any) -> None:
        self.woken.append(sock)

    def confirm_neighbor(self, route: Route, dst: Any) -> None:
        self.confirmed.append((route.next_hop, dst))

    def take(self) -> list[Out]:
        out, self.out = self.out, []
        return out


def tso_split(o: Out) -> list[bytes]:
    """Cut a super-segment into gso_size pieces, as a NIC's TSO would."""
    view = TcpView.checked(o.data)
    rep = TcpRepr.parse(view, verify_checksum=False)
    payload = bytes(view.payload)
    if o.gso_size <= 0 or len(payload) <= o.gso_size:
        return [rep.to_bytes(src=o.src, dst=o.dst, payload=payload)]
    pieces = []
    for off in range(0, len(payload), o.gso_size):
        chunk = payload[off:off + o.gso_size]
        last = off + o.gso_size >= len(payload)
        flags = rep.flags if last else rep.flags & ~(TcpFlags.FIN | TcpFlags.PSH)
        r = TcpRepr(rep.src_port, rep.dst_port, (rep.seq + off) & 0xFFFFFFFF, rep.ack, flags,
                    rep.window, rep.urgent, rep.mss, rep.window_scale, rep.sack_permitted,
                    rep.sack_blocks, rep.timestamps)
        pieces.append(bytes(r.to_bytes(src=o.src, dst=o.dst, payload=chunk)))
    return pieces


@dataclass
class Host:
    ctx: FakeCtx
    tcp: TcpTransport


@dataclass
class Net:
    """A seeded lossy / duplicating / reordering link between hosts."""

    seed: int = 1
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    delay: float = 0.005
    reorder_delay: float = 0.010
    split_tso: bool = True
    hosts: dict[Any, Host] = field(default_factory=dict)
    now: float = 0.0
    delivered: int = 0
    dropped: int = 0
    trace: list[tuple[float, Out]] = field(default_factory=list)
    keep_trace: bool = False
    drop_filter: Callable[[Out], bool] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._q: list[tuple[float, int, Any, Any, bytes, bool]] = []
        self._tick = itertools.count()

    def add(self, addr: str, config: TcpConfig | None = None, **kw: Any) -> Host:
        ctx = FakeCtx([addr], seed=self.rng.randrange(1 << 30), **kw)
        ctx.now = self.now
        h = Host(ctx, TcpTransport(ctx, config))
        self.hosts[IP(addr)] = h
        return h

    def _collect(self) -> None:
        for h in self.hosts.values():
            outs = h.ctx.take()
            # The "NIC" took the queue: TCP small queues may send again.
            h.tcp.handle_egress_room(1, self.now)
            for o in outs:
                if self.keep_trace:
                    self.trace.append((self.now, o))
                if self.drop_filter is not None and self.drop_filter(o):
                    self.dropped += 1
                    continue
                split = self.split_tso and o.gso_size
                pieces = tso_split(o) if split else [o.data]
                # A partial checksum is completed by the "NIC": deliver it as verified.
                valid = o.checksum_offset >= 0 and not split
                for p in pieces:
                    if self.loss and self.rng.random() < self.loss:
                        self.dropped += 1
                        continue
                    copies = 2 if (self.dup and self.rng.random() < self.dup) else 1
                    for _ in range(copies):
                        d = self.delay
                        if self.reorder and self.rng.random() < self.reorder:
                            d += self.reorder_delay
                        heapq.heappush(self._q, (self.now + d, next(self._tick), o.src, o.dst,
                                                 p, valid))

    def _set_now(self, t: float) -> None:
        self.now = t
        for h in self.hosts.values():
            h.ctx.now = t

    def next_event(self) -> float | None:
        times = [q[0] for q in self._q[:1]]
        for h in self.hosts.values():
            d = h.tcp.next_deadline()
            if d is not None:
                times.append(d)
        return min(times) if times else None

    def run(self, until: float, app: Callable[[], None] | None = None,
            max_events: int = 2_000_000, stop: Callable[[], bool] | None = None) -> int:
        """Process events up to time ``until`` (calls ``app`` after each); returns events run."""
        self._collect()
        n = 0
        while n < max_events:
            if stop is not None and stop():
                break
            t = self.next_event()
            if t is None or t > until:
                break
            self._set_now(max(t, self.now))
            while self._q and self._q[0][0] <= self.now:
                _, _, src, dst, data, valid = heapq.heappop(self._q)
                h = self.hosts.get(dst)
                if h is not None:
                    self.delivered += 1
                    h.tcp.handle_packet(src, dst, memoryview(data), self.now,
                                        checksum_valid=valid, nic_id=1)
            for h in self.hosts.values():
                d = h.tcp.next_deadline()
                if d is not None and d <= self.now:
                    h.tcp.handle_timer(self.now)
            if app is not None:
                app()
            self._collect()
            n += 1
        if stop is None or not stop():
            if until > self.now and (self.next_event() is None or self.next_event() > until):
                self._set_now(until)
        return n

    def flush(self) -> None:
        """Hand over anything emitted by direct socket calls."""
        self._collect()


class Raw:
    """A transport under test with the test itself playing the peer (packetimpact style)."""

    def __init__(self, config: TcpConfig | None = None, addr: str = "10.0.0.2",
                 peer: str = "10.0.0.1", seed: int = 1, **kw: Any) -> None:
        self.ctx = FakeCtx([addr], seed=seed, **kw)
        self.tcp = TcpTransport(self.ctx, config)
        self.addr = IP(addr)
        self.peer = IP(peer)
        self.peer_port = 40000
        self.peer_iss = 1000
        self.peer_ts = 500

    def advance(self, t: float) -> None:
        """Move the clock to ``t``, firing every timer due on the way at its exact time."""
        while True:
            d = self.tcp.next_deadline()
            if d is None or d > t:
                break
            self.ctx.now = d
            self.tcp.handle_timer(d)
        self.ctx.now = t

    def inject(self, rep: TcpRepr, payload: bytes = b"") -> None:
        """Deliver one segment, then run what is due now, as the driver's turn does."""
        data = rep.to_bytes(src=self.peer, dst=self.addr, payload=payload)
        self.tcp.handle_packet(self.peer, self.addr, memoryview(bytes(data)), self.ctx.now,
                               checksum_valid=False, nic_id=1)
        self.advance(self.ctx.now)

    def out(self) -> list[tuple[TcpRepr, bytes]]:
        outs = self.ctx.take()
        self.tcp.handle_egress_room(1, self.ctx.now)  # the "NIC" drained its queue
        return [(o.repr, o.payload) for o in outs]

    def seg(self, seq_off: int, flags: TcpFlags = TcpFlags.NONE, *, ack: int | None,
            window: int = 65535, ts: bool = True, port: int = 0, **kw: Any) -> TcpRepr:
        """A segment from the peer; ``seq_off`` is relative to the peer's ISN + 1."""
        self.peer_ts += 1
        return TcpRepr(self.peer_port, port or self.local_port, (self.peer_iss + 1 + seq_off)
                       & 0xFFFFFFFF, ack, flags, window, 0,
                       timestamps=(self.peer_ts, self.ts_echo) if ts and self.ts_echo is not None
                       else None, **kw)

    local_port: int = 80
    ts_echo: int | None = None

    def client(self, *, ws: int | None = 7, sack: bool = True, ts: bool = True,
               mss: int = 1460, window: int = 65535, family: int = 2,
               setup: Callable[[Any], None] | None = None) -> tuple[Any, TcpRepr]:
        """An ESTABLISHED client socket (we answered its SYN); returns (sock, its SYN)."""
        s = self.tcp.socket(family)
        if setup is not None:
            setup(s)
        try:
            s.connect((str(self.peer), self.peer_port))
        except NetError as e:
            assert e.errno == errno.EINPROGRESS
        (syn, _), = self.out()
        self.local_port = syn.src_port
        self.our_iss = syn.seq
        self.ts_echo = syn.timestamps[0] if syn.timestamps else None
        synack = TcpRepr(self.peer_port, syn.src_port, self.peer_iss, (syn.seq + 1) & 0xFFFFFFFF,
                         TcpFlags.SYN, window, 0, mss, ws, sack,
                         (), (self.peer_ts, syn.timestamps[0]) if ts and syn.timestamps else None)
        self.inject(synack)
        self.out()
        try:
            s.connect((str(self.peer), self.peer_port))
        except NetError as e:  # pragma: no cover - must succeed
            raise AssertionError(e)
        if not ts:
            self.ts_echo = None
        return s, syn

    def ack_for(self, our_off: int) -> int:
        """Wire ACK number acknowledging ``our_off`` bytes of our stream (after the SYN)."""
        return (self.our_iss + 1 + our_off) & 0xFFFFFFFF
