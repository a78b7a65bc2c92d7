"""AF_PACKET endpoint: Ethernet frames on an existing interface (a veth end).

How runsc takes over a CNI-prepared interface: the stack sends and receives
raw frames on it through a packet socket. Linux behaviour used
(net/packet/af_packet.c, packet(7)):

- ``SOCK_RAW`` bound to the interface with ``ETH_P_ALL``; the socket is made
  with protocol 0 so that it receives nothing before ``bind`` (a socket made
  with ETH_P_ALL would see every interface until then).
- ``PACKET_IGNORE_OUTGOING`` (Linux 4.20): the socket does not read back the
  frames it (or the kernel) sends on the device. Where it is missing, frames
  with ``sll_pkttype == PACKET_OUTGOING`` are skipped by hand.
- ``PACKET_VNET_HDR``: every frame is preceded by a ``virtio_net_hdr``, so a
  veth peer's TSO super-frames and partial checksums (CHECKSUM_PARTIAL skbs
  cross a veth untouched) arrive marked, and we can send GSO frames that the
  kernel segments (in the device, or in software in ``validate_xmit_skb``).
  Without it, frames from a veth may arrive with unfinished checksums and no
  marking. ``vnet_hdr=None`` (default) turns it on when the device does TSO
  (``ETHTOOL_GTSO``), as veth does.
- ``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE`` (root) lift the buffers above
  ``rmem_max`` so bursts are not dropped while the trio loop is busy.
- A MAC other than the device's needs promiscuous mode
  (``PACKET_MR_PROMISC`` membership, dropped by the kernel when the socket
  closes) on real NICs; veth delivers every frame anyway.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from netvisor.frame import Frame
from netvisor.link import _ifctl
from netvisor.link._kernel import KernelEndpoint
from netvisor.link.endpoint import LinkStats
from netvisor.link.netns import in_netns
from netvisor.link.vnet import parse_into_frame

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_VNET_HDR: Final = 15
PACKET_IGNORE_OUTGOING: Final = 23
PACKET_OUTGOING: Final = 4
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
SIOCETHTOOL: Final = 0x8946
ETHTOOL_GTSO: Final = 0x1E

DEFAULT_BUFFER: Final = 4 * 1024 * 1024
"""Socket buffer bytes: 4 MiB holds ~60 64 KB GSO frames, or ~2700 full-size
frames, i.e. a few ms at 10 Gbit/s while the loop is busy elsewhere."""

# Hard per-frame errors: count the frame as taken (it cannot succeed later).
# ENOBUFS is among them: with no qdisc on a veth it means "dropped now", and
# retrying it from wait_writable would spin (the socket itself is writable).
_FRAME_ERRORS: Final = frozenset({errno.EINVAL, errno.EMSGSIZE, errno.ENOBUFS,
                                  errno.ENETDOWN, errno.ENXIO, errno.EFAULT, errno.ENOMEM})


def device_does_tso(name: str) -> bool:
    """Whether ``name`` (in the calling thread's namespace) has TSO on (ethtool)."""
    value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GTSO, 0), 8)
    ifr = bytearray(40)
    raw = name.encode()
    ifr[: len(raw)] = raw
    struct.pack_into("P", ifr, _ifctl.IFNAMSIZ, ctypes.addressof(value))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
    except OSError:
        return False
    return bool(struct.unpack_from("II", value.raw)[1])


class PacketEndpoint(KernelEndpoint[socket.socket]):
    """Frames on interface ``ifname`` (optionally inside namespace ``netns``).

    ``mac`` defaults to the device's own MAC (the stack takes the interface
    over, as runsc does). ``vnet_hdr``: None = on when the device does TSO.
    """

    _kind = "packet"
    _frame_errors = _FRAME_ERRORS

    def __init__(self, ifname: str, *, mac: bytes | None = None, vnet_hdr: bool | None = None,
                 buffer_bytes: int = DEFAULT_BUFFER, netns: str | None = None) -> None:
        if mac is not None and len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        self.stats = LinkStats()
        with in_netns(netns):
            self.ifindex: int = _ifctl.ifindex(ifname)
            dev_mtu = _ifctl.get_mtu(ifname)
            dev_mac = _ifctl.get_hwaddr(ifname)
            if vnet_hdr is None:
                vnet_hdr = device_does_tso(ifname)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, buffer_bytes)
            except PermissionError:  # not CAP_NET_ADMIN: best effort up to rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._filter_outgoing = False
            except OSError:  # Linux < 4.20: skip PACKET_OUTGOING frames ourselves
                self._filter_outgoing = True
            if vnet_hdr:
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            sock.bind((ifname, ETH_P_ALL))
            our_mac = bytes(mac) if mac is not None else dev_mac
            if our_mac != dev_mac:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.name: str = ifname
        self.device_mac: bytes = dev_mac
        self._io = sock
        self._init_link(our_mac, dev_mtu, bool(vnet_hdr))

    @property
    def _sock(self) -> socket.socket | None:
        """The packet socket (None once closed)."""
        return self._io

    def _senders(self, io: socket.socket) -> tuple[Callable[[Sequence[Any]], int],
                                                   Callable[[Any], int]]:
        return io.sendmsg, io.send

    # -- LinkEndpoint (the rest is KernelEndpoint's) ----------------------------
    def read_batch(self, max_frames: int) -> list[Frame]:
        sock = self._sock
        if sock is None:
            return []
        out: list[Frame] = []
        view, hdr, stats = self._rxview, self._hdr, self.stats
        filt = self._filter_outgoing
        recv_into = sock.recv_into
        while len(out) < max_frames:
            try:
                if filt:
                    n, addr = sock.recvfrom_into(self._rxbuf)
                    if addr[2] == PACKET_OUTGOING:
                        continue
                else:
                    n = recv_into(self._rxbuf)
            except BlockingIOError:
                break
            except OSError:
                stats.rx_errors += 1
                break
            if n <= hdr:
                stats.rx_errors += 1
                if n == 0:
                    break
                continue
            data = bytes(view[hdr:n])
            out.append(parse_into_frame(view, data) if hdr else Frame(data))
            stats.rx_bytes += n - hdr
        stats.rx_frames += len(out)
        return out
