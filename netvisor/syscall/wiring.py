"""How ``netvisor run`` connects the stack to the world (network modes).

- ``none``: NetStack with loopback only.
- ``sandbox`` (default wiring): a TAP in the current namespace whose kernel
  side gets the first address of a private /30 (picked at random among the
  free ones in 10.231.0.0/16, so several sandboxes can run at once) and of a
  ULA /64; the stack gets the second one and a default route via the kernel
  side. Unless ``--no-nat``, forwarding is enabled and an nftables table
  with a masquerade rule for the sandbox's addresses is added, and removed
  on exit (as ``docker run`` does). A ``netvisor run`` killed with SIGKILL
  cannot remove its table (nor a TAP made persistent): the next default
  wiring in the same namespace removes those whose owner is gone
  (:func:`remove_stale`).
- ``sandbox --netns PATH``: take over the namespace's interface like runsc:
  copy its addresses, routes and permanent neighbours into the stack, remove
  the addresses from the kernel interface, exchange frames with AF_PACKET,
  and put everything back on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TextIO

from netvisor.netstack import NetStack, config_from_sysctls

log = logging.getLogger(__name__)

POOL4 = ipaddress.ip_network("10.231.0.0/16")
ULA_PREFIX = "fd6e:7672"            # "nvr"; /32 of ULA space, one /64 per sandbox
IFA_F_NODAD = 0x02
OWNED_NAME = re.compile(r"nvr([0-9]+)")
"""TAPs and nftables tables of the default wiring: ``nvr<pid of netvisor run>``."""


class WiringError(Exception):
    """The network could not be set up (one line for the user)."""


def build_netstack(args: argparse.Namespace, cleanup: contextlib.ExitStack
                   ) -> tuple[NetStack, NetStack]:
    """The NetStack for ``args.network`` (its undo actions go on ``cleanup``).

    With ``--netns`` the stack takes the namespace's sysctls (ipfrag_time,
    icmp_ratelimit, neighbour timers, port range...), as runsc does.
    """
    config = None
    if args.network == "sandbox" and args.netns:
        if not os.path.exists(args.netns):
            raise WiringError(f"--netns {args.netns}: no such namespace")
        try:
            config = config_from_sysctls(netns=args.netns)
        except OSError as e:
            raise WiringError(f"--netns {args.netns}: cannot enter: {e.strerror or e}") from None
    ns = NetStack(config=config)
    ns.add_loopback()
    cleanup.callback(ns.close)
    if args.network == "none":
        return ns, ns
    try:
        if args.netns:
            _take_over(ns, args, cleanup)
        else:
            _default_tap(ns, args, cleanup)
    except WiringError:
        raise
    except (OSError, ValueError) as e:
        from netvisor.cmd_run import RunError
        raise RunError(f"cannot set up the sandbox's network: {e}") from None
    return ns, ns


def _wrap(endpoint: Any, args: argparse.Namespace, cleanup: contextlib.ExitStack,
          shaper: Any = None) -> Any:
    """pcap and egress shaper around the NIC's endpoint (``shaper``: from CNI state)."""
    if args.egress_rate or args.egress_burst:
        from netvisor.link.shaper import ShaperConfig, parse_rate, parse_size
        if not (args.egress_rate and args.egress_burst):
            raise WiringError("--egress-rate and --egress-burst go together")
        try:
            shaper = ShaperConfig(parse_rate(args.egress_rate), parse_size(args.egress_burst))
        except ValueError as e:
            raise WiringError(str(e)) from None
    if shaper is not None:
        from netvisor.link.shaper import EgressShaper
        endpoint = EgressShaper(endpoint, shaper)
    if args.pcap:
        from netvisor.link.pcap import PcapSniffer
        try:
            endpoint = PcapSniffer(endpoint, args.pcap)
        except OSError as e:
            raise WiringError(f"cannot write {args.pcap}: {e.strerror}") from None
    return endpoint


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    from pyroute2 import IPRoute
    nets = []
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
            if addr:
                nets.append(ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}").network)
    return nets


def _pick_subnet() -> tuple[int, ipaddress.IPv4Network]:
    used = [n for n in _used_networks() if n.version == 4]
    rng = random.Random()
    for _ in range(200):
        idx = rng.randrange(1, POOL4.num_addresses // 4)
        net = ipaddress.IPv4Network(f"{POOL4.network_address + 4 * idx}/30")
        if not any(net.overlaps(u) for u in used):
            return idx, net
    raise WiringError("no free /30 left in 10.231.0.0/16 for the sandbox's TAP")


def _default_tap(ns: NetStack, args: argparse.Namespace, cleanup: contextlib.ExitStack) -> None:
    from pyroute2 import IPRoute

    from netvisor.link.tap import TapEndpoint
    idx, net4 = _pick_subnet()
    hosts = list(net4.hosts())
    kernel_side = [ipaddress.ip_interface(f"{hosts[0]}/30"),
                   ipaddress.ip_interface(f"{ULA_PREFIX}:{idx:x}::1/64")]
    stack_side = [ipaddress.ip_interface(f"{hosts[1]}/30"),
                  ipaddress.ip_interface(f"{ULA_PREFIX}:{idx:x}::2/64")]
    if args.address:
        stack_side = [ipaddress.ip_interface(a) for a in args.address]
        kernel_side = []
        for gw in args.gateway:
            gip = ipaddress.ip_address(gw)
            net = next((a.network for a in stack_side if gip in a.network), None)
            if net is None:
                raise WiringError(f"--gateway {gw} is not in any --address network")
            kernel_side.append(ipaddress.ip_interface(f"{gip}/{net.prefixlen}"))
    remove_stale()
    name = f"nvr{os.getpid()}"[:15]
    try:
        tap = TapEndpoint(name, vnet_hdr=True, mtu=args.mtu)
    except OSError as e:
        raise WiringError(f"cannot create TAP {name}: {e.strerror or e}") from None
    cleanup.callback(tap.close)
    with IPRoute() as ipr:
        for a in kernel_side:
            ipr.addr("add", index=tap.ifindex, address=str(a.ip), prefixlen=a.network.prefixlen,
                     **({"flags": IFA_F_NODAD} if a.version == 6 else {}))
        ipr.link("set", index=tap.ifindex, state="up")
    gw4: ipaddress.IPv4Address | None = None
    gw6: ipaddress.IPv6Address | None = None
    for a in kernel_side:
        if isinstance(a, ipaddress.IPv4Interface):
            gw4 = gw4 or a.ip
        elif isinstance(a, ipaddress.IPv6Interface):
            gw6 = gw6 or a.ip
    ns.add_link(_wrap(tap, args, cleanup), name="eth0", addresses=stack_side,
                gateway4=gw4, gateway6=gw6, dad=False)
    if not args.no_nat:
        _enable_nat(tap.name, stack_side, cleanup)


def remove_stale(out: TextIO | None = None) -> list[str]:
    """Remove ``nvr<pid>`` TAPs and ``inet nvr<pid>`` tables whose netvisor is gone.

    Only in the current network namespace and only names matching
    :data:`OWNED_NAME` exactly. The owner counts as alive when ``/proc/<pid>``
    exists (a different pid than ours; a reused pid keeps its stale objects,
    the safe mistake) or when a TAP of that name has carrier: a TAP with an
    attached file descriptor (tun_attach sets carrier, the last detach clears
    it), which covers a netvisor in another PID namespace sharing this
    network namespace, whose pid /proc does not show. Returns what was
    removed and writes one line about it to ``out`` (default stderr).
    """
    from pyroute2 import IPRoute

    def stale(pid: int, carrier: dict[int, bool]) -> bool:
        if pid != os.getpid() and os.path.exists(f"/proc/{pid}"):
            return False
        return not carrier.get(pid, False)

    removed: list[str] = []
    taps: dict[int, tuple[int, bool]] = {}   # pid -> (ifindex, carrier)
    carrier: dict[int, bool] | None = None   # None: links unknown, so no table is judged
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                m = OWNED_NAME.fullmatch(link.get_attr("IFLA_IFNAME") or "")
                info = link.get_attr("IFLA_LINKINFO")
                if m is None or info is None or info.get_attr("IFLA_INFO_KIND") != "tun":
                    continue
                taps[int(m.group(1))] = (link["index"], bool(link.get_attr("IFLA_CARRIER")))
            carrier = {pid: up for pid, (_, up) in taps.items()}
            for pid, (index, _) in sorted(taps.items()):
                if stale(pid, carrier):
                    with contextlib.suppress(Exception):  # raced with another cleaner
                        ipr.link("del", index=index)
                        removed.append(f"TAP nvr{pid}")
    except Exception as e:  # noqa: BLE001 (pyroute2's errors): cleanup must not stop the run
        log.warning("cannot look for stale TAPs: %s", e)
    if carrier is not None and shutil.which("nft") is not None:
        r = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True,
                           check=False)
        for line in r.stdout.splitlines() if r.returncode == 0 else ():
            parts = line.split()
            m = OWNED_NAME.fullmatch(parts[2]) if len(parts) == 3 and parts[:2] == [
                "table", "inet"] else None
            if m is not None and stale(int(m.group(1)), carrier):
                d = subprocess.run(["nft", "delete", "table", "inet", parts[2]],
                                   capture_output=True, check=False)
                if d.returncode == 0:
                    removed.append(f"nftables table inet {parts[2]}")
    if removed:
        out = out or sys.stderr
        out.write(f"netvisor: removed what killed netvisor runs left behind: "
                  f"{', '.join(removed)}\n")
        out.flush()
    return removed


def _enable_nat(ifname: str, addresses: list[Any], cleanup: contextlib.ExitStack) -> None:
    """ip_forward + an nftables masquerade for the sandbox's addresses (removed on exit)."""
    for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError as e:
            log.warning("cannot enable forwarding (%s): %s", path, e)
    if shutil.which("nft") is None:
        sys.stderr.write("netvisor: warning: nft not found; no masquerade for the sandbox\n")
        return
    table = f"nvr{os.getpid()}"
    rules = [f"add table inet {table}",
             (f"add chain inet {table} postrouting "
              f"{{ type nat hook postrouting priority 100 ; }}")]
    for a in addresses:
        fam = "ip" if a.version == 4 else "ip6"
        rules.append(f'add rule inet {table} postrouting {fam} saddr {a.ip} '
                     f'oifname != "{ifname}" masquerade')
    r = subprocess.run(["nft", "-f", "-"], input="\n".join(rules) + "\n", text=True,
                       capture_output=True, check=False)
    if r.returncode != 0:
        sys.stderr.write(f"netvisor: warning: nftables masquerade not added: "
                         f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}\n")
        return
    cleanup.callback(subprocess.run, ["nft", "delete", "table", "inet", table],
                     capture_output=True)


def _take_over(ns: NetStack, args: argparse.Namespace, cleanup: contextlib.ExitStack) -> None:
    """runsc-style: the namespace's interface becomes the stack's NIC."""
    from pyroute2 import NetNS

    from netvisor.link.packet import PacketEndpoint
    path = args.netns
    if not os.path.exists(path):
        raise WiringError(f"--netns {path}: no such namespace")
    with NetNS(path) as ipr:
        links = [m for m in ipr.get_links() if m.get_attr("IFLA_IFNAME") != "lo"]
        if not links:
            raise WiringError(f"--netns {path}: no interface besides lo")
        link = next((m for m in links if m["flags"] & 1), links[0])
        ifname = link.get_attr("IFLA_IFNAME")
        index = link["index"]
        addrs = []
        for m in ipr.get_addr(index=index):
            if m["family"] == 10 and m["scope"] == 253:
                continue  # link-local: the stack makes its own
            addrs.append(ipaddress.ip_interface(f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"))
        routes = []
        gw4: ipaddress.IPv4Address | None = None
        gw6: ipaddress.IPv6Address | None = None
        for fam in (2, 10):
            for m in ipr.get_routes(family=fam, table=254):
                if m.get_attr("RTA_OIF") != index:
                    continue
                dst = m.get_attr("RTA_DST")
                gw = m.get_attr("RTA_GATEWAY")
                if dst is None and gw:
                    if fam == 2:
                        gw4 = ipaddress.IPv4Address(gw)
                    else:
                        gw6 = ipaddress.IPv6Address(gw)
                elif dst is not None and gw:
                    routes.append((f"{dst}/{m['dst_len']}", gw))
        neighbours = []
        for m in ipr.get_neighbours(ifindex=index):
            if m["state"] & 0x80 and m.get_attr("NDA_LLADDR"):  # NUD_PERMANENT
                neighbours.append((ipaddress.ip_address(m.get_attr("NDA_DST")),
                                   bytes.fromhex(m.get_attr("NDA_LLADDR").replace(":", ""))))
        mac = bytes.fromhex(link.get_attr("IFLA_ADDRESS").replace(":", ""))
        for a in addrs:
            ipr.addr("del", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
    v6knob = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    was_disabled = _read(v6knob, path)
    _write(v6knob, "1", path)   # the kernel must not answer NDP/MLD for the stack's MAC

    def restore() -> None:
        _write(v6knob, was_disabled or "0", path)
        with NetNS(path) as r:
            for a in addrs:
                with contextlib.suppress(Exception):
                    r.addr("add", index=index, address=str(a.ip),
                           prefixlen=a.network.prefixlen,
                           **({"flags": IFA_F_NODAD} if a.version == 6 else {}))
            for fam_gw in (gw4, gw6):
                if fam_gw is not None:
                    with contextlib.suppress(Exception):
                        r.route("add", dst="default", gateway=str(fam_gw), oif=index)
            for dst, gw in routes:
                with contextlib.suppress(Exception):
                    r.route("add", dst=dst, gateway=gw, oif=index)
    cleanup.callback(restore)
    shaper = _cni_state(args, path, cleanup)
    endpoint = PacketEndpoint(ifname, mac=mac, netns=path)
    cleanup.callback(endpoint.close)
    ns.add_link(_wrap(endpoint, args, cleanup, shaper), name=ifname, addresses=addrs,
                gateway4=gw4, gateway6=gw6, routes=routes, dad=False)
    nic = ns.stack.nic_by_name(ifname)
    for ip, lladdr in neighbours:
        if nic is not None:
            ns.stack.add_neighbor(nic, ip, lladdr)


def _cni_state(args: argparse.Namespace, path: str, cleanup: contextlib.ExitStack) -> Any:
    """Bandwidth and port mappings recorded by netvisor-cni for this namespace, if any."""
    try:
        from cni import state as cni_state
        load = cni_state.load_for_netns
    except (ImportError, AttributeError):
        return None
    try:
        attachments = load(path)
    except Exception as e:  # noqa: BLE001 (a broken state file must not stop the sandbox)
        log.warning("cannot read CNI state for %s: %s", path, e)
        return None
    shaper = None
    for st in attachments:
        bw = st.bandwidth
        if bw is not None and shaper is None and bw.egress_rate:
            from netvisor.link.shaper import from_cni_bandwidth
            shaper = from_cni_bandwidth(bw.egress_rate, bw.egress_burst)
        for pm in st.port_mappings:
            host = f"{pm.host_ip}:" if pm.host_ip else ""
            args.publish.append(f"{host}{pm.host_port}:{pm.container_port}/{pm.protocol}")
    if attachments and hasattr(cni_state, "mark_taken_over"):
        with contextlib.suppress(Exception):
            cni_state.mark_taken_over(path, os.getpid())
            cleanup.callback(cni_state.clear_taken_over, path, os.getpid())
    return shaper


def _read(procpath: str, netns: str) -> str | None:
    from netvisor.link.netns import in_netns
    try:
        with in_netns(netns), open(procpath) as f:
            return f.read().strip()
    except OSError:
        return None


def _write(procpath: str, value: str, netns: str) -> None:
    from netvisor.link.netns import in_netns
    with in_netns(netns), contextlib.suppress(OSError), open(procpath, "w") as f:
        f.write(value)


# ------------------------------------------------------------ netlink, stats
def describe(ns: NetStack) -> tuple[list[Any], list[Any], list[Any]]:
    """The stack's interfaces/routes/neighbours in ``ifdesc`` vocabulary."""
    from netvisor.syscall import ifdesc
    interfaces = []
    for nic in ns.stack.nics.values():
        kind = "loopback" if nic.loopback else "ether"
        addrs = []
        for a in nic.v4:
            addrs.append(ifdesc.AddressInfo(a, scope=ifdesc.default_scope(a),
                                            broadcast=ifdesc.ipv4_broadcast(a)))
        for a6 in nic.v6:
            iface = a6.iface
            addrs.append(ifdesc.AddressInfo(iface, scope=ifdesc.default_scope(iface)))
        interfaces.append(ifdesc.InterfaceInfo(
            index=nic.id, name=nic.name[:15], mac=nic.mac if not nic.loopback else bytes(6),
            mtu=nic.mtu, flags=ifdesc.linux_flags(kind), kind=kind,  # type: ignore[arg-type]
            addresses=tuple(addrs)))
    routes = ifdesc.connected_routes(interfaces)
    for entry in ns.stack.routes if hasattr(ns.stack, "routes") else ():
        with contextlib.suppress(Exception):
            routes.append(ifdesc.RouteInfo(dst=entry.dst, gateway=entry.gateway,
                                           oif=entry.nic_id, priority=entry.metric or 0))
    return interfaces, ifdesc.dedupe_routes(routes), []


class _NetlinkAdapter:
    """The supervisor's view of H6's sans-IO NetlinkRouteSocket."""

    def __init__(self, ns: NetStack, pid: int) -> None:
        from netvisor.syscall.netlink import NetlinkRouteSocket
        self.ns = ns
        self.pid = pid
        self.nl = NetlinkRouteSocket(*describe(ns), pid)

    def handle(self, data: bytes, pid: int) -> list[bytes]:
        self.nl.update(*describe(self.ns))
        self.nl.handle_request(data)
        return list(self.nl.replies())


def netlink_factory(ns: NetStack) -> Callable[[int], _NetlinkAdapter] | None:
    try:
        import netvisor.syscall.netlink  # noqa: F401
    except ImportError:
        return None
    return lambda pid: _NetlinkAdapter(ns, pid)


def stats(ns: NetStack) -> dict[str, Any]:
    """The stack's counters and, per shaped NIC, the egress shaper's counters."""
    from netvisor.link.shaper import EgressShaper

    shapers = {str(nic): dataclasses.asdict(ep.stats)
               for nic, chain in ns.endpoint_chains().items()
               for ep in chain if isinstance(ep, EgressShaper)}
    out: dict[str, Any] = {"counters": ns.stack.counters.snapshot()}
    if shapers:
        out["egress_shaper"] = shapers
    return out


def print_stats(ns: NetStack, out: TextIO = sys.stderr) -> None:
    """``--stats`` (and ``--debug``) at exit: one JSON line."""
    out.write(json.dumps(stats(ns), sort_keys=True) + "\n")


# ------------------------------------------------------------------ publish
def parse_publish(spec: str) -> tuple[str, int, int, str]:
    """``[HOSTIP:]HOSTPORT:PORT[/udp]`` -> (host ip, host port, port, "tcp"|"udp")."""
    proto = "tcp"
    body = spec
    if "/" in spec:
        body, proto = spec.rsplit("/", 1)
        proto = proto.lower()
        if proto not in ("tcp", "udp"):
            raise WiringError(f"--publish {spec}: protocol must be tcp or udp")
    parts = body.rsplit(":", 2)
    try:
        if len(parts) == 3:
            host = parts[0].strip("[]")
            ipaddress.ip_address(host)
            hport, port = int(parts[1]), int(parts[2])
        elif len(parts) == 2:
            host, hport, port = "0.0.0.0", int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise WiringError(f"--publish {spec}: expected [HOSTIP:]HOSTPORT:PORT[/udp]") from None
    if not (0 < hport < 65536 and 0 < port < 65536):
        raise WiringError(f"--publish {spec}: ports must be 1..65535")
    return host, hport, port, proto


async def serve_publish(ns: NetStack, specs: list[str], *,
                        task_status: Any = None) -> None:
    """Forward host ports (kernel sockets here) to ports of the sandbox's stack."""
    import trio
    targets: dict[int, str | None] = {4: None, 6: None}
    for nic in ns.stack.nics.values():
        if not nic.loopback:
            for a in nic.v4:
                targets[4] = targets[4] or str(a.ip)
    parsed = [parse_publish(s) for s in specs]
    async with trio.open_nursery() as nursery:
        for host, hport, port, proto in parsed:
            family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
            target = targets[4] or "127.0.0.1"
            sock = trio.socket.socket(family, trio.socket.SOCK_STREAM if proto == "tcp"
                                      else trio.socket.SOCK_DGRAM)
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
            await sock.bind((host, hport))
            if proto == "tcp":
                sock.listen(128)
                nursery.start_soon(_publish_tcp, ns, sock, target, port)
            else:
                nursery.start_soon(_publish_udp, ns, sock, target, port)
        if task_status is not None:
            task_status.started()


async def _publish_tcp(ns: NetStack, listener: Any, target: str, port: int) -> None:
    import trio
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await listener.accept()
            nursery.start_soon(_proxy_tcp, ns, conn, target, port)


async def _proxy_tcp(ns: NetStack, conn: Any, target: str, port: int) -> None:
    import errno
    import select
    import socket

    import trio

    from netvisor.tcpip.errors import NetError
    s = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            s.connect((target, port))
        except NetError as e:
            if e.errno != errno.EINPROGRESS:
                return
        ns.kick()
        await ns.wait(s, select.POLLOUT)
        if int.from_bytes(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR, 4)[:4], "little"):
            return

        async def up() -> None:
            while data := await conn.recv(65536):
                view = memoryview(data)
                while view:
                    try:
                        view = view[s.send(view):]
                        ns.kick()
                    except NetError as e:
                        if e.errno != errno.EAGAIN:
                            return
                        await ns.wait(s, select.POLLOUT)
            with contextlib.suppress(NetError):
                s.shutdown(socket.SHUT_WR)
            ns.kick()

        async def down() -> None:
            while True:
                try:
                    data = s.recv(65536)
                    ns.kick()
                except NetError as e:
                    if e.errno != errno.EAGAIN:
                        return
                    await ns.wait(s, select.POLLIN)
                    continue
                if not data:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
                    return
                await conn.sendall(data) if hasattr(conn, "sendall") else await conn.send(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(up)
            nursery.start_soon(down)
    except* OSError:
        pass   # the client reset or went away (from up/down: in a group): one connection ends
    finally:
        s.close()
        ns.kick()
        conn.close()


async def _publish_udp(ns: NetStack, sock: Any, target: str, port: int) -> None:
    """One stack socket per client address; replies go back from the host port."""
    import errno
    import select
    import socket

    import trio

    from netvisor.tcpip.errors import NetError
    peers: dict[Any, Any] = {}

    async def back(client: Any, s: Any) -> None:
        while True:
            try:
                data = s.recv(65536)
            except NetError as e:
                if e.errno != errno.EAGAIN:
                    return
                await ns.wait(s, select.POLLIN)
                continue
            await sock.sendto(data, client)

    async with trio.open_nursery() as nursery:
        while True:
            data, client = await sock.recvfrom(65536)
            s = peers.get(client)
            if s is None:
                s = peers[client] = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.connect((target, port))
                nursery.start_soon(back, client, s)
            with contextlib.suppress(NetError):
                s.send(data)
            ns.kick()
