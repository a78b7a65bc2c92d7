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
from collections.abc import Sequence
from typing import Final, Self

import trio

from netvisor.frame import Frame
from netvisor.link import _ifctl
from netvisor.link.endpoint import (
    ETH_HLEN,
    GSO_MAX_SIZE,
    LinkCapabilities,
    LinkStats,
    prepare_plain_tx,
)
from netvisor.link.netns import in_netns
from netvisor.link.vnet import VNET_HDR_LEN, emit, parse_into_frame

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
_RX_BUF: Final = GSO_MAX_SIZE + ETH_HLEN + 4


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


class PacketEndpoint:
    """Frames on interface ``ifname`` (optionally inside namespace ``netns``).

    ``mac`` defaults to the device's own MAC (the stack takes the interface
    over, as runsc does). ``vnet_hdr``: None = on when the device does TSO.
    """

    def __init__(self, ifname: str, *, mac: bytes | None = None, vnet_hdr: bool | None = None,
                 buffer_bytes: int = DEFAULT_BUFFER, netns: str | None = None) -> None:
        if mac is not None and len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        self.stats = LinkStats()
        with in_netns(netns):
            self.ifindex: int = _ifctl.ifindex(ifname)
            self._mtu = _ifctl.get_mtu(ifname)
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
            self._mac = bytes(mac) if mac is not None else dev_mac
            if self._mac != dev_mac:
                mreq = struct.pack("iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.name: str = ifname
        self.device_mac: bytes = dev_mac
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._vnet = bool(vnet_hdr)
        self._hdr = VNET_HDR_LEN if vnet_hdr else 0
        self._rxbuf = bytearray(max(_RX_BUF, self._mtu + ETH_HLEN + 4) + self._hdr)
        self._rxview = memoryview(self._rxbuf)
        self._caps = LinkCapabilities(
            checksum_offload_tx=self._vnet,
            checksum_offload_rx=self._vnet,
            gso_max_size=GSO_MAX_SIZE if self._vnet else 0,
            vnet_hdr=self._vnet,
        )

    # -- LinkEndpoint -----------------------------------------------------------
    @property
    def mac(self) -> bytes:
        return self._mac

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def capabilities(self) -> LinkCapabilities:
        return self._caps

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

    def write_batch(self, frames: Sequence[Frame]) -> int:
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, "packet endpoint closed")
        stats = self.stats
        taken = 0
        for frame in frames:
            try:
                if self._vnet:
                    sock.sendmsg((emit(frame), frame.data))
                else:
                    data = prepare_plain_tx(frame, stats)
                    if data is None:
                        taken += 1
                        continue
                    sock.send(data)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in _FRAME_ERRORS:
                    raise
                stats.tx_errors += 1
                taken += 1
                continue
            taken += 1
            stats.tx_frames += 1
            stats.tx_bytes += len(frame.data)
        return taken

    def fileno(self) -> int | None:
        return self._fd if self._sock is not None else None

    async def wait_readable(self) -> None:
        if self._sock is None:
            raise OSError(errno.EBADF, "packet endpoint closed")
        await trio.lowlevel.wait_readable(self._sock)

    async def wait_writable(self) -> None:
        if self._sock is None:
            raise OSError(errno.EBADF, "packet endpoint closed")
        await trio.lowlevel.wait_writable(self._sock)

    def close(self) -> None:
        if self._sock is None:
            return
        sock, self._sock = self._sock, None
        try:
            trio.lowlevel.notify_closing(sock)
        except RuntimeError:
            pass  # outside trio: nobody waits
        sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PacketEndpoint {self.name} vnet_hdr={self._vnet} mtu={self._mtu}>"
