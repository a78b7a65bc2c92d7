"""Fault injector: seeded repeatability, each fault kind counted, wrapper behaviour."""

from __future__ import annotations

import random

import pytest

from netvisor.frame import Frame
from netvisor.link.faults import FaultConfig, FaultInjector, FaultPlan
from netvisor.link.loopback import LoopbackEndpoint, memory_pair


def _frames(n: int) -> list[Frame]:
    return [Frame(i.to_bytes(4, "big") + b"\x55" * 60, csum_valid=True) for i in range(n)]


def _ids(frames: list[Frame]) -> list[int]:
    return [int.from_bytes(bytes(f.data[:4]), "big") for f in frames]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="drop"):
        FaultConfig(drop=1.5)
    with pytest.raises(ValueError, match="corrupt"):
        FaultConfig(corrupt=-0.1)
    with pytest.raises(ValueError, match="reorder_delay"):
        FaultConfig(reorder_delay=0)


def test_no_faults_is_identity() -> None:
    plan = FaultPlan(FaultConfig(), random.Random(1))
    frames = _frames(100)
    assert plan.apply(frames) == frames
    assert plan.stats.passed == 100 and plan.stats.dropped == 0


def test_same_seed_same_faults() -> None:
    cfg = FaultConfig(drop=0.1, duplicate=0.1, reorder=0.1, corrupt=0.1, seed=42)

    def run(seed: int) -> tuple[list[bytes], object]:
        plan = FaultPlan(cfg, random.Random(seed))
        out: list[Frame] = []
        for i in range(0, 1000, 37):  # batch boundaries must not matter
            out += plan.apply(_frames(1000)[i:i + 37])
        return [bytes(f.data) for f in out], plan.stats

    a, sa = run(42)
    b, sb = run(42)
    c, _ = run(43)
    assert a == b and sa == sb
    assert a != c


def test_each_fault_kind_counted() -> None:
    n = 10_000
    cfg = FaultConfig(drop=0.1, duplicate=0.05, reorder=0.02, corrupt=0.03, reorder_delay=2)
    plan = FaultPlan(cfg, random.Random(7), rx=True)
    frames = _frames(n)
    out = plan.apply(frames) + plan.flush_held()
    st = plan.stats
    # Counts near their probabilities (binomial, 5 sigma bounds are generous).
    assert 850 < st.dropped < 1150
    assert 0.05 * (n - st.dropped) * 0.8 < st.duplicated < 0.05 * n * 1.2
    assert 100 < st.reordered < 300
    assert 200 < st.corrupted < 400
    assert len(out) == n - st.dropped + st.duplicated == st.passed
    # Corruption is exactly one flipped bit, and received corrupt frames lose csum_valid.
    originals = {bytes(f.data) for f in frames}
    flipped = 0
    for f in out:
        data = bytes(f.data)
        if data in originals:
            continue  # untouched (or a flip in the id that hit another frame's id)
        ident = _ids([f])[0]
        if ident >= n:
            continue  # the flipped bit is in the id itself: no original to compare
        diff = sum((x ^ y).bit_count() for x, y in zip(data, frames[ident].data, strict=True))
        assert diff == 1 and not f.csum_valid
        flipped += 1
    # Frames with a flip in the id are either skipped or matched to a wrong original
    # (then diff > 1 fails above), so most flips must be seen here.
    assert st.corrupted * 0.8 < flipped <= st.corrupted + st.duplicated


def test_reorder_delay_exact() -> None:
    plan = FaultPlan(FaultConfig(reorder=1.0, reorder_delay=2), random.Random(0))
    # Every frame is held for 2 later frames (up to MAX_HELD); with all held,
    # frame k comes out while frame k+2 goes by.
    out = plan.apply(_frames(6))
    assert _ids(out) == [0, 1, 2, 3]
    assert _ids(plan.flush_held()) == [4, 5]
    plan2 = FaultPlan(FaultConfig(reorder=0.5, reorder_delay=1), random.Random(3))
    got = _ids(plan2.apply(_frames(200)) + plan2.flush_held())
    assert sorted(got) == list(range(200)) and got != list(range(200))


def test_wrapper_rx_tx_directions() -> None:
    a, b = memory_pair()
    inj = FaultInjector(a, FaultConfig(drop=1.0, rx=False, tx=True))
    assert inj.fileno() is None and inj.mac == a.mac and inj.mtu == a.mtu
    assert inj.write_batch(_frames(5)) == 5
    assert b.read_batch(10) == [] and inj.tx_plan.stats.dropped == 5
    b.write_batch(_frames(3))
    assert _ids(inj.read_batch(10)) == [0, 1, 2]  # rx not faulted
    assert inj.stats is a.stats  # anything else is forwarded


def test_wrapper_duplicates_respect_max_frames() -> None:
    lo = LoopbackEndpoint()
    inj = FaultInjector(lo, FaultConfig(duplicate=1.0, tx=False))
    lo.write_batch(_frames(3))
    assert _ids(inj.read_batch(4)) == [0, 0, 1, 1]
    assert _ids(inj.read_batch(4)) == [2, 2]
    assert inj.read_batch(4) == []


def test_wrapper_tx_backlog_is_backpressure() -> None:
    a, b = memory_pair(queue_limit=4)
    inj = FaultInjector(a, FaultConfig(duplicate=1.0, rx=False))
    assert inj.write_batch(_frames(3)) == 3  # 6 frames out, inner takes 4
    assert inj.write_batch(_frames(1)) == 0  # backlog of 2 not yet gone
    assert _ids(b.read_batch(10)) == [0, 0, 1, 1]
    assert inj.write_batch(_frames(1)) == 1
    assert _ids(b.read_batch(10)) == [2, 2, 0, 0]
