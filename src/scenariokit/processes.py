"""Process groups: the runner stops its engines and the embedded server's launcher stops the server as a
whole group (a Locust master's forked workers, a server's worker processes), and checks none is left."""

from __future__ import annotations

import os
import time
from contextlib import suppress

import psutil


def signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def group_members(pgid: int) -> list[psutil.Process]:
    """The group's live processes. A zombie is not one: where PID 1 does not reap orphans (some
    containers), an orphan that exited stays a zombie for good."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == pgid and _running(process):
                members.append(process)
    return members


def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Whether every live process of the group exits within the time."""
    members = group_members(pgid)
    deadline = time.monotonic() + timeout_s
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = [m for m in members if _running(m)]
    return not members
