"""The embedded server's admin endpoint as the chaos runner drives it: a stalled worker (SIGSTOP) holds the
requests handed to it until their budget, and the next fault state (without it) resumes it."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from scenariokit.compile.cards import text_cards
from scenariokit_server.launcher import ServerHandle, start_server

pytestmark = pytest.mark.engine
BUDGET_S = 2.0
CARD = text_cards(1)[0]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    args = ["--admin", "--request-timeout", str(BUDGET_S)]
    with start_server(workers=1, max_in_flight=1, max_queue=4, extra_args=args) as handle:
        yield handle


def ocr(server: ServerHandle) -> httpx.Response:
    """A fast model call (the classifier, about 10 ms), so that the budget is the stall's, not the model's."""
    body = {"image_base64": base64.b64encode(CARD.png).decode()}
    return httpx.post(f"{server.base_url}/api/v1/identify", json=body, timeout=BUDGET_S + 5)


def served_again(server: ServerHandle, within_s: float = 15.0) -> bool:
    """The resumed worker first finishes the call it held (its caller gone), then serves: on a loaded
    host that may outlast one budget."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ocr(server).status_code == 200:
            return True
    return False


def admin(server: ServerHandle, **state: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/admin/fault", json=state, timeout=5)


def test_a_stalled_worker_times_requests_out_and_resumes(server: ServerHandle) -> None:
    assert ocr(server).status_code == 200
    stalled = admin(server, stall_worker=True)
    assert stalled.status_code == 200, stalled.text
    pid = stalled.json()["stalled_worker_pid"]
    try:
        assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
        response = ocr(server)
        assert response.status_code == 503 and "budget" in response.text
        assert response.elapsed.total_seconds() < BUDGET_S + 1.0
    finally:
        resumed = admin(server)  # the whole state: without stall_worker, the worker goes on
    assert resumed.json()["stalled_worker_pid"] is None
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    assert served_again(server)  # the held call finished, and the worker serves again


def test_server_latency_and_errors_are_one_state(server: ServerHandle) -> None:
    state = admin(server, latency="300ms", error_rate=1.0).json()
    try:
        assert state["latency_s"] == pytest.approx(0.3) and state["error_rate"] == 1.0
        response = ocr(server)
        assert response.status_code == 500 and response.elapsed.total_seconds() >= 0.3
    finally:
        cleared = admin(server).json()
    assert cleared["latency_s"] == 0 and cleared["error_rate"] == 0
    assert served_again(server)


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_stall_worker_takes_only_true_or_false(server: ServerHandle, value: object) -> None:
    response = admin(server, stall_worker=value)
    assert response.status_code == 400 and "stall_worker" in response.text
    assert os.kill(server.pid, 0) is None  # still there
