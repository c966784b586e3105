"""One gateway per data directory and per port: the start-up checks of `serve`.

* :class:`DataDirLock` — ``<data_dir>/run/gateway.pid``, holding the
  supervisor's PID, locked with ``flock`` for the life of the gateway. The
  descriptor is inherited by the forked workers and the sender (not by
  programs they exec), so the directory stays locked while any process of the
  gateway runs; the kernel drops the lock when the last of them dies, so a
  killed gateway never leaves a stale lock. The file itself is left in place
  when the gateway stops: the lock, not the file, says "in use" (removing it
  would race with a gateway starting at that moment).
* :func:`check_port` — SO_REUSEPORT lets every process of the same user bind a
  port that is already in use, so before the workers bind, each port is
  probed with a plain bind (SO_REUSEADDR only). When the probe fails, the
  listening socket's owner is looked up in ``/proc/net/tcp{,6}`` and
  ``/proc/*/fd`` (best effort: "another process" when it cannot be found).

Both raise :class:`InUse`, an ``OSError`` whose text is the whole message for
the operator: what is taken, by whom, and the way out.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import socket
from pathlib import Path
from typing import Iterable

LOCK_NAME = "gateway.pid"

#: Set by the supervisor before it forks; its workers use it to tell their
#: siblings' sockets from another process's (see :func:`gateway_pids`).
SUPERVISOR_PID: int | None = None


class InUse(OSError):
    """Something this gateway needs is held by another process; str() is the message."""


class DataDirLock:
    """``DataDirLock(data_dir).acquire()`` or :class:`InUse`; ``release()`` when done."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.path = self.data_dir / "run" / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "DataDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise InUse(self._message(pid)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _message(self, pid: int | None) -> str:
        if pid is None or not _alive(pid):
            # The supervisor is gone (or had not written its PID yet): name the
            # processes that still hold the lock, e.g. workers outliving it.
            holders = _top(_pids_with_open(self.path))
            pid = holders[0] if holders else pid
        who = f"PID {pid}{_command(pid)}" if pid is not None else "a process that could not be identified"
        way = f"stop it (kill {pid})" if pid is not None else f"stop it (fuser -v {self.path} names it)"
        return (f"data directory {self.data_dir} is in use by another gateway, {who}; {way}, "
                f"or start this one with another --data-dir")


def check_port(bind: str, port: int, what: str, hint: str, reload: bool = False) -> None:
    """Raise :class:`InUse` if another process listens on ``bind:port``.

    ``what`` names the port in the message ("port", "operator HTTP port"),
    ``hint`` is the way out. At start-up (``reload=False``) any holder counts;
    on reload the sockets of this gateway's own processes (:func:`gateway_pids`:
    the sibling workers that opened the port first) do not.
    """
    if not port:
        return
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
        probe.bind((bind, port))
        return
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            return  # not ours to judge (privileged port, unknown address): the real bind reports it
    finally:
        probe.close()
    owners = listeners_of(bind, port)
    ours: set[int] = set()
    if reload:
        ours = gateway_pids()
        if not owners:
            return  # bound, not listening: a sibling between bind() and listen(); its bind decides
        owners = {inode: pids for inode, pids in owners.items() if not pids or pids - ours}
        if not owners:
            return  # only our own workers listen there
    pids = _top({p for ps in owners.values() for p in ps} - ours)
    if pids:
        who = ", ".join(f"PID {p}{_command(p)}" for p in pids[:3]) + (" and others" if len(pids) > 3 else "")
        way = f"stop it (kill {' '.join(map(str, pids[:3]))}) or {hint}"
    else:
        who, way = "another process", f"stop it or {hint}"
    raise InUse(f"{what} {port} (bind {bind}) is already in use by {who}; {way}")


def gateway_pids() -> set[int]:
    """This process and, under a supervisor, the supervisor and all its children."""
    pids = {os.getpid()}
    if SUPERVISOR_PID is not None:
        pids.add(SUPERVISOR_PID)
        pids |= {p for p in _all_pids() if _ppid(p) == SUPERVISOR_PID}
    return pids


# ---- /proc ----------------------------------------------------------------------------

def listeners_of(bind: str, port: int) -> dict[int, set[int]]:
    """Listening TCP sockets on ``port`` whose address overlaps ``bind``: inode -> PIDs holding it."""
    want = _ip(bind)
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != "0A":  # 0A = LISTEN
                continue
            addr, _, hexport = f[1].partition(":")
            if int(hexport, 16) != port:
                continue
            if _overlaps(want, _proc_ip(addr)):
                inodes.add(int(f[9]))
    found: dict[int, set[int]] = {i: set() for i in inodes}
    if not inodes:
        return found
    links = {f"socket:[{i}]": i for i in inodes}
    for pid in _all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                inode = links.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
            if inode is not None:
                found[inode].add(pid)
    return found


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        try:
            return ipaddress.ip_address(socket.getaddrinfo(text, None)[0][4][0])
        except (OSError, ValueError, IndexError):
            return None


def _proc_ip(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hexaddr)  # 32-bit words in host (little-endian) order
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _overlaps(a: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
              b: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if a is None:
        return True
    a = getattr(a, "ipv4_mapped", None) or a
    b = getattr(b, "ipv4_mapped", None) or b
    return a.is_unspecified or b.is_unspecified or a == b


def _all_pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _command(pid: int | None) -> str:
    """`` (dicom-gateway serve --port 104)``: the command, without the interpreter running it."""
    args = [a for a in (_cmdline(pid) if pid is not None else "").split(" ") if a]
    if len(args) > 1 and os.path.basename(args[0]).startswith("python") and not args[1].startswith("-"):
        args = args[1:]
    if args:
        args[0] = os.path.basename(args[0])
    cmd = " ".join(args)
    if len(cmd) > 120:
        cmd = cmd[:117] + "..."
    return f" ({cmd})" if cmd else ""


def _top(pids: Iterable[int]) -> list[int]:
    """Each PID, or its parent when that runs the same command: a forked worker
    is reported as the supervisor that started it, the one to stop."""
    out = set()
    for pid in pids:
        parent = _ppid(pid)
        while parent and parent > 1 and _cmdline(parent) and _cmdline(parent) == _cmdline(pid):
            pid, parent = parent, _ppid(parent)
        out.add(pid)
    return sorted(out)


def _pids_with_open(path: Path) -> set[int]:
    target = str(path)
    pids = set()
    for pid in _all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    pids.add(pid)
                    break
            except OSError:
                continue
    return pids


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()
