"""A fault-injecting wrapper: drop, duplicate, reorder and corrupt frames.

Modelled on smoltcp's ``FaultInjector``: the configuration
(:class:`FaultConfig`, frozen) is apart from the state (:class:`FaultPlan`:
seeded ``random.Random``, frames held back, :class:`FaultStats`), the
decisions are sans-IO (``FaultPlan.apply(frames) -> frames``, testable alone),
and a corruption is one flipped bit. Each direction has its own plan and its
own generator (seeded ``seed`` for rx, ``seed + 1`` for tx), so what happens
to received frames does not depend on how sends interleave with them.

Per frame, four numbers are always drawn (drop, corrupt, reorder, duplicate),
so one seed gives one fault sequence whatever the outcomes. A reordered frame
is held back until ``reorder_delay`` later frames have passed (held frames
wait for traffic; ``flush_held()`` releases them). A corrupted received frame
loses ``csum_valid`` so that the stack really verifies it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from netvisor.frame import Frame
from netvisor.link.endpoint import ForwardingEndpoint, LinkEndpoint

MAX_HELD: Final = 64
"""Bound on frames held back for reordering; beyond it frames pass in order."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Probabilities (0..1) of each fault per frame, and where to apply them."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    reorder_delay: int = 3
    """A reordered frame goes out after this many later frames."""
    rx: bool = True
    tx: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder", "corrupt"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault probability {name}={p!r} is not within 0..1")
        if self.reorder_delay < 1:
            raise ValueError(f"reorder_delay must be >= 1 frame, got {self.reorder_delay}")


@dataclass(slots=True)
class FaultStats:
    passed: int = 0
    """Frames that came out (duplicates and released reordered frames included)."""
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0


@dataclass(slots=True)
class FaultPlan:
    """The sans-IO decisions for one direction."""

    config: FaultConfig
    rng: random.Random
    rx: bool = False
    """Receive direction: corrupted frames lose csum_valid."""
    stats: FaultStats = field(default_factory=FaultStats)
    held: list[list[Any]] = field(default_factory=list)
    """[frames still to pass, frame] per held-back frame."""

    def apply(self, frames: Sequence[Frame]) -> list[Frame]:
        cfg, rng, st = self.config, self.rng, self.stats
        out: list[Frame] = []
        for frame in frames:
            r_drop, r_corrupt, r_reorder, r_dup = (rng.random(), rng.random(),
                                                   rng.random(), rng.random())
            released = self._tick()
            if r_drop < cfg.drop:
                st.dropped += 1
            else:
                if r_corrupt < cfg.corrupt and len(frame.data):
                    frame = self._flip_bit(frame)
                    st.corrupted += 1
                if r_reorder < cfg.reorder and len(self.held) < MAX_HELD:
                    self.held.append([cfg.reorder_delay, frame])
                    st.reordered += 1
                else:
                    out.append(frame)
                    if r_dup < cfg.duplicate:
                        out.append(frame)
                        st.duplicated += 1
            out.extend(released)
        st.passed += len(out)
        return out

    def flush_held(self) -> list[Frame]:
        out = [f for _, f in self.held]
        self.held.clear()
        self.stats.passed += len(out)
        return out

    def _tick(self) -> list[Frame]:
        """One more frame goes by: release the held frames whose wait is over."""
        if not self.held:
            return []
        released: list[Frame] = []
        keep: list[list[Any]] = []
        for entry in self.held:
            entry[0] -= 1
            if entry[0] <= 0:
                released.append(entry[1])
            else:
                keep.append(entry)
        self.held = keep
        return released

    def _flip_bit(self, frame: Frame) -> Frame:
        data = bytearray(frame.data)
        bit = self.rng.randrange(len(data) * 8)
        data[bit >> 3] ^= 1 << (bit & 7)
        return Frame(bytes(data), frame.csum_start, frame.csum_offset,
                     frame.csum_valid and not self.rx, frame.gso_type, frame.gso_size,
                     frame.hdr_len)


class FaultInjector(ForwardingEndpoint):
    """Wrap ``inner`` and apply ``config``'s faults on rx and/or tx.

    ``fileno()`` is None: frames can wait inside the wrapper (duplicates beyond
    ``max_frames``), which no fd could announce; ``wait_readable()`` knows.
    On tx, frames the plan produced but ``inner`` refused wait in a small
    backlog that is sent before anything new (the caller sees backpressure,
    ``write_batch`` returning 0, until it drains).
    """

    def __init__(self, inner: LinkEndpoint, config: FaultConfig) -> None:
        super().__init__(inner)
        self.config = config
        self.rx_plan = FaultPlan(config, random.Random(config.seed), rx=True)
        self.tx_plan = FaultPlan(config, random.Random(config.seed + 1))
        self._rx_backlog: deque[Frame] = deque()
        self._tx_backlog: list[Frame] = []

    def read_batch(self, max_frames: int) -> list[Frame]:
        backlog = self._rx_backlog
        if len(backlog) < max_frames:
            frames = self.inner.read_batch(max_frames - len(backlog))
            backlog.extend(self.rx_plan.apply(frames) if self.config.rx else frames)
        n = min(max_frames, len(backlog))
        return [backlog.popleft() for _ in range(n)]

    def write_batch(self, frames: Sequence[Frame]) -> int:
        if self._tx_backlog:
            n = self.inner.write_batch(self._tx_backlog)
            del self._tx_backlog[:n]
            if self._tx_backlog:
                return 0
        out = self.tx_plan.apply(frames) if self.config.tx else list(frames)
        n = self.inner.write_batch(out)
        # Taken by us even if inner refused some: they wait in the backlog
        # (at most one batch plus its duplicates), which holds further writes.
        self._tx_backlog = out[n:]
        return len(frames)

    def flush_held(self) -> None:
        """Release frames held for reordering (rx ones become readable)."""
        self._rx_backlog.extend(self.rx_plan.flush_held())
        self._tx_backlog.extend(self.tx_plan.flush_held())
        if self._tx_backlog:
            n = self.inner.write_batch(self._tx_backlog)
            del self._tx_backlog[:n]

    def fileno(self) -> int | None:
        return None

    async def wait_readable(self) -> None:
        if self._rx_backlog:
            await trio.lowlevel.checkpoint()
            return
        await self.inner.wait_readable()

    def close(self) -> None:
        self._rx_backlog.clear()
        self._tx_backlog.clear()
        self.inner.close()
