"""A full or read-only disk: refused before load where it shows (exit 3, nothing sent), and a disk that fills
mid-run stops the run with what is on disk kept and exit 3.

Each case runs `scenariokit run` inside `unshare -m` on a small tmpfs (as root, chmod cannot make a folder
read-only); the child copies the run folder out before its mount goes away. Skipped where unshare or mount
is not allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.loopback import LoopbackServer

SCENARIO = """\
version: 1
name: disk
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "hold(2, {seconds}s)", think_time: constant(50ms)}}
requests:
  a: {{path: /a}}
"""
RUN = f"{sys.executable} -m scenariokit run scenario.yaml --engine k6 --quiet --out mnt/run"


def mount_allowed() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(not mount_allowed(), reason="needs root and `unshare -m` with mount"),
]


def run_on_tmpfs(tmp_path: Path, url: str, seconds: int, size: str, then: str) -> tuple[int, str]:
    """`then` runs in the mount namespace with the tmpfs at ./mnt; the run's exit code is its status."""
    (tmp_path / "scenario.yaml").write_text(SCENARIO.format(url=url, seconds=seconds))
    (tmp_path / "mnt").mkdir()
    script = (
        f"mount -t tmpfs -o size={size} tmpfs mnt || exit 99\n{then}\ncode=$?\n"
        "cp -r mnt/run copied 2>/dev/null\nexit $code\n"
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 99, result.stderr
    return result.returncode, result.stderr


def test_a_small_disk_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        code, err = run_on_tmpfs(tmp_path, server.url, 2, "8m", RUN)
        assert server.count("/a") == 0
    assert code == 3, err
    assert "MiB free for the run folder" in err and "nothing was sent" in err


def test_a_read_only_disk_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        code, err = run_on_tmpfs(tmp_path, server.url, 2, "64m", f"mount -o remount,ro mnt\n{RUN}")
        assert server.count("/a") == 0
    assert code == 3, err
    assert "Read-only file system" in err


def test_a_disk_that_fills_mid_run_stops_it_and_keeps_what_was_measured(tmp_path: Path) -> None:
    # once the engine has sent for a while, another process fills the disk to the last byte: the run's
    # reserve gives its last records and summary room
    fill = (
        f"{RUN} & pid=$!\n"
        "for i in $(seq 100); do [ -e mnt/run/logs/k6.log ] && break; sleep 0.1; done\n"
        "sleep 1.5\n"
        "dd if=/dev/zero of=mnt/fill bs=1M 2>/dev/null\n"
        "wait $pid"
    )
    with LoopbackServer() as server:
        code, err = run_on_tmpfs(tmp_path, server.url, 8, "64m", fill)
        sent = server.count("/a")
    assert code == 3, err
    summary = json.loads((tmp_path / "copied" / "summary.json").read_text())
    assert summary["exit_reason"] == "disk_full", summary["exit_detail"]
    assert 0 < summary["overall"]["requests"] <= sent
    assert list((tmp_path / "copied" / "records").glob("part-*.parquet"))
    assert not (tmp_path / "copied" / ".reserve").exists()
    assert summary["duration_s"] < 7, "stopped when the disk filled, not at the curve's end"
