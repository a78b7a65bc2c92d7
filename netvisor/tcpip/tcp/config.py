"""TCP configuration: the sysctls a Linux host would have (defaults as Linux 6.x)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TcpConfig:
    """Stack-wide TCP settings; names follow ``net.ipv4.tcp_*`` where one exists."""

    time_wait_timeout: float = 60.0
    """TIME_WAIT length (2*MSL); Linux hard-codes TCP_TIMEWAIT_LEN = 60 s."""
    fin_timeout: float = 60.0
    """tcp_fin_timeout: FIN_WAIT_2 lifetime of an orphaned connection (TCP_LINGER2 default)."""
    syn_retries: int = 6
    synack_retries: int = 5
    retries2: int = 15
    orphan_retries: int = 8
    rto_initial: float = 1.0
    """RFC 6298 2.1 initial RTO (Linux TCP_TIMEOUT_INIT)."""
    rto_min: float = 0.2
    """Linux TCP_RTO_MIN (RFC 6298 says 1 s; Linux uses 200 ms)."""
    rto_max: float = 120.0
    delack_min: float = 0.04
    """Linux TCP_ATO_MIN / TCP_DELACK_MIN (40 ms)."""
    delack_max: float = 0.2
    """Linux TCP_DELACK_MAX (200 ms)."""
    rmem: tuple[int, int, int] = (4096, 131072, 6291456)
    """tcp_rmem: min, default, max receive buffer."""
    wmem: tuple[int, int, int] = (4096, 16384, 4194304)
    """tcp_wmem: min, default, max send buffer."""
    core_rmem_max: int = 212992
    """net.core.rmem_max: the cap on SO_RCVBUF (before Linux doubles it)."""
    core_wmem_max: int = 212992
    sack: bool = True
    window_scaling: bool = True
    timestamps: bool = True
    syncookies: int = 1
    """0 off, 1 when the SYN queue overflows (Linux default), 2 always."""
    congestion_control: str = "cubic"
    keepalive_time: float = 7200.0
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    ephemeral_ports: tuple[int, int] = (32768, 60999)
    max_ooo_segments: int = 1024
    """Bound on out-of-order segments held per connection (memory bound)."""
    reordering: int = 3
    """tcp_reordering: DupThresh (RFC 5681 / 6675)."""
    initial_cwnd_segments: int = 10
    """RFC 6928 initial window (Linux TCP_INIT_CWND)."""
    somaxconn: int = 4096
    """net.core.somaxconn: listen backlog cap."""
    limit_output_bytes: int = 4 << 20
    """tcp_limit_output_bytes: TCP small queues' cap on one connection's bytes
    queued below TCP (Linux 6.x default 4 MiB)."""
    tsq_min_bytes: int = 65536
    """Floor of the TCP small queues limit (see output._tsq_limit)."""
