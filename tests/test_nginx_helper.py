"""scenariokit.run.nginx: the one nginx launcher (calibration, the tests' fast target, the benchmarks).

Each test starts a real nginx on 127.0.0.1 and reads what it answers: the fixed body, the stub_status
counters, a reverse proxy keeping its upstream connection alive, the access log; and refuses what would
break or inject into its config, or a port another process holds.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scenariokit.ports import free_port
from scenariokit.run.nginx import NginxConfig, NginxServer, have_nginx, stub_status

pytestmark = pytest.mark.skipif(not have_nginx(), reason="no nginx (.ci/run installs it)")


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_a_fixed_body_on_every_path_and_its_requests_counted() -> None:
    config = NginxConfig(free_port(), body='{"ok": "it\'s \\\\ fine"}\n', status_path="/_served")
    with NginxServer(config) as server:
        before = stub_status(server.url, "/_served")
        for path in ("/", "/api/identify", "/a/b?c=d"):
            assert get(server.url + path) == (200, "application/json", b'{"ok": "it\'s \\\\ fine"}\n')
        after = stub_status(server.url, "/_served")
        prefix = server.prefix
    assert after["requests"] - before["requests"] == 4  # three answers and the read itself
    assert after["active"] >= 1 and set(after) == set(before)
    assert not prefix.exists()  # a temp prefix goes with the stop


def test_a_reverse_proxy_keeps_one_connection_to_its_upstream(tmp_path: Path) -> None:
    upstream = NginxConfig(free_port(), body="from upstream", content_type="text/plain", status_path="/_s")
    with NginxServer(upstream, tmp_path / "upstream") as target:
        proxy = NginxConfig(free_port(), upstream=f"127.0.0.1:{upstream.port}")
        with NginxServer(proxy, tmp_path / "proxy") as front:
            answers = [get(front.url + f"/x/{i}") for i in range(5)]
            counted = stub_status(target.url, "/_s")
    assert answers == [(200, "text/plain", b"from upstream")] * 5
    # its own readiness probe, the proxy's probe, five proxied, this read: one upstream connection for
    # the proxied six (keep-alive), one each for the probe and the read
    assert counted["requests"] == 8 and counted["accepts"] == 3, counted


def test_a_kept_prefix_holds_the_access_log_and_the_wrapped_argv_runs(tmp_path: Path) -> None:
    config = NginxConfig(free_port(), access_log=True)
    with NginxServer(config, tmp_path / "nginx", wrap=["taskset", "-c", "0"]) as server:
        get(server.url + "/a/7")
        master = int((server.prefix / "nginx.pid").read_text())
        pinned = os.sched_getaffinity(master)  # what the wrapper set, as bench_faultproxy's --pin does
    assert pinned == {0}
    logged = server.access_log.read_text().splitlines()  # complete once the graceful stop returned
    assert any('"GET /a/7 HTTP/1.1" 200' in line for line in logged), logged
    assert (tmp_path / "nginx" / "nginx.conf").is_file()


def test_a_port_held_by_a_silent_socket_fails_with_nginx_s_reason() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        server = NginxServer(NginxConfig(held.getsockname()[1]))
        with pytest.raises(RuntimeError, match="Address already in use"):
            server.start()


def test_a_port_held_by_another_nginx_is_not_taken_for_this_one(tmp_path: Path) -> None:
    """The other nginx answers at once; this one only fails after its bind retries: the pid file, written
    once the port is bound, tells them apart."""
    config = NginxConfig(free_port())
    with NginxServer(config, tmp_path / "first"):
        second = NginxServer(config, tmp_path / "second")
        with pytest.raises(RuntimeError, match=r"nginx exited with code 1: .*Address already in use"):
            second.start()
        assert not (tmp_path / "second" / "nginx.pid").exists()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("body", "ok $remote_addr", "nginx variable"),
        ("body", "a\0b", "control character"),
        ("status_path", "/s { return 500; }", "status path"),
        ("upstream", "127.0.0.1:1; server evil:80", "host:port"),
        ("address", "localhost; listen 80", "does not appear to be an IPv4 or IPv6 address"),
        ("content_type", "text/plain; return 500", "MIME"),
        ("port", 70000, "not a TCP port"),
        ("worker_connections", 0, "positive"),
    ],
)
def test_a_value_that_would_break_the_config_is_refused(field: str, value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        NginxConfig(**{"port": 8080, field: value})


def test_a_prefix_with_a_newline_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    prefix = tmp_path / "a\nerror_log /etc/x"
    with pytest.raises(ValueError, match="control character"):
        NginxServer(NginxConfig(free_port()), prefix)
    assert list(tmp_path.iterdir()) == []
