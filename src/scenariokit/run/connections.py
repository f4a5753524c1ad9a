"""Open connections from the load generator to the target, counted by the operating system.

Neither engine reports its connections (Locust's FastHttpUser keeps a pool per user, k6 a set per VU), so
the runner counts them itself, once a second with the generator's CPU (run/generator.py): the TCP sockets
that the engine's processes hold (their `/proc/<pid>/fd` links `socket:[inode]`) which the kernel lists as
ESTABLISHED (`/proc/net/tcp` and `tcp6`, state 01) with the target's address and port as the remote end.
A socket another process holds (the runner's monitor scraping /metrics, Prometheus) is not counted; one in
TIME_WAIT or still connecting is not open. Linux only: elsewhere the count is None (not shown).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

ESTABLISHED = "01"
TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def target_endpoints(base_url: str) -> frozenset[str]:
    """The target's address and port as `/proc/net/tcp{,6}` write a remote end (`0100007F:1F90`), for each
    address its host resolves to (an IPv4 one also as IPv6's v4-mapped form); empty when it cannot be
    resolved."""
    try:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname or "127.0.0.1", port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):  # no such host; a malformed URL or port
        return frozenset()
    found: set[str] = set()
    for family, *_, address in infos:
        raw = socket.inet_pton(family, str(address[0]))
        if family == socket.AF_INET:
            found.add(f"{_words(raw)}:{port:04X}")
            raw = b"\0" * 10 + b"\xff\xff" + raw  # ::ffff:a.b.c.d, as a dual-stack socket shows it
        found.add(f"{_words(raw)}:{port:04X}")
    return frozenset(found)


def _words(raw: bytes) -> str:
    """An address as the kernel prints it: each 32-bit word in host (little-endian) byte order."""
    return "".join(raw[i : i + 4][::-1].hex().upper() for i in range(0, len(raw), 4))


def socket_inodes(pids: Iterable[int]) -> set[str]:
    """The socket inodes the processes hold (a process that is gone, or not ours to read, holds none)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                link = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    return inodes


def open_connections(pids: Iterable[int], endpoints: frozenset[str]) -> int | None:
    """ESTABLISHED TCP connections the processes hold to the endpoints; None where /proc has no tables."""
    if not endpoints or not TABLES[0].exists():
        return None
    inodes = socket_inodes(pids)
    count = 0
    for table in TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local remote st tx:rx tr:when retrnsmt uid timeout inode
            if (
                len(fields) > 9
                and fields[3] == ESTABLISHED
                and fields[2] in endpoints
                and fields[9] in inodes
            ):
                count += 1
    return count
