"""Egress token-bucket shaper, in the spirit of Linux sch_tbf (net/sched/sch_tbf.c).

Three parts:

- :class:`TokenBucket`, sans-IO: ``admit(size, now) -> delay``. Tokens are
  kept as an integer number of bit-nanoseconds (``rate_bits * elapsed_ns``
  accrues exactly, a frame costs ``size * 8 * 10**9``), so nothing is rounded
  and there is no drift however long it runs; the rate's resolution is
  1 bit/s. The bucket starts full (tbf: ``q->tokens = q->buffer``).
- :class:`EgressShaper`, an endpoint wrapper: frames that find tokens go out
  at once; the others wait, in order, in a bounded FIFO; one task
  (:meth:`EgressShaper.serve`) sleeps until exactly the moment the head frame's
  tokens are there (``trio.sleep_until`` semantics on the trio clock, so
  ``MockClock`` drives tests), never polls. A full queue makes
  ``write_batch`` return fewer frames than offered: that is the backpressure
  TCP sees (``has_room()``/``wait_writable()``); with ``drop_when_full`` the
  shaper takes and drops them instead, as a full qdisc does.
- Configuration: :func:`parse_rate`/:func:`parse_size` with tc's units,
  :func:`from_cni_bandwidth` for the CNI ``bandwidth`` capability.

What tbf does and we copy, or not:

- A frame larger than the burst can never collect enough tokens. tbf drops
  it (``qdisc_drop`` in ``tbf_enqueue``), and so do we (counted). tbf only
  warns at configuration when the burst is below the device MTU; we refuse
  (``ValueError`` naming ``--egress-burst``) because such a shaper would drop
  every full-size frame.
- tbf segments a GSO skb larger than its max_size (``tbf_segment``) and
  charges each MTU-sized piece, so its bucket always banks tokens for small
  packets. We do not cut frames in Python; instead we advertise a
  ``gso_max_size`` such that one GSO frame holds at most a quarter of the
  burst on the wire (segment headers counted) and about 1 ms at the rate
  (Linux ``tcp_tso_autosize`` sizes TSO frames to ~1 ms of pacing rate), and
  no GSO at all when that leaves fewer than two segments. Why it matters:
  tokens beyond the burst are discarded, so a head frame that needs nearly the
  whole bucket loses rate on every late wake-up; with frames <= burst/4 a
  wake-up may be late by 3/4 of the burst's worth of time before anything is
  lost (issue 6, BUGS-H9 N2: -14..-32% at 500 Mbit/s with 64 KiB GSO frames in a
  64 KiB bucket). A GSO frame still larger than the burst (a stack that
  ignores the advertised size) leaves when the bucket is full and drives the
  tokens negative by the difference: the same long-run rate, at most one
  frame burstier.
- Timer: trio's own timeouts reach ``epoll_wait`` in whole milliseconds
  (CPython's ``epoll.poll`` rounds the timeout *up*; measured here: a 0.1 ms
  ``trio.sleep`` takes 1.1 ms), longer than a 64 KiB bucket lasts at
  500 Mbit/s (1.05 ms). Under trio's system clock :meth:`EgressShaper.serve`
  therefore sleeps on a ``CLOCK_MONOTONIC`` timerfd (nanosecond resolution,
  the kernel's hrtimer, as tbf's ``qdisc_watchdog``), falling back to
  ``trio.move_on_at`` under another clock (``MockClock`` in tests). Tokens
  always accrue from the previous update, never from the wake-up, so a late
  timer loses nothing until the bucket is full; ``ShaperStats.overflow_bytes``
  counts what was discarded at the cap while frames waited (the rate lost to
  late wake-ups: 0 when the timer is on time).
- No peak rate (tbf's second bucket), no ingress shaping: only what the
  stack sends is shaped. Loopback is never shaped: the caller must not wrap
  a loopback endpoint (we refuse one unless ``allow_loopback``).
- Sizes are Ethernet frame bytes (tbf's ``qdisc_pkt_len``: L2 header
  included, no preamble/FCS).
"""

from __future__ import annotations

import ctypes
import math
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from netvisor.frame import GSO_NONE, Frame
from netvisor.link.endpoint import ETH_HLEN, ForwardingEndpoint, LinkCapabilities, LinkEndpoint

NS_PER_S: Final = 1_000_000_000
_BIT_NS_PER_BYTE: Final = 8 * NS_PER_S
"""One byte costs 8 bits for one second: 8e9 bit-nanoseconds."""

GSO_BURST_DIVISOR: Final = 4
"""A GSO frame may hold at most ``burst / 4`` bytes on the wire, so that a
late wake-up has 3/4 of the bucket to bank tokens in (see the module doc)."""

GSO_MAX_INTERVAL: Final = 0.001
"""... and at most ~1 ms at the rate: Linux ``tcp_tso_autosize`` sizes a TSO
frame to ``sk_pacing_rate >> sk_pacing_shift`` (2^-10 s); tbf would send its
segments spaced at the rate, so a longer frame is a coarser output."""

GSO_MIN_SEGS: Final = 2
"""Fewer segments per frame than this and GSO is not advertised at all
(Linux ``tcp_min_tso_segs`` default)."""

_MAX_TCPIP_HLEN: Final = 100
"""IPv6 header (40) + the longest TCP header (60): a GSO packet of
``100 + k * (mtu - 100)`` bytes cut at full-MTU segments makes at most k
segments whatever its headers."""

DEFAULT_LATENCY: Final = 0.025
"""Seconds of queue at the configured rate when no limit is given: 25 ms, the
latency the CNI bandwidth plugin gives its tbf (limit = rate*latency + burst)."""


# --------------------------------------------------------------------------- #
# Units (tc(8) "PARAMETERS": RATES use powers of 1000, SIZES powers of 1024). #
# --------------------------------------------------------------------------- #

_RATE_UNITS: Final[dict[str, float]] = {
    # bits per second (a bare number is bits per second too)
    "": 1, "bit": 1,
    "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
    "kibit": 1024, "mibit": 1024**2, "gibit": 1024**3, "tibit": 1024**4,
    # bytes per second ("bps" is BYTES per second in tc)
    "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
    "kibps": 8 * 1024, "mibps": 8 * 1024**2, "gibps": 8 * 1024**3, "tibps": 8 * 1024**4,
}

_SIZE_UNITS: Final[dict[str, float]] = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
    "kbit": 1024 / 8, "mbit": 1024**2 / 8, "gbit": 1024**3 / 8,
}

_NUMBER_UNIT: Final = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")


def _parse(text: str, units: dict[str, float], what: str) -> float:
    if not isinstance(text, str):
        raise TypeError(f"{what} must be text like '10mbit', got {text!r}")
    m = _NUMBER_UNIT.fullmatch(text)
    if m is None:
        if text.strip().startswith("-"):
            raise ValueError(f"{what} {text!r} is negative")
        raise ValueError(f"{what} {text!r} is not a number with a unit")
    unit = m.group(2).lower()
    if unit not in units:
        known = ", ".join(u for u in units if u)
        raise ValueError(f"{what} {text!r}: unknown unit {m.group(2)!r} (tc units: {known})")
    value = float(m.group(1)) * units[unit]
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is too large")
    if value <= 0:
        raise ValueError(f"{what} {text!r} must be greater than zero")
    return value


def parse_rate(text: str) -> float:
    """A tc rate (``10mbit``, ``1gbit``, ``500kbps``, ``12000``) in bytes per second.

    Units as tc(8): bit/kbit/mbit/gbit/tbit (x1000), kibit/mibit/... (x1024),
    bps/kbps/mbps/gbps/tbps are *bytes* per second; a bare number is bits per
    second; case does not matter. Raises ValueError for zero, negative,
    unknown units and nonsense.
    """
    return _parse(text, _RATE_UNITS, "rate") / 8


def parse_size(text: str) -> int:
    """A tc size (``64kb``, ``1m``, ``1500``, ``32kbit``) in bytes.

    Units as tc(8): b, k/kb, m/mb, g/gb are bytes with powers of 1024,
    kbit/mbit/gbit are 1024-based bits; a bare number is bytes. Raises
    ValueError for zero, negative, below one byte, unknown units, nonsense.
    """
    value = _parse(text, _SIZE_UNITS, "size")
    size = int(value)
    if size < 1:
        raise ValueError(f"size {text!r} is less than one byte")
    return size


# --------------------------------------------------------------------------- #
# Configuration                                                               #
# --------------------------------------------------------------------------- #

@dataclass(frozen=True, slots=True)
class ShaperConfig:
    """Egress shaping: ``rate`` bytes/s, ``burst`` bytes, queue bound.

    ``limit_bytes`` bounds the queue of frames waiting for tokens (0 = derive
    it as tc-tbf's ``latency`` does: ``rate * latency + burst``);
    ``limit_frames`` bounds it by count (0 = no count bound). A queue always
    takes one frame when empty, so any frame within the burst can go.
    """

    rate_bytes_per_s: float
    burst_bytes: int
    limit_bytes: int = 0
    limit_frames: int = 0
    latency: float = DEFAULT_LATENCY
    drop_when_full: bool = False
    """Take and drop (count) frames when the queue is full instead of refusing them."""

    def __post_init__(self) -> None:
        if not (isinstance(self.rate_bytes_per_s, (int, float))
                and math.isfinite(self.rate_bytes_per_s) and self.rate_bytes_per_s * 8 >= 1):
            raise ValueError(f"egress rate must be at least 1 bit/s, got "
                             f"{self.rate_bytes_per_s!r} bytes/s (--egress-rate)")
        if not isinstance(self.burst_bytes, int) or self.burst_bytes < 1:
            raise ValueError(f"egress burst must be a positive number of bytes, got "
                             f"{self.burst_bytes!r} (--egress-burst)")
        if self.limit_bytes < 0 or self.limit_frames < 0:
            raise ValueError("queue limits must be >= 0 (0 = default)")
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be >= 0 seconds, got {self.latency!r}")

    @property
    def queue_limit_bytes(self) -> int:
        if self.limit_bytes:
            return self.limit_bytes
        return int(self.rate_bytes_per_s * self.latency) + self.burst_bytes

    @classmethod
    def from_strings(cls, rate: str | None, burst: str | None, **kwargs: Any) -> ShaperConfig:
        """From ``--egress-rate``/``--egress-burst`` text; both are needed."""
        if rate is None or burst is None:
            missing = "--egress-burst" if burst is None else "--egress-rate"
            raise ValueError(f"egress shaping needs both --egress-rate and --egress-burst "
                             f"({missing} is missing)")
        try:
            r = parse_rate(rate)
        except ValueError as exc:
            raise ValueError(f"--egress-rate: {exc}") from None
        try:
            b = parse_size(burst)
        except ValueError as exc:
            raise ValueError(f"--egress-burst: {exc}") from None
        return cls(r, b, **kwargs)


def from_cni_bandwidth(egress_rate: int | None, egress_burst: int | None,
                       **kwargs: Any) -> ShaperConfig | None:
    """Config from the CNI ``bandwidth`` capability (egressRate bits/s, egressBurst bits).

    None when no egress shaping is asked (both absent or 0). Like the
    reference bandwidth plugin, a rate without a burst (or the reverse) and
    negative values are errors; the burst becomes bytes (bits // 8).
    """
    rate = egress_rate or 0
    burst = egress_burst or 0
    if rate == 0 and burst == 0:
        return None
    if rate < 0 or burst < 0:
        raise ValueError(f"bandwidth: egressRate/egressBurst must not be negative "
                         f"(got {egress_rate}, {egress_burst})")
    if rate == 0 or burst == 0:
        raise ValueError("bandwidth: if egressRate is set, egressBurst must be set too "
                         "(and the reverse)")
    return ShaperConfig(rate / 8, max(1, burst // 8), **kwargs)


# --------------------------------------------------------------------------- #
# Token bucket (sans-IO)                                                      #
# --------------------------------------------------------------------------- #

def wire_len(frame: Frame) -> int:
    """Bytes the frame occupies on the link once segmented.

    A GSO frame becomes ceil(payload / gso_size) segments that each carry the
    ``hdr_len`` bytes of headers (Linux ``qdisc_pkt_len_init``).
    """
    n = len(frame.data)
    if frame.gso_type != GSO_NONE and frame.gso_size > 0 and 0 < frame.hdr_len < n:
        segs = -(-(n - frame.hdr_len) // frame.gso_size)
        n += (segs - 1) * frame.hdr_len
    return n


class TokenBucket:
    """A single-rate token bucket: ``rate_bytes_per_s``, ``burst_bytes`` deep.

    ``admit(size, now)`` returns 0.0 and takes the tokens when ``size`` bytes
    may leave at ``now``; otherwise the seconds until they may (nothing is
    taken); ``math.inf`` when ``size`` exceeds the burst (never). ``now`` is
    float seconds on any monotonic clock; going backwards adds nothing.
    """

    __slots__ = ("_cap", "_last_ns", "_tokens", "burst_bytes", "rate_bits")

    def __init__(self, rate_bytes_per_s: float, burst_bytes: int) -> None:
        rate_bits = round(rate_bytes_per_s * 8)
        if rate_bits < 1:
            raise ValueError(f"rate must be at least 1 bit/s, got {rate_bytes_per_s!r} bytes/s")
        if burst_bytes < 1:
            raise ValueError(f"burst must be at least 1 byte, got {burst_bytes!r}")
        self.rate_bits: int = rate_bits
        self.burst_bytes: int = burst_bytes
        self._cap = burst_bytes * _BIT_NS_PER_BYTE
        self._tokens = self._cap  # tbf starts with a full bucket
        self._last_ns: int | None = None

    @property
    def rate_bytes_per_s(self) -> float:
        return self.rate_bits / 8

    def refill(self, now: float) -> int:
        """Accrue the tokens earned since the previous update, up to ``now``.

        Returns what the cap discarded, in bit-nanoseconds (``// 8e9`` for
        bytes): tokens accrue from the time of the previous update, whenever
        the caller gets round to it, so a late call loses nothing unless the
        bucket overflows. Every other method refills first.
        """
        now_ns = round(now * NS_PER_S)
        last = self._last_ns
        lost = 0
        if last is None or now_ns > last:
            if last is not None:
                tokens = self._tokens + (now_ns - last) * self.rate_bits
                if tokens > self._cap:
                    lost = tokens - self._cap
                    tokens = self._cap
                self._tokens = tokens
            self._last_ns = now_ns
        return lost

    def tokens(self, now: float) -> float:
        """Bytes of credit at ``now`` (negative after an oversized GSO frame)."""
        self.refill(now)
        return self._tokens / _BIT_NS_PER_BYTE

    def _need(self, size: int, allow_debt: bool) -> tuple[int, int]:
        """(cost, tokens needed before it may go), or cost -1 when it never may."""
        cost = size * _BIT_NS_PER_BYTE
        if cost > self._cap:
            return (cost, self._cap) if allow_debt else (-1, 0)
        return cost, cost

    def admit(self, size: int, now: float, *, allow_debt: bool = False) -> float:
        """0.0 (tokens taken) if ``size`` bytes may go at ``now``, else the wait in seconds.

        ``allow_debt``: a ``size`` above the burst may go once the bucket is
        full, leaving the tokens negative (for GSO frames; see module doc);
        without it such a size returns ``math.inf``.
        """
        self.refill(now)
        cost, need = self._need(size, allow_debt)
        if cost < 0:
            return math.inf
        if self._tokens >= need:
            self._tokens -= cost
            return 0.0
        wait_ns = -(-(need - self._tokens) // self.rate_bits)  # ceil: never early
        return wait_ns / NS_PER_S

    def time_until(self, size: int, now: float, *, allow_debt: bool = False) -> float:
        """What ``admit`` would return, without taking anything."""
        self.refill(now)
        cost, need = self._need(size, allow_debt)
        if cost < 0:
            return math.inf
        if self._tokens >= need:
            return 0.0
        return -(-(need - self._tokens) // self.rate_bits) / NS_PER_S


def shaped_gso_max_size(inner_gso_max: int, mtu: int, rate_bytes_per_s: float,
                        burst_bytes: int) -> int:
    """The ``gso_max_size`` a shaper advertises in front of an endpoint.

    The largest IP packet whose full-MTU segments occupy at most
    ``burst / GSO_BURST_DIVISOR`` bytes and ~``GSO_MAX_INTERVAL`` of the rate
    on the wire (see the module doc), never above what ``inner`` takes; 0 (no
    GSO) when that leaves fewer than ``GSO_MIN_SEGS`` segments or the inner
    endpoint has no GSO.
    """
    if inner_gso_max <= 0 or mtu <= _MAX_TCPIP_HLEN:
        return 0
    budget = min(burst_bytes // GSO_BURST_DIVISOR, int(rate_bytes_per_s * GSO_MAX_INTERVAL))
    segs = budget // (mtu + ETH_HLEN)
    if segs < GSO_MIN_SEGS:
        return 0
    gso = min(inner_gso_max, _MAX_TCPIP_HLEN + segs * (mtu - _MAX_TCPIP_HLEN))
    return gso if gso > mtu else 0


# --------------------------------------------------------------------------- #
# Precise timer                                                               #
# --------------------------------------------------------------------------- #

_CLOCK_MONOTONIC: Final = 1
_TFD_NONBLOCK: Final = os.O_NONBLOCK  # timerfd_create(2): same values as O_*
_TFD_CLOEXEC: Final = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc: Any = None


def _timerfd_api() -> Any:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int,
                                         ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        _libc = libc
    return _libc


class TimerFd:
    """A one-shot ``CLOCK_MONOTONIC`` timerfd that trio waits on.

    trio's sleeps end up in ``epoll_wait`` with the timeout rounded up to whole
    milliseconds; a timerfd fires on the kernel's hrtimer (tens of
    microseconds late here rather than ~1.1 ms), and ``epoll`` wakes as soon
    as it is readable. Times are relative, in seconds, so they mean the same
    on trio's system clock (``perf_counter`` = ``CLOCK_MONOTONIC`` + offset).
    """

    def __init__(self) -> None:
        libc = _timerfd_api()
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd
        self._spec = _Itimerspec()
        self._settime = libc.timerfd_settime
        self._spec_ref = ctypes.byref(self._spec)

    def arm(self, delay: float) -> None:
        """Fire ``delay`` seconds from now (at once, i.e. in 1 ns, when <= 0)."""
        ns = max(1, math.ceil(delay * NS_PER_S))  # 0 would disarm it
        self._set(ns)

    def disarm(self) -> None:
        self._set(0)

    def _set(self, ns: int) -> None:
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns, NS_PER_S)
        if self._settime(self.fd, 0, self._spec_ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    async def wait(self) -> None:
        """Until the timer fires (then it is disarmed until armed again)."""
        await trio.lowlevel.wait_readable(self.fd)
        try:
            os.read(self.fd, 8)
        except BlockingIOError:  # re-armed between readiness and read: fine
            pass

    def close(self) -> None:
        """Close the fd (call from inside trio: waiters are told first)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            trio.lowlevel.notify_closing(fd)
            os.close(fd)


def _system_clock() -> bool:
    """trio's default clock (``perf_counter`` + offset), on which a timerfd's
    relative times mean what trio's deadlines mean."""
    clock = trio.lowlevel.current_clock()
    return type(clock).__name__ == "SystemClock" and type(clock).__module__.startswith("trio.")


# --------------------------------------------------------------------------- #
# The endpoint wrapper                                                         #
# --------------------------------------------------------------------------- #

@dataclass(slots=True)
class ShaperStats:
    sent_frames: int = 0
    sent_bytes: int = 0
    """Frame bytes handed to the inner endpoint (``len(frame.data)``)."""
    sent_wire_bytes: int = 0
    """What those frames occupy on the wire once segmented (:func:`wire_len`):
    the bytes the bucket charged, i.e. the shaped on-wire rate."""
    queued_frames: int = 0
    """Now waiting (for tokens, or for the inner endpoint to take them)."""
    queued_bytes: int = 0
    delayed_frames: int = 0
    """Frames that had to wait for tokens at least once (total)."""
    dropped_frames: int = 0
    """Larger than the burst, or queue full with ``drop_when_full``."""
    dropped_bytes: int = 0
    refused_frames: int = 0
    """Offered to ``write_batch`` and handed back because the queue was full."""
    overflow_bytes: int = 0
    """Tokens discarded at the burst cap while frames waited for tokens: rate
    lost to late wake-ups (0 when every wake-up came before the bucket filled)."""
    idle_overflow_bytes: int = 0
    """Tokens discarded at the cap while nothing waited: rate the sender left
    unused (not the shaper's doing; a greedy sender keeps it near 0)."""
    timer_wakeups: int = 0
    """Wake-ups of :meth:`EgressShaper.serve` at a token deadline."""
    timer_late_total: float = 0.0
    """Seconds those wake-ups came after their deadline, summed ..."""
    timer_late_max: float = 0.0
    """... and the worst one."""


class EgressShaper(ForwardingEndpoint):
    """Wrap ``inner`` and shape what is written to it (see the module doc).

    Run :meth:`serve` in a nursery: it sends queued frames when their tokens
    arrive. ``clock`` (seconds) must be the clock ``serve`` sleeps on, i.e.
    ``trio.current_time`` (the default); another one only makes sense for
    synchronous tests that never run ``serve``. ``precise_timer``: sleep on a
    timerfd (True), on trio's timeouts (False), or the timerfd when trio runs
    on its system clock and ``clock`` is the default (None).
    """

    def __init__(self, inner: LinkEndpoint, config: ShaperConfig, *,
                 clock: Callable[[], float] = trio.current_time,
                 allow_loopback: bool = False, precise_timer: bool | None = None) -> None:
        caps = inner.capabilities
        if caps.is_loopback and not allow_loopback:
            raise ValueError("loopback is never shaped: do not wrap a loopback endpoint")
        frame_max = inner.mtu + ETH_HLEN
        if config.burst_bytes < frame_max:
            raise ValueError(
                f"egress burst {config.burst_bytes} bytes is smaller than one full-size frame "
                f"({frame_max} bytes = MTU {inner.mtu} + {ETH_HLEN}); every such frame would "
                f"be dropped: raise --egress-burst")
        super().__init__(inner)
        self.config = config
        self.bucket = TokenBucket(config.rate_bytes_per_s, config.burst_bytes)
        self.stats = ShaperStats()
        self._clock = clock
        self._precise = precise_timer
        self._limit_bytes = max(config.queue_limit_bytes, frame_max)
        self._limit_frames = config.limit_frames
        self._queue: deque[Frame] = deque()  # waiting for tokens
        self._paid: list[Frame] = []  # tokens taken, inner has not taken them yet
        self._lost = 0  # bit-ns discarded at the cap while frames waited
        self._unused = 0  # ... and while none did
        self._wake = trio.Event()
        self._timer: TimerFd | None = None  # serve()'s, while it runs on one
        self._serving = False
        self._room = trio.Event()
        self._closed = False
        self.wakeups = 0
        """Turns of :meth:`serve` (tests check it is not polling)."""
        # Advertise GSO only up to a quarter of the burst / ~1 ms (module doc).
        gso = shaped_gso_max_size(caps.gso_max_size, inner.mtu, config.rate_bytes_per_s,
                                  config.burst_bytes)
        self._caps = LinkCapabilities(caps.checksum_offload_tx, caps.checksum_offload_rx,
                                      gso, caps.vnet_hdr, caps.is_loopback)

    # -- queue state ---------------------------------------------------------------
    def has_room(self) -> bool:
        """Whether ``write_batch`` would take at least one more (full-size) frame."""
        st = self.stats
        if st.queued_frames == 0:
            return True
        if self._limit_frames and st.queued_frames >= self._limit_frames:
            return False
        return st.queued_bytes + self.inner.mtu + ETH_HLEN <= self._limit_bytes

    def _fits(self, size: int) -> bool:
        st = self.stats
        if st.queued_frames == 0:
            return True
        if self._limit_frames and st.queued_frames >= self._limit_frames:
            return False
        return st.queued_bytes + size <= self._limit_bytes

    def _refill(self, now: float) -> None:
        """Bring the bucket to ``now``; what the cap discards while frames wait
        for tokens is rate lost (an idle bucket filling up is not)."""
        lost = self.bucket.refill(now)
        if lost:
            if self._queue:
                self._lost += lost
                self.stats.overflow_bytes = self._lost // _BIT_NS_PER_BYTE
            else:
                self._unused += lost
                self.stats.idle_overflow_bytes = self._unused // _BIT_NS_PER_BYTE

    def next_deadline(self) -> float | None:
        """When the head frame's tokens will be there (None: nothing waits for tokens)."""
        if not self._queue:
            return None
        now = self._clock()
        self._refill(now)
        head = self._queue[0]
        return now + self.bucket.time_until(wire_len(head), now, allow_debt=True)

    def _pump(self, now: float) -> float | None:
        """Move frames whose tokens are there to ``inner``; return the next deadline."""
        q, bucket, st = self._queue, self.bucket, self.stats
        self._refill(now)
        delay = 0.0
        while q:
            size = wire_len(q[0])
            delay = bucket.admit(size, now, allow_debt=True)
            if delay > 0.0:
                break
            st.sent_wire_bytes += size
            self._paid.append(q.popleft())
        if self._paid:
            n = self.inner.write_batch(self._paid)
            if n:
                sent = self._paid[:n]
                del self._paid[:n]
                nbytes = sum(len(f.data) for f in sent)
                st.sent_frames += n
                st.sent_bytes += nbytes
                st.queued_frames -= n
                st.queued_bytes -= nbytes
                self._room.set()
        return now + delay if q else None

    # -- LinkEndpoint: what the shaper changes (the rest, ingress included, is
    # ForwardingEndpoint's: ingress is not shaped) ------------------------------------
    @property
    def capabilities(self) -> LinkCapabilities:
        return self._caps

    def write_batch(self, frames: Sequence[Frame]) -> int:
        if self._closed:
            raise OSError("shaper closed")
        st = self.stats
        now = self._clock()
        was_idle = not self._queue and not self._paid
        # Bring the bucket to now before queueing: what an idle bucket
        # overflowed until now is not a loss (``_refill`` counts only while
        # frames wait).
        self._refill(now)
        burst = self.bucket.burst_bytes
        taken = added = 0
        for frame in frames:
            size = len(frame.data)
            if size > burst and frame.gso_type == GSO_NONE:
                st.dropped_frames += 1  # tbf_enqueue: qdisc_drop for len > max_size
                st.dropped_bytes += size
                taken += 1
                continue
            if not self._fits(size):
                self._pump(now)
                if not self._fits(size):
                    if self.config.drop_when_full:
                        st.dropped_frames += 1
                        st.dropped_bytes += size
                        taken += 1
                        continue
                    st.refused_frames += len(frames) - taken
                    break
            self._queue.append(frame)
            st.queued_frames += 1
            st.queued_bytes += size
            taken += 1
            added += 1
        if self._queue:
            self._pump(now)
            # New frames still queued after the pump wait for tokens.
            st.delayed_frames += min(added, len(self._queue))
        if (self._queue or self._paid) and was_idle:
            self._wake_serve()  # serve() was idle: a new deadline exists
        return taken

    def _wake_serve(self) -> None:
        timer = self._timer
        if timer is not None:
            timer.arm(0.0)
        else:
            self._wake.set()

    async def wait_writable(self) -> None:
        """Return when the queue has room for a full-size frame."""
        while not self.has_room() and not self._closed:
            self._room = trio.Event()
            await self._room.wait()
        await trio.lowlevel.checkpoint()

    def _open_timer(self) -> TimerFd | None:
        precise = self._precise
        if precise is None:
            precise = self._clock is trio.current_time and _system_clock()
        if not precise:
            return None
        try:
            return TimerFd()
        except (OSError, AttributeError):
            if self._precise:
                raise
            return None  # no timerfd here: trio's millisecond timeouts

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued frames at the exact times their tokens arrive; runs until close.

        One runs per shaper: a second call while one runs returns at once
        (after ``started()``), so every owner of a wrapper chain may start it.
        """
        if self._serving:
            task_status.started()
            return
        self._serving = True
        timer = self._open_timer()
        self._timer = timer
        st = self.stats
        deadline: float | None = None
        task_status.started()
        try:
            while not self._closed:
                self.wakeups += 1
                now = self._clock()
                if deadline is not None and now >= deadline:
                    late = now - deadline
                    st.timer_wakeups += 1
                    st.timer_late_total += late
                    st.timer_late_max = max(st.timer_late_max, late)
                deadline = self._pump(now)
                if self._paid:
                    deadline = None
                    try:
                        await self.inner.wait_writable()
                    except (trio.ClosedResourceError, OSError):
                        if self._closed:
                            return
                        raise
                    continue
                if timer is not None:
                    if deadline is None:
                        timer.disarm()
                    else:
                        timer.arm(deadline - self._clock())
                    await timer.wait()
                    continue
                self._wake = trio.Event()
                if deadline is None:
                    await self._wake.wait()
                else:
                    with trio.move_on_at(deadline):
                        await self._wake.wait()
        finally:
            self._serving = False
            if timer is not None:
                self._timer = None
                timer.close()

    def close(self) -> None:
        """Drop what waits (counted) and close the inner endpoint."""
        if not self._closed:
            self._closed = True
            st = self.stats
            st.dropped_frames += st.queued_frames
            st.dropped_bytes += st.queued_bytes
            st.queued_frames = st.queued_bytes = 0
            self._queue.clear()
            self._paid.clear()
            self._wake_serve()
            self._room.set()
        self.inner.close()
