"""Small helpers shared by the wire modules (buffer types, bounds checks).

Not public API: each protocol module re-exports what callers need.
"""

from __future__ import annotations

from typing import TypeAlias

from netvisor.tcpip.errors import Truncated

ReadableBuffer: TypeAlias = bytes | bytearray | memoryview
"""Anything a view can wrap (parsing never copies it)."""

WritableBuffer: TypeAlias = bytearray | memoryview
"""A caller-provided buffer that ``emit`` writes into."""


def as_view(buf: ReadableBuffer) -> memoryview:
    """``buf`` as a flat unsigned-byte memoryview (no copy)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def need(buf: ReadableBuffer, length: int, what: str) -> None:
    """Raise :class:`Truncated` unless ``buf`` holds at least ``length`` bytes."""
    if len(buf) < length:
        raise Truncated(f"{what}: need {length} bytes, have {len(buf)}")


def check_room(buf: WritableBuffer, offset: int, length: int, what: str) -> None:
    """Raise ValueError when ``buf[offset:offset+length]`` does not fit (caller bug)."""
    if offset < 0 or offset + length > len(buf):
        raise ValueError(f"{what}: buffer of {len(buf)} bytes too small for "
                         f"{length} bytes at offset {offset}")
