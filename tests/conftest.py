"""Tests that measure timing (`@pytest.mark.solo`) run with the other xdist worker paused between tests.

On a 2-core machine a test that checks a p99 against a fixed 100 ms delay, or that a rerun is not flagged
as a regression, measures the other worker's load as much as the system under test. Every test holds a
shared lock while it runs; a solo test holds it exclusively, so it waits for the running test to end and
the next one waits for it. A turnstile lock keeps the stream of shared holders from starving a solo test.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _solo_or_shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if not hasattr(request.config, "workerinput"):  # not under xdist: nothing runs beside this test
        yield
        return
    shared_dir = tmp_path_factory.getbasetemp().parent  # the run's temp root, common to all workers
    mode = fcntl.LOCK_EX if request.node.get_closest_marker("solo") else fcntl.LOCK_SH
    with ExitStack() as held:
        with _flock(shared_dir / "solo.turnstile", fcntl.LOCK_EX):
            held.enter_context(_flock(shared_dir / "solo.lock", mode))
        yield
