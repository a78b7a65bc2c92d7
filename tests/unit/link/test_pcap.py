"""pcap sniffer: files that tcpdump and tshark read, with the injected clock's times."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from netvisor.frame import GSO_TCPV4, Frame
from netvisor.link.loopback import LoopbackEndpoint, memory_pair
from netvisor.link.pcap import PcapSniffer


def _udp(i: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.199.0.1", dst="10.199.0.2") / UDP(sport=1000 + i, dport=53)
                 / (b"q" * 20))


def _write_capture(path: Path) -> None:
    times = iter([1700000000.25, 1700000001.5])
    a, b = memory_pair(queue_limit=2)
    sniff = PcapSniffer(a, path, clock=lambda: next(times))
    assert sniff.write_batch([Frame(_udp(i)) for i in range(3)]) == 2  # only what was taken
    b.write_batch([Frame(bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
                                     / IP(src="10.199.0.2", dst="10.199.0.1") / ICMP()))])
    assert len(sniff.read_batch(10)) == 1
    sniff.close()
    assert sniff.frames_written == 3


def test_pcap_file_format(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    _write_capture(path)
    raw = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", raw)
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 262144, 1)
    sec, usec, incl, orig = struct.unpack_from("<IIII", raw, 24)
    assert (sec, usec) == (1700000000, 250000) and incl == orig == len(_udp(0))


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    _write_capture(path)
    out = subprocess.run(["tcpdump", "-nn", "-tt", "-r", str(path)], capture_output=True,
                         text=True, timeout=30, check=True).stdout.splitlines()
    assert len(out) == 3
    assert out[0].startswith("1700000000.250000 IP 10.199.0.1.1000 > 10.199.0.2.53: ")
    assert out[1].startswith("1700000000.250000 IP 10.199.0.1.1001 > 10.199.0.2.53: ")
    assert out[2].startswith("1700000001.500000 IP 10.199.0.2 > 10.199.0.1: ICMP echo request")


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    _write_capture(path)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch",
                          "-e", "ip.src", "-e", "udp.srcport", "-e", "icmp.type"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.strip().splitlines()]
    assert [r[1:] for r in rows] == [["10.199.0.1", "1000", ""], ["10.199.0.1", "1001", ""],
                                     ["10.199.0.2", "", "8"]]
    assert float(rows[2][0]) == pytest.approx(1700000001.5)


def test_snaplen_and_gso_frames_and_forwarding() -> None:
    buf = io.BytesIO()
    lo = LoopbackEndpoint()
    sniff = PcapSniffer(lo, buf, clock=lambda: 5.0, snaplen=100)
    big = Frame(b"z" * 20_000, gso_type=GSO_TCPV4, gso_size=1448, hdr_len=54)
    assert sniff.write_batch([big]) == 1
    assert len(sniff.read_batch(5)) == 1  # tx and rx both recorded
    sniff.flush()
    raw = buf.getvalue()
    assert struct.unpack_from("<IIII", raw, 24) == (5, 0, 100, 20_000)
    assert struct.unpack_from("<IIII", raw, 24 + 16 + 100) == (5, 0, 100, 20_000)
    assert sniff.capabilities is lo.capabilities and sniff.fileno() == lo.fileno()
    assert sniff.stats is lo.stats
    sniff.close()
    assert not buf.closed  # a file object given to us is flushed, not closed
    with pytest.raises(ValueError):
        PcapSniffer(lo, io.BytesIO(), snaplen=0)
