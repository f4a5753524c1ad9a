"""`scenariokit serve` takes the server's own arguments (argparse's REMAINDER used to refuse them), answers
/health on the host and port it was given, and leaves no process behind when it is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from scenariokit.cli import main
from scenariokit.ports import free_port
from tests.test_signals import Tree, running

READY_S = 30.0  # the server loads small CPU models before it answers


def test_serve_with_host_and_port_answers_health_and_stops_whole() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "scenariokit", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*argv, "--workers", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tree = Tree(process.pid)
    try:
        status, deadline = None, time.monotonic() + READY_S
        while status != 200 and process.poll() is None and time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        tree.stop()
    assert status == 200, output.decode(errors="replace")[-2000:]
    assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
    assert tree.saw("spawn_main")  # the model worker existed, and is gone
    # multiprocessing's resource tracker outlives the server by a moment: it cleans up once the server's
    # end of its pipe closes, then exits
    psutil.wait_procs([p for p in tree.seen.values() if running(p)], timeout=5)
    assert [tree.cmdlines.get(p.pid, "?") for p in tree.seen.values() if running(p)] == []


def test_serve_help_is_the_servers_own() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scenariokit", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: scenariokit serve") and "--host" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "eighty"],  # wrong type
        ["--port", "70000"],  # out of range
        ["--port", "-1"],
        ["--workers", "0"],
        ["--host"],  # no value
        ["--fault", "explode=1"],
        ["--no-such-flag"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_bad_server_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(main(["serve", *argv]))
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_other_commands_still_refuse_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plan", "scenarios/smoke.yaml", "--host", "x"])
    assert exited.value.code == 2 and "unrecognized arguments: --host x" in capsys.readouterr().err
