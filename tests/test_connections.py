"""Open connections counted by the OS (run/connections.py): real sockets on loopback, held by this process
or another, open, closed, or to another port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from scenariokit.run.connections import open_connections, target_endpoints


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server


def test_the_processes_established_connections_to_the_target_are_counted(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    endpoints = target_endpoints(f"http://127.0.0.1:{port}")
    assert f"0100007F:{port:04X}" in endpoints and endpoints <= target_endpoints(
        f"http://localhost:{port}/v1"
    )
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    accepted = [listener.accept()[0] for _ in clients]  # the server's ends: remote is the client, not counted
    try:
        assert open_connections([os.getpid()], endpoints) == 5
        for sock in clients[:2]:
            sock.close()
        time.sleep(0.1)
        assert open_connections([os.getpid()], endpoints) == 3  # closed: FIN_WAIT, not established
        assert open_connections([1], endpoints) == 0  # another process holds none of them
        assert open_connections([os.getpid()], target_endpoints(f"http://127.0.0.1:{port + 1}")) == 0
    finally:
        for sock in clients + accepted:
            sock.close()


def test_a_child_processs_connections_count_for_it(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = (
        f"import socket, time\ns = [socket.create_connection(('127.0.0.1', {port})) for _ in range(3)]\n"
        "time.sleep(5)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        accepted = [listener.accept()[0] for _ in range(3)]
        time.sleep(0.2)
        endpoints = target_endpoints(f"http://127.0.0.1:{port}")
        assert open_connections([child.pid], endpoints) == 3
        assert open_connections([os.getpid()], endpoints) == 0
    finally:
        child.kill()
        child.wait()
        for sock in accepted:
            sock.close()


@pytest.mark.parametrize("url", ["http://no-such-host.invalid:80", "http://[::1", "http://127.0.0.1:99999"])
def test_a_target_that_cannot_be_resolved_is_not_counted(url: str) -> None:
    assert open_connections([os.getpid()], target_endpoints(url)) is None
