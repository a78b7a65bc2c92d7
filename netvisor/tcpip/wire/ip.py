"""IP protocol numbers (IANA "Assigned Internet Protocol Numbers").

Shared by IPv4's protocol field and IPv6's next-header field. Plain ints, so
unknown values pass through untouched.
"""

from __future__ import annotations

from typing import Final

IPPROTO_HOPOPTS: Final = 0     # IPv6 Hop-by-Hop Options (RFC 8200 4.3)
IPPROTO_ICMP: Final = 1
IPPROTO_IGMP: Final = 2
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_IPV6: Final = 41
IPPROTO_ROUTING: Final = 43    # IPv6 Routing header (RFC 8200 4.4)
IPPROTO_FRAGMENT: Final = 44   # IPv6 Fragment header (RFC 8200 4.5)
IPPROTO_ESP: Final = 50
IPPROTO_AH: Final = 51
IPPROTO_ICMPV6: Final = 58
IPPROTO_NONE: Final = 59       # IPv6 No Next Header (RFC 8200 4.7)
IPPROTO_DSTOPTS: Final = 60    # IPv6 Destination Options (RFC 8200 4.6)
IPPROTO_MH: Final = 135        # Mobility header (RFC 6275)
IPPROTO_UDPLITE: Final = 136
