"""One verdict over several machines (issue 17): the target, the runner and the load generators each in a
network namespace of its own (tests/support/netns.py), each generator in a folder of its own with no file
shared. Locust: the runner is the master, two `scenariokit worker`s join it over the bridge, one of them
with its clock 40 s off (SCENARIOKIT_CLOCK_SHIFT_S, test-only), and a third run loses a worker mid-run.
k6: `run --processes 2` with each instance in a namespace of its own (`--launcher`). Each run folder must
hold exactly the requests the target logged, percentiles of one histogram over all of them, and every
generator's CPU in generator.json.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenariokit.ports import free_port
from scenariokit.results.metrics import sample_stats
from scenariokit.results.store import load_records
from scenariokit.run.nginx import NginxConfig, NginxServer
from tests.support.engines import K6
from tests.support.netns import Fabric, Host, skip_reason
from tests.support.nginx import Nginx, have_nginx

pytestmark = pytest.mark.engine

SKIP = skip_reason() or (None if shutil.which("nginx") else "no nginx (.ci/run installs it)")
SHIFT_S = 40.0
MASTER_PORT = 5557
TARGET_PORT = 8080
IDS = 16  # rows of the data set the generators split (`split: workers`)
CLOSED = '{curve: "ramp(0, 4, 1s) -> hold(4s) as steady", think_time: constant(20ms)}'
CLOSED_LONG = '{curve: "ramp(0, 4, 1s) -> hold(6s) as steady", think_time: constant(20ms)}'
# each worker sends every other arrival (its index of the master's expect_workers)
OPEN_RATE, OPEN_S = 70, 5  # 350 arrivals: enough samples to decide p99 at 95%
OPEN = f'{{model: open, curve: "hold({OPEN_RATE}, {OPEN_S}s) as steady", expected_latency: 20ms}}'

SCENARIO = """\
version: 1
name: spread
engine: {engine}
target: {{kind: http, base_url: "http://{address}:{port}"}}
load: {load}
data:
  ids: {{source: ./ids.csv, pick: sequential, split: workers}}
requests:
  a: {{weight: 3, path: "/a/{{ids.id}}"}}
  b: {{weight: 1, path: /b, method: POST, json: {{x: 1}}}}
slo:
  - p99(latency) < 2s
  - error_rate < 1%
"""


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, Host]]:
    if SKIP:
        pytest.skip(SKIP)
    with Fabric(["target", "master", "w1", "w2"]) as made:
        yield made


class Target:
    """nginx in the target's namespace, logging every request it answers; started and answering once made."""

    def __init__(self, host: Host, root: Path) -> None:
        config = NginxConfig(TARGET_PORT, address=host.address, access_log=True)
        self.url = config.url
        ready = functools.partial(answers, host, self.url + "/ok")  # from inside the namespace
        self.server = NginxServer(config, root, wrap=host.command([]), ready=ready)
        self.server.start()
        self.root = self.server.prefix

    def stop(self) -> int:
        """Stops nginx (its log is complete then) and counts the scenario's requests it logged (the
        runner's own readiness probe and /metrics scrapes are not the load)."""
        self.server.stop()
        lines = self.server.access_log.read_text().splitlines()
        return sum('"GET /a/' in line or '"POST /b HTTP' in line for line in lines)

    def ids_by_client(self) -> dict[str, set[str]]:
        """The ids of /a/<id> each client address asked for."""
        out: dict[str, set[str]] = {}
        for line in (self.root / "access.log").read_text().splitlines():
            if '"GET /a/' in line:
                client, path = line.split()[0], line.split('"GET ')[1].split()[0]
                out.setdefault(client, set()).add(path.rsplit("/", 1)[1])
        return out


def scenario_in(folder: Path, engine: str, address: str, load: str = CLOSED, port: int = TARGET_PORT) -> Path:
    """The scenario, written into a generator's own folder (no file is shared between machines)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ids.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(IDS)))
    path = folder / "spread.yaml"
    path.write_text(SCENARIO.format(engine=engine, address=address, port=port, load=load))
    return path


def scenariokit(host: Host, args: list[str], cwd: Path, **env: str) -> subprocess.Popen[bytes]:
    log = (cwd / "out.log").open("wb")
    return subprocess.Popen(
        host.command([sys.executable, "-m", "scenariokit", *args]),
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def answers(host: Host, url: str) -> bool:
    """Whether `url` answers from inside the host's namespace."""
    fetch = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=1)"
    probe = subprocess.run(host.command([sys.executable, "-c", fetch]), capture_output=True, check=False)
    return probe.returncode == 0


def worker_args(scenario: Path, bind: str, folder: Path) -> list[str]:
    return ["worker", str(scenario), "--master", bind, "--dir", str(folder / "compiled")]


def wait_sending(raw: Path, workers: int, timeout_s: float = 60.0) -> None:
    """Until `workers` remote workers' records reached the master's folder."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = list(raw.glob("records-w*-1.jsonl"))
        if len([f for f in files if "[" in f.read_text()]) >= workers:
            return
        time.sleep(0.2)
    raise AssertionError(f"{workers} workers did not send records within {timeout_s:.0f} s")


def assert_split(ids: dict[str, set[str]], hosts: dict[str, Host]) -> None:
    """`split: workers`: each generator (its own address) used its own rows, and together all of them."""
    first, second = (ids.get(hosts[name].address, set()) for name in ("w1", "w2"))
    assert first and second and not first & second, ids
    assert first | second == {str(i) for i in range(IDS)}


def assert_one_verdict(run: Path, target_count: int) -> dict:
    """Every request the target logged is a stored record, and the summary's percentiles are those of
    one histogram over all of them."""
    records = load_records(run)
    assert len(records) == target_count
    summary = json.loads((run / "summary.json").read_text())
    assert summary["overall"]["requests"] == target_count
    one = sample_stats(r.corrected_latency for r in records)
    for name, value in summary["overall"]["latency"]["percentiles"].items():
        assert value == pytest.approx(one.percentiles[name], abs=1e-6), name
    return summary


def run_locust(
    hosts: dict[str, Host], tmp_path: Path, load: str, kill_w2_after_s: float | None = None
) -> tuple[int, Path, int, list[Path]]:
    """The master in its namespace, two workers in theirs (w2's clock shifted); the master's exit code,
    its run folder, the target's count and the workers' folders."""
    master, target_host = hosts["master"], hosts["target"]
    target = Target(target_host, tmp_path / "target")
    try:
        master_dir = tmp_path / "master"
        run = master_dir / "run"
        bind = f"{master.address}:{MASTER_PORT}"
        args = ["run", str(scenario_in(master_dir, "locust", target_host.address, load)), "--quiet"]
        args += ["--master", "--master-bind", bind, "--expect-workers", "2", "--out", str(run)]
        runner = scenariokit(master, args, master_dir)
        folders = [tmp_path / name for name in ("w1", "w2")]
        workers = [
            scenariokit(
                hosts[folder.name],
                worker_args(scenario_in(folder, "locust", target_host.address, load), bind, folder),
                folder,
                **({"SCENARIOKIT_CLOCK_SHIFT_S": str(SHIFT_S)} if folder.name == "w2" else {}),
            )
            for folder in folders
        ]
        if kill_w2_after_s is not None:
            wait_sending(run / "raw", workers=2)  # both joined and sending (start-up is slow on 2 cores)
            time.sleep(kill_w2_after_s)
            for pid in subprocess.run(
                ["ip", "netns", "pids", hosts["w2"].ns], capture_output=True, text=True, check=False
            ).stdout.split():
                os.kill(int(pid), signal.SIGKILL)  # the worker's machine dies: no goodbye
        code = runner.wait(timeout=90)
        for worker in workers:
            worker.wait(timeout=30)
    finally:
        counted = target.stop()
    assert_split(target.ids_by_client(), hosts)
    return code, run, counted, folders


@pytest.mark.solo
def test_locust_master_and_two_workers_on_other_hosts(hosts: dict[str, Host], tmp_path: Path) -> None:
    code, run, counted, folders = run_locust(hosts, tmp_path, OPEN)
    assert code == 0, (run / "../out.log").read_text()[-3000:]
    summary = assert_one_verdict(run, counted)
    assert counted > 100
    # the open model's arrivals were split between the workers, not sent by each (that would be twice
    # the plan); a worker starts its schedule when Locust's spawn message reaches it, so the arrivals of
    # its last moment (the spawn's delay, ~0.1 s here) fall after the master ended the curve, unsent
    dropped = json.loads((run / "raw" / "reader.json").read_text())["dropped"]
    assert 0 <= OPEN_RATE * OPEN_S - (counted + dropped) <= OPEN_RATE * 0.5
    # each worker compiled the scenario in its own folder and wrote nothing the master reads
    for folder in folders:
        assert (folder / "out.log").exists()
        assert not list(folder.rglob("records-*.jsonl"))
    generator = json.loads((run / "generator.json").read_text())
    workers = generator["workers"]
    assert len(workers) == 2
    offsets = sorted(w["clock_offset_s"] for w in workers.values())
    assert offsets[0] == pytest.approx(0.0, abs=0.05)
    assert offsets[1] == pytest.approx(SHIFT_S, abs=0.05)  # measured: the shift injected into w2
    assert all(w["clock_rtt_s"] < 0.05 and w["clock_pings"] >= 4 for w in workers.values()), workers
    # each worker's CPU came with its records, and the generator verdict reads it
    peaks = summary["generator"]["workers_peak"]
    assert set(peaks) == set(workers)
    assert all(len(w["samples"]) >= 3 and 0 < peaks[k]["peak"] <= 1.5 for k, w in workers.items()), peaks
    # corrected: every record (w2's included) lies in the master's run, so per-second tables line up
    meta = json.loads((run / "run.json").read_text())
    start, end = meta["engine_started_unix"], meta["ended_unix"]
    times = [r.t for r in load_records(run)]
    assert start - 1 <= min(times) and max(times) <= end, (start, min(times), max(times), end)


@pytest.mark.solo
def test_a_worker_that_dies_is_named_and_its_records_kept(hosts: dict[str, Host], tmp_path: Path) -> None:
    code, run, counted, _ = run_locust(hosts, tmp_path, CLOSED_LONG, kill_w2_after_s=1.0)
    summary = json.loads((run / "summary.json").read_text())
    assert code == 0, summary["notes"]  # the other worker carried the load (rebalanced)
    lost = [t for t in summary["trust"] if t["reason"] == "generator_worker_lost"]
    assert len(lost) == 1 and "lost" in lost[0]["label"]
    generator = json.loads((run / "generator.json").read_text())
    dead = [k for k, w in generator["workers"].items() if w["lost_at"] is not None]
    assert len(dead) == 1
    # the dead worker's requests after its last batch (sent every 0.5 s) die with it: at most about a
    # second of its own rate (a batch late on loaded cores), and the users it had in flight
    rows = [
        json.loads(line)
        for path in (run / "raw").glob("records-w*-1.jsonl")
        for line in path.read_text().splitlines()
        if line.startswith("[") and dead[0].replace("-", "_") in path.name
    ]
    assert len(rows) > 20  # what it sent before it died is kept
    rate = len(rows) / (max(r[0] for r in rows) - min(r[0] for r in rows))
    records = len(load_records(run))
    assert 0 <= counted - records <= rate * 1.0 + 4
    assert records > 100


@pytest.mark.solo
@pytest.mark.skipif(K6 is None, reason="k6 is not installed")
def test_k6_instances_on_other_hosts_one_verdict(hosts: dict[str, Host], tmp_path: Path) -> None:
    master, target_host = hosts["master"], hosts["target"]
    target = Target(target_host, tmp_path / "target")
    try:
        run = tmp_path / "master" / "run"
        # instance i runs in namespace w{i+1}: its console stream is the records' way back
        launcher = f"ip netns exec {hosts['w1'].ns[:-2]}w{{n}}"
        args = ["run", str(scenario_in(tmp_path / "master", "k6", target_host.address)), "--quiet"]
        args += ["--processes", "2", "--launcher", launcher, "--out", str(run)]
        code = scenariokit(master, args, tmp_path / "master").wait(timeout=60)
    finally:
        counted = target.stop()
    assert code == 0, (tmp_path / "master" / "out.log").read_text()[-3000:]
    assert_split(target.ids_by_client(), hosts)
    assert_one_verdict(run, counted)
    assert counted > 100
    # each instance's console stream came back into a file of its own, each with its segment's share
    streams = [run / "raw" / f"records-k6.{i}.jsonl" for i in range(2)]
    assert all('{"outcomes"' in path.read_text() for path in streams)
    spec = json.loads((run / "raw" / "k6-instances.json").read_text())["instances"]
    assert [i["argv"][i["argv"].index("--execution-segment") + 1] for i in spec] == ["0:1/2", "1/2:1"]
    generator = json.loads((run / "generator.json").read_text())
    instances = generator["processes_peak"]
    assert len([p for p in instances.values() if p["peak"] > 0]) >= 2  # both k6 instances' CPU


def test_a_worker_compiled_from_another_scenario_stops_the_run(tmp_path: Path) -> None:
    """On loopback (no namespace needed): the master's and the worker's compiled scripts differ (here the
    think time), so their requests cannot make one verdict: exit 3, the worker named."""
    if not have_nginx():
        pytest.skip("no nginx (.ci/run installs it)")
    port = free_port()
    master_dir, worker_dir = tmp_path / "master", tmp_path / "w1"
    with Nginx() as url:
        target = int(url.rsplit(":", 1)[1])
        scenario = scenario_in(master_dir, "locust", "127.0.0.1", port=target)
        other = scenario_in(worker_dir, "locust", "127.0.0.1", CLOSED.replace("20ms", "30ms"), target)
        code, run = run_mismatched(scenario, other, port)
    assert code == 3
    summary = json.loads((run / "summary.json").read_text())
    assert "compiled another scenario" in summary["notes"][0]


def run_mismatched(scenario: Path, other: Path, port: int) -> tuple[int, Path]:
    master_dir, worker_dir = scenario.parent, other.parent
    run = master_dir / "run"
    args = ["run", str(scenario), "--quiet", "--master", "--master-bind", f"127.0.0.1:{port}"]
    runner = subprocess.Popen(
        [sys.executable, "-m", "scenariokit", *args, "--expect-workers", "1", "--out", str(run)],
        cwd=master_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "scenariokit", *worker_args(other, f"127.0.0.1:{port}", worker_dir)],
        cwd=worker_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return runner.wait(timeout=90), run
    finally:
        for process in (runner, worker):
            process.kill()
            process.wait()
