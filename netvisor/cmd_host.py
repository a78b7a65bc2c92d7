"""``netvisor host``: run the stack as a standalone host on a TAP or an interface.

    netvisor host --tap nv0 --address 10.0.0.2/24 --address fd00::2/64 \\
        --peer-address 10.0.0.1/24 --peer-address fd00::1/64 --echo 7 --pcap out.pcap

creates TAP ``nv0`` in the current network namespace, gives its kernel side
the ``--peer-address`` addresses (pyroute2; IPv6 ones without DAD, since the
only other node on that cable is us), runs the stack with the ``--address``
addresses, answers ARP/NDP/ping, serves UDP echo (and TCP echo when the TCP
transport exists) on ``--echo PORT``, prints ``ready`` on one line once
Duplicate Address Detection is done, and removes the TAP (closing a
non-persistent TAP deletes it) on SIGINT/SIGTERM.

``--packet IFNAME`` uses AF_PACKET on an existing interface instead (a veth):
the stack takes the interface over with the interface's MAC, and the kernel's
IPv6 on it is disabled so that the kernel's own link-local address (the same
EUI-64) does not fight ours in DAD.

SIGUSR1 prints the stack's counters as one JSON line on stdout (tests use it
to see drop counters grow); ``--debug`` logs at DEBUG and prints them at exit.
Bad arguments: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import functools
import ipaddress
import json
import logging
import random
import select
import signal
import socket
import sys
from typing import Any

import trio

from netvisor.netstack import NetStack
from netvisor.tcpip.errors import NetError

log = logging.getLogger(__name__)

IFA_F_NODAD = 0x02


def _cidr(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        iface = ipaddress.ip_interface(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address/prefix: {text!r}") from None
    if "/" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} needs a prefix length (e.g. {text}/24)")
    return iface


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {v}")
    return v


def _mtu(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an MTU: {text!r}") from None
    if not 68 <= v <= 65521:
        raise argparse.ArgumentTypeError(f"MTU out of range 68-65521: {v}")
    return v


def _ifname(text: str) -> str:
    if not text or len(text.encode()) > 15 or "/" in text or " " in text:
        raise argparse.ArgumentTypeError(f"bad interface name {text!r} (1-15 bytes, no '/')")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    link = parser.add_mutually_exclusive_group(required=True)
    link.add_argument("--tap", metavar="NAME", type=_ifname,
                      help="create TAP NAME in the current network namespace")
    link.add_argument("--packet", metavar="IFNAME", type=_ifname,
                      help="use AF_PACKET on existing interface IFNAME (e.g. a veth)")
    parser.add_argument("--address", metavar="CIDR", type=_cidr, action="append", default=[],
                        help="address of the stack (repeatable)")
    parser.add_argument("--peer-address", metavar="CIDR", type=_cidr, action="append",
                        default=[], help="address for the TAP's kernel side (repeatable)")
    parser.add_argument("--gateway", metavar="IP", type=_ip, action="append", default=[],
                        help="default gateway (one IPv4 and/or one IPv6)")
    parser.add_argument("--echo", metavar="PORT", type=_port,
                        help="serve UDP (and TCP when available) echo on PORT")
    parser.add_argument("--discard", metavar="PORT", type=_port,
                        help="TCP sink on PORT: counts, answers count + SHA-256 at EOF "
                             "(netvisor/services.py)")
    parser.add_argument("--source", metavar="PORT", type=_port,
                        help="TCP source on PORT: writes the requested length of a "
                             "deterministic stream (netvisor/services.py)")
    parser.add_argument("--backlog", metavar="N", type=int, default=None,
                        help="listen backlog of --discard/--source (default 4096)")
    parser.add_argument("--pcap", metavar="FILE", help="record every frame to FILE (pcap)")
    parser.add_argument("--mtu", metavar="N", type=_mtu, help="link MTU (TAP only)")
    parser.add_argument("--offload", action=argparse.BooleanOptionalAction, default=False,
                        help="TAP virtio-net header with checksum offload and TSO")
    parser.add_argument("--seed", type=int, default=None, help="seed for the stack's randomness")
    parser.add_argument("--no-dad", action="store_true",
                        help="skip IPv6 Duplicate Address Detection for --address")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG; print counters at exit")


def _fail(msg: str, code: int = 2) -> int:
    sys.stderr.write(f"netvisor host: error: {msg}\n")
    sys.stderr.flush()
    return code


def _validate(args: argparse.Namespace) -> str | None:
    if args.peer_address and not args.tap:
        return "--peer-address needs --tap (a --packet interface is configured by its owner)"
    if args.mtu is not None and not args.tap:
        return "--mtu needs --tap"
    v4 = [g for g in args.gateway if g.version == 4]
    v6 = [g for g in args.gateway if g.version == 6]
    if len(v4) > 1 or len(v6) > 1:
        return "at most one IPv4 and one IPv6 --gateway"
    for g in v4:
        if not any(a.version == 4 and g in a.network for a in args.address):
            return f"--gateway {g} is not inside any IPv4 --address network"
    for g in v6:
        if not g.is_link_local and not any(a.version == 6 and g in a.network
                                           for a in args.address):
            return f"--gateway {g} is not link-local nor inside any IPv6 --address network"
    seen = set()
    for a in args.address:
        if a.ip in seen:
            return f"--address {a.ip} given twice"
        seen.add(a.ip)
    return None


def _mac_from_seed(seed: int | None) -> bytes | None:
    if seed is None:
        return None
    rng = random.Random(seed ^ 0x5EED)
    raw = bytearray(rng.randbytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02  # unicast, locally administered
    return bytes(raw)


def _configure_peer(ifindex: int, addresses: list[Any]) -> None:
    from pyroute2 import IPRoute  # imported lazily: only the TAP mode needs it

    with IPRoute() as ipr:
        for a in addresses:
            kw: dict[str, Any] = {}
            if a.version == 6:
                kw["flags"] = IFA_F_NODAD
            ipr.addr("add", index=ifindex, address=str(a.ip), prefixlen=a.network.prefixlen, **kw)
        ipr.link("set", index=ifindex, state="up")


def _disable_kernel_ipv6(ifname: str) -> None:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError as exc:
        log.warning("could not disable kernel IPv6 on %s (%s); DAD may fail", ifname, exc)


def _counters_line(ns: NetStack) -> str:
    return json.dumps({"counters": ns.stack.counters.snapshot()}, sort_keys=True)


async def _udp_echo(ns: NetStack, port: int) -> None:
    sock = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # dual-stack: v4 arrives mapped
    sock.bind(("::", port, 0, 0))
    while True:
        await ns.wait(sock, select.POLLIN)
        while True:
            try:
                data, addr = sock.recvfrom(65536)
            except NetError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                continue  # a pending ICMP error: nothing to do for an echo server
            try:
                sock.sendto(data, 0, addr)
            except NetError as exc:
                log.debug("echo reply to %s failed: %s", addr, exc)
        ns.kick()


async def _tcp_echo(ns: NetStack, port: int) -> None:
    try:
        lst = ns.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except NetError:
        log.info("no TCP transport: UDP echo only")
        return
    lst.bind(("::", port, 0, 0))
    lst.listen(4096)  # Linux somaxconn default (5.4+): many clients may connect at once
    ns.kick()
    async with trio.open_nursery() as nursery:
        while True:
            await ns.wait(lst, select.POLLIN)
            try:
                conn, _addr = lst.accept()
            except NetError:
                continue
            nursery.start_soon(_tcp_echo_conn, ns, conn)


async def _tcp_echo_conn(ns: NetStack, conn: Any) -> None:
    pending = b""
    try:
        while True:
            if pending:
                await ns.wait(conn, select.POLLOUT)
                try:
                    n = conn.send(pending)
                    pending = pending[n:]
                    ns.kick()
                except NetError as exc:
                    if exc.errno != errno.EAGAIN:
                        return
                continue
            await ns.wait(conn, select.POLLIN)
            try:
                data = conn.recv(65536)
            except NetError as exc:
                if exc.errno == errno.EAGAIN:
                    continue
                return
            if not data:
                conn.shutdown(socket.SHUT_WR)
                ns.kick()
                return
            pending = data
            ns.kick()
    finally:
        try:
            conn.close()
        except NetError:
            pass
        ns.kick()


async def _run(args: argparse.Namespace) -> int:
    ns = NetStack(seed=args.seed)
    endpoint: Any
    if args.tap:
        from netvisor.link.tap import TapEndpoint
        try:
            endpoint = TapEndpoint(args.tap, vnet_hdr=args.offload, mtu=args.mtu,
                                   mac=_mac_from_seed(args.seed))
        except (OSError, ValueError) as exc:
            return _fail(f"cannot create TAP {args.tap}: {exc}", 1)
        if args.peer_address:
            try:
                _configure_peer(endpoint.ifindex, args.peer_address)
            except Exception as exc:  # noqa: BLE001 - pyroute2 raises its own types; report any
                endpoint.close()
                return _fail(f"cannot address {args.tap}: {exc}", 1)
        name = args.tap
    else:
        from netvisor.link.packet import PacketEndpoint
        try:
            endpoint = PacketEndpoint(args.packet, vnet_hdr=args.offload or None)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot open {args.packet}: {exc}", 1)
        _disable_kernel_ipv6(args.packet)
        name = args.packet
    if args.pcap:
        from netvisor.link.pcap import PcapSniffer
        try:
            endpoint = PcapSniffer(endpoint, args.pcap)
        except OSError as exc:
            endpoint.close()
            return _fail(f"cannot write {args.pcap}: {exc}", 1)
    gw4 = next((g for g in args.gateway if g.version == 4), None)
    gw6 = next((g for g in args.gateway if g.version == 6), None)
    try:
        ns.add_link(endpoint, name=name, addresses=args.address, gateway4=gw4, gateway6=gw6,
                    dad=False if args.no_dad else None)
    except (NetError, ValueError) as exc:
        ns.close()
        return _fail(str(exc), 2)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as sigs:
            async with trio.open_nursery() as nursery:
                await nursery.start(ns.serve)
                if args.echo:
                    nursery.start_soon(_udp_echo, ns, args.echo)
                    nursery.start_soon(_tcp_echo, ns, args.echo)
                for port, svc in ((args.discard, "discard"), (args.source, "source")):
                    if port:
                        from netvisor import services
                        await nursery.start(
                            functools.partial(services.serve, backlog=args.backlog or 4096),
                            ns, port, services.SERVICES[svc])
                with trio.move_on_after(10):
                    await ns.wait_addresses_ready()
                print("ready", flush=True)
                async for signum in sigs:
                    if signum == signal.SIGUSR1:
                        print(_counters_line(ns), flush=True)
                        continue
                    nursery.cancel_scope.cancel()
                    break
    finally:
        if args.debug:
            sys.stderr.write(_counters_line(ns) + "\n")
        ns.close()
    return 0


def main(args: argparse.Namespace) -> int:
    problem = _validate(args)
    if problem:
        return _fail(problem, 2)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return int(trio.run(_run, args))
    except KeyboardInterrupt:
        return 0
