"""Machines on one host for the distributed tests: network namespaces on a bridge this module creates.

Each `Host` is a network namespace with one veth pair to the bridge and a 10.x address the fabric owns (the
root namespace gets no address, so nothing here touches the host's own routes); loopback is per namespace, so
nothing can reach across them through 127.0.0.1. Everything is removed on exit, failure included: the
processes started in a namespace (they are this test's), the namespaces (which takes their veth ends along)
and the bridge. `skip_reason()` says why namespaces cannot be made here (not root, no `ip`), for a clean skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def skip_reason() -> str | None:
    """Why network namespaces cannot be made here, or None when a probe namespace could be."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2): .ci/run installs it"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    probe = f"skprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One namespace: `run(argv)` starts a program inside it."""

    ns: str
    address: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]


class Fabric:
    """`with Fabric(["target", "master", "w1"]) as hosts:` a namespace per name on one bridge."""

    def __init__(self, names: list[str]) -> None:
        tag = uuid.uuid4().hex[:5]
        self.tag = tag
        self.bridge = f"skbr{tag}"
        # a /24 of 10.0.0.0/8 picked per fabric, so two test runs at once do not share addresses
        subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.hosts = {
            name: Host(f"sk{tag}{name}", f"{subnet}.{index + 2}") for index, name in enumerate(names)
        }
        self._veths: list[str] = []

    def __enter__(self) -> dict[str, Host]:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", self.bridge, "up")
            for index, host in enumerate(self.hosts.values()):
                self._plug(host, f"skv{self.tag}{index}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.hosts

    def _plug(self, host: Host, veth: str) -> None:
        _ip("netns", "add", host.ns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
        self._veths.append(veth)
        _ip("link", "set", f"{veth}p", "netns", host.ns)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", host.ns, "addr", "add", f"{host.address}/24", "dev", f"{veth}p")
        _ip("-n", host.ns, "link", "set", f"{veth}p", "up")
        _ip("-n", host.ns, "link", "set", "lo", "up")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for host in self.hosts.values():
            listed = _ip("netns", "pids", host.ns, check=False)
            for pid in listed.stdout.split():  # what the test started there and left running
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", host.ns, check=False)
        for veth in self._veths:  # gone with its namespace end; a half-made one is removed here
            _ip("link", "del", veth, check=False)
        _ip("link", "del", self.bridge, check=False)
