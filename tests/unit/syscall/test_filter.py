"""The seccomp filter, run by a small classic-BPF interpreter (no kernel needed)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from netvisor.syscall import seccomp as sc

ALLOW = sc.SECCOMP_RET_ALLOW
TRAP = sc.SECCOMP_RET_USER_NOTIF
KILL = sc.SECCOMP_RET_KILL_PROCESS


def run_bpf(prog: bytes, nr: int, args: tuple[int, ...] = (), arch: int = sc.AUDIT_ARCH_X86_64
            ) -> int:
    """Evaluate a classic BPF program over a struct seccomp_data."""
    full = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0x1000, *full)
    ins = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    pc, acc = 0, 0
    for _ in range(len(ins) + 1):
        code, jt, jf, k = ins[pc]
        if code == sc.BPF_LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == sc.BPF_ALU_AND_K:
            acc &= k
        elif code == sc.BPF_JMP_JEQ_K:
            pc += jt if acc == k else jf
        elif code == sc.BPF_JMP_JSET_K:
            pc += jt if acc & k else jf
        elif code == sc.BPF_RET_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1
    raise AssertionError("BPF program did not return")


PROG = sc.build_filter()


def test_program_fits_and_is_aligned() -> None:
    assert len(PROG) % 8 == 0 and len(PROG) // 8 < 4096


@pytest.mark.parametrize("family,expected", [
    (socket.AF_INET, TRAP), (socket.AF_INET6, TRAP), (socket.AF_NETLINK, TRAP),
    (socket.AF_UNIX, ALLOW), (socket.AF_PACKET, sc.SECCOMP_RET_ERRNO | errno.EPERM),
    (40, sc.SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT),           # AF_VSOCK
])
def test_socket_by_family(family: int, expected: int) -> None:
    assert run_bpf(PROG, sc.NR["socket"], (family, socket.SOCK_STREAM, 0)) == expected


def test_family_upper_bits_ignored_like_the_kernel() -> None:
    # int family: the kernel uses the low 32 bits only, so must the filter.
    assert run_bpf(PROG, sc.NR["socket"], ((1 << 32) | socket.AF_INET, 1, 0)) == TRAP


def test_socketpair() -> None:
    assert run_bpf(PROG, sc.NR["socketpair"], (socket.AF_UNIX, 1, 0)) == ALLOW
    assert run_bpf(PROG, sc.NR["socketpair"], (socket.AF_INET, 1, 0)) == \
        sc.SECCOMP_RET_ERRNO | errno.EOPNOTSUPP


@pytest.mark.parametrize("name", ["sendto", "recvfrom"])
def test_address_argument_decides(name: str) -> None:
    nr = sc.NR[name]
    assert run_bpf(PROG, nr, (3, 0x1000, 10, 0, 0, 0)) == ALLOW
    assert run_bpf(PROG, nr, (3, 0x1000, 10, 0, 0x7FFF0000, 16)) == TRAP
    assert run_bpf(PROG, nr, (3, 0x1000, 10, 0, 0x7FFF_00000000, 16)) == TRAP


def test_recvfrom_of_the_error_queue_traps_without_an_address() -> None:
    """recv(fd, buf, n, MSG_ERRQUEUE): the pair has no error queue (AF_UNIX
    would hand out a datagram), so the stack must answer."""
    nr = sc.NR["recvfrom"]
    assert run_bpf(PROG, nr, (3, 0x1000, 10, sc.MSG_ERRQUEUE | 0x40, 0, 0)) == TRAP
    assert run_bpf(PROG, nr, (3, 0x1000, 10, 0x40, 0, 0)) == ALLOW
    assert run_bpf(PROG, sc.NR["sendto"], (3, 0x1000, 10, sc.MSG_ERRQUEUE, 0, 0)) == ALLOW


@pytest.mark.parametrize("name", sc.ALWAYS_TRAPPED)
def test_always_trapped(name: str) -> None:
    assert run_bpf(PROG, sc.NR[name], (3,)) == TRAP


@pytest.mark.parametrize("req,expected", [
    (0x541B, TRAP), (0x5411, TRAP), (0x8912, TRAP), (0x8933, TRAP),
    (0x8922, TRAP), (0x894C, TRAP), (0x8B01, TRAP), (0x8B2C, TRAP),   # SIOCSIFMTU, SIOCGSKNS, wext
    (0x5401, ALLOW), (0x5421, ALLOW),                  # TCGETS, FIONBIO
])
def test_ioctl_by_request(req: int, expected: int) -> None:
    assert run_bpf(PROG, sc.NR["ioctl"], (0, req, 0)) == expected


@pytest.mark.parametrize("name", ["io_uring_setup", "io_uring_enter", "io_uring_register"])
def test_io_uring_refused(name: str) -> None:
    assert run_bpf(PROG, sc.NR[name], ()) == sc.SECCOMP_RET_ERRNO | errno.ENOSYS


def test_setns_refused() -> None:
    assert run_bpf(PROG, sc.NR["setns"], (3, 0)) == sc.SECCOMP_RET_ERRNO | errno.EPERM


def test_other_arches_and_x32_killed() -> None:
    assert run_bpf(PROG, 102, (1,), arch=0x40000003) == KILL       # i386 socketcall
    assert run_bpf(PROG, sc.X32_SYSCALL_BIT | 41, (2, 1, 0)) == KILL


def test_unrelated_calls_allowed() -> None:
    for nr in (0, 1, 3, 59, 57, 231):  # read write close execve fork exit_group
        assert run_bpf(PROG, nr, (0,)) == ALLOW


def test_ptrace_variant_traces_the_same_calls() -> None:
    traced = sc.build_filter(sc.SECCOMP_RET_TRACE)
    for name in sc.ALWAYS_TRAPPED:
        assert run_bpf(traced, sc.NR[name], (3,)) == sc.SECCOMP_RET_TRACE
    assert run_bpf(traced, sc.NR["socket"], (socket.AF_INET, 1, 0)) == sc.SECCOMP_RET_TRACE
    assert run_bpf(traced, sc.NR["socket"], (socket.AF_UNIX, 1, 0)) == ALLOW
    assert run_bpf(traced, sc.NR["io_uring_setup"], ()) == sc.SECCOMP_RET_ERRNO | errno.ENOSYS
