"""DUT command server for the packet-level conformance suite (stdlib only).

Runs inside the DUT network namespace, natively for the ``linux`` DUT and under
``netvisor run --netns`` for the ``netvisor`` DUT, and performs socket calls on
request. The control channel is an AF_UNIX stream socket at the path given as
the only argument (AF_UNIX stays the host kernel's even under netvisor, which
only traps AF_INET/AF_INET6 sockets), so the control traffic never shares the
network under test.

Protocol: JSON lines. A request is ``{"op": NAME, "args": [...]}``; the reply is
``{"ret": VALUE, "errno": 0}`` or ``{"ret": -1, "errno": N, "error": TEXT}``.
Byte strings travel as ``{"b64": "..."}`` in both directions; socket
addresses as lists (``[host, port]`` or ``[host, port, flowinfo, scope_id]``).
Each control connection is served by its own thread, so a test can keep a
blocking call (accept, recv, connect) pending on one connection while it
drives another; sockets are shared by all connections (referenced by fd).
"""

from __future__ import annotations

import base64
import errno as errno_mod
import json
import os
import select
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

_sockets: dict[int, socket.socket] = {}
_lock = threading.Lock()


def _enc(value: Any) -> Any:
    """JSON-encode results: bytes as base64 objects, tuples as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (list, tuple)):
        return [_enc(v) for v in value]
    return value


def _dec(value: Any) -> Any:
    """Decode arguments: ``{"b64": ...}`` back to bytes, lists of addresses to tuples."""
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return tuple(_dec(v) for v in value)
    return value


def _sock(fd: int) -> socket.socket:
    with _lock:
        s = _sockets.get(fd)
    if s is None:
        raise OSError(errno_mod.EBADF, "unknown socket fd")
    return s


def op_socket(family: int, type_: int, proto: int = 0) -> int:
    s = socket.socket(family, type_, proto)
    with _lock:
        _sockets[s.fileno()] = s
    return s.fileno()


def op_bind(fd: int, addr: tuple[Any, ...]) -> int:
    _sock(fd).bind(addr)
    return 0


def op_listen(fd: int, backlog: int) -> int:
    _sock(fd).listen(backlog)
    return 0


def op_accept(fd: int) -> list[Any]:
    conn, addr = _sock(fd).accept()
    # Keep the listener's blocking mode on the accepted socket explicit: Python
    # gives accepted sockets blocking mode when the listener has no timeout.
    with _lock:
        _sockets[conn.fileno()] = conn
    return [conn.fileno(), list(addr)]


def op_connect(fd: int, addr: tuple[Any, ...]) -> int:
    s = _sock(fd)
    err = s.connect_ex(addr)
    if err:
        raise OSError(err, os.strerror(err))
    return 0


def op_send(fd: int, data: bytes, flags: int = 0) -> int:
    return _sock(fd).send(data, flags)


def op_sendall(fd: int, data: bytes) -> int:
    _sock(fd).sendall(data)
    return len(data)


def op_sendto(fd: int, data: bytes, addr: tuple[Any, ...], flags: int = 0) -> int:
    return _sock(fd).sendto(data, flags, addr)


def op_recv(fd: int, bufsize: int, flags: int = 0) -> bytes:
    return _sock(fd).recv(bufsize, flags)


def op_recvfrom(fd: int, bufsize: int, flags: int = 0) -> list[Any]:
    data, addr = _sock(fd).recvfrom(bufsize, flags)
    return [data, list(addr)]


def op_setsockopt(fd: int, level: int, name: int, value: int | bytes) -> int:
    _sock(fd).setsockopt(level, name, value)
    return 0


def op_getsockopt(fd: int, level: int, name: int, buflen: int = 0) -> int | bytes:
    if buflen:
        return _sock(fd).getsockopt(level, name, buflen)
    return _sock(fd).getsockopt(level, name)


def op_shutdown(fd: int, how: int) -> int:
    _sock(fd).shutdown(how)
    return 0


def op_close(fd: int) -> int:
    with _lock:
        s = _sockets.pop(fd, None)
    if s is None:
        raise OSError(errno_mod.EBADF, "unknown socket fd")
    s.close()
    return 0


def op_poll(fd: int, events: int, timeout_ms: int) -> int:
    p = select.poll()
    p.register(_sock(fd).fileno(), events)
    ready = p.poll(timeout_ms)
    return ready[0][1] if ready else 0


def op_setnonblocking(fd: int, nonblocking: bool) -> int:
    _sock(fd).setblocking(not nonblocking)
    return 0


def op_settimeout(fd: int, seconds: float | None) -> int:
    _sock(fd).settimeout(seconds)
    return 0


def op_getsockname(fd: int) -> list[Any]:
    return list(_sock(fd).getsockname())


def op_getpeername(fd: int) -> list[Any]:
    return list(_sock(fd).getpeername())


def op_linger(fd: int, onoff: int, seconds: int) -> int:
    """SO_LINGER with its struct built here (``struct linger {int; int}``)."""
    _sock(fd).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", onoff, seconds))
    return 0


def _abort(s: socket.socket) -> None:
    """Wake threads blocked on ``s``, then close it with RST rather than FIN.

    SHUT_RD wakes threads blocked in accept/recv/connect without sending
    anything; SO_LINGER {1, 0} makes close abort (RST) rather than leave FIN
    retransmissions behind to clutter the next case's capture.
    """
    for how in ("shutdown", "linger", "close"):
        try:
            if how == "shutdown":
                s.shutdown(socket.SHUT_RD)
            elif how == "linger":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                s.close()
        except OSError:
            pass


def op_closeall() -> int:
    """Close every socket (between test cases); returns how many were open."""
    with _lock:
        socks = list(_sockets.values())
        _sockets.clear()
    for s in socks:
        _abort(s)
    return len(socks)


def op_ping() -> str:
    return "pong"


OPS: dict[str, Callable[..., Any]] = {
    name[3:]: fn for name, fn in globals().items() if name.startswith("op_") and callable(fn)
}


def handle(line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
        fn = OPS[req["op"]]
        args = [_dec(a) for a in req.get("args", [])]
    except (ValueError, KeyError, TypeError) as exc:
        return {"ret": -1, "errno": errno_mod.EINVAL, "error": f"bad request: {exc!r}"}
    try:
        return {"ret": _enc(fn(*args)), "errno": 0}
    except TimeoutError:
        return {"ret": -1, "errno": errno_mod.EAGAIN, "error": "timed out"}
    except OSError as exc:
        return {"ret": -1, "errno": exc.errno or errno_mod.EIO, "error": str(exc)}
    except (TypeError, ValueError, OverflowError) as exc:
        return {"ret": -1, "errno": errno_mod.EINVAL, "error": repr(exc)}


def serve_client(conn: socket.socket) -> None:
    with conn, conn.makefile("rb") as rf:
        for line in rf:
            reply = handle(line)
            conn.sendall(json.dumps(reply).encode() + b"\n")


def main() -> int:
    path = sys.argv[1]
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    ctl.bind(tmp)
    ctl.listen(16)
    # Appear at the final path only once listening, so clients never race.
    os.rename(tmp, path)
    while True:
        conn, _ = ctl.accept()
        threading.Thread(target=serve_client, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
