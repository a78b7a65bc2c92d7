"""SACK bookkeeping (RFC 2018, RFC 2883 D-SACK, RFC 6675 loss recovery).

``Scoreboard`` is the sender's record of SACKed ranges above SND.UNA and
answers RFC 6675's questions: how many bytes are SACKed, which holes are
lost (IsLost, 4: DupThresh * SMSS SACKed bytes above), and the holes to
retransmit. ``receiver_blocks`` picks the blocks a receiver reports (RFC 2018
4: the block holding the most recent segment first, then the others; a
D-SACK block first when a duplicate arrived, RFC 2883 4).
All sequence numbers are unwrapped integers.
"""

from __future__ import annotations

import bisect


class Scoreboard:
    """Disjoint sorted SACKed ranges above SND.UNA."""

    __slots__ = ("starts", "ends", "sacked")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.sacked = 0

    def __bool__(self) -> bool:
        return bool(self.starts)

    @property
    def high(self) -> int | None:
        """End of the highest SACKed range (RFC 6675 HighSACK + 1)."""
        return self.ends[-1] if self.ends else None

    def clear(self) -> None:
        self.starts.clear()
        self.ends.clear()
        self.sacked = 0

    def add(self, start: int, end: int) -> int:
        """Record [start, end) as SACKed; return how many bytes were newly SACKed."""
        if end <= start:
            return 0
        i = bisect.bisect_left(self.ends, start)
        j = i
        new_start, new_end = start, end
        covered = 0
        while j < len(self.starts) and self.starts[j] <= end:
            new_start = min(new_start, self.starts[j])
            new_end = max(new_end, self.ends[j])
            covered += self.ends[j] - self.starts[j]
            j += 1
        del self.starts[i:j]
        del self.ends[i:j]
        self.starts.insert(i, new_start)
        self.ends.insert(i, new_end)
        total = new_end - new_start
        added = total - covered
        self.sacked += added
        return added

    def advance(self, una: int) -> None:
        """Forget everything below the cumulative ACK ``una``."""
        while self.starts and self.starts[0] < una:
            if self.ends[0] <= una:
                self.sacked -= self.ends[0] - self.starts[0]
                del self.starts[0]
                del self.ends[0]
            else:
                self.sacked -= una - self.starts[0]
                self.starts[0] = una
                break

    def is_sacked(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and seq < self.ends[i]

    def lost_end(self, una: int, threshold: int) -> int:
        """Holes below the returned sequence number are lost (RFC 6675 IsLost, byte rule).

        A hole is lost once at least ``threshold`` bytes (DupThresh * SMSS)
        are SACKed above it.
        """
        above = 0
        for k in range(len(self.starts) - 1, -1, -1):
            above += self.ends[k] - self.starts[k]
            if above >= threshold:
                return self.starts[k]
        return una

    def next_hole(self, frm: int, limit: int) -> tuple[int, int] | None:
        """The first un-SACKed range at or after ``frm`` and before ``limit``."""
        i = bisect.bisect_right(self.starts, frm) - 1
        if i >= 0 and frm < self.ends[i]:
            frm = self.ends[i]
        i += 1
        if frm >= limit:
            return None
        stop = self.starts[i] if i < len(self.starts) else limit
        return (frm, min(stop, limit))

    def hole_bytes(self, frm: int, limit: int) -> int:
        """Un-SACKed bytes in [frm, limit)."""
        if limit <= frm:
            return 0
        total = limit - frm
        for s, e in zip(self.starts, self.ends):
            if e <= frm:
                continue
            if s >= limit:
                break
            total -= min(e, limit) - max(s, frm)
        return total


def receiver_blocks(ooo: list[tuple[int, int]], recent: tuple[int, int] | None,
                    dsack: tuple[int, int] | None, max_blocks: int) -> list[tuple[int, int]]:
    """The SACK blocks a receiver reports, most relevant first (RFC 2018 4, RFC 2883)."""
    out: list[tuple[int, int]] = []
    if dsack is not None:
        out.append(dsack)
    first = None
    if recent is not None:
        for b in ooo:
            if b[0] <= recent[0] < b[1] or b[0] < recent[1] <= b[1]:
                first = b
                break
    if first is not None:
        out.append(first)
    for b in reversed(ooo):
        if len(out) >= max_blocks:
            break
        if b != first:
            out.append(b)
    return out[:max_blocks]
