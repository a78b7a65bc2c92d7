"""TCP sequence-number arithmetic modulo 2^32 (RFC 9293 3.4, RFC 1982 style).

Sequence numbers are compared through these helpers, never with raw ``<``:
``a`` is "before" ``b`` when the signed 32-bit difference ``a - b`` is
negative, which is what Linux's ``before()``/``after()`` compute.
"""

from __future__ import annotations

from typing import Final

SEQ_MOD: Final = 1 << 32
SEQ_MASK: Final = SEQ_MOD - 1
_HALF: Final = 1 << 31


def seq_add(a: int, n: int) -> int:
    """``a + n`` modulo 2^32 (``n`` may be negative)."""
    return (a + n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance ``a - b`` in [-2^31, 2^31)."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """``a`` is strictly before ``b`` (Linux ``before(a, b)``)."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` is before or equal to ``b``."""
    return a == b or ((a - b) & SEQ_MASK) >= _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a`` is strictly after ``b`` (Linux ``after(a, b)``)."""
    return seq_lt(b, a)


def seq_ge(a: int, b: int) -> bool:
    """``a`` is after or equal to ``b``."""
    return seq_le(b, a)


def seq_max(a: int, b: int) -> int:
    """The later of two sequence numbers."""
    return b if seq_lt(a, b) else a


def seq_min(a: int, b: int) -> int:
    """The earlier of two sequence numbers."""
    return a if seq_lt(a, b) else b


def seq_in(x: int, start: int, end: int) -> bool:
    """``start <= x < end`` on the sequence circle (empty when ``start == end``)."""
    return ((x - start) & SEQ_MASK) < ((end - start) & SEQ_MASK)


def seq_between(x: int, low: int, high: int) -> bool:
    """``low <= x <= high`` on the sequence circle (Linux ``between()``)."""
    return ((high - low) & SEQ_MASK) >= ((x - low) & SEQ_MASK)
