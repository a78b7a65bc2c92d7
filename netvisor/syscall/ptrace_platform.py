"""``--platform=ptrace``: the same supervisor, with ptrace instead of user notification.

The filter is the same, with SECCOMP_RET_TRACE instead of RET_USER_NOTIF, so
only the trapped calls stop the program (PTRACE_EVENT_SECCOMP); the rest runs
at full speed. :class:`PtraceListener` offers the supervisor the listener
interface (``fd`` readable when a call waits, ``recv``, ``send``,
``id_valid``) plus ``inject``, the ptrace form of ADDFD:

- answer: at the seccomp stop, ``orig_rax = -1`` skips the call and ``rax``
  is its result (kernel/seccomp.c: a tracer may skip the syscall);
- CONTINUE: resume, the kernel runs the call;
- replace_fd (ADDFD_FLAG_SETFD): socket(), dup3() and close() run in the
  stopped thread; the trapped call stays pending at the last exit stop;
- inject: the trapped call is rewritten into ``socket(AF_UNIX, kind|flags)``
  (the filter allows it on the recheck after the stop), run to its
  syscall-exit stop; the supervisor takes a copy of that new socket with
  pidfd_getfd and connects the copy to a listening AF_UNIX socket of its own,
  so that the accepted end is the supervisor's end of the pair. The new fd
  number is the call's result.

All ptrace requests come from the thread that attached: trio's main thread.
Stops are collected on SIGCHLD. A thread stopped in a blocking emulated
call cannot be woken by a signal: ``id_valid`` (polled every 50 ms while
the call blocks) reads the thread's pending signals and ends the call with
-ERESTARTSYS, so the kernel gives EINTR or restarts it as for a blocked
call of its own (up to 50 ms later than on the seccomp platform). Each
trapped call costs two context switches more (notes: ~27 us per call with
python-ptrace).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import shutil
import signal
import socket
import tempfile
from typing import Any

import trio

from netvisor.syscall.seccomp import Notification, pidfd_getfd

PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_SYSCALL = 7, 12, 13, 24
PTRACE_GETEVENTMSG, PTRACE_SEIZE, PTRACE_LISTEN = 0x4201, 0x4206, 0x4208
OPTIONS = (0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80  # SYSGOOD FORK VFORK CLONE EXEC SECCOMP
           | 0x100000)                           # EXITKILL
EV_FORK, EV_VFORK, EV_CLONE, EV_EXEC, EV_SECCOMP, EV_STOP = 1, 2, 3, 4, 7, 0x80
WALL = 0x40000000
SYS_SOCKET, SYS_CLOSE, SYS_DUP3, SYS_GETPID = 41, 3, 292, 39
ERESTARTSYS = 512   # kernel-internal: "restart if SA_RESTART, else EINTR"
AF_UNIX = 1
STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86_64)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
        "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
        "gs_base", "ds", "es", "fs", "gs")]


def _ptrace(req: int, pid: int, addr: int = 0, data: Any = 0) -> int:
    r = _libc.ptrace(req, pid, addr, data)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {pid}): {os.strerror(e)}")
    return int(r)


def _signal_waiting(tid: int) -> bool:
    """Whether a signal is pending for thread ``tid`` (its own or its
    process's) that it neither blocks nor ignores."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f if line.startswith(b"Sig")
                          or line.startswith(b"ShdPnd"))
    except OSError:
        return False
    pending = int(fields[b"SigPnd"], 16) | int(fields[b"ShdPnd"], 16)
    return bool(pending & ~int(fields[b"SigBlk"], 16) & ~int(fields[b"SigIgn"], 16))


class PtraceListener:
    """The supervisor's listener interface over ptrace (see module doc)."""

    def __init__(self, init_pid: int) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.fd = self._r
        self._queue: collections.deque[Notification] = collections.deque()
        self._stopped: dict[int, int] = {}        # notification id -> tid
        self._tids: set[int] = {init_pid}
        self._next_id = 1
        self._regs = Regs()
        self._acceptors: dict[int, socket.socket] = {}
        self._dir: str | None = None
        _ptrace(PTRACE_SEIZE, init_pid, 0, OPTIONS)

    def fileno(self) -> int:
        return self.fd

    # ------------------------------------------------------ listener API
    def recv(self) -> Notification:
        if not self._queue:
            raise OSError(errno.ENOENT, "no stopped call")
        n = self._queue.popleft()
        if not self._queue:
            try:
                while os.read(self._r, 4096):
                    pass
            except BlockingIOError:
                pass
        return n

    def id_valid(self, nid: int) -> bool:
        """Is the call still pending? A signal the stopped thread would take
        ends it here, as a signal ends a blocked call on the seccomp platform
        (the supervisor polls this every 50 ms while a call blocks)."""
        tid = self._stopped.get(nid)
        if tid is None:
            return False
        if not _signal_waiting(tid):
            return True
        del self._stopped[nid]
        try:
            self._interrupt(tid)
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
        return False

    def _interrupt(self, tid: int) -> None:
        """End the stopped call with -ERESTARTSYS, as an interrupted blocking
        call in the kernel: on the way out the signal is delivered and the
        kernel turns that into EINTR, or re-issues the call for SA_RESTART or
        a signal without handler (arch_do_signal_or_restart)."""
        self._getregs(tid)
        saved = Regs.from_buffer_copy(self._regs)
        # Run a harmless call in its place to reach the syscall-exit stop,
        # where the result and orig_rax (which the restart logic reads) are set.
        self._run_call(tid, SYS_GETPID, 0, 0, 0, rewind=False)
        saved.rax = (-ERESTARTSYS) & ((1 << 64) - 1)
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(saved))
        _ptrace(PTRACE_CONT, tid, 0, 0)

    def send(self, nid: int, val: int = 0, error: int = 0, *, cont: bool = False) -> bool:
        tid = self._stopped.pop(nid, None)
        if tid is None:
            return False
        try:
            if not cont:
                self._getregs(tid)
                self._regs.orig_rax = (1 << 64) - 1            # -1: skip the call
                self._regs.rax = (-error) & ((1 << 64) - 1) if error else val
                _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(self._regs))
            _ptrace(PTRACE_CONT, tid, 0, 0)
        except OSError as e:
            if e.errno == errno.ESRCH:
                return False
            raise
        return True

    def inject(self, nid: int, kind: int, flags: int, *, pair: bool = True
               ) -> tuple[int, socket.socket, int]:
        """Make the stopped call return a new fd: one end of a pair whose other
        end (returned) is ours. Returns (fd in the program, our end, inode).
        Without ``pair`` the new socket stays unconnected and our copy of it
        is returned instead (the supervisor connects it later, in place)."""
        tid = self._stopped.pop(nid, None)
        if tid is None:
            raise OSError(errno.ENOENT, "call gone")
        self._getregs(tid)
        regs = self._regs
        regs.orig_rax = SYS_SOCKET
        regs.rdi, regs.rsi, regs.rdx = AF_UNIX, kind | flags, 0
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))
        _ptrace(PTRACE_SYSCALL, tid, 0, 0)
        while True:  # run to the syscall-exit stop of the rewritten call
            _, status = os.waitpid(tid, WALL)
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self._tids.discard(tid)
                raise OSError(errno.ENOENT, "program died")
            sig, event = (status >> 8) & 0xFF, status >> 16
            if sig == signal.SIGTRAP | 0x80:
                break
            # Anything else (a signal arrived): deliver it and keep going.
            _ptrace(PTRACE_SYSCALL, tid, 0, sig if event == 0 and sig != signal.SIGTRAP else 0)
        self._getregs(tid)
        fd = ctypes.c_longlong(self._regs.rax).value
        if fd < 0:
            _ptrace(PTRACE_CONT, tid, 0, 0)
            raise OSError(-fd, os.strerror(-fd))
        try:
            pidfd = os.pidfd_open(tid, os.O_EXCL)
            try:
                ours = socket.socket(fileno=pidfd_getfd(pidfd, fd))
            finally:
                os.close(pidfd)
            ino = os.fstat(ours.fileno()).st_ino
            if not pair:
                return fd, ours, ino
            acceptor = self.acceptor(kind)
            ours.connect(acceptor.getsockname())
            sup, _ = acceptor.accept()
            ours.close()
        finally:
            _ptrace(PTRACE_CONT, tid, 0, 0)
        sup.setblocking(False)
        return fd, sup, ino

    def replace_fd(self, nid: int, fd: int, kind: int, flags: int) -> tuple[socket.socket, int]:
        """ADDFD_FLAG_SETFD's ptrace form: a new unconnected AF_UNIX socket of
        ``kind`` (``flags``: SOCK_NONBLOCK, SOCK_CLOEXEC) becomes the program's
        fd ``fd``, and the stopped call stays pending (answered by send()).

        Three calls are run in the stopped thread: socket() in place of the
        trapped call, then dup3() and close() by re-executing its syscall
        instruction; the thread is left at the last one's exit stop, where
        send() still sets the trapped call's result. Returns (our copy, inode).
        """
        tid = self._stopped.get(nid)
        if tid is None:
            raise OSError(errno.ENOENT, "call gone")
        try:
            new = self._run_call(tid, SYS_SOCKET, AF_UNIX, kind | flags, 0, rewind=False)
            if new < 0:
                raise OSError(-new, os.strerror(-new))
            pidfd = os.pidfd_open(tid, os.O_EXCL)
            try:
                ours = socket.socket(fileno=pidfd_getfd(pidfd, new))
            finally:
                os.close(pidfd)
            r = self._run_call(tid, SYS_DUP3, new, fd, flags & os.O_CLOEXEC, rewind=True)
            self._run_call(tid, SYS_CLOSE, new, 0, 0, rewind=True)
        except OSError as e:
            if e.errno == errno.ESRCH:
                self._stopped.pop(nid, None)
            raise
        if r < 0:
            ours.close()
            raise OSError(-r, os.strerror(-r))
        return ours, os.fstat(ours.fileno()).st_ino

    def _run_call(self, tid: int, nr: int, a: int, b: int, c: int, *, rewind: bool) -> int:
        """Run syscall ``nr(a, b, c)`` in the stopped thread ``tid`` to its exit
        stop: in place of the call at a seccomp stop, or (``rewind``, at an exit
        stop) by executing its 2-byte syscall instruction again."""
        self._getregs(tid)
        regs = self._regs
        if rewind:
            regs.rip -= 2
            regs.rax = nr
        regs.orig_rax = nr
        regs.rdi, regs.rsi, regs.rdx = a, b, c
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))
        for _ in range(2 if rewind else 1):   # rewind: an entry stop first
            _ptrace(PTRACE_SYSCALL, tid, 0, 0)
            while True:
                _, status = os.waitpid(tid, WALL)
                if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                    self._tids.discard(tid)
                    raise OSError(errno.ESRCH, "program died")
                sig, event = (status >> 8) & 0xFF, status >> 16
                if sig == signal.SIGTRAP | 0x80:
                    break
                _ptrace(PTRACE_SYSCALL, tid, 0,
                        sig if event == 0 and sig != signal.SIGTRAP else 0)
        self._getregs(tid)
        return int(ctypes.c_longlong(self._regs.rax).value)

    def acceptor(self, kind: int) -> socket.socket:
        """Our listening AF_UNIX socket of type ``kind`` (the program's
        sockets live in another network namespace: a filesystem name)."""
        # A filesystem name, not an abstract one: the copy we connect was made
        # in the sandbox's network namespace, and abstract names are per netns.
        a = self._acceptors.get(kind)
        if a is None:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="netvisor-ptrace-")
            a = socket.socket(socket.AF_UNIX, kind)
            a.bind(os.path.join(self._dir, str(kind)))
            a.listen(64)
            self._acceptors[kind] = a
        return a

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        for a in self._acceptors.values():
            a.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    # ----------------------------------------------------------- stops
    def _getregs(self, tid: int) -> None:
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(self._regs))

    async def pump(self) -> None:
        """Collect ptrace stops (on SIGCHLD) until cancelled."""
        with trio.open_signal_receiver(signal.SIGCHLD) as sigs:
            self.collect()
            async for _ in sigs:
                self.collect()

    def collect(self) -> None:
        progress = True
        while progress:
            progress = False
            for tid in list(self._tids):
                try:
                    pid, status = os.waitpid(tid, os.WNOHANG | WALL)
                except ChildProcessError:
                    self._tids.discard(tid)
                    continue
                if pid == 0:
                    continue
                progress = True
                self._handle(tid, status)

    def _handle(self, tid: int, status: int) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._tids.discard(tid)
            return
        sig, event = (status >> 8) & 0xFF, status >> 16
        try:
            if sig == signal.SIGTRAP and event == EV_SECCOMP:
                self._getregs(tid)
                r = self._regs
                nid = self._next_id
                self._next_id += 1
                self._stopped[nid] = tid
                self._queue.append(Notification(nid, tid, int(r.orig_rax), 0xC000003E,
                                                int(r.rip), (int(r.rdi), int(r.rsi),
                                                             int(r.rdx), int(r.r10),
                                                             int(r.r8), int(r.r9))))
                os.write(self._w, b"x")
            elif sig == signal.SIGTRAP and event in (EV_FORK, EV_VFORK, EV_CLONE):
                msg = ctypes.c_ulong()
                _ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
                self._tids.add(int(msg.value))
                _ptrace(PTRACE_CONT, tid, 0, 0)
            elif event == EV_STOP:
                if sig in STOP_SIGNALS:
                    _ptrace(PTRACE_LISTEN, tid, 0, 0)
                else:
                    _ptrace(PTRACE_CONT, tid, 0, 0)
            elif sig in (signal.SIGTRAP, signal.SIGTRAP | 0x80):
                _ptrace(PTRACE_CONT, tid, 0, 0)     # exec, syscall stops
            else:
                _ptrace(PTRACE_CONT, tid, 0, sig)   # deliver the signal
        except OSError as e:
            if e.errno != errno.ESRCH:
                raise
