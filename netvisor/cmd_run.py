"""``netvisor run``: run a program whose network is netvisor's stack.

    netvisor run [--network=sandbox|host|none] [--netns PATH] [--address CIDR]...
                 [--gateway IP] [--dns IP] [--mtu N] [--publish [HOSTIP:]HOSTPORT:PORT[/udp]]...
                 [--pcap FILE] [--egress-rate RATE --egress-burst SIZE] [--stats]
                 [--no-nat] [--platform=seccomp|ptrace] [--debug [FILE]] -- CMD [ARGS...]

The program runs in new, empty network and PID namespaces with a seccomp
filter that traps its socket calls; the supervisor (this process) serves them
from the stack (``netvisor.syscall.supervisor``). Exit status is the
program's (128+N when killed by signal N); 127 when the command is not
found; 125 when netvisor itself could not set the sandbox up; 2 for usage.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, TextIO

import trio

from netvisor.syscall.spawn import SpawnError, spawn, terminal_foreground_restore

log = logging.getLogger(__name__)

EXIT_SETUP_FAILED = 125
DRAIN_TIMEOUT = 60.0
"""Seconds the stack keeps sending after the program exits (Linux tcp_fin_timeout)."""
DRAIN_POLL = 0.005
"""How often the drain checks for completion (exit path only)."""
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


class RunError(Exception):
    """A setup failure reported as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``netvisor run`` (called by netvisor/cli.py)."""
    parser.add_argument("--network", choices=("sandbox", "host", "none"), default="sandbox",
                        help="sandbox: the stack on a NIC (default); none: loopback only; "
                             "host: no trapping, the host's network")
    parser.add_argument("--netns", metavar="PATH",
                        help="take over the interface of this network namespace (like runsc)")
    parser.add_argument("--address", metavar="CIDR", action="append", default=[],
                        help="the stack's address (repeatable, IPv4 and IPv6)")
    parser.add_argument("--gateway", metavar="IP", action="append", default=[],
                        help="the kernel side's address on the TAP, the stack's default route")
    parser.add_argument("--dns", metavar="IP", action="append", default=[],
                        help="name server written to the program's resolv.conf")
    parser.add_argument("--mtu", type=int, default=None, help="MTU of the stack's NIC")
    parser.add_argument("--publish", "-p", metavar="[HOSTIP:]HOSTPORT:PORT[/udp]",
                        action="append", default=[], help="forward a host port to the sandbox")
    parser.add_argument("--pcap", metavar="FILE", help="write every frame of the stack's NICs")
    parser.add_argument("--egress-rate", metavar="RATE", help="egress token bucket rate")
    parser.add_argument("--egress-burst", metavar="SIZE", help="egress token bucket burst")
    parser.add_argument("--stats", action="store_true", help="print stack counters at exit")
    parser.add_argument("--drain-timeout", metavar="SECONDS", type=float,
                        default=DRAIN_TIMEOUT,
                        help="after the program exits, keep delivering the data and FINs "
                             "its TCP connections still owe for up to SECONDS, then reset "
                             f"what is left (default {DRAIN_TIMEOUT:g}, like tcp_fin_timeout)")
    parser.add_argument("--no-nat", action="store_true",
                        help="no forwarding/masquerade for the default TAP wiring")
    parser.add_argument("--platform", choices=("seccomp", "ptrace"), default="seccomp",
                        help="how socket calls are trapped")
    parser.add_argument("--debug", metavar="FILE", nargs="?", const="-", default=None,
                        help="log every trapped call and its answer (stderr or FILE)")
    parser.add_argument("--stack", choices=("netstack", "kernel"), default="netstack",
                        help=argparse.SUPPRESS)  # kernel: serve from the host's sockets (testing)
    # Benchmarks (bench/run.py): the supervisor's own CPU from the program's
    # start to its exit, and a cProfile of the whole run.
    parser.add_argument("--cpu-report", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD [ARGS...]")


def _error(msg: str) -> None:
    sys.stderr.write(f"netvisor: {msg}\n")
    sys.stderr.flush()


def main(args: argparse.Namespace) -> int:
    """Run ``args.cmd`` in the sandbox; returns the exit status."""
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        _error("error: missing CMD (usage: netvisor run [OPTIONS] -- CMD [ARGS...])")
        return 2
    if args.network == "host":
        return _run_host(cmd)
    if os.geteuid() != 0:
        _error("error: not enough privilege: netvisor run needs root "
               "(network/PID namespaces, TAP, seccomp listener)")
        return EXIT_SETUP_FAILED
    debug: TextIO | None = None
    try:
        if args.debug == "-":
            debug = sys.stderr
        elif args.debug:
            debug = open(args.debug, "w", buffering=1)  # noqa: SIM115
        with contextlib.ExitStack() as cleanup:
            return _run_sandboxed(args, cmd, debug, cleanup)
    except (RunError, SpawnError, _wiring_error()) as e:
        _error(f"error: {e}")
        return EXIT_SETUP_FAILED
    finally:
        if debug is not None and debug is not sys.stderr:
            debug.close()


def _raise_fd_limit() -> None:
    """Each emulated socket holds one fd here: use the whole hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _wiring_error() -> type[Exception]:
    try:
        from netvisor.syscall.wiring import WiringError
    except ImportError:
        return RunError
    return WiringError


def _run_host(cmd: list[str]) -> int:
    """--network=host: no trapping; the program replaces netvisor."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(cmd[0], cmd)
    except FileNotFoundError:
        _error(f"{cmd[0]}: command not found")
        return 127
    except OSError as e:
        _error(f"{cmd[0]}: {e.strerror}")
        return 126


@contextlib.contextmanager
def _resolv_conf(servers: list[str]) -> Iterator[str | None]:
    if not servers:
        yield None
        return
    for s in servers:
        try:
            ipaddress.ip_address(s)
        except ValueError:
            raise RunError(f"--dns {s}: not an IP address") from None
    d = tempfile.mkdtemp(prefix="netvisor-")
    path = os.path.join(d, "resolv.conf")
    with open(path, "w") as f:
        f.write("".join(f"nameserver {s}\n" for s in servers))
    try:
        yield path
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _make_stack(args: argparse.Namespace, cleanup: contextlib.ExitStack) -> tuple[Any, Any]:
    """(provider, netstack-or-None): what serves the program's sockets."""
    if args.stack == "kernel":
        from netvisor.syscall.kernelstack import KernelStack
        return KernelStack(), None
    try:
        from netvisor.syscall.wiring import build_netstack
    except ImportError as e:
        raise RunError(f"the stack is not available ({e})") from None
    return build_netstack(args, cleanup)


def _run_sandboxed(args: argparse.Namespace, cmd: list[str], debug: TextIO | None,
                   cleanup: contextlib.ExitStack) -> int:
    if args.publish and args.network != "sandbox":
        raise RunError("--publish needs --network=sandbox")
    if args.netns and args.network != "sandbox":
        raise RunError("--netns needs --network=sandbox")
    _raise_fd_limit()
    provider, netstack = _make_stack(args, cleanup)
    if args.publish:
        from netvisor.syscall.wiring import parse_publish
        for spec in args.publish:
            parse_publish(spec)
    resolv = cleanup.enter_context(_resolv_conf(args.dns))
    sandboxed = spawn(cmd, new_netns=True, resolv_conf=resolv,
                      ptrace=args.platform == "ptrace")
    cleanup.callback(sandboxed.close)
    netlink = interfaces = None
    if netstack is not None:
        from netvisor.syscall.wiring import describe, netlink_factory
        netlink = netlink_factory(netstack)

        def interfaces() -> Any:
            return describe(netstack)[0]
    if args.drain_timeout < 0:
        raise RunError("--drain-timeout must be >= 0")
    cpu: dict[str, float] = {}
    run_args = (_supervise, sandboxed, provider, netstack, debug, netlink, interfaces,
                list(args.publish), args.drain_timeout, cpu)
    if getattr(args, "profile", None):
        import cProfile
        profiler = cProfile.Profile()
        try:
            code = profiler.runcall(trio.run, *run_args)
        finally:
            profiler.dump_stats(args.profile)
    else:
        code = trio.run(*run_args)
    if getattr(args, "cpu_report", None):
        import json
        with open(args.cpu_report, "w") as f:
            json.dump(cpu, f)
    terminal_foreground_restore()
    for msg in sandboxed.messages:
        _error(msg)
    if netstack is not None and (args.stats or debug is not None):
        from netvisor.syscall.wiring import print_stats
        print_stats(netstack, sys.stderr if args.stats or debug is None else debug)
    return int(code)


async def _supervise(sandboxed: Any, provider: Any, netstack: Any, debug: TextIO | None,
                     netlink: Any, interfaces: Any, publish: list[str],
                     drain_timeout: float = DRAIN_TIMEOUT,
                     cpu: dict[str, float] | None = None) -> int:
    from netvisor.syscall.supervisor import Supervisor
    supervisor = Supervisor(sandboxed.listener, provider, debug=debug, netlink=netlink,
                            interfaces=interfaces)
    async with trio.open_nursery() as nursery:
        if netstack is not None:
            await nursery.start(netstack.serve)
        if hasattr(sandboxed.listener, "pump"):        # --platform=ptrace
            nursery.start_soon(sandboxed.listener.pump)
        await nursery.start(supervisor.serve)
        if netstack is not None and publish:
            from netvisor.syscall.wiring import serve_publish
            await nursery.start(serve_publish, netstack, publish)
        drain = trio.CancelScope()
        nursery.start_soon(_forward_signals, sandboxed, drain)
        sandboxed.go()
        start = os.times()
        code = await sandboxed.wait()
        if cpu is not None:
            # The supervisor's CPU while the program ran (what a benchmark
            # divides by its operations; start-up and drain excluded).
            end = os.times()
            cpu.update(user=end.user - start.user, system=end.system - start.system,
                       calls=getattr(supervisor, "calls", 0),
                       turns=getattr(netstack, "turns", 0))
        if netstack is not None:
            await _drain(supervisor, netstack, drain, drain_timeout)
        nursery.cancel_scope.cancel()
    return int(code)


async def _drain(supervisor: Any, netstack: Any, scope: trio.CancelScope,
                 timeout: float) -> None:
    """After the program's exit: deliver what its TCP connections still owe.

    The program's ends of its sockets are closed (its processes are gone),
    so the supervisor's pumps move what it wrote into the stack and then
    close the stack sockets (FIN, or RST per Linux rules). The loop keeps
    running until that is done and no connection has unsent/unacknowledged
    data or an unacknowledged FIN (as Linux keeps orphaned sockets sending),
    at most ``timeout`` seconds (BUGS-H9 B5). Whatever is left is reset so
    that no peer waits for data that will never come; a signal (SIGINT,
    SIGTERM) during the drain ends it early.
    """
    scope.deadline = trio.current_time() + timeout
    with scope:
        while supervisor.pumping() or netstack.unfinished_connections():
            await trio.sleep(DRAIN_POLL)
    left = netstack.unfinished_connections()
    if left:
        log.warning("netvisor: %d connection(s) still sending after --drain-timeout: reset",
                    len(left))
    if netstack.abort_connections():
        # Let the RSTs leave (a shaper may hold them a moment).
        with trio.move_on_after(1.0):
            while not netstack.egress_idle():
                await trio.sleep(DRAIN_POLL)


async def _forward_signals(sandboxed: Any, drain: trio.CancelScope | None = None) -> None:
    with trio.open_signal_receiver(*FORWARDED_SIGNALS) as signals:
        async for sig in signals:
            # The drain scope gets its deadline when the program has exited:
            # then there is nobody to forward to, and the signal ends the drain.
            if drain is not None and drain.deadline != math.inf \
                    and sig in (signal.SIGINT, signal.SIGTERM):
                drain.cancel()
                continue
            sandboxed.signal(sig)


if __name__ == "__main__":
    # ``python3 -m netvisor.cmd_run ...``: the same command without the dispatcher.
    from netvisor.cli import _Parser
    _parser = _Parser(prog="netvisor run")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
