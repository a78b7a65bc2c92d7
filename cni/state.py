"""Per-attachment state of netvisor-cni, and the API `netvisor run` reads.

One JSON file per attachment, keyed as the CNI spec recommends by
``(network name, CNI_CONTAINERID, CNI_IFNAME)``, in the state directory:
``$NETVISOR_CNI_STATE_DIR``, else the config's ``dataDir``, else
``/var/lib/cni/netvisor``. Files are written atomically (temporary file,
fsync, rename) while holding an exclusive ``flock`` on ``<dir>/.lock``;
readers of single files need no lock (rename is atomic), read-modify-write
sequences (takeover marker, GC) take the lock. The schema is documented in
cni/README.md.

Public API for ``netvisor run --netns PATH``:
  :func:`load_for_netns` (bandwidth and port mappings of a namespace),
  :func:`mark_taken_over` / :func:`clear_taken_over` (so that CHECK accepts
  an interface whose addresses netvisor has moved into its own stack).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

STATE_DIR_ENV: Final = "NETVISOR_CNI_STATE_DIR"
LOCK_TIMEOUT_ENV: Final = "NETVISOR_CNI_LOCK_TIMEOUT"
DEFAULT_STATE_DIR: Final = "/var/lib/cni/netvisor"
SCHEMA_VERSION: Final = 1
_LOCK_NAME: Final = ".lock"
_SUFFIX: Final = ".json"
# '+' is allowed in neither a network name nor a container id
# ([a-zA-Z0-9][a-zA-Z0-9_.-]*), so it separates the key parts unambiguously;
# the interface name comes last because it may contain '+'.
_SEP: Final = "+"

MODE_VETH: Final = "veth"        # netvisor-cni created the veth pair
MODE_CHAINED: Final = "chained"  # an earlier plugin made the interface; only recorded


def state_dir(config_dir: str | None = None) -> str:
    """The state directory: env override, then config ``dataDir``, then default."""
    return os.environ.get(STATE_DIR_ENV) or config_dir or DEFAULT_STATE_DIR


@dataclass
class Bandwidth:
    """The ``bandwidth`` capability (CNI CONVENTIONS.md): rates in bits/s, bursts in bits.

    netvisor applies only the egress side (its token-bucket shaper on the
    NIC's egress); ingress is recorded for completeness.
    """

    ingress_rate: int | None = None
    ingress_burst: int | None = None
    egress_rate: int | None = None
    egress_burst: int | None = None

    @property
    def egress_rate_bytes(self) -> float | None:
        """Egress rate in bytes/s (the shaper's unit), or None when unlimited."""
        return self.egress_rate / 8 if self.egress_rate else None

    @property
    def egress_burst_bytes(self) -> int | None:
        """Egress burst in bytes, or None when not given."""
        return self.egress_burst // 8 if self.egress_burst else None

    def to_json(self) -> dict[str, int]:
        out = {"ingressRate": self.ingress_rate, "ingressBurst": self.ingress_burst,
               "egressRate": self.egress_rate, "egressBurst": self.egress_burst}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Bandwidth:
        return cls(obj.get("ingressRate"), obj.get("ingressBurst"),
                   obj.get("egressRate"), obj.get("egressBurst"))


@dataclass
class PortMapping:
    """One entry of the ``portMappings`` capability."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hostPort": self.host_port, "containerPort": self.container_port,
                               "protocol": self.protocol}
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PortMapping:
        return cls(int(obj["hostPort"]), int(obj["containerPort"]),
                   str(obj.get("protocol") or "tcp").lower(), str(obj.get("hostIP") or ""))


@dataclass
class TakeOver:
    """Marker: a netvisor process (``pid``) serves the namespace since ``since``."""

    pid: int
    since: float

    def alive(self) -> bool:
        """True while the marking process exists."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class AttachmentState:
    """What one ADD made; see cni/README.md for the JSON schema."""

    network: str
    container_id: str
    ifname: str
    netns: str
    netns_dev: int | None = None
    netns_ino: int | None = None
    mode: str = MODE_VETH
    host_ifname: str | None = None
    bridge: str | None = None
    mac: str | None = None
    mtu: int | None = None
    cni_version: str = "1.1.0"
    result: dict[str, Any] = field(default_factory=dict)
    bandwidth: Bandwidth | None = None
    port_mappings: list[PortMapping] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    taken_over: TakeOver | None = None
    path: str | None = None  # where it was loaded from (not serialized)

    @property
    def key(self) -> str:
        return attachment_key(self.network, self.container_id, self.ifname)

    def addresses(self) -> list[str]:
        """CIDR addresses the result assigned to this attachment's interface."""
        index = None
        for i, iface in enumerate(self.result.get("interfaces", [])):
            if iface.get("name") == self.ifname and iface.get("sandbox"):
                index = i
        return [ip["address"] for ip in self.result.get("ips", [])
                if index is None or ip.get("interface") in (None, index)]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "network": self.network,
            "containerID": self.container_id,
            "ifname": self.ifname,
            "netns": self.netns,
            "netnsDev": self.netns_dev,
            "netnsIno": self.netns_ino,
            "mode": self.mode,
            "hostIfname": self.host_ifname,
            "bridge": self.bridge,
            "mac": self.mac,
            "mtu": self.mtu,
            "cniVersion": self.cni_version,
            "result": self.result,
            "bandwidth": self.bandwidth.to_json() if self.bandwidth else None,
            "portMappings": [p.to_json() for p in self.port_mappings],
            "config": self.config,
            "createdAt": self.created_at,
            "takenOver": ({"pid": self.taken_over.pid, "since": self.taken_over.since}
                          if self.taken_over else None),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str | None = None) -> AttachmentState:
        bw = obj.get("bandwidth")
        tk = obj.get("takenOver")
        return cls(
            network=str(obj["network"]),
            container_id=str(obj["containerID"]),
            ifname=str(obj["ifname"]),
            netns=str(obj.get("netns") or ""),
            netns_dev=obj.get("netnsDev"),
            netns_ino=obj.get("netnsIno"),
            mode=str(obj.get("mode") or MODE_VETH),
            host_ifname=obj.get("hostIfname"),
            bridge=obj.get("bridge"),
            mac=obj.get("mac"),
            mtu=obj.get("mtu"),
            cni_version=str(obj.get("cniVersion") or "1.1.0"),
            result=obj.get("result") or {},
            bandwidth=Bandwidth.from_json(bw) if isinstance(bw, dict) else None,
            port_mappings=[PortMapping.from_json(p) for p in obj.get("portMappings") or []],
            config=obj.get("config") or {},
            created_at=float(obj.get("createdAt") or 0.0),
            taken_over=(TakeOver(int(tk["pid"]), float(tk.get("since", 0.0)))
                        if isinstance(tk, dict) else None),
            path=path,
        )


def attachment_key(network: str, container_id: str, ifname: str) -> str:
    """The file name (without directory) of an attachment's state."""
    return f"{network}{_SEP}{container_id}{_SEP}{ifname}{_SUFFIX}"


class LockTimeout(OSError):
    """The state lock stayed busy longer than the timeout (CNI code 11)."""


def _lock_timeout() -> float:
    # Held only for a file write, so 30 s means something is stuck; the
    # plugin then answers "try again later" instead of hanging the runtime.
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, "30"))
    except ValueError:
        return 30.0


@contextlib.contextmanager
def locked(directory: str, exclusive: bool = True,
           timeout: float | None = None) -> Iterator[None]:
    """Hold the state directory's flock (created on demand).

    Raises :class:`LockTimeout` after ``timeout`` seconds (default
    ``$NETVISOR_CNI_LOCK_TIMEOUT`` or 30).
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(directory, _LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + (_lock_timeout() if timeout is None else timeout)
        op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, op)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"state lock {directory}/{_LOCK_NAME} busy") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _write_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(state: AttachmentState, directory: str) -> str:
    """Write ``state`` atomically under the directory lock; returns the path."""
    path = os.path.join(directory, state.key)
    with locked(directory):
        _write_atomic(path, state.to_json())
    state.path = path
    return path


def _read(path: str) -> AttachmentState | None:
    try:
        with open(path, encoding="utf-8") as f:
            return AttachmentState.from_json(json.load(f), path)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A corrupt file cannot come from us (writes are atomic); skip it
        # rather than fail every lookup, it is reported by list_all's caller.
        return None


def load(network: str, container_id: str, ifname: str, directory: str) -> AttachmentState | None:
    """The state of one attachment, or None."""
    return _read(os.path.join(directory, attachment_key(network, container_id, ifname)))


def remove(network: str, container_id: str, ifname: str, directory: str) -> bool:
    """Delete one attachment's state; False when there was none."""
    path = os.path.join(directory, attachment_key(network, container_id, ifname))
    with locked(directory):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
    return True


def list_all(directory: str | None = None) -> list[AttachmentState]:
    """Every readable attachment state in ``directory`` (default: :func:`state_dir`)."""
    directory = directory or state_dir()
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(_SUFFIX) and not name.startswith("."):
            st = _read(os.path.join(directory, name))
            if st is not None:
                out.append(st)
    return out


def netns_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a namespace file; the same for every path to it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _matches(state: AttachmentState, netns_path: str, ident: tuple[int, int] | None) -> bool:
    if os.path.abspath(state.netns) == os.path.abspath(netns_path):
        return True
    if ident is None or state.netns_ino is None:
        return False
    # Compare with the namespace's identity as recorded at ADD time, and as
    # it is now (the stored path may be a bind mount that still exists).
    if (state.netns_dev, state.netns_ino) == ident:
        return True
    return netns_identity(state.netns) == ident


def load_for_netns(netns_path: str, state_dir_path: str | None = None) -> list[AttachmentState]:
    """Every attachment whose namespace is ``netns_path``.

    Matches by path and by the namespace's (dev, inode), so ``/proc/PID/ns/net``
    and ``/run/netns/X`` find the same attachments. Sorted by network, ifname.
    """
    ident = netns_identity(netns_path)
    found = [s for s in list_all(state_dir_path) if _matches(s, netns_path, ident)]
    return sorted(found, key=lambda s: (s.network, s.ifname, s.container_id))


def _update_for_netns(netns_path: str, directory: str | None, change: Any) -> int:
    directory = directory or state_dir()
    ident = netns_identity(netns_path)
    count = 0
    with locked(directory):
        for st in list_all(directory):
            if _matches(st, netns_path, ident) and st.path and change(st):
                _write_atomic(st.path, st.to_json())
                count += 1
    return count


def mark_taken_over(netns_path: str, pid: int, state_dir_path: str | None = None) -> int:
    """Record that netvisor process ``pid`` serves ``netns_path``.

    CHECK then accepts the interface without its kernel addresses (netvisor
    moved them into its stack). Returns how many attachments were marked.
    """
    def change(st: AttachmentState) -> bool:
        st.taken_over = TakeOver(pid, time.time())
        return True
    return _update_for_netns(netns_path, state_dir_path, change)


def clear_taken_over(netns_path: str, pid: int | None = None,
                     state_dir_path: str | None = None) -> int:
    """Remove the takeover marker (only ``pid``'s when given). Returns the count."""
    def change(st: AttachmentState) -> bool:
        if st.taken_over is None or (pid is not None and st.taken_over.pid != pid):
            return False
        st.taken_over = None
        return True
    return _update_for_netns(netns_path, state_dir_path, change)


__all__ = [
    "DEFAULT_STATE_DIR",
    "MODE_CHAINED",
    "MODE_VETH",
    "STATE_DIR_ENV",
    "AttachmentState",
    "Bandwidth",
    "LockTimeout",
    "PortMapping",
    "TakeOver",
    "attachment_key",
    "clear_taken_over",
    "list_all",
    "load",
    "load_for_netns",
    "locked",
    "mark_taken_over",
    "netns_identity",
    "remove",
    "save",
    "state_dir",
]
