"""netvisor.syscall.memory against this process's own memory (process_vm_* on our pid)."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from netvisor.syscall import memory


def test_write_many_writes_each_piece_in_place() -> None:
    value = ctypes.create_string_buffer(8)
    length = ctypes.create_string_buffer(4)
    memory.write_many(os.getpid(), [(ctypes.addressof(value), b"abcdefgh"),
                                    (ctypes.addressof(length), b"\x08\0\0\0"),
                                    (ctypes.addressof(value), b"")])   # empty: skipped
    assert value.raw == b"abcdefgh"
    assert length.raw == b"\x08\0\0\0"
    assert memory.read(os.getpid(), ctypes.addressof(value), 8) == b"abcdefgh"


def test_write_many_faults_like_write() -> None:
    buf = ctypes.create_string_buffer(1)
    with pytest.raises(OSError) as info:
        memory.write_many(os.getpid(), [(ctypes.addressof(buf), b"x"), (8, b"yy")])
    assert info.value.errno == errno.EFAULT
    assert buf.raw == b"x"   # pieces before the bad address are written, as the kernel does
    memory.write_many(os.getpid(), [])   # nothing to do
