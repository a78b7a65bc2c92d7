"""Wire formats: a view over the buffer plus a frozen repr, per header.

Modules: ``ethernet`` (Ethernet II, 802.1Q tags), ``arp``, ``ipv4`` (+options),
``ipv6`` (fixed header), ``ipv6ext`` (extension headers), ``icmpv4``,
``icmpv6``, ``ndp``, ``mld``, ``igmp``, ``udp``, ``tcp``, ``checksum``, ``ip``
(protocol numbers).

Conventions (STYLE.md): ``XxxView.checked(buf)`` raises ``Truncated`` when a
length lies; ``XxxRepr.parse(view, ...)`` raises ``MalformedPacket`` for
semantic errors; ``repr.emit(buf, offset, ...)`` writes every field into a
caller's buffer; ``to_bytes(...)`` is the allocating convenience. Views never
copy: payloads are memoryview slices bounded by the header's length field.
Stdlib only (the C checksum is optional).
"""
