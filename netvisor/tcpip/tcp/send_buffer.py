"""The send queue: bytes from SND.UNA onwards, indexed by unwrapped sequence number.

One bytearray with a moving head: appends extend it, ACKs advance the head,
and the dead prefix is compacted only when it is large (amortised O(1) per
byte, no per-segment objects). Segments copy their payload straight from it.
"""

from __future__ import annotations

from typing import Final

_COMPACT_AT: Final = 256 * 1024


class SendBuffer:
    """Unacknowledged + unsent data; ``base`` is the sequence number of the first byte."""

    __slots__ = ("_buf", "_head", "base", "end")

    def __init__(self, base: int) -> None:
        self._buf = bytearray()
        self._head = 0
        self.base = base
        self.end = base
        """Sequence number just after the last queued byte (kept, not computed: hot)."""

    def __len__(self) -> int:
        return self.end - self.base

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data
        self.end += len(data)

    def copy_into(self, out: bytearray, at: int, start: int, end: int) -> None:
        """Copy bytes [start, end) (sequence numbers) into ``out[at:]``."""
        a = self._head + (start - self.base)
        with memoryview(self._buf) as mv:
            out[at:at + (end - start)] = mv[a:a + (end - start)]

    def consume(self, upto: int) -> int:
        """Drop bytes before ``upto`` (they were acknowledged); return how many."""
        n = min(max(0, upto - self.base), self.end - self.base)
        if n:
            self._head += n
            self.base += n
            if self._head >= _COMPACT_AT and self._head * 2 >= len(self._buf):
                del self._buf[:self._head]
                self._head = 0
            elif self._head == len(self._buf):
                self._buf.clear()
                self._head = 0
        return n

    def clear(self) -> None:
        self.base = self.end
        self._buf.clear()
        self._head = 0
