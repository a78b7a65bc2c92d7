"""Frames in and out: endpoints (tap, packet, loopback) and wrappers (pcap, faults, shaper).

The contract is :class:`netvisor.link.endpoint.LinkEndpoint`; every module
here implements it or wraps something that does.
"""

from netvisor.link.endpoint import LinkCapabilities, LinkEndpoint, LinkStats

__all__ = ["LinkCapabilities", "LinkEndpoint", "LinkStats"]
