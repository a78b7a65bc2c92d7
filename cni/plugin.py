"""netvisor-cni: a CNI plugin (spec 1.1.0; also 0.4.0 and 1.0.0 configs).

It wires a container's network namespace for netvisor: a veth pair whose
container end is CNI_IFNAME inside CNI_NETNS and whose host end stays in the
caller's namespace (optionally on a bridge), addresses and routes from a
delegated IPAM plugin, DNS in the result, and a per-attachment state file
(cni/state.py) from which ``netvisor run --netns PATH`` learns the
``bandwidth`` and ``portMappings`` capabilities.

Two ADD modes:
- ``veth`` (the config has an ``ipam`` section): create the pair as above.
  With a ``prevResult`` (not first in a chain) the new interface and
  addresses are appended to it.
- ``chained`` (``prevResult`` and no ``ipam``, e.g. after the reference
  ``bridge`` plugin): the interface exists already; only record the state for
  netvisor and pass ``prevResult`` through.

Protocol rules follow CNI SPEC.md 1.1.0 and libcni's skel (the reference
dispatcher): environment checked first (code 4), then stdin JSON (6), network
name (7), container id and interface name (4), cniVersion (1).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cni import state as st
from cni.errors import (
    CHECK_FAILED,
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERFACE_EXISTS,
    INTERNAL,
    INVALID_CONFIG,
    INVALID_ENV,
    IO_FAILURE,
    IPAM_FAILURE,
    PLUGIN_NOT_AVAILABLE,
    STATE_FAILURE,
    TRY_AGAIN_LATER,
    UNSUPPORTED_FIELD,
    CNIError,
)
from cni.versions import (
    DEFAULT_CONFIG_VERSION,
    LATEST,
    SUPPORTED_VERSIONS,
    at_least,
    check_supported,
    normalize_result,
    parse_version,
    result_to_version,
)

log = logging.getLogger("netvisor-cni")

PLUGIN_VERSION: Final = "0.1.0"
ABOUT: Final = f"CNI netvisor plugin v{PLUGIN_VERSION}"
HOST_IF_PREFIX: Final = "nvc"
COMMANDS: Final = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
# Which variables each command needs (skel.go's table, extended for the
# 1.1.0 verbs: GC and STATUS get only CNI_COMMAND and CNI_PATH).
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
# Container ids and network names: CNI spec "Parameters" / libcni utils.
_ID_RE: Final = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_MAC_RE: Final = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# CNI_ARGS keys this plugin or its IPAM understands, or that runtimes send.
_KNOWN_ARGS: Final = frozenset({"IgnoreUnknown", "MAC", "IP", "K8S_POD_NAMESPACE", "K8S_POD_NAME",
                                "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"})
_PROTOCOLS: Final = frozenset({"tcp", "udp", "sctp"})


def host_ifname(container_id: str, ifname: str) -> str:
    """Host end of the veth: ``nvc`` + 12 hex digits of sha256(id/ifname), 15 chars.

    Deterministic, so DEL and GC find it without state; 48 bits of hash make a
    collision between live containers negligible.
    """
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return f"{HOST_IF_PREFIX}{digest[:15 - len(HOST_IF_PREFIX)]}"


def validate_ifname(name: str, what: str, code: int) -> None:
    """Linux rules (dev_valid_name) as the spec states them."""
    if not name:
        raise CNIError(code, f"{what} is empty")
    if len(name) > 15:
        raise CNIError(code, f"{what} {name!r} is too long (max 15)")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise CNIError(code, f"{what} {name!r} contains invalid characters")


@dataclass
class Env:
    """The CNI_* environment of one invocation."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: str = ""
    raw: dict[str, str] = field(default_factory=dict)


def parse_cni_args(text: str) -> dict[str, str]:
    """``K=V;K2=V2`` -> dict; malformed pairs and unknown keys are code 4.

    Unknown keys are accepted with ``IgnoreUnknown=1|true`` (the libcni
    convention that kubelet and podman use).
    """
    out: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENV, f"CNI_ARGS: invalid pair {pair!r}")
        out[key] = value
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(k for k in out if k not in _KNOWN_ARGS)
    if unknown and not ignore:
        raise CNIError(INVALID_ENV, f"CNI_ARGS: unknown keys {', '.join(unknown)}",
                       "add IgnoreUnknown=1 to pass keys for other plugins")
    return out


def read_env(environ: Mapping[str, str]) -> Env:
    """Check the CNI_* variables for the command (code 4 for missing/invalid)."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, f"unknown CNI_COMMAND: {command!r}")
    missing = [v for v in _REQUIRED[command] if not environ.get(v)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    env = Env(command=command, container_id=environ.get("CNI_CONTAINERID", ""),
              netns=environ.get("CNI_NETNS", ""), ifname=environ.get("CNI_IFNAME", ""),
              path=environ.get("CNI_PATH", ""), raw=dict(environ))
    if command in ("ADD", "DEL", "CHECK"):
        if not _ID_RE.match(env.container_id):
            raise CNIError(INVALID_ENV, "CNI_CONTAINERID: invalid characters in container id",
                           env.container_id)
        validate_ifname(env.ifname, "CNI_IFNAME", INVALID_ENV)
        if env.netns and not os.path.isabs(env.netns):
            raise CNIError(INVALID_ENV, "CNI_NETNS must be an absolute path", env.netns)
        env.args = parse_cni_args(environ.get("CNI_ARGS", ""))
    return env


def _int_field(obj: Mapping[str, Any], key: str, lo: int, hi: int, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CNIError(INVALID_CONFIG, f"{where}{key} must be an integer in [{lo}, {hi}]",
                       repr(value))
    return value


@dataclass
class NetConf:
    """The validated network configuration from stdin."""

    raw: dict[str, Any]
    cni_version: str
    name: str
    ipam: dict[str, Any] | None
    mtu: int | None
    bridge: str | None
    is_gateway: bool
    data_dir: str
    dns: dict[str, Any]
    mac: str | None
    bandwidth: st.Bandwidth | None
    port_mappings: list[st.PortMapping]
    prev_result: dict[str, Any] | None


def parse_config(data: bytes, command: str) -> dict[str, Any]:
    """stdin -> JSON object with a valid name (codes 6 and 7)."""
    try:
        conf = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CNIError(DECODE_FAILURE, "error parsing network config", str(exc)) from None
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "network config is not a JSON object")
    if command == "VERSION":
        return conf
    name = conf.get("name")
    if not name:
        raise CNIError(INVALID_CONFIG, "missing network name")
    if not isinstance(name, str) or not _ID_RE.match(name):
        raise CNIError(INVALID_CONFIG, "invalid characters in network name", repr(name))
    return conf


def config_version(conf: Mapping[str, Any]) -> str:
    """The config's cniVersion (libcni's default when absent)."""
    version = conf.get("cniVersion", DEFAULT_CONFIG_VERSION)
    if not isinstance(version, str):
        raise CNIError(DECODE_FAILURE, "cniVersion must be a string", repr(version))
    parse_version(version)
    return version


def validate_config(conf: dict[str, Any], version: str, env: Env) -> NetConf:
    """Semantic checks of the plugin's configuration (code 7, code 2)."""
    if not isinstance(conf.get("type"), str) or not conf["type"]:
        raise CNIError(INVALID_CONFIG, "missing plugin type")
    if conf.get("ipMasq"):
        # Masquerade would need host firewall rules; netvisor-cni does not make any.
        raise CNIError(UNSUPPORTED_FIELD, "unsupported field: ipMasq",
                       f"ipMasq={conf['ipMasq']!r} (netvisor-cni does no NAT)")
    ipam = conf.get("ipam")
    if ipam is not None and ipam != {}:
        if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str) or not ipam["type"]:
            raise CNIError(INVALID_CONFIG, "ipam must be an object with a type")
    else:
        ipam = None
    mtu = _int_field(conf, "mtu", 68, 65535, "")  # 68: IPv4 minimum MTU (RFC 791)
    bridge = conf.get("bridge")
    if bridge is not None:
        if not isinstance(bridge, str):
            raise CNIError(INVALID_CONFIG, "bridge must be a string")
        validate_ifname(bridge, "bridge", INVALID_CONFIG)
    is_gateway = conf.get("isGateway", False)
    if not isinstance(is_gateway, bool):
        raise CNIError(INVALID_CONFIG, "isGateway must be a boolean")
    data_dir = conf.get("dataDir")
    if data_dir is not None and (not isinstance(data_dir, str) or not os.path.isabs(data_dir)):
        raise CNIError(INVALID_CONFIG, "dataDir must be an absolute path", repr(data_dir))
    dns = conf.get("dns") or {}
    if not isinstance(dns, dict):
        raise CNIError(INVALID_CONFIG, "dns must be an object")
    rc = conf.get("runtimeConfig") or {}
    if not isinstance(rc, dict):
        raise CNIError(INVALID_CONFIG, "runtimeConfig must be an object")
    # MAC: runtimeConfig wins over CNI_ARGS, as in the reference bridge plugin.
    mac = rc.get("mac") or env.args.get("MAC") or None
    if mac is not None:
        if not isinstance(mac, str) or not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            raise CNIError(INVALID_CONFIG, "invalid MAC address (need unicast aa:bb:cc:dd:ee:ff)",
                           repr(mac))
        mac = mac.lower()
    bandwidth = None
    # runtimeConfig (the capability) wins; a static "bandwidth" object in the
    # plugin's own config serves runtimes that send none (podman 4.3).
    bw = rc.get("bandwidth") or conf.get("bandwidth")
    if bw:
        if not isinstance(bw, dict):
            raise CNIError(INVALID_CONFIG, "bandwidth must be an object")
        vals = {k: _int_field(bw, k, 0, 2**63 - 1, "bandwidth.")
                for k in ("ingressRate", "ingressBurst", "egressRate", "egressBurst")}
        for side in ("ingress", "egress"):
            rate, burst = vals[f"{side}Rate"], vals[f"{side}Burst"]
            if bool(rate) != bool(burst):
                # Same rule as the reference bandwidth plugin: a token bucket
                # needs both a rate and a bucket size.
                raise CNIError(INVALID_CONFIG, f"{side}Rate and {side}Burst must be set together")
        bandwidth = st.Bandwidth(vals["ingressRate"], vals["ingressBurst"],
                                 vals["egressRate"], vals["egressBurst"])
        if not any(vals.values()):
            bandwidth = None
    mappings: list[st.PortMapping] = []
    pm = rc.get("portMappings") or []
    if not isinstance(pm, list):
        raise CNIError(INVALID_CONFIG, "runtimeConfig.portMappings must be a list")
    for entry in pm:
        if not isinstance(entry, dict):
            raise CNIError(INVALID_CONFIG, "portMappings entries must be objects")
        host_port = _int_field(entry, "hostPort", 1, 65535, "portMappings.")
        cont_port = _int_field(entry, "containerPort", 1, 65535, "portMappings.")
        proto = str(entry.get("protocol") or "tcp").lower()
        if host_port is None or cont_port is None or proto not in _PROTOCOLS:
            raise CNIError(INVALID_CONFIG, "portMappings need hostPort, containerPort and "
                           "protocol tcp|udp|sctp", json.dumps(entry))
        host_ip = str(entry.get("hostIP") or "")
        if host_ip:
            try:
                ipaddress.ip_address(host_ip)
            except ValueError:
                raise CNIError(INVALID_CONFIG, "portMappings hostIP invalid", host_ip) from None
        mappings.append(st.PortMapping(host_port, cont_port, proto, host_ip))
    ips = rc.get("ips")
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
            raise CNIError(INVALID_CONFIG, "runtimeConfig.ips must be a list of strings")
        for i in ips:
            try:
                ipaddress.ip_interface(i)
            except ValueError:
                raise CNIError(INVALID_CONFIG, "runtimeConfig.ips: invalid address", i) from None
    prev = None
    if conf.get("prevResult") is not None:
        prev = normalize_result(conf["prevResult"])
    return NetConf(raw=conf, cni_version=version, name=conf["name"], ipam=ipam, mtu=mtu,
                   bridge=bridge, is_gateway=is_gateway, data_dir=st.state_dir(data_dir), dns=dns,
                   mac=mac, bandwidth=bandwidth, port_mappings=mappings, prev_result=prev)


def _stored_config(conf: NetConf) -> dict[str, Any]:
    """The config kept in state (for GC's IPAM DEL): without prevResult."""
    return {k: v for k, v in conf.raw.items() if k != "prevResult"}


def _ipam_delegate(conf: NetConf, env: Env) -> Any:
    from cni.ipam import Delegate
    assert conf.ipam is not None
    return Delegate(conf.ipam["type"], env.raw)


# --------------------------------------------------------------------- ADD


def cmd_add(env: Env, conf: NetConf) -> dict[str, Any]:
    """ADD: see the module docstring for the two modes."""
    from cni import netlinkops as nl

    if conf.ipam is None:
        if conf.prev_result is None:
            raise CNIError(INVALID_CONFIG, "ipam section required (or a prevResult to chain on)")
        return _add_chained(env, conf)

    ns = nl.Namespace(env.netns)
    host = nl.host_iproute()
    try:
        if nl.link_info(ns.ipr, env.ifname) is not None:
            raise CNIError(INTERFACE_EXISTS,
                           f"interface {env.ifname!r} already exists in {env.netns}")
        ipam = _ipam_delegate(conf, env)
        ipam_result = normalize_result(ipam.run("ADD", conf.raw))
        if not ipam_result["ips"]:
            raise CNIError(IPAM_FAILURE, "IPAM plugin returned no IP configuration")
        hname = host_ifname(env.container_id, env.ifname)
        made: list[str] = []
        try:
            result = _wire(env, conf, ns, host, hname, ipam_result, made)
            _save_state(env, conf, st.MODE_VETH, hname, result)
        except BaseException:
            # Undo in reverse: our veth (deleting one end removes both; never
            # a same-named link that existed before), then the reservation
            # (spec: release IPAM when ADD fails after it).
            try:
                if made:
                    nl.delete_link(host, hname)
            except CNIError as exc:
                log.warning("cleanup of %s failed: %s", hname, exc.details)
            try:
                ipam.run("DEL", conf.raw)
            except CNIError as exc:
                log.warning("IPAM DEL after failed ADD failed: %s %s", exc.msg, exc.details)
            raise
        return result_to_version(result, conf.cni_version)
    finally:
        host.close()
        ns.close()


def _wire(env: Env, conf: NetConf, ns: Any, host: Any, hname: str,
          ipam_result: dict[str, Any], made: list[str]) -> dict[str, Any]:
    from cni import netlinkops as nl

    hlink, clink = nl.create_veth(host, ns, hname, env.ifname, conf.mtu, conf.mac)
    made.append(hname)
    if conf.bridge:
        br = nl.ensure_bridge(host, conf.bridge, conf.mtu)
        nl.enslave(host, hlink.index, br.index)
        if conf.is_gateway:
            for ip in ipam_result["ips"]:
                if ip.get("gateway"):
                    prefix = ipaddress.ip_interface(ip["address"]).network.prefixlen
                    nl.add_address(host, br.index, f"{ip['gateway']}/{prefix}")
    nl.set_up(host, hlink.index)
    if conf.is_gateway and not conf.bridge:
        # Point-to-point, as the reference ptp plugin: the host end answers
        # for the gateway (a host-length address, so many veths can share
        # it) and routes the container's address back through this veth.
        for ip in ipam_result["ips"]:
            iface = ipaddress.ip_interface(ip["address"])
            full = 32 if iface.version == 4 else 128
            if ip.get("gateway"):
                if iface.version == 6:
                    nl.set_local_sysctl(f"net/ipv6/conf/{hname}/accept_dad", "0")
                nl.add_address(host, hlink.index, f"{ip['gateway']}/{full}")
            nl.add_route(host, hlink.index, f"{iface.ip}/{full}", None)
        # The container sees its whole subnet on-link and ARPs for its
        # neighbours; proxy ARP lets the host end answer so that traffic
        # between containers is routed by the host (if it forwards).
        nl.set_local_sysctl(f"net/ipv4/conf/{hname}/proxy_arp", "1")
    if any(ipaddress.ip_interface(ip["address"]).version == 6 for ip in ipam_result["ips"]):
        nl.disable_dad(ns, env.ifname)
    for ip in ipam_result["ips"]:
        nl.add_address(ns.ipr, clink.index, ip["address"])
    nl.set_up(ns.ipr, clink.index)
    gateways = {ipaddress.ip_interface(ip["address"]).version: ip.get("gateway")
                for ip in ipam_result["ips"] if ip.get("gateway")}
    nets = [ipaddress.ip_interface(ip["address"]).network for ip in ipam_result["ips"]]
    for route in ipam_result["routes"]:
        dst = ipaddress.ip_network(route["dst"], strict=False)
        gw = route.get("gw") or gateways.get(dst.version)
        if gw and not any(ipaddress.ip_address(gw) in n for n in nets):
            # A gateway outside every local subnet needs an on-link host route first.
            nl.add_route(ns.ipr, clink.index, f"{gw}/{32 if dst.version == 4 else 128}", None)
        nl.add_route(ns.ipr, clink.index, str(dst), gw, route)

    # Result: prevResult's interfaces/ips first when chained, then ours.
    base = conf.prev_result or {"interfaces": [], "ips": [], "routes": []}
    interfaces = list(base.get("interfaces", []))
    interfaces.append({"name": hname, "mac": hlink.mac})
    cont_entry: dict[str, Any] = {"name": env.ifname, "mac": clink.mac, "sandbox": env.netns}
    if conf.mtu:
        cont_entry["mtu"] = conf.mtu
    interfaces.append(cont_entry)
    cont_index = len(interfaces) - 1
    ips = list(base.get("ips", []))
    for ip in ipam_result["ips"]:
        ips.append({**ip, "interface": cont_index})
    routes = list(base.get("routes", [])) + list(ipam_result["routes"])
    dns = ipam_result.get("dns") or conf.dns or base.get("dns") or {}
    return {"cniVersion": LATEST, "interfaces": interfaces, "ips": ips, "routes": routes,
            "dns": dns}


def _save_state(env: Env, conf: NetConf, mode: str, hname: str | None,
                result: dict[str, Any]) -> None:
    ident = st.netns_identity(env.netns)
    mac = None
    for iface in result.get("interfaces", []):
        if iface.get("name") == env.ifname and iface.get("sandbox"):
            mac = iface.get("mac")
    state = st.AttachmentState(
        network=conf.name, container_id=env.container_id, ifname=env.ifname, netns=env.netns,
        netns_dev=ident[0] if ident else None, netns_ino=ident[1] if ident else None,
        mode=mode, host_ifname=hname, bridge=conf.bridge, mac=mac, mtu=conf.mtu,
        cni_version=conf.cni_version, result=result, bandwidth=conf.bandwidth,
        port_mappings=conf.port_mappings, config=_stored_config(conf), created_at=time.time())
    try:
        st.save(state, conf.data_dir)
    except st.LockTimeout as exc:
        raise CNIError(TRY_AGAIN_LATER, "state directory busy, try again later",
                       str(exc)) from None
    except OSError as exc:
        raise CNIError(STATE_FAILURE, f"cannot write state in {conf.data_dir}", str(exc)) from None


def _add_chained(env: Env, conf: NetConf) -> dict[str, Any]:
    from cni import netlinkops as nl

    assert conf.prev_result is not None
    with nl.Namespace(env.netns) as ns:
        if nl.link_info(ns.ipr, env.ifname) is None:
            raise CNIError(INVALID_CONFIG, f"chained without ipam, but {env.ifname!r} does not "
                           f"exist in {env.netns} (put netvisor-cni after the plugin that makes it)")
    result = dict(conf.prev_result)
    _save_state(env, conf, st.MODE_CHAINED, None, result)
    return result_to_version(result, conf.cni_version)


# --------------------------------------------------------------------- DEL


def cmd_del(env: Env, conf: NetConf) -> None:
    """DEL: best effort and idempotent; IPAM DEL always attempted (veth mode)."""
    from cni import netlinkops as nl

    state = st.load(conf.name, env.container_id, env.ifname, conf.data_dir)
    chained = state.mode == st.MODE_CHAINED if state else conf.ipam is None
    if not chained:
        hname = (state.host_ifname if state and state.host_ifname
                 else host_ifname(env.container_id, env.ifname))
        host = nl.host_iproute()
        try:
            # Deleting the host end removes the container end too (veth).
            if nl.delete_link(host, hname):
                log.info("deleted %s", hname)
        finally:
            host.close()
    error: CNIError | None = None
    if conf.ipam is not None:
        try:
            _ipam_delegate(conf, env).run("DEL", conf.raw)
        except CNIError as exc:
            # Keep going (state removal) but report: the reservation may leak
            # and the runtime retries DEL.
            error = exc
    try:
        st.remove(conf.name, env.container_id, env.ifname, conf.data_dir)
    except st.LockTimeout as exc:
        raise CNIError(TRY_AGAIN_LATER, "state directory busy, try again later",
                       str(exc)) from None
    except OSError as exc:
        raise CNIError(STATE_FAILURE, "cannot remove state", str(exc)) from None
    if error is not None:
        raise error


# --------------------------------------------------------------------- CHECK


def cmd_check(env: Env, conf: NetConf) -> None:
    """CHECK: the interface, MAC, MTU, addresses and routes ADD made are still there."""
    from cni import netlinkops as nl

    if conf.prev_result is None:
        raise CNIError(INVALID_CONFIG, "CHECK requires prevResult")
    state = st.load(conf.name, env.container_id, env.ifname, conf.data_dir)
    if state is None:
        raise CHECK_FAILED_ERR(f"no state recorded for {env.container_id}/{env.ifname}")
    prev = conf.prev_result
    cont_index = None
    for i, iface in enumerate(prev.get("interfaces", [])):
        if iface.get("name") == env.ifname and iface.get("sandbox"):
            cont_index = i
    if cont_index is None:
        raise CHECK_FAILED_ERR(f"prevResult lists no sandbox interface {env.ifname!r}")
    expect_iface = prev["interfaces"][cont_index]
    if state.mode == st.MODE_VETH and conf.ipam is not None:
        _ipam_delegate(conf, env).run("CHECK", conf.raw)
    with nl.Namespace(env.netns) as ns:
        link = nl.link_info(ns.ipr, env.ifname)
        if link is None:
            raise CHECK_FAILED_ERR(f"interface {env.ifname!r} missing in {env.netns}")
        if expect_iface.get("mac") and link.mac.lower() != str(expect_iface["mac"]).lower():
            raise CHECK_FAILED_ERR(f"{env.ifname} MAC is {link.mac}, "
                                   f"expected {expect_iface['mac']}")
        if state.mode == st.MODE_CHAINED:
            return
        if link.kind != "veth":
            raise CHECK_FAILED_ERR(f"{env.ifname} is a {link.kind}, expected veth")
        if state.mtu and link.mtu != state.mtu:
            raise CHECK_FAILED_ERR(f"{env.ifname} MTU is {link.mtu}, expected {state.mtu}")
        want = {str(ipaddress.ip_interface(ip["address"])) for ip in prev.get("ips", [])
                if ip.get("interface") == cont_index}
        have = nl.link_addresses(ns.ipr, link.index)
        missing = want - have
        taken = state.taken_over is not None and state.taken_over.alive()
        # netvisor run removes the kernel interface's addresses while it
        # serves the namespace (runsc-style takeover); that is healthy.
        if missing and not (taken and not (want & have)):
            raise CHECK_FAILED_ERR(f"addresses missing on {env.ifname}: "
                                   f"{', '.join(sorted(missing))}")
        if not taken:
            gateways = {ipaddress.ip_interface(ip["address"]).version: ip.get("gateway")
                        for ip in prev.get("ips", []) if ip.get("interface") == cont_index}
            ours = state.result.get("routes", [])
            for route in ours:
                dst = ipaddress.ip_network(route["dst"], strict=False)
                gw = route.get("gw") or gateways.get(dst.version)
                # A default route may belong to another network (spec "IP
                # Allocation" notes), so any default of the family will do.
                anydev = dst.prefixlen == 0
                if not nl.has_route(ns.ipr, None if anydev else link.index, str(dst),
                                    None if anydev else gw):
                    raise CHECK_FAILED_ERR(f"route {dst} via {gw} missing in {env.netns}")
    if state.host_ifname:
        host = nl.host_iproute()
        try:
            hlink = nl.link_info(host, state.host_ifname)
            if hlink is None:
                raise CHECK_FAILED_ERR(f"host interface {state.host_ifname} missing")
            if state.bridge:
                br = nl.link_info(host, state.bridge)
                if br is None or hlink.master != br.index:
                    raise CHECK_FAILED_ERR(f"{state.host_ifname} not on bridge {state.bridge}")
        finally:
            host.close()


def CHECK_FAILED_ERR(msg: str) -> CNIError:
    return CNIError(CHECK_FAILED, msg)


# --------------------------------------------------------------------- GC / STATUS


def _valid_attachments(conf: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``cni.dev/valid-attachments`` (or the older ``cni.dev/attachments``); null = empty."""
    key = next((k for k in ("cni.dev/valid-attachments", "cni.dev/attachments") if k in conf), None)
    if key is None:
        raise CNIError(INVALID_CONFIG, "GC requires cni.dev/valid-attachments")
    value = conf[key] or []
    if not isinstance(value, list):
        raise CNIError(INVALID_CONFIG, f"{key} must be a list")
    out = set()
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise CNIError(INVALID_CONFIG, f"{key} entries need containerID and ifname")
        out.add((entry["containerID"], str(entry.get("ifname", ""))))
    return out


def cmd_gc(env: Env, conf: NetConf) -> None:
    """GC: drop attachments of this network that the runtime no longer knows."""
    from cni import netlinkops as nl
    from cni.ipam import Delegate

    valid = _valid_attachments(conf.raw)
    ipam = _ipam_delegate(conf, env) if conf.ipam is not None else None
    ipam_gc = ipam is not None and any(at_least(v, "1.1.0") for v in ipam.supported_versions()
                                       if v.count(".") == 2)
    errors: list[str] = []
    host = nl.host_iproute()
    try:
        for state in st.list_all(conf.data_dir):
            if state.network != conf.name or (state.container_id, state.ifname) in valid:
                continue
            log.info("GC: stale attachment %s/%s", state.container_id, state.ifname)
            if state.mode == st.MODE_VETH and state.host_ifname:
                nl.delete_link(host, state.host_ifname)
            stored_ipam = state.config.get("ipam")
            if not ipam_gc and isinstance(stored_ipam, dict) and stored_ipam.get("type"):
                # The delegate has no GC verb (reference plugins stop at
                # 1.0.0): release this attachment's reservation with a DEL.
                try:
                    over = {"CNI_CONTAINERID": state.container_id, "CNI_IFNAME": state.ifname,
                            "CNI_NETNS": state.netns if os.path.exists(state.netns) else ""}
                    Delegate(stored_ipam["type"], env.raw).run("DEL", state.config, over)
                except CNIError as exc:
                    errors.append(f"{state.container_id}/{state.ifname}: {exc.msg}")
                    continue  # keep the state so the next GC retries
            st.remove(state.network, state.container_id, state.ifname, conf.data_dir)
    finally:
        host.close()
    if ipam is not None and ipam_gc:
        ipam.run("GC", conf.raw)
    if errors:
        raise CNIError(IPAM_FAILURE, "GC could not release some reservations", "; ".join(errors))


def cmd_status(env: Env, conf: NetConf) -> None:
    """STATUS: success when an ADD could work now, else code 50."""
    from cni.ipam import Delegate

    if conf.ipam is not None:
        delegate = Delegate(conf.ipam["type"], env.raw)  # code 50 when absent from CNI_PATH
        if "1.1.0" in delegate.supported_versions():
            delegate.run("STATUS", conf.raw)
    try:
        with st.locked(conf.data_dir, exclusive=False):
            pass
        if not os.access(conf.data_dir, os.W_OK):
            raise OSError(f"{conf.data_dir} not writable")
    except OSError as exc:
        raise CNIError(PLUGIN_NOT_AVAILABLE, "state directory unusable", str(exc)) from None
    try:
        import pyroute2  # noqa: F401
    except ImportError as exc:
        raise CNIError(PLUGIN_NOT_AVAILABLE, "pyroute2 is not installed", str(exc)) from None


# --------------------------------------------------------------------- dispatch


def cmd_version(data: bytes) -> dict[str, Any]:
    """VERSION: the supported list; cniVersion echoes the request's when we speak it."""
    version = LATEST
    try:
        req = json.loads(data.decode() or "{}")
        if isinstance(req, dict) and req.get("cniVersion") in SUPPORTED_VERSIONS:
            version = req["cniVersion"]
    except (UnicodeDecodeError, ValueError):
        pass
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def run(environ: Mapping[str, str], stdin: bytes) -> tuple[dict[str, Any] | None, str]:
    """One invocation: returns (stdout object or None, cniVersion for errors).

    Raises :class:`CNIError`; the caller prints it.
    """
    env = read_env(environ)
    if env.command == "VERSION":
        return cmd_version(stdin), LATEST
    raw = parse_config(stdin, env.command)
    version = config_version(raw)
    if env.command in ("GC", "STATUS") and not at_least(version, "1.1.0"):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {version} does not allow "
                       f"{env.command}", "GC and STATUS need cniVersion 1.1.0")
    if env.command == "CHECK" and not at_least(version, "0.4.0"):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {version} does not allow CHECK")
    check_supported(version)
    conf = validate_config(raw, version, env)
    handler = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc,
               "STATUS": cmd_status}[env.command]
    return handler(env, conf), version


def _error_version(stdin: bytes) -> str:
    try:
        v = json.loads(stdin.decode()).get("cniVersion")
        return v if v in SUPPORTED_VERSIONS else LATEST
    except (ValueError, AttributeError):
        return LATEST


def main(argv: list[str] | None = None) -> None:
    """Console script entry point: exit 0 on success, 1 with error JSON on stdout."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(stream=sys.stderr, format="netvisor-cni: %(levelname)s %(message)s",
                        level=os.environ.get("NETVISOR_CNI_LOG_LEVEL", "WARNING").upper())
    about = f"{ABOUT}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}"
    if "--version" in argv or "-V" in argv:
        print(about)
        sys.exit(0)
    if not os.environ.get("CNI_COMMAND"):
        # skel.go prints the about text on stderr when no command is given.
        print(about, file=sys.stderr)
        sys.exit(0)
    try:
        stdin = b"" if sys.stdin is None else sys.stdin.buffer.read()
    except OSError as exc:
        _fail(CNIError(IO_FAILURE, "error reading stdin", str(exc)), LATEST)
        return
    try:
        out, _ = run(os.environ, stdin)
    except CNIError as exc:
        log.error("%s %s", exc.msg, exc.details)
        _fail(exc, _error_version(stdin))
        return
    except st.LockTimeout as exc:
        _fail(CNIError(TRY_AGAIN_LATER, "state directory busy, try again later", str(exc)),
              _error_version(stdin))
        return
    except Exception as exc:  # never a traceback instead of the error JSON
        log.exception("internal error")
        _fail(CNIError(INTERNAL, f"internal error: {type(exc).__name__}", str(exc)),
              _error_version(stdin))
        return
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    sys.exit(0)


def _fail(exc: CNIError, version: str) -> None:
    sys.stdout.write(json.dumps(exc.to_json(version)) + "\n")
    sys.stdout.flush()
    sys.exit(1)


if __name__ == "__main__":
    main()
