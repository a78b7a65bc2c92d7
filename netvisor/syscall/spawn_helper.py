"""Single-purpose process that starts the sandboxed program (stdlib only).

Run by the supervisor as ``python3 -I -S spawn_helper.py SPEC_JSON`` so that no
thread or lock of the supervisor exists here (the preexec_fn hazards in
shared/notes/syscall-trapping.md). Three processes:

    helper H (supervisor's PID namespace): unshare(NET|PID|NS), fork I,
        report I's pid, wait for I and exit with its status.
    init I (PID 1 of the new PID namespace, empty network namespace): mount
        /proc and /sys for the new namespaces, install the seccomp filter with
        a notification listener, report the listener's fd number (the
        supervisor takes it with pidfd_getfd), wait for "go", fork the
        program, forward signals to it, reap orphans, and exit with the
        program's status (128+N when killed by signal N). When I exits the
        kernel kills everything left in the PID namespace, so the program's
        descendants never outlive it.
    program P: own process group (foreground on a terminal), exec.

The spec (JSON) has: report_fd, go_fd, filter (hex of struct sock_filter[]),
argv, new_netns (bool), resolv_conf (path or null), hosts (path or null).
Errors before exec are reported as one line ``error <text>`` on report_fd.
"""

import ctypes
import json
import os
import signal
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER = 1, 8
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Failure(Exception):
    pass


def check(ret, what):
    if ret < 0:
        e = ctypes.get_errno()
        raise Failure(f"{what}: {os.strerror(e)}")
    return ret


def mount(src, target, fstype, flags):
    return check(libc.mount(src and src.encode(), target.encode(),
                            fstype and fstype.encode(), ctypes.c_ulong(flags), None),
                 f"mount {target}")


def report(fd, line):
    os.write(fd, (line + "\n").encode())


def install_filter(prog, listener=True):
    """seccomp(SET_MODE_FILTER, NEW_LISTENER) -> listener fd (O_CLOEXEC); -1 without."""
    n = len(prog) // 8
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("<H6xQ", n, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog, len(fprog))
    if os.geteuid() != 0:
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    r = check(libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER,
                           SECCOMP_FILTER_FLAG_NEW_LISTENER if listener else 0, fbuf), "seccomp")
    return r if listener else -1


def exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def run_program(argv, err_w):
    """In the program's process: reset signals, own process group, exec."""
    try:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        os.setpgid(0, 0)
        if os.isatty(0):
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(0, os.getpgrp())
            except OSError:
                pass
            signal.signal(signal.SIGTTOU, old)
        os.execvp(argv[0], argv)
    except OSError as e:
        os.write(err_w, struct.pack("<i", e.errno or 1))
    except BaseException:
        os.write(err_w, struct.pack("<i", 1))
    os._exit(127)


def init(spec):
    """PID 1 of the sandbox's PID namespace."""
    rfd = spec["report_fd"]
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        # A procfs of this PID namespace hides the host's processes (their
        # /proc/N/ns/net, /proc/N/mem); sysfs of the new netns lists only lo.
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if spec.get("new_netns"):
            try:
                mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except Failure:
                pass
        listener = install_filter(bytes.fromhex(spec["filter"]), not spec.get("ptrace"))
    except Failure as e:
        report(rfd, f"error {e}")
        os._exit(125)
    report(rfd, f"listener {listener}")
    go = b""
    while True:
        chunk = os.read(spec["go_fd"], 16)
        if not chunk:
            break
        go += chunk
    if not go.startswith(b"go"):
        os._exit(125)
    if listener >= 0:
        os.close(listener)
    os.close(spec["go_fd"])

    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    child = 0

    def forward(sig, _frame):
        if child > 0:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    child = os.fork()
    if child == 0:
        os.close(err_r)
        os.close(rfd)
        run_program(spec["argv"], err_w)
    os.close(err_w)
    data = os.read(err_r, 4)
    os.close(err_r)
    if data:
        code = struct.unpack("<i", data)[0]
        name = spec["argv"][0]
        if code in (2, 20):  # ENOENT, ENOTDIR
            report(rfd, f"notfound {name}: command not found")
            os._exit(127)
        report(rfd, f"notexec {name}: {os.strerror(code)}")
        os._exit(126)
    os.close(rfd)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(125)
        if pid == child:
            os._exit(exit_code(status))


def main():
    spec = json.loads(sys.argv[1])
    rfd = spec["report_fd"]
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    flags = CLONE_NEWPID | CLONE_NEWNS
    if spec.get("new_netns"):
        flags |= CLONE_NEWNET
    try:
        check(libc.unshare(flags), "unshare")
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        for key, target in (("resolv_conf", "/etc/resolv.conf"), ("hosts", "/etc/hosts")):
            if spec.get(key):
                mount(spec[key], os.path.realpath(target), None, MS_BIND)
    except Failure as e:
        report(rfd, f"error {e}")
        return 125
    for sig in FORWARDED:
        if sig != signal.SIGCONT:
            signal.signal(sig, signal.SIG_IGN)  # the supervisor signals init directly
    pid = os.fork()
    if pid == 0:
        try:
            init(spec)
        finally:
            os._exit(125)
    report(rfd, f"init {pid}")
    os.close(rfd)
    os.close(spec["go_fd"])
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 125
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return exit_code(status)


if __name__ == "__main__":
    sys.exit(main())
