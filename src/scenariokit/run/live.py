"""Live progress: stage, elapsed / total, level, requests/s, p95, errors. On a terminal a Rich live view;
elsewhere (a CI log, a pipe) one whole line per interval, never wrapped to the console's width."""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from scenariokit.compile.ir import Scenario
from scenariokit.engines.records import RequestRecord

if TYPE_CHECKING:  # the summary's module loads the analysis stack: not needed to draw progress
    from scenariokit.results.summary import Summary
    from scenariokit.results.tracker import SloTracker

WINDOW_S = 10.0
LINE_EVERY_S = 10.0  # a progress line at most this often off a terminal; a short run gets about ten
SLO_EVERY_S = 5.0  # the terminal's SLO row is re-judged this often (each judgement costs O(SLOs))


def clock(seconds: float) -> str:
    """Whole seconds as 45s, 1m00s, 1h02m03s: fixed fields, no fractions, for logs."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def line_interval(duration_s: float) -> float:
    return min(LINE_EVERY_S, max(1.0, float(round(duration_s / 10))))


class LiveView:
    """A record sink (run/pipeline.py) keeping only the last few seconds of starts and latencies for the
    display, never the run's records; `quiet` prints only the verdict. On a terminal a second row shows
    the SLOs' verdicts so far, read from the run's tracker when the pipeline gives it one."""

    def __init__(self, scenario: Scenario, quiet: bool = False, console: Console | None = None) -> None:
        self.scenario = scenario
        self.quiet = quiet
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.every_s = line_interval(scenario.load.duration_s)
        self._next_line_s = 0.0
        # the last WINDOW_S of starts and latencies, one pair of arrays per poll: at thousands of requests
        # a second, sorting records twice a second would cost the engine beside us its cores
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.newest = -math.inf  # the latest start seen
        self.tracker: SloTracker | None = None
        self._slo_row = ""
        self._next_slo_row = 0.0
        self.total = 0
        self.errors = 0
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if not self.quiet and self.console.is_terminal:
            self._live = Live(self._render(0.0), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def add(self, records: list[RequestRecord]) -> None:
        if records:
            starts = np.fromiter((r.t for r in records), float, len(records))
            self.recent.append((starts, np.fromiter((r.latency for r in records), float, len(records))))
            self.newest = max(self.newest, float(starts.max()))
            self._prune()  # here, not only when drawn: a quiet run draws nothing and must not pile up
        self.total += len(records)
        self.errors += sum(1 for r in records if not r.ok)

    def close(self) -> None:
        """Nothing to flush: the window is for the display only."""

    def refresh(self, elapsed_s: float) -> None:
        if self._live is not None:
            self._live.update(self._render(elapsed_s))
        elif not self.quiet and elapsed_s >= self._next_line_s:
            self.console.print(self._line(elapsed_s), markup=False, highlight=False, soft_wrap=True)
            self._next_line_s = (elapsed_s // self.every_s + 1) * self.every_s  # one line per interval

    def _window(self) -> np.ndarray:
        """The latencies of the requests that started in the last WINDOW_S before the newest start."""
        if not self.recent:
            return np.empty(0)
        oldest = self.newest - WINDOW_S
        starts = np.concatenate([starts for starts, _ in self.recent])
        return np.concatenate([latencies for _, latencies in self.recent])[starts >= oldest]

    def _prune(self) -> None:
        """Drops the polls whose requests all started before the window."""
        while self.recent and self.recent[0][0].max() < self.newest - WINDOW_S:
            self.recent.popleft()

    def _stats(self) -> tuple[float, float | None]:
        latencies = self._window()
        rate = len(latencies) / WINDOW_S
        if not len(latencies):
            return rate, None
        rank = min(len(latencies) - 1, int(0.95 * len(latencies)))
        return rate, float(np.partition(latencies, rank)[rank])

    def _line(self, elapsed_s: float) -> str:
        load = self.scenario.load
        stage, _ = load.stage_at(elapsed_s)
        rate, p95 = self._stats()
        unit = "users" if load.model == "closed" else "req/s intended"
        p95_text = f"{p95 * 1000:.0f} ms" if p95 is not None else "—"
        error_rate = self.errors / self.total if self.total else 0.0
        return (
            f"[{clock(elapsed_s)}/{clock(math.ceil(load.duration_s - 1e-9))}] stage "
            f"{stage.label if stage else '—'}, {load.level_at(elapsed_s):.1f} {unit}, {rate:.1f} req/s, "
            f"p95 {p95_text}, errors {error_rate:.1%} of {self.total}"
        )

    def _render(self, elapsed_s: float) -> Table:
        table = Table(
            title=f"scenariokit run: {self.scenario.name} ({self.scenario.engine})", show_header=False
        )
        table.add_row(self._line(elapsed_s))
        if slos := self._slos():
            table.add_row(slos)
        return table

    def _slos(self) -> str:
        """The SLOs' statuses so far, e.g. "SLOs so far: 2 pass, 1 inconclusive" (re-judged every few s)."""
        if self.tracker is None or not self.tracker.slos:
            return ""
        if time.monotonic() >= self._next_slo_row:
            statuses = [v.status for v in self.tracker.verdicts(time.time())]
            counts = {s: statuses.count(s) for s in ("fail", "inconclusive", "pass", "not_measured")}
            self._slo_row = "SLOs so far: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            self._next_slo_row = time.monotonic() + SLO_EVERY_S
        return self._slo_row

    def print_verdict(self, summary: Summary, run_dir: Path, problems: list[str] | None = None) -> None:
        colour = {0: "green", 1: "red", 3: "red"}.get(summary.exit_code, "yellow")
        self._say(
            f"[bold {colour}]verdict: {escape(summary.headline())}[/] — {escape(str(run_dir))}/summary.md"
        )
        for line in summary.verdict_lines():
            self._say(f"  {escape(line)}")
        self._say(f"  knee: {escape(summary.analysis.knee.explanation)}")
        for problem in problems or []:
            self._say(f"  [yellow]{escape(problem)}[/]")
        if (run_dir / "report.html").is_file():
            self._say(f"  report: {escape(str(run_dir / 'report.html'))}")

    def _say(self, markup: str) -> None:
        self.console.print(markup, highlight=False, soft_wrap=True)
