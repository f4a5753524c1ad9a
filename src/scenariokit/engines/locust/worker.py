"""`scenariokit worker FILE --master HOST:PORT`: a Locust worker on another machine, joining the runner's
master (`scenariokit run FILE --master`).

The worker compiles the same scenario into a folder of its own (no file is shared with the master) and runs
the stock `locust --worker` on it, with no results folder: the runtime then sends its records, CPU share
and clock readings to the master over Locust's own messages (the runtime's distribution section), and the
master's run folder holds them. The stock `locust --worker -f <compiled locustfile> --master-host HOST` on a
copy of the compiled folder does the same (docs/distributed.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines import compile_scenario

RESULTS_ENV = "SCENARIOKIT_RESULTS_DIR"


def worker_command(script: Path, master: tuple[str, int], processes: int = 1) -> list[str]:
    """Locust's worker on the compiled locustfile, joining `master` (with `processes` > 1, that many)."""
    host, port = master
    argv = [sys.executable, "-m", "locust", "-f", str(script), "--worker"]
    argv += ["--master-host", host, "--master-port", str(port), "--loglevel", "WARNING"]
    argv += ["--stop-timeout", "5"]  # as the master's: users finish their task, and its record is sent
    return argv + (["--processes", str(processes)] if processes > 1 else [])


def worker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: no results folder (its records go to the master), unbuffered output."""
    env = dict(os.environ if environ is None else environ)
    env.pop(RESULTS_ENV, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_worker(
    path: Path,
    master: tuple[str, int],
    workdir: Path | None = None,
    processes: int = 1,
    data_root: Path | None = None,
) -> int:
    """Compiles the scenario for Locust into `workdir` (a new temporary folder by default) and runs the
    worker there until the master ends the run; Locust's exit code."""
    scenario = load_scenario(path, data_root).scenario
    compiled = compile_scenario(scenario, "locust")
    folder = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="scenariokit-worker-"))
    script = compiled.write(folder / "script")
    argv = worker_command(script, master, processes)
    return subprocess.run(argv, env=worker_env(), cwd=script.parent, check=False).returncode
