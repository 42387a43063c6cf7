"""Unix domain socket addresses: ``unix:PATH`` (also ``unix:///abs/path``) and
``unix-abstract:NAME``, as gRPC spells them, for sidecars on the same host or pod.

gRPC binds and dials them itself; what this module adds around ``unix:PATH`` is care for the
file: a regular file in the way is never replaced, a socket some server still answers on is
an error (gRPC would silently take the path over), a stale one (its server died) is removed,
and the new socket is made with mode 0660 (owner and group may connect). gRPC removes the file
when the server stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat

log = logging.getLogger("pdp.server")

PREFIXES = ("unix:", "unix-abstract:")
#: Owner and group may connect (connecting needs write permission on the socket).
SOCKET_MODE = 0o660
#: Workers share a TCP port through SO_REUSEPORT; a Unix socket has no such sharing (a second
#: bind takes the path over from the first), so a Unix socket is served by one process.
ONE_PROCESS = ("a Unix socket is served by one process (--workers 1): SO_REUSEPORT, which lets workers "
               "share a TCP port, does not apply to Unix sockets; run one pdp serve per socket to use more cores")


def is_unix(address: str) -> bool:
    return address.startswith(PREFIXES)


def socket_path(address: str) -> str | None:
    """The file of a ``unix:`` address; None for other addresses (abstract ones have none)."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:"):]
    return path[2:] if path.startswith("//") else path  # unix:///abs/path is /abs/path


def prepare(address: str) -> None:
    """Make way for binding ``address``: remove a stale socket there; raise OSError (with a
    message for the user) when a file that is not a socket, or a live server, is in the way."""
    path = socket_path(address)
    if path is None:
        return
    if not path:
        raise OSError(f"{address}: no socket path after 'unix:'")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"cannot listen on {address}: {path} exists and is not a socket (not replacing it)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # nobody listens: left behind by a server that did not stop cleanly
            log.info("removed a stale socket at %s", path)
            return
        except OSError as exc:
            raise OSError(f"cannot listen on {address}: cannot tell whether {path} is in use: {exc.strerror}") \
                from None
    raise OSError(f"cannot listen on {address}: another server is listening on {path}")


@contextlib.contextmanager
def socket_mode(address: str):
    """While binding a ``unix:`` address, create files as SOCKET_MODE (through the umask, so
    the socket never exists with a wider mode)."""
    if socket_path(address) is None:
        yield
        return
    previous = os.umask(0o777 & ~SOCKET_MODE)
    try:
        yield
    finally:
        os.umask(previous)
