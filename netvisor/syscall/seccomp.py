"""seccomp user notification: the BPF filter and the listener's ioctls (x86_64).

Layouts and numbers are Linux's uapi (include/uapi/linux/seccomp.h, filter.h)
and were measured on the target kernel (see shared/notes/syscall-trapping.md):

    struct seccomp_data        { int nr; u32 arch; u64 ip; u64 args[6]; }
    struct seccomp_notif       { u64 id; u32 pid; u32 flags; seccomp_data data; }
    struct seccomp_notif_resp  { u64 id; s64 val; s32 error; u32 flags; }
    struct seccomp_notif_addfd { u64 id; u32 flags; u32 srcfd; u32 newfd; u32 newfd_flags; }

The filter traps only what needs the stack (socket calls on AF_INET/AF_INET6
and NETLINK sockets, and the calls whose arguments may carry an address);
everything else runs natively. It also closes the paths around the trap:
non-x86_64 entry points (int 0x80 socketcall, x32) kill the process,
io_uring is refused (its socket/connect opcodes never pass through seccomp)
and setns is refused (a root program could otherwise join another network
namespace through /proc or /run/netns).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import struct
from dataclasses import dataclass
from typing import Final

# --- syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl) ---------------
NR: Final[dict[str, int]] = {
    "read": 0, "ioctl": 16, "socket": 41, "connect": 42, "accept": 43,
    "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "shutdown": 48,
    "bind": 49, "listen": 50, "getsockname": 51, "getpeername": 52,
    "socketpair": 53, "setsockopt": 54, "getsockopt": 55, "accept4": 288,
    "recvmmsg": 299, "sendmmsg": 307, "setns": 308, "seccomp": 317,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "pidfd_open": 434, "pidfd_getfd": 438,
}
NAMES: Final[dict[int, str]] = {v: k for k, v in NR.items()}

AUDIT_ARCH_X86_64: Final = 0xC000003E
X32_SYSCALL_BIT: Final = 0x40000000

SECCOMP_RET_KILL_PROCESS: Final = 0x80000000
SECCOMP_RET_ERRNO: Final = 0x00050000
SECCOMP_RET_USER_NOTIF: Final = 0x7FC00000
SECCOMP_RET_ALLOW: Final = 0x7FFF0000

SECCOMP_SET_MODE_FILTER: Final = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER: Final = 8
SECCOMP_USER_NOTIF_FLAG_CONTINUE: Final = 1
SECCOMP_ADDFD_FLAG_SETFD: Final = 1
SECCOMP_ADDFD_FLAG_SEND: Final = 2

SECCOMP_IOCTL_NOTIF_RECV: Final = 0xC0502100
SECCOMP_IOCTL_NOTIF_SEND: Final = 0xC0182101
SECCOMP_IOCTL_NOTIF_ID_VALID: Final = 0x40082102
SECCOMP_IOCTL_NOTIF_ADDFD: Final = 0x40182103

# Address families and ioctl requests the filter looks at.
AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
AF_NETLINK: Final = 16
AF_PACKET: Final = 17
FIONREAD: Final = 0x541B    # = SIOCINQ
MSG_ERRQUEUE: Final = 0x2000
TIOCOUTQ: Final = 0x5411    # = SIOCOUTQ
SIOC_BASE: Final = 0x8900   # SIOCGIF*, SIOCGSTAMP, SIOCATMARK ... (0x89xx)
SIOCIW_BASE: Final = 0x8B00  # wireless extensions (SIOCIWFIRST..SIOCIWLAST, 0x8Bxx)

# Calls always handed to the supervisor.
ALWAYS_TRAPPED: Final = (
    "connect", "bind", "listen", "accept", "accept4", "getsockname", "getpeername",
    "setsockopt", "getsockopt", "shutdown", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
)

# --- classic BPF -------------------------------------------------------------
BPF_LD_W_ABS: Final = 0x20
BPF_JMP_JEQ_K: Final = 0x15
BPF_JMP_JSET_K: Final = 0x45
BPF_JMP_JA: Final = 0x05
BPF_ALU_AND_K: Final = 0x54
BPF_RET_K: Final = 0x06

OFF_NR: Final = 0
OFF_ARCH: Final = 4


def _arg_lo(i: int) -> int:
    """Offset of the low 32 bits of args[i] (little endian)."""
    return 16 + 8 * i


def _arg_hi(i: int) -> int:
    return 16 + 8 * i + 4


class _Asm:
    """A tiny forward-jumping BPF assembler with labels."""

    def __init__(self) -> None:
        self.ins: list[tuple[int, str | int, str | int, int]] = []
        self.labels: dict[str, int] = {}

    def label(self, name: str) -> None:
        self.labels[name] = len(self.ins)

    def ld(self, off: int) -> None:
        self.ins.append((BPF_LD_W_ABS, 0, 0, off))

    def jeq(self, k: int, jt: str | int, jf: str | int = 0) -> None:
        self.ins.append((BPF_JMP_JEQ_K, jt, jf, k))

    def jset(self, k: int, jt: str | int, jf: str | int = 0) -> None:
        self.ins.append((BPF_JMP_JSET_K, jt, jf, k))

    def and_(self, k: int) -> None:
        self.ins.append((BPF_ALU_AND_K, 0, 0, k))

    def ret(self, k: int) -> None:
        self.ins.append((BPF_RET_K, 0, 0, k))

    def _rel(self, pc: int, target: str | int) -> int:
        """Jump offset from instruction ``pc`` to a label (forward only, < 256)."""
        if isinstance(target, int):
            return target
        off = self.labels[target] - pc - 1
        if not 0 <= off <= 255:
            raise ValueError(f"BPF jump to {target} out of range ({off})")
        return off

    def assemble(self) -> bytes:
        out = bytearray()
        for pc, (code, jt, jf, k) in enumerate(self.ins):
            out += struct.pack("<HBBI", code, self._rel(pc, jt), self._rel(pc, jf),
                               k & 0xFFFFFFFF)
        return bytes(out)


SECCOMP_RET_TRACE: Final = 0x7FF00000


def build_filter(trap: int = SECCOMP_RET_USER_NOTIF) -> bytes:
    """The sandbox's seccomp filter as raw ``struct sock_filter`` bytes.

    ``trap``: the action for trapped calls (RET_TRACE for the ptrace platform).
    """
    a = _Asm()
    a.ld(OFF_ARCH)
    a.jeq(AUDIT_ARCH_X86_64, 0, "kill")          # i386 (int 0x80) entry: kill
    a.ld(OFF_NR)
    a.jset(X32_SYSCALL_BIT, "kill", 0)           # x32 ABI: kill
    a.jeq(NR["socket"], "socket")
    a.jeq(NR["socketpair"], "socketpair")
    a.jeq(NR["sendto"], "addr4")
    a.jeq(NR["recvfrom"], "recvfrom")
    a.jeq(NR["ioctl"], "ioctl")
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        a.jeq(NR[name], "enosys")
    a.jeq(NR["setns"], "eperm")
    for name in ALWAYS_TRAPPED:
        a.jeq(NR[name], "trap")
    a.ret(SECCOMP_RET_ALLOW)

    a.label("socket")                            # int family in args[0]
    a.ld(_arg_lo(0))
    a.jeq(AF_UNIX, "allow")
    a.jeq(AF_INET, "trap")
    a.jeq(AF_INET6, "trap")
    a.jeq(AF_NETLINK, "trap")
    a.jeq(AF_PACKET, "eperm")                    # as without CAP_NET_RAW
    a.ret(SECCOMP_RET_ERRNO | _errno.EAFNOSUPPORT)

    a.label("socketpair")
    a.ld(_arg_lo(0))
    a.jeq(AF_UNIX, "allow")
    a.ret(SECCOMP_RET_ERRNO | _errno.EOPNOTSUPP)  # Linux: inet has no socketpair

    a.label("recvfrom")                          # int flags in args[3]
    a.ld(_arg_lo(3))
    a.jset(MSG_ERRQUEUE, "trap", 0)              # the error queue is the stack's, not the pair's
    a.label("addr4")                             # sendto/recvfrom: trap iff addr != NULL
    a.ld(_arg_lo(4))
    a.jeq(0, 0, "trap")
    a.ld(_arg_hi(4))
    a.jeq(0, "allow", "trap")

    a.label("ioctl")                             # unsigned int cmd in args[1]
    a.ld(_arg_lo(1))
    a.jeq(FIONREAD, "trap")
    a.jeq(TIOCOUTQ, "trap")
    a.and_(0xFFFFFF00)
    a.jeq(SIOC_BASE, "trap")
    # Wireless extensions act on the socket's network namespace (sock_ioctl ->
    # wext_handle_ioctl), which is the supervisor's for an emulated socket.
    a.jeq(SIOCIW_BASE, "trap")
    a.ret(SECCOMP_RET_ALLOW)

    a.label("allow")
    a.ret(SECCOMP_RET_ALLOW)
    a.label("trap")
    a.ret(trap)
    a.label("enosys")
    a.ret(SECCOMP_RET_ERRNO | _errno.ENOSYS)
    a.label("eperm")
    a.ret(SECCOMP_RET_ERRNO | _errno.EPERM)
    a.label("kill")
    a.ret(SECCOMP_RET_KILL_PROCESS)
    return a.assemble()


# --- the listener ------------------------------------------------------------
_NOTIF = struct.Struct("<QII" + "iIQ6Q")        # 80 bytes
_RESP = struct.Struct("<QqiI")                  # 24 bytes
_ADDFD = struct.Struct("<QIIII")                # 24 bytes
assert _NOTIF.size == 80 and _RESP.size == 24 and _ADDFD.size == 24


@dataclass(slots=True)
class Notification:
    """One trapped system call (``struct seccomp_notif``)."""

    id: int
    pid: int
    nr: int
    arch: int
    ip: int
    args: tuple[int, int, int, int, int, int]

    @property
    def name(self) -> str:
        return NAMES.get(self.nr, str(self.nr))


class Listener:
    """The supervisor's end of a seccomp notification listener fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray(_NOTIF.size)
        self._resp = bytearray(_RESP.size)
        self._addfd = bytearray(_ADDFD.size)
        self._idbuf = bytearray(8)

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> Notification:
        """SECCOMP_IOCTL_NOTIF_RECV (the buffer must be zero, else EINVAL)."""
        buf = self._buf
        buf[:] = bytes(_NOTIF.size)
        fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_RECV, buf, True)
        v = _NOTIF.unpack_from(buf)
        return Notification(v[0], v[1], v[3], v[4], v[5], v[6:12])

    def send(self, nid: int, val: int = 0, error: int = 0, *, cont: bool = False) -> bool:
        """Answer a notification: ``val`` on success, or ``-error``; or CONTINUE.

        Returns False when the notification is gone (the caller was killed or a
        signal interrupted the call: ENOENT).
        """
        _RESP.pack_into(self._resp, 0, nid, val, -error if error else 0,
                        SECCOMP_USER_NOTIF_FLAG_CONTINUE if cont else 0)
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SEND, self._resp, True)
        except OSError as e:
            if e.errno == _errno.ENOENT:
                return False
            raise
        return True

    def id_valid(self, nid: int) -> bool:
        """Is the notification still pending (pid and memory still the caller's)?"""
        struct.pack_into("<Q", self._idbuf, 0, nid)
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ID_VALID, self._idbuf, True)
        except OSError:
            return False
        return True

    def addfd(self, nid: int, srcfd: int, *, cloexec: bool = False, send: bool = False,
              setfd: int | None = None) -> int:
        """Install ``srcfd`` into the caller (SECCOMP_IOCTL_NOTIF_ADDFD).

        With ``send`` the new fd number is also the syscall's return value,
        atomically (ADDFD_FLAG_SEND). With ``setfd`` the file replaces the
        caller's fd of that number (ADDFD_FLAG_SETFD, as dup2). Raises
        OSError(ENOENT) when the notification is gone; then nothing was installed.
        """
        flags = SECCOMP_ADDFD_FLAG_SEND if send else 0
        if setfd is not None:
            flags |= SECCOMP_ADDFD_FLAG_SETFD
        _ADDFD.pack_into(self._addfd, 0, nid, flags, srcfd, setfd or 0,
                         os.O_CLOEXEC if cloexec else 0)
        return int(fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_ADDFD, self._addfd, True))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """A duplicate of another process's fd (needs ptrace access: we are root)."""
    r = _libc.syscall(NR["pidfd_getfd"], pidfd, targetfd, 0)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return int(r)
