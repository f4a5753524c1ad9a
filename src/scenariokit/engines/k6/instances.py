"""k6 across instances: `run --processes N` with k6 is N k6 instances, instance i running execution segment
i/N:(i+1)/N of one plan (`--execution-segment` with `--execution-segment-sequence 0,1/N,...,1`, as
k6-operator starts them), so the N together send the scenario's load once, with no coordinator.

The runner starts one leader, `python -m scenariokit.engines.k6.instances SPEC`, which starts the instances
in its process group (so the runner stops and samples them as one engine) and exits with their worst code.
Each instance's records come back one of two ways:

- on this machine, in a file of its own, `raw/records-k6.<i>.jsonl`, read like Locust's per-process files;
- behind a launcher (`run --launcher 'ssh gen{n}'`, `{i}` the 0-based index, `{n}` the 1-based one), on
  the instance's standard output (`--console-output /dev/stdout`), which the leader appends to the same
  file as it arrives. The console stream was chosen over files collected after the run (no live view, no
  abort_when, and a lost machine loses all its records) and over a collector the runner serves (the
  instances would have to reach the runner through firewalls, and k6 would need an extension): it is what
  ssh, `ip netns exec` and `kubectl logs -f` carry as they are, and its records arrive while the run goes.

An instance's times are its own machine's clock: keep the machines' clocks in step (NTP) when instances
run elsewhere (docs/distributed.md). An open model's dropped iterations are counted from each local
instance's summary and REST API; an instance behind a launcher keeps them on its own machine.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from scenariokit.engines.base import EngineLaunch, LaunchPlan
from scenariokit.ports import free_port

# the environment an instance behind a launcher gets as k6 `-e` flags (ssh does not carry ours)
FORWARDED_ENV = ("SCENARIOKIT_BASE_URL", "SCENARIOKIT_RECORDS", "SCENARIOKIT_SEED")


def segment_flags(index: int, count: int) -> list[str]:
    """Instance `index` of `count`: its execution segment and the sequence all of them share."""
    cut = [Fraction(k, count) for k in range(count + 1)]
    sequence = ",".join(str(c) for c in cut)
    return ["--execution-segment", f"{cut[index]}:{cut[index + 1]}", "--execution-segment-sequence", sequence]


def launcher_prefix(launcher: str, index: int) -> list[str]:
    """The launcher's words for instance `index` ({i}: 0-based, {n}: 1-based); not str.format, so any
    other brace in the user's command stays as it is."""
    return shlex.split(launcher.replace("{i}", str(index)).replace("{n}", str(index + 1)))


def instance_spec(plan: LaunchPlan, env: dict[str, str], index: int) -> tuple[dict[str, Any], str | None]:
    """One instance: its command line and where its stream goes (None: it writes its own file), and its
    REST API address (a local open-model instance only)."""
    from scenariokit.engines.k6.driver import k6_argv

    records = plan.raw_dir / f"records-k6.{index}.jsonl"
    segment = segment_flags(index, plan.processes)
    # which instance it is, for `split: workers` data sets (k6 gives a VU no instance index)
    segment += ["-e", f"SCENARIOKIT_INSTANCE={index}", "-e", f"SCENARIOKIT_INSTANCES={plan.processes}"]
    if plan.launcher is None:
        api = f"127.0.0.1:{free_port()}" if plan.open_model else None
        argv = k6_argv(plan, records, plan.raw_dir / f"k6-summary.{index}.json", api)
        return {"argv": argv + segment, "stream_to": None}, api
    argv = k6_argv(plan, "/dev/stdout", None, None) + segment
    argv += [flag for key in FORWARDED_ENV if key in env for flag in ("-e", f"{key}={env[key]}")]
    return {"argv": launcher_prefix(plan.launcher, index) + argv, "stream_to": str(records)}, None


def instances_launch(plan: LaunchPlan, env: dict[str, str]) -> EngineLaunch:
    """The leader's command line; `api` lists the local instances' REST APIs, comma-separated."""
    specs, apis = zip(*(instance_spec(plan, env, i) for i in range(plan.processes)), strict=True)
    spec_path = plan.raw_dir / "k6-instances.json"
    plan.raw_dir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps({"instances": list(specs)}, indent=1) + "\n")
    argv = [sys.executable, "-m", "scenariokit.engines.k6.instances", str(spec_path)]
    api = ",".join(a for a in apis if a) or None
    return EngineLaunch(argv, env, api)


def _copy(stream: IO[bytes], path: Path) -> None:
    """An instance's standard output, appended to its records file as it arrives (the reader takes
    complete lines only, so a chunk cut mid-line waits for the rest)."""
    with path.open("ab") as out:
        for chunk in iter(lambda: stream.read1(1 << 16), b""):  # type: ignore[attr-defined]
            out.write(chunk)
            out.flush()


def worst(codes: list[int]) -> int:
    """The instances' exit code as one: the first that is neither 0 nor k6's 99 (its thresholds), else 99
    when one had it, else 0."""
    bad = [c for c in codes if c not in (0, 99)]
    return bad[0] if bad else (99 if 99 in codes else 0)


def _default_signals() -> None:
    """In the instance, before k6 starts: the leader ignores SIGINT and SIGTERM, k6 must not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(spec_path: str) -> int:
    # the runner stops the whole group (its SIGINT reaches every instance): the leader waits for them
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = json.loads(Path(spec_path).read_text())
    processes, copiers = [], []
    for instance in spec["instances"]:
        stream_to = instance.get("stream_to")
        process = subprocess.Popen(
            instance["argv"],
            stdout=subprocess.PIPE if stream_to else None,
            preexec_fn=_default_signals,
        )
        processes.append(process)
        if stream_to:
            assert process.stdout is not None
            copier = threading.Thread(target=_copy, args=(process.stdout, Path(stream_to)), daemon=True)
            copier.start()
            copiers.append(copier)
    codes = [process.wait() for process in processes]
    for copier in copiers:
        copier.join()
    return worst(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
