"""The send queue: bytes from SND.UNA onwards, indexed by unwrapped sequence number.

A list of chunks, each starting at a known sequence number. Immutable input
(``bytes``, or a read-only memoryview of ``bytes``) of at least
``_REF_MIN`` bytes is kept by reference: the application's buffer is not
copied at all until a segment is built from it (the one unavoidable copy).
Small or mutable input is copied into a growing tail ``bytearray`` so that
many small writes do not make many chunks. ACKs drop whole chunks from the
front (a moving head index, compacted when large); segments copy their
payload straight from the chunks into the outgoing buffer.
"""

from __future__ import annotations

import bisect
from typing import Final

Chunk = bytes | bytearray | memoryview

_REF_MIN: Final = 16384
"""Smallest immutable write kept by reference (below it a copy is cheaper than a chunk)."""
_COMPACT_AT: Final = 256
"""Dead chunk entries at the front before the lists are compacted."""


class SendBuffer:
    """Unacknowledged + unsent data; ``base`` is the sequence number of the first byte."""

    __slots__ = ("_chunks", "_head", "_starts", "_tail", "base", "end")

    def __init__(self, base: int) -> None:
        self._chunks: list[Chunk] = []
        self._starts: list[int] = []
        self._head = 0
        self._tail: bytearray | None = None
        """The last chunk when it is ours to extend (a copy of small writes)."""
        self.base = base
        self.end = base
        """Sequence number just after the last queued byte (kept, not computed: hot)."""

    def __len__(self) -> int:
        return self.end - self.base

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        if n >= _REF_MIN and _immutable(data):
            # Kept by reference: the caller cannot change bytes under us.
            self._chunks.append(data if isinstance(data, bytes) else memoryview(data))
            self._starts.append(self.end)
            self._tail = None
        elif self._tail is not None:
            self._tail += data
        else:
            self._tail = bytearray(data)
            self._chunks.append(self._tail)
            self._starts.append(self.end)
        self.end += n

    def copy_into(self, out: bytearray, at: int, start: int, end: int) -> None:
        """Copy bytes [start, end) (sequence numbers) into ``out[at:]``."""
        starts = self._starts
        chunks = self._chunks
        i = bisect.bisect_right(starts, start, self._head) - 1
        pos = start
        while pos < end:
            c = chunks[i]
            off = pos - starts[i]
            take = min(len(c) - off, end - pos)
            if take == len(c) and off == 0:
                out[at:at + take] = c
            else:
                with memoryview(c) as mv:
                    out[at:at + take] = mv[off:off + take]
            at += take
            pos += take
            i += 1

    def consume(self, upto: int) -> int:
        """Drop bytes before ``upto`` (they were acknowledged); return how many."""
        n = min(max(0, upto - self.base), self.end - self.base)
        if not n:
            return 0
        self.base += n
        if self.base == self.end:
            self._reset()
            return n
        starts = self._starts
        chunks = self._chunks
        h = self._head
        # Whole chunks now below base are dropped (their references released).
        while h + 1 < len(starts) and starts[h + 1] <= self.base:
            chunks[h] = b""
            h += 1
        if h >= _COMPACT_AT and h * 2 >= len(starts):
            del chunks[:h]
            del starts[:h]
            h = 0
        self._head = h
        return n

    def _reset(self) -> None:
        self._chunks.clear()
        self._starts.clear()
        self._head = 0
        self._tail = None

    def clear(self) -> None:
        self.base = self.end
        self._reset()


def _immutable(data: bytes | bytearray | memoryview) -> bool:
    if isinstance(data, bytes):
        return True
    return (isinstance(data, memoryview) and data.readonly and data.contiguous
            and isinstance(data.obj, bytes))
