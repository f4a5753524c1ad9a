"""How Locust is started on a compiled locustfile."""

from __future__ import annotations

import sys

from scenariokit.engines.base import WORKERS_JOIN_S, EngineLaunch, LaunchPlan, engine_env
from scenariokit.ports import free_port


def locust_launch(plan: LaunchPlan) -> EngineLaunch:
    """`processes` > 1 runs Locust's own master and that many worker processes (`--processes`): one
    Locust process uses one core. Each worker writes its own records file and, in an open model, sends
    every n-th arrival (SCENARIOKIT_WORKERS)."""
    # The generated LoadTestShape ends the run; --run-time is only a safety bound.
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(plan.script),
        *web_flags(plan.web_port),
        "--host",
        plan.base_url,
        "--run-time",
        f"{max(1, int(plan.max_run_s))}s",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "5",
    ]
    env = engine_env(plan.base_url, plan.raw_dir)
    if plan.master_bind is not None:
        argv += master_flags(plan.master_bind, plan.expect_workers)
        env["SCENARIOKIT_WORKERS"] = str(plan.expect_workers)  # each worker's share of open arrivals
    elif plan.processes > 1:
        # the master listens on a port of its own (Locust's default, 5557, let two runs at once join each
        # other's workers); the forked workers read the same environment to find it
        port = str(free_port())
        env["LOCUST_MASTER_BIND_PORT"] = env["LOCUST_MASTER_NODE_PORT"] = port
        argv += ["--processes", str(plan.processes)]
        env["SCENARIOKIT_WORKERS"] = str(plan.processes)
    return EngineLaunch(argv, env)


def web_flags(port: int | None) -> list[str]:
    """Headless, or (`run --web`) Locust's own web UI bound to 127.0.0.1 only, with the test started at
    once by its shape (`--autostart`, as headless does) and Locust quitting when the shape ends
    (`--autoquit 0`), so the run records and ends as a headless one does."""
    if port is None:
        return ["--headless"]
    return ["--autostart", "--autoquit", "0", "--web-host", "127.0.0.1", "--web-port", str(port)]


def master_flags(bind: tuple[str, int], workers: int) -> list[str]:
    """Locust's master for workers on other machines: it waits for `workers` of them, and moves a lost
    worker's users to the others (`--enable-rebalancing`), so that the run goes on without it."""
    host, port = bind
    return [
        "--master",
        "--master-bind-host",
        host,
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
        "--expect-workers-max-wait",
        str(int(WORKERS_JOIN_S)),
        "--enable-rebalancing",
    ]
