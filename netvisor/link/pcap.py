"""A sniffer wrapper: records every frame read and written to a pcap file.

Classic libpcap format (https://wiki.wireshark.org/Development/LibpcapFileFormat),
microsecond timestamps, link type 1 (Ethernet), little-endian: what
``tcpdump -r`` and ``tshark -r`` read everywhere. The wrapper forwards every
call to the endpoint it wraps and records only what actually crossed it: the
frames ``read_batch`` returned and the prefix ``write_batch`` took (gVisor's
``link/sniffer`` and smoltcp's ``PcapWriter`` do the same).

Frames are written as they are: a GSO super-frame appears as one large packet
with its IP length covering all of it, and partial checksums show as wrong
(tcpdump on a Linux interface with offloads shows the same). Timestamps come
from the injected ``clock`` (seconds since the epoch; default ``time.time``).
Writes are buffered; ``flush()`` or ``close()`` makes them visible.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from typing import IO, Final

from netvisor.frame import Frame
from netvisor.link.endpoint import ForwardingEndpoint, LinkEndpoint

PCAP_MAGIC: Final = 0xA1B2C3D4
LINKTYPE_ETHERNET: Final = 1
DEFAULT_SNAPLEN: Final = 262144
"""tcpdump's default (MAXIMUM_SNAPLEN): larger than any 64 KB GSO frame."""

_GLOBAL_HDR: Final = struct.Struct("<IHHiIII")
_REC_HDR: Final = struct.Struct("<IIII")


class PcapSniffer(ForwardingEndpoint):
    """Wrap ``inner``; record received (``rx``) and sent (``tx``) frames to ``dest``.

    ``dest`` is a path (created/truncated, closed with the sniffer) or an open
    binary file (flushed, not closed). Any attribute the wrapper does not
    define (``stats``, ``name``, ``ifindex``...) is the inner endpoint's.
    """

    def __init__(self, inner: LinkEndpoint, dest: str | os.PathLike[str] | IO[bytes], *,
                 clock: Callable[[], float] = time.time, snaplen: int = DEFAULT_SNAPLEN,
                 rx: bool = True, tx: bool = True) -> None:
        if snaplen <= 0:
            raise ValueError(f"snaplen must be > 0, got {snaplen}")
        super().__init__(inner)
        self._clock = clock
        self._snaplen = snaplen
        self._rx = rx
        self._tx = tx
        if isinstance(dest, (str, os.PathLike)):
            self._file: IO[bytes] = open(dest, "wb")  # noqa: SIM115 - lives with the sniffer
            self._owns_file = True
        else:
            self._file = dest
            self._owns_file = False
        self._closed = False
        self.frames_written = 0
        self._file.write(_GLOBAL_HDR.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def _record(self, frames: Sequence[Frame]) -> None:
        now = self._clock()
        sec = int(now)
        usec = min(int((now - sec) * 1_000_000), 999_999)
        write, snap = self._file.write, self._snaplen
        for frame in frames:
            data = frame.data
            n = len(data)
            cut = min(n, snap)
            write(_REC_HDR.pack(sec, usec, cut, n))
            write(data if cut == n else memoryview(data)[:cut])
        self.frames_written += len(frames)

    # -- LinkEndpoint: what the sniffer changes (the rest is forwarded) ----------
    def read_batch(self, max_frames: int) -> list[Frame]:
        frames = self.inner.read_batch(max_frames)
        if frames and self._rx and not self._closed:
            self._record(frames)
        return frames

    def write_batch(self, frames: Sequence[Frame]) -> int:
        n = self.inner.write_batch(frames)
        if n and self._tx and not self._closed:
            self._record(frames[:n])
        return n

    def flush(self) -> None:
        if not self._closed:
            self._file.flush()

    def close(self) -> None:
        """Close the file (if ours) and the inner endpoint."""
        if not self._closed:
            self._closed = True
            self._file.flush()
            if self._owns_file:
                self._file.close()
        self.inner.close()
