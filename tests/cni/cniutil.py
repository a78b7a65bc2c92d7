"""Invoke netvisor-cni (and the reference plugins) exactly as a runtime does.

A runtime runs the plugin executable with CNI_* variables and the config on
stdin, reads stdout as JSON and looks at the exit code. The plugin runs
inside a test-made "host" namespace (``nsenter --net=``), so the host end of
every veth lives there and never in the machine's own namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from typing import Any

REF_DIR = "/usr/lib/cni"


def plugin_executable() -> str | None:
    """The installed console script (not a pyenv shim, which is slow)."""
    candidate = os.path.join(sysconfig.get_path("scripts"), "netvisor-cni")
    if os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("netvisor-cni")


def have_reference_plugins() -> bool:
    return all(os.access(os.path.join(REF_DIR, p), os.X_OK)
               for p in ("host-local", "bridge", "tuning", "bandwidth"))


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def ok(self) -> Any:
        assert self.rc == 0, f"rc={self.rc} stdout={self.stdout} stderr={self.stderr}"
        return self.json

    def error(self, code: int) -> dict[str, Any]:
        assert self.rc != 0, f"expected error {code}, got success: {self.stdout}"
        err = json.loads(self.stdout)
        assert set(err) <= {"cniVersion", "code", "msg", "details"}, err
        assert isinstance(err["msg"], str) and err["msg"], err
        assert err["code"] == code, f"expected code {code}: {err} stderr={self.stderr}"
        return err


@dataclass
class CNIRunner:
    """Runs CNI plugins in ``host_netns`` with a given CNI_PATH and state dir."""

    host_netns: str          # path, e.g. /run/netns/nvc...
    cni_path: str
    state_dir: str

    def invoke(self, plugin: str, command: str | None, conf: Any = None, *,
               container_id: str | None = None, netns: str | None = None,
               ifname: str | None = None, args: str | None = None,
               extra_env: dict[str, str] | None = None, raw_stdin: bytes | None = None,
               argv: list[str] | None = None, drop: tuple[str, ...] = ()) -> Outcome:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "NETVISOR_CNI_STATE_DIR": self.state_dir, "CNI_PATH": self.cni_path}
        if command is not None:
            env["CNI_COMMAND"] = command
        for key, val in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns),
                         ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
            if val is not None:
                env[key] = val
        env.update(extra_env or {})
        for key in drop:
            env.pop(key, None)
        exe = plugin if os.path.isabs(plugin) else self._find(plugin)
        stdin = raw_stdin if raw_stdin is not None else (
            json.dumps(conf).encode() if conf is not None else b"")
        proc = subprocess.run(["nsenter", f"--net={self.host_netns}", exe, *(argv or [])],
                              input=stdin, env=env, capture_output=True, timeout=120,
                              check=False)
        return Outcome(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def _find(self, plugin: str) -> str:
        for d in self.cni_path.split(":"):
            p = os.path.join(d, plugin)
            if os.access(p, os.X_OK):
                return p
        raise FileNotFoundError(plugin)

    # ---- a tiny libcni: run a conflist's chain like a runtime does ----

    def chain(self, conflist: dict[str, Any], command: str, *, container_id: str, netns: str,
              ifname: str = "eth0", runtime_config: dict[str, Any] | None = None,
              prev: Any = None, args: str | None = None,
              skip_check: tuple[str, ...] = ()) -> Any:
        """ADD (in order) / DEL and CHECK (reverse for DEL) over the plugin list.

        Like libcni: each plugin conf gets name and cniVersion from the list,
        ``runtimeConfig`` filtered by its ``capabilities``, and ``prevResult``.
        Returns the final ADD result (or None).
        """
        plugins = conflist["plugins"]
        order = list(reversed(plugins)) if command == "DEL" else list(plugins)
        result = prev
        for plugin in order:
            if command == "CHECK" and plugin["type"] in skip_check:
                continue
            conf = dict(plugin)
            conf["name"] = conflist["name"]
            conf["cniVersion"] = conflist["cniVersion"]
            caps = plugin.get("capabilities", {})
            rc = {k: v for k, v in (runtime_config or {}).items() if caps.get(k)}
            if rc:
                conf["runtimeConfig"] = rc
            if result is not None:
                conf["prevResult"] = result
            out = self.invoke(conf["type"], command, conf, container_id=container_id,
                              netns=netns, ifname=ifname, args=args)
            got = out.ok()
            if command == "ADD":
                result = got
        return result if command == "ADD" else None
