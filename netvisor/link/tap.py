"""TAP endpoint: Ethernet frames through ``/dev/net/tun``.

Linux behaviour this relies on (drivers/net/tun.c, measured facts in
/work/shared/notes/syscall-trapping.md):

- ``TUNSETIFF`` with IFF_TAP|IFF_NO_PI creates the device, or attaches to an
  existing one of that name, in the network namespace of the opening thread
  (use ``netns=`` to open it inside ``/run/netns/NAME``). A device we created
  and did not make persistent disappears when the fd closes.
- With ``vnet_hdr=True``: IFF_VNET_HDR, ``TUNSETVNETHDRSZ`` 10, and
  ``TUNSETOFFLOAD(CSUM|TSO4|TSO6)`` so the kernel hands us 64 KB GSO frames
  with partial checksums (about 10x the throughput of 1500-byte frames).
  Offload and vnet header always go together: TUNSETOFFLOAD without
  IFF_VNET_HDR gives partial checksums with no marking.
- Writing GSO super-frames needs no TUNSETOFFLOAD; the TAP's MTU does not
  limit them. Size them to the peer's window (the stack's job).
- One wakeup, one drain: ``read_batch`` reads until EAGAIN (or
  ``max_frames``); with a vnet header into one reused buffer, copying out
  each frame exactly (without one, ``os.read`` already returns exact bytes).
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

from netvisor.frame import Frame
from netvisor.link import _ifctl
from netvisor.link._kernel import KernelEndpoint
from netvisor.link.endpoint import LinkStats
from netvisor.link.netns import in_netns
from netvisor.link.vnet import VNET_HDR_LEN, parse_into_frame

TUNSETIFF: Final = 0x400454CA
TUNSETPERSIST: Final = 0x400454CB
TUNGETIFF: Final = 0x800454D2
TUNSETOFFLOAD: Final = 0x400454D0
TUNSETVNETHDRSZ: Final = 0x400454D8
IFF_TAP: Final = 0x0002
IFF_NO_PI: Final = 0x1000
IFF_VNET_HDR: Final = 0x4000
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04

# Errors that mean "this one frame is bad", not "the device is full": count
# the frame as taken so that it cannot wedge the caller's queue.
_FRAME_ERRORS: Final = frozenset({errno.EINVAL, errno.EMSGSIZE, errno.EIO,
                                  errno.EFAULT, errno.ENOMEM})


def random_mac() -> bytes:
    """A random unicast, locally administered MAC (IEEE 802 U/L bit set)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


class TapEndpoint(KernelEndpoint[int]):
    """A TAP device; the stack is the host at the far end of its cable.

    ``name``: an existing TAP to attach to, a new name, or "" to let the
    kernel pick ``tapN``. ``mac``: the stack's MAC (not the kernel side's);
    random when omitted. ``mtu``: set the device MTU, else read it.
    ``up``: bring the kernel side up. ``persist``: keep the device after close.
    ``netns``: path of the network namespace to create/attach it in.
    """

    _kind = "TAP"
    _frame_errors = _FRAME_ERRORS

    def __init__(self, name: str = "", *, vnet_hdr: bool = False, rx_offload: bool = True,
                 mac: bytes | None = None, mtu: int | None = None, up: bool = True,
                 persist: bool = False, netns: str | None = None) -> None:
        if mac is not None and len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        self.stats = LinkStats()
        flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        with in_netns(netns):
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                ifr = bytearray(40)
                raw = name.encode()
                if len(raw) >= _ifctl.IFNAMSIZ:
                    raise ValueError(f"TAP name {name!r} longer than 15 bytes")
                ifr[: len(raw)] = raw
                struct.pack_into("H", ifr, _ifctl.IFNAMSIZ, flags)
                fcntl.ioctl(fd, TUNSETIFF, ifr)
                self.name: str = bytes(ifr[: _ifctl.IFNAMSIZ]).rstrip(b"\0").decode()
                if vnet_hdr:
                    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                    # By value, not by pointer; TSO needs CSUM (tun_set_offload).
                    offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 if rx_offload else 0
                    fcntl.ioctl(fd, TUNSETOFFLOAD, offload)
                if persist:
                    fcntl.ioctl(fd, TUNSETPERSIST, 1)
                if mtu is not None:
                    _ifctl.set_mtu(self.name, mtu)
                dev_mtu = _ifctl.get_mtu(self.name)
                self.ifindex: int = _ifctl.ifindex(self.name)
                self.kernel_mac: bytes = _ifctl.get_hwaddr(self.name)
                """The MAC of the kernel's side of the TAP (the stack's peer)."""
                if up:
                    _ifctl.set_up(self.name)
            except BaseException:
                os.close(fd)
                raise
        self._io = fd
        # Reads through a FileIO: on EAGAIN (once per wakeup, after the last
        # frame) it returns None where os.read raises BlockingIOError (~0.5 us).
        self._rxf = io.FileIO(fd, "rb", closefd=False)
        self._init_link(mac if mac is not None else random_mac(), dev_mtu, vnet_hdr)

    def _senders(self, io: int) -> tuple[Callable[[Sequence[Any]], int], Callable[[Any], int]]:
        return partial(os.writev, io), partial(os.write, io)

    # -- LinkEndpoint (the rest is KernelEndpoint's) ----------------------------
    def read_batch(self, max_frames: int) -> list[Frame]:
        fd = self._io
        if fd is None:
            return []
        out: list[Frame] = []
        buf, hdr, stats = self._rxbuf, self._hdr, self.stats
        size = len(buf)
        read = self._rxf.read
        while len(out) < max_frames:
            try:
                if not hdr:
                    # Plain frames: a read returns exactly the frame (one copy),
                    # measured ~25% cheaper per frame than readv + slice.
                    data = read(size)
                    if data is None:  # EAGAIN
                        break
                    if not data:  # never expected from tun; do not spin on it
                        stats.rx_errors += 1
                        break
                    out.append(Frame(data))
                    stats.rx_bytes += len(data)
                    continue
                # One copy per frame: the kernel fills a bytes object of the
                # exact size, and the frame is a read-only view past the
                # virtio header (TCP keeps such views by reference until
                # recv), where readv into a buffer then slicing copied a
                # 64 KB GSO frame twice.
                raw = read(size)
                if raw is None:  # EAGAIN
                    break
            except BlockingIOError:
                break
            except OSError:
                # EIO etc. on a device that went away: count, report nothing more now.
                stats.rx_errors += 1
                break
            n = len(raw)
            if n <= hdr:
                stats.rx_errors += 1
                if n == 0:
                    break
                continue
            out.append(parse_into_frame(raw, memoryview(raw)[hdr:]))
            stats.rx_bytes += n - hdr
        stats.rx_frames += len(out)
        return out
