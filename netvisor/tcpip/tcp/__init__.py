"""Sans-IO TCP: connections, listeners, congestion control, SACK, timers.

Public API: :class:`TcpTransport` (the network layer's ``Transport`` for
protocol 6; ``socket(family)`` makes sockets) and :class:`TcpConfig`
(the sysctls). See ``connection.py`` for the RFCs implemented.
"""

from netvisor.tcpip.tcp.config import TcpConfig
from netvisor.tcpip.tcp.socket import TcpSocket
from netvisor.tcpip.tcp.transport import TcpTransport

__all__ = ["TcpConfig", "TcpSocket", "TcpTransport"]
