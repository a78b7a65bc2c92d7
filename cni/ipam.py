"""Delegation to an IPAM plugin (or any CNI plugin) found in CNI_PATH.

CNI spec 1.1.0, "Delegated plugins (IPAM)": the delegating plugin runs the
delegate with the same environment it was given (CNI_COMMAND may be
changed, e.g. a DEL after a failed ADD) and the same network configuration
on stdin. The only change made here is ``cniVersion``: the reference
plugins refuse 1.1.0 with code 1, so it is lowered to the highest version
the delegate reports from VERSION (see :func:`cni.versions.delegate_version`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Mapping
from typing import Any, Final

from cni.errors import IPAM_FAILURE, PLUGIN_NOT_AVAILABLE, CNIError
from cni.versions import delegate_version

log = logging.getLogger(__name__)

# A delegate that hangs must not hang the runtime forever; host-local waits
# on its own flock, so allow it time under heavy parallel ADD load.
DELEGATE_TIMEOUT: Final = 120.0


def find_plugin(plugin_type: str, cni_path: str) -> str:
    """Absolute path of ``plugin_type`` in the ':'-separated ``cni_path``.

    Raises code 50 (plugin not available) when it is not there.
    """
    if not plugin_type or "/" in plugin_type:
        raise CNIError(PLUGIN_NOT_AVAILABLE, f"invalid plugin type {plugin_type!r}")
    for directory in cni_path.split(":"):
        if not directory:
            continue
        candidate = os.path.join(directory, plugin_type)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CNIError(
        PLUGIN_NOT_AVAILABLE,
        f"failed to find plugin {plugin_type!r} in path",
        f"CNI_PATH={cni_path}",
    )


class Delegate:
    """One delegated plugin (usually IPAM), executed as the spec says."""

    def __init__(self, plugin_type: str, env: Mapping[str, str]) -> None:
        self.plugin_type = plugin_type
        self.env = dict(env)
        self.path = find_plugin(plugin_type, self.env.get("CNI_PATH", ""))
        self._versions: list[str] | None = None

    def supported_versions(self) -> list[str]:
        """The delegate's VERSION answer (cached); empty when it gives none."""
        if self._versions is None:
            try:
                out = self._exec("VERSION", {"cniVersion": "1.0.0"}, raw_stdin=None)
                versions = out.get("supportedVersions") if isinstance(out, dict) else None
                self._versions = [v for v in versions or [] if isinstance(v, str)]
            except CNIError as exc:
                log.warning("VERSION of %s failed: %s", self.plugin_type, exc.msg)
                self._versions = []
        return self._versions

    def version_for(self, config_version: str) -> str:
        return delegate_version(config_version, self.supported_versions())

    def supports(self, version: str) -> bool:
        return version in self.supported_versions()

    def run(self, command: str, config: Mapping[str, Any],
            env_overrides: Mapping[str, str] | None = None) -> Any:
        """Run ``command`` with ``config`` (cniVersion lowered as needed).

        Returns the parsed stdout (None when empty); raises :class:`CNIError`
        with the delegate's own code and message when it fails.
        """
        conf = dict(config)
        conf["cniVersion"] = self.version_for(str(config.get("cniVersion", "1.0.0")))
        return self._exec(command, conf, env_overrides=env_overrides)

    def _exec(self, command: str, conf: Mapping[str, Any] | None,
              env_overrides: Mapping[str, str] | None = None,
              raw_stdin: bytes | None = b"") -> Any:
        env = dict(self.env)
        env["CNI_COMMAND"] = command
        if env_overrides:
            env.update(env_overrides)
        stdin = json.dumps(conf).encode() if conf is not None else b""
        log.debug("exec %s %s", self.path, command)
        try:
            proc = subprocess.run([self.path], input=stdin, env=env, capture_output=True,
                                  timeout=DELEGATE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CNIError(IPAM_FAILURE, f"running {self.plugin_type} failed", str(exc)) from None
        if proc.stderr:
            log.info("%s %s stderr: %s", self.plugin_type, command,
                     proc.stderr.decode(errors="replace").strip())
        text = proc.stdout.decode(errors="replace").strip()
        parsed: Any = None
        if text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
                if proc.returncode == 0:
                    raise CNIError(IPAM_FAILURE, f"{self.plugin_type} {command}: output is not JSON",
                                   text[:500]) from None
        if proc.returncode != 0:
            # Pass the delegate's error through unchanged (as the reference
            # plugins do) so the runtime sees e.g. host-local's "no IP addresses
            # available" or a try-again-later code 11.
            if isinstance(parsed, dict) and isinstance(parsed.get("code"), int):
                raise CNIError(int(parsed["code"]), str(parsed.get("msg", "")),
                               str(parsed.get("details", "") or ""))
            raise CNIError(IPAM_FAILURE, f"{self.plugin_type} {command} failed "
                           f"(exit {proc.returncode})", text[:500])
        return parsed
