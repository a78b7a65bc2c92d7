"""The receive side: in-order bytes for the application plus a bounded
out-of-order queue (RFC 9293 3.10.7.4 "segment text"; RFC 2018 block source).

Sequence numbers here are unwrapped integers. The out-of-order queue keeps
disjoint, sorted ``[start, end)`` ranges with their bytes; overlapping
arrivals are trimmed so every byte is stored once. Its size is bounded by
the advertised window (the caller trims to it) and a segment count.
"""

from __future__ import annotations

import bisect
from collections import deque


class RecvBuffer:
    """Readable bytes (``ready``) and the reassembly queue (``ooo``).

    In-order bytes are a queue of chunks. Slices of received frames that are
    immutable (``bytes``, as every link endpoint hands them) are kept by
    reference, so the payload is copied once, when the application reads it;
    anything mutable is copied on arrival.
    """

    __slots__ = ("_chunks", "_len", "_off", "last_ooo", "ooo", "ooo_bytes", "ooo_starts")

    def __init__(self) -> None:
        self._chunks: deque[bytes | memoryview] = deque()
        self._off = 0
        """Bytes of the first chunk already read."""
        self._len = 0
        self.ooo_starts: list[int] = []
        self.ooo: list[tuple[int, bytes]] = []
        self.ooo_bytes = 0
        self.last_ooo: tuple[int, int] | None = None

    def __len__(self) -> int:
        """Bytes the application can read now."""
        return self._len

    def append(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if not n:
            return
        if isinstance(data, memoryview):
            if not (data.readonly and isinstance(data.obj, bytes)):
                data = bytes(data)
        elif not isinstance(data, bytes):
            data = bytes(data)
        self._chunks.append(data)
        self._len += n

    def read(self, n: int, peek: bool = False) -> bytes:
        n = min(n, self._len)
        if n <= 0:
            return b""
        chunks = self._chunks
        off = self._off
        first = chunks[0]
        if off == 0 and len(first) == n and isinstance(first, bytes):
            out = first  # a whole immutable chunk: no copy at all
        else:
            parts: list[bytes | memoryview] = []
            need = n
            for c in chunks:
                avail = len(c) - off
                if avail >= need:
                    parts.append(c[off:off + need] if off or need < len(c) else c)
                    break
                parts.append(c[off:] if off else c)
                need -= avail
                off = 0
            out = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) \
                else b"".join(parts)  # the one copy
        if not peek:
            self._len -= n
            left = n + self._off
            while left and left >= len(chunks[0]):
                left -= len(chunks.popleft())
                if not chunks:
                    break
            self._off = left
        return out

    def clear(self) -> None:
        self._chunks.clear()
        self._off = 0
        self._len = 0
        self.ooo_starts.clear()
        self.ooo.clear()
        self.ooo_bytes = 0

    def add_ooo(self, start: int, data: bytes | memoryview, max_segments: int) -> bool:
        """Queue ``data`` at ``start`` (> RCV.NXT). Returns False when nothing new was stored."""
        end = start + len(data)
        new = False
        pos = start
        i = bisect.bisect_right(self.ooo_starts, start) - 1
        if i >= 0:
            s0, d0 = self.ooo[i]
            pos = max(pos, s0 + len(d0))
        i += 1
        pieces: list[tuple[int, bytes]] = []
        while pos < end:
            nxt = self.ooo_starts[i] if i < len(self.ooo_starts) else end
            if nxt > pos:
                stop = min(nxt, end)
                pieces.append((pos, bytes(data[pos - start:stop - start])))
                pos = stop
            if i < len(self.ooo_starts) and self.ooo_starts[i] <= pos:
                s1, d1 = self.ooo[i]
                pos = max(pos, s1 + len(d1))
                i += 1
        for s, d in pieces:
            if len(self.ooo) >= max_segments:
                break
            k = bisect.bisect_left(self.ooo_starts, s)
            self.ooo_starts.insert(k, s)
            self.ooo.insert(k, (s, d))
            self.ooo_bytes += len(d)
            new = True
        if new:
            self.last_ooo = (start, end)
        return new

    def pull_ooo(self, rcv_nxt: int) -> int:
        """Move queued bytes that now follow ``rcv_nxt`` into the readable buffer; new RCV.NXT."""
        while self.ooo and self.ooo_starts[0] <= rcv_nxt:
            s, d = self.ooo[0]
            del self.ooo[0]
            del self.ooo_starts[0]
            self.ooo_bytes -= len(d)
            e = s + len(d)
            if e > rcv_nxt:
                self.append(memoryview(d)[rcv_nxt - s:] if rcv_nxt > s else d)
                rcv_nxt = e
        return rcv_nxt

    def ooo_block_count(self) -> int:
        """``len(self.ooo_blocks())`` without building the list."""
        n = 0
        prev_end = None
        for s, d in self.ooo:
            if s != prev_end:
                n += 1
            prev_end = s + len(d)
        return n

    def ooo_blocks(self) -> list[tuple[int, int]]:
        """Contiguous out-of-order ranges, merged, in sequence order."""
        blocks: list[tuple[int, int]] = []
        for s, d in self.ooo:
            e = s + len(d)
            if blocks and blocks[-1][1] == s:
                blocks[-1] = (blocks[-1][0], e)
            else:
                blocks.append((s, e))
        return blocks
