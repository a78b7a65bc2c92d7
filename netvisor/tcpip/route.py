"""The routing table: longest-prefix match, metrics, on-link and default routes.

Linux semantics (``ip route``): the most specific prefix wins; among equal
prefixes the lowest metric wins (then the earliest added). A route without a
gateway is on-link. Routes may expire (RA default routers and prefixes,
RFC 4861 6.3.4). IPv4 and IPv6 routes live in one table; a lookup only
considers routes of the destination's family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(slots=True)
class RouteEntry:
    """One route. ``gateway`` None = on-link; ``src`` = preferred source (``ip route ... src``)."""

    dst: IPNetwork
    nic_id: int
    gateway: IPAddress | None = None
    metric: int = 0
    src: IPAddress | None = None
    expires_at: float | None = None
    origin: str = "static"
    """'static', 'kernel' (prefix route of an address), 'ra' (router advertisement)."""
    seq: int = field(default=0, compare=False)


class RoutingTable:
    """Routes of both families; ``lookup`` is longest prefix, then metric."""

    def __init__(self) -> None:
        self._routes: list[RouteEntry] = []
        self._seq = 0

    def __iter__(self) -> Iterator[RouteEntry]:
        return iter(list(self._routes))

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, entry: RouteEntry) -> RouteEntry:
        """Add a route; an identical (dst, nic, gateway, metric) route is replaced."""
        self.remove(entry.dst, nic_id=entry.nic_id, gateway=entry.gateway, metric=entry.metric)
        self._seq += 1
        entry.seq = self._seq
        self._routes.append(entry)
        # Keep sorted: longest prefix first, then metric, then insertion order.
        self._routes.sort(key=lambda r: (-r.dst.prefixlen, r.metric, r.seq))
        return entry

    def remove(self, dst: IPNetwork, *, nic_id: int | None = None,
               gateway: IPAddress | None | str = "any", metric: int | None = None) -> int:
        """Remove matching routes; returns how many went."""
        before = len(self._routes)
        self._routes = [
            r for r in self._routes
            if not (r.dst == dst and (nic_id is None or r.nic_id == nic_id)
                    and (gateway == "any" or r.gateway == gateway)
                    and (metric is None or r.metric == metric))
        ]
        return before - len(self._routes)

    def remove_nic(self, nic_id: int) -> None:
        """Drop every route through ``nic_id``."""
        self._routes = [r for r in self._routes if r.nic_id != nic_id]

    def lookup(self, dst: IPAddress, *, nic_id: int | None = None,
               now: float | None = None) -> RouteEntry | None:
        """The best route to ``dst`` (optionally only via ``nic_id``), or None."""
        version = dst.version
        for r in self._routes:
            if r.dst.version != version:
                continue
            if nic_id is not None and r.nic_id != nic_id:
                continue
            if r.expires_at is not None and now is not None and r.expires_at <= now:
                continue
            if dst in r.dst:
                return r
        return None

    def expire(self, now: float) -> list[RouteEntry]:
        """Drop expired routes; returns them."""
        gone = [r for r in self._routes if r.expires_at is not None and r.expires_at <= now]
        if gone:
            self._routes = [r for r in self._routes if r not in gone]
        return gone

    def next_deadline(self) -> float | None:
        """When the next route expires, or None."""
        times = [r.expires_at for r in self._routes if r.expires_at is not None]
        return min(times) if times else None
