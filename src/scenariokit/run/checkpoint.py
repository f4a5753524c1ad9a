"""Checkpoints: during a long run, `summary.json` and `summary.md` are rewritten every `--checkpoint`
(default 10 minutes; 0 turns them off), so that a soak killed at hour 20, even by SIGKILL, leaves a
summary of its first 20 hours beside its records.

A checkpoint summary is `rebuild_summary` of the run folder as it stands (run.json as written at the start,
the records polled so far, flushed into a Parquet part first), marked `exit_reason: running` with a note
that says when it was taken; the run's own summary replaces it at the end. Both are written atomically (a
temporary file renamed over the old one), so a kill mid-write leaves the previous summary whole.

Where it runs: the poll loop only flushes the store and starts `python -m scenariokit.run.checkpoint
RUN_DIR` (our own code, no shell, at a lower CPU priority); the rebuild (14.0 s and a 688 MB peak for
1,000,000 synthetic records with four soak SLOs on a loaded 2-core machine, benchmarks/bench_trend.py)
happens there while the loop keeps polling. A checkpoint that falls due while the previous one still runs
is skipped, not queued; one whose rebuild took more than a tenth of the interval pushes the next one out
to ten times its cost, so at most a tenth of the time goes to checkpoints. `stop()` kills a running child
and waits for it: the runner calls it when its poll loop ends, before it writes the final summary, so a
late checkpoint can never overwrite the run's own summary. The child has its own process group, so a
terminal's Ctrl-C (SIGINT to the runner's group) reaches only the runner, which ends its poll loop and so
the child, as SIGTERM to the runner does; a runner killed by SIGKILL leaves it to finish its checkpoint.
A child that fails is said once on stderr and checkpoints stop.

`SCENARIOKIT_CHECKPOINT_DELAY_S` (test-only) makes the child sleep that long between its rebuild and its
writes: a slow checkpoint without a large store (tests/test_checkpoint.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_EVERY_S = 600.0
RUNNING = "running"
DELAY_ENV = "SCENARIOKIT_CHECKPOINT_DELAY_S"
STOP_WAIT_S = 5.0  # a killed child is reaped at once; this only bounds a wait that should never happen


class Checkpoint:
    """`tick()` once a poll: starts a checkpoint child when `every_s` has passed since the last one began
    and none is running; `stop()` when the poll loop ends."""

    def __init__(
        self, run_dir: Path, every_s: float = DEFAULT_EVERY_S, flush: Callable[[], None] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.flush = flush  # the store's: the records polled so far go into a part before the rebuild
        self.every_s = every_s
        self.next = time.monotonic() + every_s
        self.written = 0  # checkpoints the children finished
        self.skipped = 0  # fell due while the previous one still ran
        self.failed = False  # said once: a checkpoint that fails must not stop the run
        self.child: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def tick(self, now: float | None = None) -> bool:
        """True when a checkpoint child was started. Never waits for one."""
        now = time.monotonic() if now is None else now
        self._reap(now)
        if self.every_s <= 0 or now < self.next or self.failed:
            return False
        if self.child is not None:  # the previous one still runs: this one is skipped
            self.skipped += 1
            self.next = now + self.every_s
            return False
        try:
            self._start(now)
        except Exception as exc:  # a store that cannot flush or a child that cannot start: the load goes on
            self._fail(f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _start(self, now: float) -> None:
        if self.flush is not None:
            self.flush()  # cheap: the records polled since the last part
        self.child = subprocess.Popen(
            [sys.executable, "-m", "scenariokit.run.checkpoint", str(self.run_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,  # one line at most: why it failed
            env=_child_env(),
            process_group=0,  # out of a terminal's Ctrl-C, which would reach it mid-start; stop() ends it
        )
        self.started = now
        self.next = now + self.every_s

    def _reap(self, now: float) -> None:
        """Notes a child that has ended: its cost sets the next checkpoint, its failure stops them."""
        if self.child is None or self.child.poll() is None:
            return
        child, self.child = self.child, None
        error = child.stderr.read().decode(errors="replace").strip() if child.stderr else ""
        if child.stderr:
            child.stderr.close()
        if child.returncode != 0:
            self._fail(error.splitlines()[-1] if error else f"the checkpoint exited {child.returncode}")
            return
        self.written += 1
        cost = now - self.started
        self.next = max(self.next, self.started + 10 * cost)  # at most a tenth of the time on checkpoints

    def _fail(self, why: str) -> None:
        self.failed = True
        print(f"warning: checkpoints stop: {why}", file=sys.stderr)

    def wait(self, timeout_s: float) -> None:
        """Lets a running child finish (tests, and callers that want the checkpoint rather than speed)."""
        if self.child is not None:
            self.child.wait(timeout_s)
            self._reap(time.monotonic())

    def stop(self) -> None:
        """Kills a running child and waits for it, so that nothing it writes can follow the caller's own
        summary. A kill mid-write leaves only `.summary.*.tmp`, which the final summary's writer reuses."""
        if self.child is None:
            return
        child, self.child = self.child, None
        if child.poll() is None:
            child.kill()
        child.wait(STOP_WAIT_S)
        if child.stderr:
            child.stderr.close()


def _child_env() -> dict[str, str]:
    """The runner's environment, with this very copy of scenariokit first on the path: the child runs
    the runner's code even where another copy is installed."""
    ours = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ours if not path else os.pathsep.join([ours, path])}


def write(run_dir: Path) -> None:
    """The child's work: the summaries of the run folder as it stands, marked running."""
    from scenariokit.results.summary import markdown, rebuild_summary, write_atomic

    summary = rebuild_summary(run_dir)
    if delay := float(os.environ.get(DELAY_ENV, "0") or 0):
        time.sleep(delay)  # test-only: a slow checkpoint (module docstring)
    taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    note = (
        f"Checkpoint taken {taken}, {summary.duration_s / 3600:.2f} h into the run: the run was still "
        "going; if no later summary replaced this one, it ended without writing its own."
    )
    summary = summary.model_copy(update={"exit_reason": RUNNING, "notes": [note, *summary.notes]})
    write_atomic(run_dir / "summary.json", summary.model_dump_json(indent=2) + "\n")
    write_atomic(run_dir / "summary.md", markdown(summary))


def child_main(argv: list[str]) -> int:
    if hasattr(os, "nice"):
        os.nice(10)  # the poll loop and the engine come first
    try:
        write(Path(argv[0]))
    except Exception as exc:  # said by the runner, once, as the reason checkpoints stop
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
