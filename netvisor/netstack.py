"""The trio driver: the one place where the sans-IO Stack meets trio and a clock.

Usage (the syscall plane and ``netvisor host`` do this)::

    ns = NetStack(seed=1)
    ns.add_loopback()                        # lo always exists; returns its nic id (1)
    nic = ns.add_link(TapEndpoint("tap0"), name="eth0",
                      addresses=[ip_interface("10.0.0.2/24")],
                      gateway4=ip_address("10.0.0.1"))
    async with trio.open_nursery() as n:
        await n.start(ns.serve)
        sock = ns.socket(AF_INET, SOCK_DGRAM)
        sock.sendto(b"x", 0, ("10.0.0.1", 7)); ns.kick()
        await ns.wait(sock, select.POLLIN)
        data, addr = sock.recvfrom(2048)

One task (``serve``) owns the Stack. Socket operations from other tasks are
plain synchronous calls on the Stack's sockets (trio switches tasks only at
``await``, so they are atomic); after one, call ``kick()`` so the loop wakes
and flushes output in the same scheduling round. Each turn of the loop:

1. ``now = trio.current_time()`` (the only clock: trio's ``MockClock``
   drives every protocol timer in tests);
2. read at most ``MAX_FRAMES_PER_TURN`` frames from each readable endpoint
   and feed them to the stack (the bound keeps one flooding link from
   starving the others and the timers; 256 frames of 1500 bytes is ~0.4 MB,
   about one TAP read burst, and at the measured 20-40 µs per frame in
   Python a turn stays under ~10 ms, so timers and other tasks keep running);
3. run the stack's timers (and its local loopback deliveries);
4. flush each NIC's queued frames as one ``write_batch``; frames a link did
   not take stay queued (in order) and a task waits for it to be writable;
5. sleep until the stack's next deadline, an endpoint becoming writable, or
   a ``kick()`` that moved the deadline earlier. Never one await per frame.

Received frames do not wake this loop: one reader task per endpoint waits
for readability and runs the same turn itself (one task switch per batch
instead of two), and ``kick()`` writes a socket call's output at once from
the caller's task. Both are safe because trio runs one task at a time and
a turn never awaits.

Readiness: the Stack calls ``readiness_changed(sock)``; waiters of that
socket wake and re-check ``sock.poll()`` in :meth:`NetStack.wait`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import random
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from netvisor.frame import Frame
from netvisor.tcpip.api import Socket
from netvisor.tcpip.config import StackConfig
from netvisor.tcpip.stack import LOOPBACK_NIC, Stack

log = logging.getLogger(__name__)

MAX_FRAMES_PER_TURN: Final = 256
"""Frames read from one endpoint per loop turn (see the module docstring)."""

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

# TCP states (by name: the driver does not import TCP) in which our FIN is
# sent but not acknowledged, and the open synchronized ones.
_FIN_UNACKED: Final = frozenset({"FIN_WAIT_1", "CLOSING", "LAST_ACK"})
_SYNCHRONIZED_OPEN: Final = frozenset({"ESTABLISHED", "CLOSE_WAIT", "SYN_RECEIVED"})


@dataclass
class _Link:
    nic_id: int
    endpoint: Any
    readable: bool = True            # read once at start; then after each readiness
    pending: list[Frame] = field(default_factory=list)
    writer_waiting: bool = False
    closed: bool = False
    services: list[Any] = field(default_factory=list)
    """Endpoints in the wrapper chain with a ``serve()`` task (an egress shaper)."""
    room: list[Any] = field(default_factory=list)
    """``has_room`` of endpoints in the chain that can refuse frames (a shaper)."""
    served: bool = False


def _chain(endpoint: Any) -> list[Any]:
    """``endpoint`` and the endpoints it wraps (``.inner``), outermost first.

    Wrappers forward unknown attributes to their inner endpoint
    (``__getattr__``), so the chain is walked through instance dictionaries
    and methods are looked up on each class: ``PcapSniffer(EgressShaper(tap))``
    has one ``serve`` (the shaper's), not two.
    """
    out = []
    seen: set[int] = set()
    ep = endpoint
    while ep is not None and id(ep) not in seen:
        seen.add(id(ep))
        out.append(ep)
        ep = getattr(ep, "__dict__", {}).get("inner")
    return out


def config_from_sysctls(root: str = "/proc/sys", *, netns: str | None = None) -> StackConfig:
    """A StackConfig from the Linux sysctls of a network namespace.

    ``netvisor run --netns PATH`` takes a namespace over the way runsc does;
    its sysctls (ipfrag_time, icmp_ratelimit, accept_dad, port range,
    neighbour timers...) then keep applying to the stack:
    ``NetStack(config=config_from_sysctls(netns=PATH))``. ``/proc/sys/net``
    shows the namespace of the thread that opens it, so with ``netns`` the
    files are read from inside it. Missing or unreadable entries keep the
    Linux defaults.
    """
    cfg = StackConfig()
    texts: dict[str, str | None] = {}

    def read(path: str) -> list[int] | None:
        text = texts.get(path)
        if text is None:
            return None
        try:
            return [int(x) for x in text.split()]
        except ValueError:
            return None

    def load(paths: list[str]) -> None:
        for path in paths:
            try:
                with open(f"{root}/{path}") as f:
                    texts[path] = f.read()
            except OSError:
                texts[path] = None

    def one(path: str) -> int | None:
        v = read(path)
        return v[0] if v else None

    simple: list[tuple[str, str, float]] = [
        ("net/ipv4/ipfrag_time", "ipv4_frag_timeout", 1.0),
        ("net/ipv6/ip6frag_time", "ipv6_frag_timeout", 1.0),
        ("net/ipv4/ipfrag_high_thresh", "frag_high_thresh", 1),
        ("net/ipv4/ip_default_ttl", "default_ttl", 1),
        ("net/ipv6/conf/default/hop_limit", "default_hop_limit", 1),
        ("net/ipv4/icmp_ratelimit", "icmp_ratelimit_interval", 0.001),
        ("net/ipv4/icmp_msgs_per_sec", "icmp_msgs_per_sec", 1),
        ("net/ipv4/icmp_msgs_burst", "icmp_msgs_burst", 1),
        ("net/core/rmem_default", "udp_rcvbuf", 1),
        ("net/core/rmem_max", "rcvbuf_max", 1),
        ("net/core/wmem_default", "udp_sndbuf", 1),
        ("net/ipv4/neigh/default/base_reachable_time_ms", "base_reachable_time", 0.001),
        ("net/ipv4/neigh/default/retrans_time_ms", "retrans_timer", 0.001),
        ("net/ipv4/neigh/default/delay_first_probe_time", "delay_first_probe_time", 1.0),
        ("net/ipv4/neigh/default/mcast_solicit", "max_multicast_solicit", 1),
        ("net/ipv4/neigh/default/ucast_solicit", "max_unicast_solicit", 1),
        ("net/ipv4/neigh/default/gc_stale_time", "neigh_gc_stale_time", 1.0),
        ("net/ipv4/neigh/default/unres_qlen_bytes", "neigh_queue_bytes", 1),
        ("net/ipv6/conf/default/dad_transmits", "dad_transmits", 1),
    ]
    extra = ["net/ipv4/ip_local_port_range", "net/ipv4/icmp_echo_ignore_broadcasts",
             "net/ipv6/conf/all/accept_dad", "net/ipv6/conf/default/accept_dad",
             "net/ipv6/conf/default/router_solicitations", "net/ipv6/conf/default/accept_ra",
             "net/ipv6/conf/default/autoconf"]
    if netns is not None:
        from netvisor.link.netns import in_netns
        with in_netns(netns):
            load([p for p, _, _ in simple] + extra)
    else:
        load([p for p, _, _ in simple] + extra)
    for path, attr, scale in simple:
        v = one(path)
        if v is not None and v >= 0:
            setattr(cfg, attr, v * scale if isinstance(scale, float) else int(v * scale))
    ports = read("net/ipv4/ip_local_port_range")
    if ports and len(ports) == 2 and 0 < ports[0] <= ports[1] <= 65535:
        cfg.ephemeral_low, cfg.ephemeral_high = ports
    bcast = one("net/ipv4/icmp_echo_ignore_broadcasts")
    if bcast is not None:
        cfg.icmp_echo_ignore_broadcasts = bool(bcast)
    # DAD runs unless accept_dad < 1 both for "all" and the interface (addrconf_dad_begin).
    dad_all, dad_default = one("net/ipv6/conf/all/accept_dad"), one("net/ipv6/conf/default/accept_dad")
    if dad_all is not None and dad_default is not None and dad_all < 1 and dad_default < 1:
        cfg.dad_transmits = 0
    rs = one("net/ipv6/conf/default/router_solicitations")
    if rs is not None:
        cfg.router_solicitations = rs if rs >= 0 else 3  # -1 = unlimited; we cap at 3
    ra = one("net/ipv6/conf/default/accept_ra")
    if ra is not None:
        cfg.accept_ra = ra > 0
    auto = one("net/ipv6/conf/default/autoconf")
    if auto is not None:
        cfg.autoconf = auto > 0
    return cfg


BOOT_SECRET_PATH: Final = "/run/netvisor/tcp-secret"


def boot_secret(path: str = BOOT_SECRET_PATH) -> bytes | None:
    """The host's TCP secret for this boot (/run is emptied at boot), made by
    the first netvisor that asks; None when it cannot be kept (the stack then
    draws one per run). Complete before it is visible: written to a private
    name, then linked (the first link wins)."""
    for _ in range(2):
        try:
            with open(path, "rb") as f:
                data = f.read()
            return data if len(data) == 32 else None
        except FileNotFoundError:
            pass
        except OSError:
            return None
        tmp = f"{path}.{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, os.urandom(32))
            finally:
                os.close(fd)
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            return None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return None


class NetStack:
    """Owns a :class:`~netvisor.tcpip.stack.Stack` and its link endpoints (see module doc).

    ``seed``: seeds the stack's random generator (ports, IDs, jitter) for
    reproducible runs. ``config``: a :class:`StackConfig`; its ``rng`` is
    replaced by ``random.Random(seed)`` when ``seed`` is given or it has none.
    """

    def __init__(self, *, seed: int | None = None, config: StackConfig | None = None) -> None:
        if config is None:
            config = StackConfig()
        if seed is not None or config.rng is None:
            config.rng = random.Random(seed)
        # Unseeded (a real run): TCP counts on the host's clock with the
        # host's secret, as the kernel does (a seeded run stays reproducible).
        self._host_tcp_clock = seed is None
        if self._host_tcp_clock and config.tcp_secret is None:
            config.tcp_secret = boot_secret()
        self.stack = Stack(config)
        self.stack.on_readiness = self._on_readiness
        self._links: dict[int, _Link] = {}
        self._wake = trio.Event()
        self._waiters: dict[int, trio.Event] = {}
        self._hooks: dict[int, Callable[[], None]] = {}
        self._hooked_ready: dict[int, Callable[[], None]] = {}
        self._in_hooks = False
        self._nursery: trio.Nursery | None = None
        self._sleep_until = -math.inf  # when the loop sleeps: the time it will wake by itself
        self._sleep_scope: trio.CancelScope | None = None
        self._clock: Callable[[], float] = trio.current_time
        self.turns = 0

    # -------------------------------------------------------------- set-up

    def add_loopback(self) -> int:
        """The loopback NIC id (``lo``: 127.0.0.1/8, ::1; it always exists)."""
        return LOOPBACK_NIC

    def add_link(self, endpoint: Any, *, name: str, addresses: Sequence[IPInterface],
                 gateway4: ipaddress.IPv4Address | None = None,
                 gateway6: ipaddress.IPv6Address | None = None,
                 routes: Sequence[tuple[Any, ...]] = (), dad: bool | None = None) -> int:
        """Attach a link endpoint as NIC ``name``; returns its nic id.

        ``routes``: ``(destination, gateway_or_None[, metric])`` tuples, as
        strings or ipaddress objects. ``dad=False`` makes IPv6 addresses usable
        at once (the caller knows they are unique, e.g. a CNI-assigned address).
        """
        caps = endpoint.capabilities
        nic_id = self.stack.add_nic(
            name, endpoint.mac, endpoint.mtu,
            checksum_offload=bool(caps.checksum_offload_tx),
            rx_checksum_offload=bool(caps.checksum_offload_rx),
            gso_max_size=int(caps.gso_max_size))
        for addr in addresses:
            self.stack.add_address(nic_id, ipaddress.ip_interface(addr), dad=dad)
        if gateway4 is not None:
            self.stack.add_route("0.0.0.0/0", gateway=ipaddress.ip_address(gateway4),
                                 nic_id=nic_id, metric=0)
        if gateway6 is not None:
            self.stack.add_route("::/0", gateway=ipaddress.ip_address(gateway6),
                                 nic_id=nic_id, metric=1024)
        for r in routes:
            dst, gw = r[0], r[1]
            metric = r[2] if len(r) > 2 else None
            self.stack.add_route(str(dst), gateway=ipaddress.ip_address(gw) if gw else None,
                                 nic_id=nic_id, metric=metric)
        link = _Link(nic_id, endpoint)
        for ep in _chain(endpoint):
            if callable(getattr(type(ep), "serve", None)):
                link.services.append(ep)
            if callable(getattr(type(ep), "has_room", None)):
                link.room.append(ep.has_room)
        if link.room:
            self.stack.nics[nic_id].egress_room = lambda: self._egress_room(link)
        self._links[nic_id] = link
        if self._nursery is not None:
            self._start_link(self._nursery, link)
        self.kick()
        return nic_id

    def endpoints(self) -> dict[int, Any]:
        """nic id -> endpoint."""
        return {nic: link.endpoint for nic, link in self._links.items()}

    def endpoint_chains(self) -> dict[int, list[Any]]:
        """nic id -> the link's endpoint and every endpoint it wraps, outermost first."""
        return {nic: _chain(link.endpoint) for nic, link in self._links.items()}

    def close(self) -> None:
        """Close every endpoint (idempotent)."""
        for link in self._links.values():
            if not link.closed:
                link.closed = True
                try:
                    link.endpoint.close()
                except Exception:  # pragma: no cover - best effort
                    log.debug("endpoint close failed", exc_info=True)

    # ------------------------------------------------------------- sockets

    def socket(self, family: int, type: int, proto: int = 0) -> Socket:
        """A socket of the stack (Linux semantics, never blocks; see api.Socket)."""
        return self.stack.socket(family, type, proto)

    def kick(self) -> None:
        """Flush output queued by a socket call now, and wake the loop if it must
        recompute its sleep (a new earlier timer, or locally looped packets).

        Writing here, from the caller's task, saves a loop turn (a task switch
        and an epoll) per request/response: trio runs one task at a time, so
        the stack is never inside another call while this runs.
        """
        if self._nursery is None:
            self._wake.set()
            return
        self._flush()
        if self._in_hooks:
            return  # whoever runs the hooks checks the deadline right after them
        self._run_hooks()
        self._wake_if_earlier()

    def poll_links(self) -> None:
        """Read what the links already hold and run a turn now, in the caller's task.

        For a caller that just sent something a local peer answers inside
        the write itself: a SYN written to a TAP makes the kernel queue its
        SYN-ACK (or RST) before ``write()`` returns, so the syscall plane can
        settle a connect() in the same call instead of a reader wakeup, a
        filler and a second trapped call later. Costs one empty read per
        link otherwise. Not from inside a readiness hook.
        """
        if self._nursery is None or self._in_hooks:
            return
        for link in self._links.values():
            link.readable = True
        self._turn()
        self._run_hooks()
        self._wake_if_earlier()

    async def wait(self, sock: Socket, events: int) -> int:
        """Wait until ``sock.poll()`` has one of ``events`` (or POLLERR/POLLHUP); return them."""
        mask = events | select.POLLERR | select.POLLHUP
        ready = sock.poll() & mask
        if ready:
            # Like every trio async API, a checkpoint even when ready at once:
            # a caller's loop over an always-ready socket (EOF, pending error)
            # must not starve the stack loop and other tasks.
            await trio.lowlevel.checkpoint()
            return sock.poll() & mask or ready
        while True:
            ready = sock.poll() & mask
            if ready:
                return ready
            await self.wait_changed(sock)

    async def wait_changed(self, sock: Socket) -> None:
        """Wait for the next readiness report of ``sock`` (whatever its poll() says:
        for a waiter that an always-set bit, such as POLLERR of a non-empty
        error queue, would otherwise wake at once)."""
        key = id(sock)
        ev = self._waiters.get(key)
        if ev is None:
            ev = self._waiters[key] = trio.Event()
        await ev.wait()

    def _on_readiness(self, sock: Socket) -> None:
        key = id(sock)
        ev = self._waiters.pop(key, None)
        if ev is not None:
            ev.set()
        hook = self._hooks.get(key)
        if hook is not None and key not in self._hooked_ready:
            self._hooked_ready[key] = hook

    def set_ready_hook(self, sock: Socket, hook: Callable[[], None] | None) -> None:
        """Call ``hook()`` synchronously whenever ``sock``'s readiness may have changed.

        The hook runs after the loop turn or the :meth:`kick` that changed it
        (never inside the stack's processing, so it may call the socket and
        ``kick()``), in the task that ran it: a pump can move data without a
        task switch (the syscall plane's receive path). ``None`` removes it.
        ``wait()`` waiters are woken as before.
        """
        key = id(sock)
        if hook is None:
            self._hooks.pop(key, None)
            self._hooked_ready.pop(key, None)
        else:
            self._hooks[key] = hook

    def _run_hooks(self) -> None:
        if self._in_hooks or not self._hooked_ready:
            return
        self._in_hooks = True
        try:
            while self._hooked_ready:
                key = next(iter(self._hooked_ready))
                hook = self._hooked_ready.pop(key)
                try:
                    hook()
                except Exception:  # a pump's bug must not stop the loop
                    log.exception("readiness hook failed")
        finally:
            self._in_hooks = False

    async def wait_addresses_ready(self) -> None:
        """Return once no IPv6 address is tentative (Duplicate Address Detection done)."""
        while self.stack.tentative_addresses():
            deadline = self.stack.next_deadline()
            await trio.sleep_until(max(deadline if deadline is not None else math.inf,
                                       trio.current_time()) + 0.001)

    # ------------------------------------------------------------ draining

    def unfinished_connections(self) -> list[Any]:
        """TCP connections that still owe their peer something: unsent or
        unacknowledged data, or a FIN not yet acknowledged (FIN-WAIT-1,
        CLOSING, LAST-ACK). What ``netvisor run`` keeps the loop alive for
        after the program exits (Linux keeps orphaned sockets sending).
        """
        tcp = self.stack.transports.get(6)
        conns = getattr(tcp, "conns", None)
        if not conns:
            return []
        out = []
        for conn in list(conns.values()):
            name = conn.state.name
            if name in _FIN_UNACKED or (name in _SYNCHRONIZED_OPEN
                                        and (len(conn.sndbuf) or conn.flight > 0)):
                out.append(conn)
        return out

    def egress_idle(self) -> bool:
        """No frame waits in a link: nothing refused, nothing in a shaper's queue."""
        for link in self._links.values():
            if link.closed:
                continue
            if link.pending or self.stack.has_frames(link.nic_id):
                return False
            for ep in link.services:
                if getattr(getattr(ep, "stats", None), "queued_frames", 0):
                    return False
        return True

    def abort_connections(self) -> int:
        """Reset every synchronized TCP connection (RST to the peer); returns how many.

        For what is left when ``netvisor run`` stops: a peer must see the
        connection end rather than wait for data that will never come.
        """
        tcp = self.stack.transports.get(6)
        conns = getattr(tcp, "conns", None)
        if not conns:
            return 0
        now = self.stack.now
        n = 0
        for conn in list(conns.values()):
            if conn.state.name in _FIN_UNACKED or conn.state.name in _SYNCHRONIZED_OPEN \
                    or conn.state.name == "FIN_WAIT_2":
                conn.abort(now)
                n += 1
        self.kick()
        return n

    # ---------------------------------------------------------------- loop

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the stack loop until cancelled (see the module docstring)."""
        # The run's clock object itself (SystemClock, or a test's MockClock):
        # the same time as trio.current_time() without its per-call lookup of
        # the run context (~7 stack.now reads per request).
        self._clock = trio.lowlevel.current_clock().current_time
        self.stack.clock = self._clock
        isn_gen = getattr(self.stack.transports.get(6), "isn_gen", None)
        if self._host_tcp_clock and isn_gen is not None:
            isn_gen.set_clock_offset(time.monotonic() - self._clock())
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for link in self._links.values():
                    self._start_link(nursery, link)
                task_status.started()
                while True:
                    self._wake = trio.Event()
                    busy = self._turn()
                    self._run_hooks()
                    deadline = self.stack.next_deadline()
                    now = self._clock()
                    if busy or (deadline is not None and deadline <= now):
                        await trio.lowlevel.checkpoint()
                        continue
                    self._sleep_until = deadline if deadline is not None else math.inf
                    with trio.move_on_at(self._sleep_until) as scope:
                        self._sleep_scope = scope
                        await self._wake.wait()
                    self._sleep_scope = None
                    self._sleep_until = -math.inf
        finally:
            self._nursery = None
            self.stack.clock = None

    def _turn(self, frames_only: bool = False) -> bool | None:
        """One turn; True when an endpoint still had frames (loop again at once).

        ``frames_only`` (a reader's turn): when no link had a frame, nothing
        else is done and None is returned. A reader can wake for frames
        already taken (``poll_links``); the timers are the main loop's.
        """
        self.turns += 1
        stack = self.stack
        now = self._clock()
        busy = False
        got = 0
        for link in list(self._links.values()):
            if not link.readable or link.closed:
                continue
            try:
                frames = link.endpoint.read_batch(MAX_FRAMES_PER_TURN)
            except OSError as exc:
                log.warning("read from NIC %d failed: %s", link.nic_id, exc)
                frames = []
            for frame in frames:
                stack.handle_frame(link.nic_id, frame, now)
            got += len(frames)
            if len(frames) >= MAX_FRAMES_PER_TURN:
                busy = True
            else:
                link.readable = False
        if frames_only and not got:
            return None
        stack.handle_timer(now)
        self._flush()
        return busy

    def _start_link(self, nursery: trio.Nursery, link: _Link) -> None:
        """Start ``link``'s reader and the ``serve()`` of every wrapper that has one.

        An egress shaper sends its queued frames from its own ``serve()``
        (when their tokens arrive); without it frames would leave only when
        another write happened to pump them (BUGS-H9 B4).
        """
        nursery.start_soon(self._reader, link)
        if not link.served:
            link.served = True
            for ep in link.services:
                nursery.start_soon(ep.serve)

    def _egress_room(self, link: _Link) -> bool:
        """Stack.egress_has_room for a link that can refuse frames (a shaper).

        Frames TCP queued earlier in this call are written through first, so
        the answer is the shaper's real queue state (``has_room()``), not the
        stack's own transmit queue, which only fills once the link refuses.
        """
        if link.closed:
            return True
        if not link.pending and self._nursery is not None and self.stack.has_frames(link.nic_id):
            self._flush_link(link)
        if link.pending:
            return False
        return all(has_room() for has_room in link.room)

    def _flush(self) -> None:
        for link in self._links.values():
            if not link.closed:
                self._flush_link(link)

    def _flush_link(self, link: _Link) -> None:
        if not link.pending and not self.stack.has_frames(link.nic_id):
            # Nothing queued (2 of the 3 flushes of a request/response): the
            # stack's drain notice (TSQ) has nothing to report either.
            return
        ep = link.endpoint
        try:
            if link.pending:
                n = ep.write_batch(link.pending)
                del link.pending[:n]
            if not link.pending:
                frames = self.stack.frames_to_send(link.nic_id)
                if frames:
                    n = ep.write_batch(frames)
                    if n < len(frames):
                        link.pending = list(frames[n:])
        except OSError as exc:
            # A link that fails hard (device gone) loses this batch, not the loop.
            log.warning("write to NIC %d failed: %s", link.nic_id, exc)
            link.pending.clear()
        if link.pending and not link.writer_waiting and self._nursery is not None:
            link.writer_waiting = True
            self._nursery.start_soon(self._writer, link)

    async def _reader(self, link: _Link) -> None:
        """Wait for ``link`` to be readable, then run the turn right here.

        Running the turn in the task that saw readiness (rather than waking the
        main loop) saves a task switch per received batch; it is safe because
        trio runs one task at a time and ``_turn`` never awaits.
        """
        while not link.closed:
            if not link.readable:
                try:
                    await link.endpoint.wait_readable()
                except (OSError, trio.ClosedResourceError):
                    return
                link.readable = True
            busy = self._turn(frames_only=True)
            if busy is None:
                continue   # woken for frames a poll_links() took: nothing changed
            self._run_hooks()
            self._wake_if_earlier()
            if busy:
                await trio.lowlevel.checkpoint()  # let others run between full batches

    def _wake_if_earlier(self) -> None:
        """Make the sleeping main loop wake by the stack's (earlier) next deadline.

        Moving its cancel scope's deadline costs no task switch; waking it to
        recompute its sleep did, once per request (every send arms an RTO).
        """
        deadline = self.stack.next_deadline()
        if deadline is not None and deadline < self._sleep_until:
            scope = self._sleep_scope
            if scope is not None:
                scope.deadline = deadline
                self._sleep_until = deadline
            else:
                self._wake.set()

    async def _writer(self, link: _Link) -> None:
        try:
            await link.endpoint.wait_writable()
        except (OSError, trio.ClosedResourceError):
            return
        finally:
            link.writer_waiting = False
        self._wake.set()
