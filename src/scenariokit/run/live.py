"""Live progress on the terminal with Rich: stage, elapsed / total, level, requests/s, p95, errors."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from scenariokit.compile.expr import format_duration
from scenariokit.compile.ir import Scenario
from scenariokit.engines.records import RequestRecord

WINDOW_S = 10.0


class LiveView:
    """Keeps the last few seconds of records for the display; `quiet` prints only the verdict."""

    def __init__(self, scenario: Scenario, quiet: bool = False, console: Console | None = None) -> None:
        self.scenario = scenario
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        # the last WINDOW_S of starts and latencies, one pair of arrays per poll: at thousands of requests
        # a second, sorting records twice a second would cost the engine beside us its cores
        self.recent: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.all_records: list[RequestRecord] = []
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
        self.all_records.extend(records)
        if records:
            starts = np.fromiter((r.t for r in records), float, len(records))
            self.recent.append((starts, np.fromiter((r.latency for r in records), float, len(records))))
        self.total += len(records)
        self.errors += sum(1 for r in records if not r.ok)

    def refresh(self, elapsed_s: float) -> None:
        if self._live is not None:
            self._live.update(self._render(elapsed_s))
        elif not self.quiet and int(elapsed_s) % 10 == 0 and elapsed_s - int(elapsed_s) < 0.5:
            self.console.print(self._line(elapsed_s))

    def _window(self) -> np.ndarray:
        """The latencies of the requests that started in the last WINDOW_S before the newest start."""
        if not self.recent:
            return np.empty(0)
        oldest = max(float(starts.max()) for starts, _ in self.recent) - WINDOW_S
        while self.recent and self.recent[0][0].max() < oldest:
            self.recent.popleft()
        starts = np.concatenate([starts for starts, _ in self.recent])
        return np.concatenate([latencies for _, latencies in self.recent])[starts >= oldest]

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
            f"[{format_duration(elapsed_s)}/{format_duration(load.duration_s)}] stage "
            f"{stage.label if stage else '—'}, {load.level_at(elapsed_s):.1f} {unit}, {rate:.1f} req/s, "
            f"p95 {p95_text}, errors {error_rate:.1%} of {self.total}"
        )

    def _render(self, elapsed_s: float) -> Table:
        table = Table(
            title=f"scenariokit run: {self.scenario.name} ({self.scenario.engine})", show_header=False
        )
        table.add_row(self._line(elapsed_s))
        return table

    def print_verdict(self, summary: Any, run_dir: Path, problems: list[str] | None = None) -> None:
        verdict = getattr(summary, "verdict", "?")
        colour = {"pass": "green", "fail": "red"}.get(str(verdict), "yellow")
        self.console.print(f"[bold {colour}]verdict: {verdict}[/] — {run_dir}/summary.md")
        for line in getattr(summary, "verdict_lines", lambda: [])():
            self.console.print(f"  {line}")
        knee = getattr(getattr(summary, "analysis", None), "knee", None)
        if knee is not None:
            self.console.print(f"  knee: {knee.explanation}")
        for problem in problems or []:
            self.console.print(f"  [yellow]{problem}[/]")
        if (run_dir / "report.html").is_file():
            self.console.print(f"  report: {run_dir / 'report.html'}")
