"""Netlink work for netvisor-cni (pyroute2), in the caller's and the container's namespace.

A netlink socket belongs to the namespace it was created in, so one socket
is opened inside the container namespace (``setns`` into it, create the
socket, ``setns`` back: the plugin is single-threaded, so nothing else runs
meanwhile) and one in the caller's. The veth pair is created from the
caller's side with its peer placed directly into the container namespace
(``IFLA_NET_NS_FD``), as the reference ``bridge``/``ptp`` plugins do, so the
container end never exists under its final name in the caller's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cni.errors import CONTAINER_UNKNOWN, INTERFACE_EXISTS, INVALID_ENV, NETLINK_FAILURE, CNIError

log = logging.getLogger(__name__)

CLONE_NEWNET: Final = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _iproute() -> Any:
    return IPRoute()


@dataclass
class LinkInfo:
    index: int
    name: str
    mac: str
    mtu: int
    kind: str | None
    master: int | None
    up: bool


class Namespace:
    """An open network namespace (by path) with a netlink socket inside it."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise CNIError(CONTAINER_UNKNOWN, f"network namespace {path!r} does not exist") from None
        except OSError as exc:
            raise CNIError(INVALID_ENV, f"cannot open CNI_NETNS {path!r}", str(exc)) from None
        own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(own)[1:3] == os.fstat(self.fd)[1:3]:
                raise CNIError(INVALID_ENV,
                               "CNI_NETNS is the plugin's own network namespace", path)
            try:
                _setns(self.fd)
            except OSError as exc:
                raise CNIError(INVALID_ENV, f"CNI_NETNS {path!r} is not a network namespace",
                               str(exc)) from None
            try:
                self.ipr = _iproute()
            finally:
                _setns(own)
        except BaseException:
            os.close(self.fd)
            raise
        finally:
            os.close(own)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run a block inside the namespace (e.g. to write its /proc/sys/net)."""
        own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ipr.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Namespace:  # noqa: PYI034 - final class in practice
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def host_iproute() -> Any:
    """A netlink socket in the caller's (runtime's) namespace."""
    return _iproute()


def _netlink_error(what: str, exc: BaseException) -> CNIError:
    return CNIError(NETLINK_FAILURE, what, str(exc))


def link_info(ipr: Any, name: str | None = None, index: int | None = None) -> LinkInfo | None:
    """A link by name or index, or None."""
    try:
        if index is None:
            found = ipr.link_lookup(ifname=name)
            if not found:
                return None
            index = found[0]
        msg = ipr.get_links(index)[0]
    except (NetlinkError, OSError) as exc:  # NetlinkError(ENODEV) for a gone index
        if getattr(exc, "code", None) == 19:
            return None
        raise _netlink_error(f"looking up link {name or index}", exc) from None
    kind = None
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    if linkinfo is not None:
        kind = linkinfo.get_attr("IFLA_INFO_KIND")
    return LinkInfo(index=index, name=msg.get_attr("IFLA_IFNAME"), mac=msg.get_attr("IFLA_ADDRESS"),
                    mtu=msg.get_attr("IFLA_MTU"), kind=kind, master=msg.get_attr("IFLA_MASTER"),
                    up=bool(msg["flags"] & 1))


def link_addresses(ipr: Any, index: int) -> set[str]:
    """Addresses on a link as ``addr/prefix`` strings (IPv6 link-local excluded)."""
    out = set()
    for msg in ipr.get_addr(index=index):
        addr = msg.get_attr("IFA_ADDRESS")
        iface = ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}")
        if iface.version == 6 and iface.ip.is_link_local:
            continue
        out.add(str(iface))
    return out


def create_veth(host: Any, cont: Namespace, host_name: str, cont_name: str,
                mtu: int | None, mac: str | None) -> tuple[LinkInfo, LinkInfo]:
    """Make the pair; the container end goes straight into ``cont``.

    Raises code 100 when ``cont_name`` already exists in the container
    namespace or ``host_name`` in the caller's.
    """
    if link_info(cont.ipr, cont_name) is not None:
        raise CNIError(INTERFACE_EXISTS,
                       f"interface {cont_name!r} already exists in {cont.path}")
    if link_info(host, host_name) is not None:
        raise CNIError(INTERFACE_EXISTS, f"host interface {host_name!r} already exists")
    peer: dict[str, Any] = {"ifname": cont_name, "net_ns_fd": cont.fd}
    kwargs: dict[str, Any] = {}
    if mtu:
        peer["mtu"] = mtu
        kwargs["mtu"] = mtu
    if mac:
        peer["address"] = mac
    try:
        host.link("add", ifname=host_name, kind="veth", peer=peer, **kwargs)
    except (NetlinkError, OSError) as exc:
        if getattr(exc, "code", None) == 17:
            raise CNIError(INTERFACE_EXISTS, f"interface {cont_name!r} or {host_name!r} exists",
                           str(exc)) from None
        raise _netlink_error(f"creating veth {host_name}/{cont_name}", exc) from None
    h = link_info(host, host_name)
    c = link_info(cont.ipr, cont_name)
    if h is None or c is None:
        raise CNIError(NETLINK_FAILURE, "veth pair vanished right after creation")
    return h, c


def set_up(ipr: Any, index: int) -> None:
    try:
        ipr.link("set", index=index, state="up")
    except (NetlinkError, OSError) as exc:
        raise _netlink_error(f"setting link {index} up", exc) from None


def ensure_bridge(host: Any, name: str, mtu: int | None) -> LinkInfo:
    """The bridge ``name`` in the caller's namespace, created (and up) if missing."""
    info = link_info(host, name)
    if info is None:
        kwargs: dict[str, Any] = {"mtu": mtu} if mtu else {}
        try:
            host.link("add", ifname=name, kind="bridge", **kwargs)
        except (NetlinkError, OSError) as exc:
            # A parallel ADD may have created it first (EEXIST): fine.
            if getattr(exc, "code", None) != 17:
                raise _netlink_error(f"creating bridge {name}", exc) from None
        info = link_info(host, name)
        if info is None:
            raise CNIError(NETLINK_FAILURE, f"bridge {name} vanished after creation")
    if info.kind != "bridge":
        raise CNIError(INTERFACE_EXISTS, f"{name!r} exists and is not a bridge ({info.kind})")
    if not info.up:
        set_up(host, info.index)
    return info


def enslave(host: Any, index: int, master: int) -> None:
    try:
        host.link("set", index=index, master=master)
    except (NetlinkError, OSError) as exc:
        raise _netlink_error(f"attaching link {index} to bridge {master}", exc) from None


def add_address(ipr: Any, index: int, cidr: str) -> None:
    """Add ``cidr``; an address already present is accepted (idempotent)."""
    iface = ipaddress.ip_interface(cidr)
    try:
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except (NetlinkError, OSError) as exc:
        if getattr(exc, "code", None) == 17:
            return
        raise _netlink_error(f"adding address {cidr}", exc) from None


def add_route(ipr: Any, index: int, dst: str, gateway: str | None,
              extra: dict[str, Any] | None = None) -> None:
    """Add a route via link ``index``; an identical existing default route is accepted.

    CNI spec "IP Allocation" note: another network may already have set the
    default route, so the plugin must be prepared to skip it.
    """
    net = ipaddress.ip_network(dst, strict=False)
    kwargs: dict[str, Any] = {"dst": str(net.network_address), "dst_len": net.prefixlen,
                              "oif": index, "family": 2 if net.version == 4 else 10}
    if gateway:
        kwargs["gateway"] = gateway
    if extra:
        if extra.get("priority") is not None:
            kwargs["priority"] = int(extra["priority"])
        if extra.get("table") is not None:
            kwargs["table"] = int(extra["table"])
        if extra.get("mtu") or extra.get("advmss"):
            metrics = {}
            if extra.get("mtu"):
                metrics["RTAX_MTU"] = int(extra["mtu"])
            if extra.get("advmss"):
                metrics["RTAX_ADVMSS"] = int(extra["advmss"])
            kwargs["metrics"] = {"attrs": [[k, v] for k, v in metrics.items()]}
    if not gateway:
        kwargs["scope"] = 253  # RT_SCOPE_LINK: directly reachable through the link
    try:
        ipr.route("add", **kwargs)
    except (NetlinkError, OSError) as exc:
        if getattr(exc, "code", None) == 17 and net.prefixlen == 0:
            log.info("default route %s exists already, skipped", dst)
            return
        raise _netlink_error(f"adding route {dst} via {gateway}", exc) from None


def has_route(ipr: Any, index: int | None, dst: str, gateway: str | None) -> bool:
    """True when a route to ``dst`` (via ``gateway``, on ``index``, if given) exists."""
    net = ipaddress.ip_network(dst, strict=False)
    family = 2 if net.version == 4 else 10
    for msg in ipr.get_routes(family=family):
        if (index is not None and msg.get_attr("RTA_OIF") != index) or \
                msg["dst_len"] != net.prefixlen:
            continue
        rdst = msg.get_attr("RTA_DST") or ("0.0.0.0" if net.version == 4 else "::")
        if ipaddress.ip_address(rdst) != net.network_address:
            continue
        if gateway and msg.get_attr("RTA_GATEWAY") != gateway:
            continue
        return True
    return False


def delete_link(ipr: Any, name: str) -> bool:
    """Delete link ``name`` if it exists; True when something was deleted."""
    info = link_info(ipr, name)
    if info is None:
        return False
    try:
        ipr.link("del", index=info.index)
    except (NetlinkError, OSError) as exc:
        if getattr(exc, "code", None) == 19:  # ENODEV: gone meanwhile (peer deleted)
            return False
        raise _netlink_error(f"deleting {name}", exc) from None
    return True


def disable_dad(ns: Namespace, ifname: str) -> None:
    """Turn off IPv6 DAD on the container interface so addresses work at once.

    The runtime expects the address usable when ADD returns; the reference
    plugins likewise wait for or skip DAD. Uses the namespace's own /proc/sys/net.
    """
    with ns.entered(), contextlib.suppress(OSError), \
            open(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad", "w") as f:
        f.write("0")


def set_local_sysctl(key: str, value: str) -> None:
    """Write /proc/sys/<key> of the caller's namespace; missing keys are ignored."""
    with contextlib.suppress(OSError), open(f"/proc/sys/{key}", "w") as f:
        f.write(value)
