"""CNI spec versions and result conversion between them.

netvisor-cni speaks 0.4.0, 1.0.0 and 1.1.0. Internally a result is always
kept in the 1.1.0 shape (``interfaces``, ``ips`` without ``version``,
``routes``, ``dns``); :func:`result_to_version` renders it for the version a
runtime asked for and :func:`normalize_result` reads any version's result
(IPAM output, ``prevResult``) into the internal shape.

Differences that matter (CNI spec, "Result" sections of each version):
- 0.3.x/0.4.0: each ``ips`` entry carries ``"version": "4"|"6"``.
- 1.0.0: ``version`` is gone from ``ips``.
- 1.1.0: interfaces may carry ``mtu``, ``socketPath``, ``pciID``; routes may
  carry ``mtu``, ``advmss``, ``priority``, ``table``, ``scope``.
- 0.1.0/0.2.0: ``ip4``/``ip6`` objects (only read, never written here).
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any, Final

from cni.errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError

SUPPORTED_VERSIONS: Final = ("0.4.0", "1.0.0", "1.1.0")
LATEST: Final = "1.1.0"
# The reference plugins (containernetworking-plugins 1.1.x) stop at 1.0.0:
# a 1.1.0 config to them fails with code 1, so delegation is capped here.
DELEGATE_MAX: Final = "1.0.0"
# What libcni's ConfigDecoder assumes when a config has no cniVersion.
DEFAULT_CONFIG_VERSION: Final = "0.1.0"

_V11_IFACE_FIELDS: Final = ("mtu", "socketPath", "pciID")
_V11_ROUTE_FIELDS: Final = ("mtu", "advmss", "priority", "table", "scope")


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; anything else is a decode error (code 6)."""
    parts = text.split(".") if isinstance(text, str) else []
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise CNIError(DECODE_FAILURE, f"invalid cniVersion {text!r}")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (nums[0], nums[1], nums[2])


def at_least(version: str, minimum: str) -> bool:
    """True when ``version >= minimum`` (semantic comparison)."""
    return parse_version(version) >= parse_version(minimum)


def check_supported(version: str) -> None:
    """Raise code 1 unless this plugin speaks ``version``."""
    parse_version(version)
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {version!r}, plugin supports {', '.join(SUPPORTED_VERSIONS)}",
        )


def delegate_version(version: str, plugin_versions: list[str] | None = None) -> str:
    """The cniVersion to put in a delegated plugin's config.

    The highest version <= ``version`` the delegate supports; without a
    VERSION answer, ``version`` capped at :data:`DELEGATE_MAX`.
    """
    want = parse_version(version)
    if plugin_versions:
        usable = [v for v in plugin_versions if _safe(v) is not None and _safe(v) <= want]  # type: ignore[operator]
        if usable:
            return max(usable, key=lambda v: parse_version(v))
    return version if want <= parse_version(DELEGATE_MAX) else DELEGATE_MAX


def _safe(text: str) -> tuple[int, int, int] | None:
    try:
        return parse_version(text)
    except CNIError:
        return None


def ip_family(address: str) -> int:
    """4 or 6 for an address with or without prefix."""
    return ipaddress.ip_interface(address).version


def normalize_result(result: Any) -> dict[str, Any]:
    """Any version's result -> the internal 1.1.0 shape (a new dict).

    Raises code 6 when the object is not a result.
    """
    if not isinstance(result, dict):
        raise CNIError(DECODE_FAILURE, "result is not a JSON object")
    out: dict[str, Any] = {"cniVersion": LATEST, "interfaces": [], "ips": [], "routes": []}
    try:
        if "ip4" in result or "ip6" in result:
            # 0.1.0/0.2.0: one address per family, routes inside.
            for key in ("ip4", "ip6"):
                entry = result.get(key)
                if not entry:
                    continue
                ip: dict[str, Any] = {"address": str(entry["ip"])}
                if entry.get("gateway"):
                    ip["gateway"] = str(entry["gateway"])
                out["ips"].append(ip)
                for r in entry.get("routes") or []:
                    out["routes"].append(dict(r))
        else:
            for iface in result.get("interfaces") or []:
                if not isinstance(iface, dict) or not isinstance(iface.get("name"), str):
                    raise ValueError("interface without name")  # noqa: TRY004
                out["interfaces"].append(dict(iface))
            for ip in result.get("ips") or []:
                if not isinstance(ip, dict) or "address" not in ip:
                    raise ValueError("ips entry without address")
                entry = {k: v for k, v in ip.items() if k != "version"}
                ipaddress.ip_interface(entry["address"])
                out["ips"].append(entry)
            for r in result.get("routes") or []:
                if not isinstance(r, dict) or "dst" not in r:
                    raise ValueError("route without dst")
                out["routes"].append(dict(r))
        dns = result.get("dns")
        if isinstance(dns, dict) and dns:
            out["dns"] = copy.deepcopy(dns)
    except (KeyError, TypeError, ValueError) as exc:
        raise CNIError(DECODE_FAILURE, "malformed result", str(exc)) from None
    return out


def result_to_version(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Render an internal result for ``version`` (one of SUPPORTED_VERSIONS)."""
    out: dict[str, Any] = {"cniVersion": version}
    v11 = at_least(version, "1.1.0")
    ifaces = []
    for iface in result.get("interfaces", []):
        entry = {k: v for k, v in iface.items() if v not in (None, "")}
        if not v11:
            for key in _V11_IFACE_FIELDS:
                entry.pop(key, None)
        ifaces.append(entry)
    if ifaces:
        out["interfaces"] = ifaces
    ips = []
    for ip in result.get("ips", []):
        entry = {k: v for k, v in ip.items() if k != "version" and v is not None}
        if not at_least(version, "1.0.0"):
            entry = {"version": str(ip_family(entry["address"])), **entry}
        ips.append(entry)
    if ips:
        out["ips"] = ips
    routes = []
    for r in result.get("routes", []):
        entry = dict(r)
        if not v11:
            for key in _V11_ROUTE_FIELDS:
                entry.pop(key, None)
        routes.append(entry)
    if routes:
        out["routes"] = routes
    dns = result.get("dns")
    out["dns"] = copy.deepcopy(dns) if dns else {}
    return out
