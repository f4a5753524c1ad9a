"""`scenariokit compile FILE --deploy kubernetes -o DIR`: the manifests the standard operators consume.

- k6: a k6-operator `TestRun` (k6.io/v1alpha1, fields as in grafana/k6-operator v1.6.0's CRD,
  config/crd/bases/k6.io_testruns.yaml) whose `parallelism` is the worker count (the capacity plan's or
  `--workers`); the operator gives each runner pod its execution segment. The compiled script and its
  runtime are one ConfigMap (the operator mounts it at /test/), the data sets a second one mounted at
  /test/data. Each runner writes its records with console.log to its log (SCENARIOKIT_RECORDS=console,
  `--log-format raw`), which `kubectl logs` brings back (docs/kubernetes.md).
- Locust: a master Deployment (stock `locustio/locust`, its records folder SCENARIOKIT_RESULTS_DIR), a
  Service the workers reach it by, and a worker Deployment of `replicas` = worker count running the stock
  `locust --worker` on the same compiled locustfile; workers send their records to the master over Locust's
  own messages (the runtime's distribution section).

Every manifest is built as data and written with yaml.safe_dump: a scenario's name, URL or data reaches a
manifest only as a string value, never as YAML text. Kubernetes names are derived (DNS-1123 labels) with
a hash of the original, which stays whole in an annotation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from scenariokit.compile.diagnostics import Diagnostic, ScenarioError, Span
from scenariokit.compile.ir import Scenario
from scenariokit.engines import get_engine
from scenariokit.engines.base import CompiledScript
from scenariokit.engines.k6.driver import K6_GOGC, K6_SYSTEM_TAGS

# ConfigMaps hold at most 1 MiB (etcd's object limit): a scenario whose files are larger is refused with
# a hint rather than rejected by the API server mid-apply
CONFIGMAP_MAX_BYTES = 1024 * 1024
K6_MOUNT = "/test"  # where k6-operator mounts the script's ConfigMap (api/v1alpha1/testrun_types.go)
LOCUST_MOUNT = "/scenario"
LOCUST_RESULTS = "/results"
LOCUST_IMAGE = "locustio/locust"
MASTER_PORT = 5557
WEB_PORT = 8089
MAX_WORKERS = 100_000  # pods of one TestRun or Deployment: far past any cluster's generators
NAME_CHARS = 40  # the base of every name: room for the longest suffix (-locust-master) within 63
# as the local driver's: records are the runtime's console lines, k6's own samples carry few tags
K6_ARGUMENTS = ("--quiet", "--no-thresholds", "--no-summary", "--no-usage-report", "--log-format", "raw")
K6_ARGUMENTS += ("--system-tags", K6_SYSTEM_TAGS)
# `--runner-image`: the Locust master is `scenariokit run --master`, writing one judged run folder into the
# results volume; it then keeps the pod (a Deployment restarts a process that exits) until the folder is
# copied out. $1 the scenario, $2 the workers, $3 the target's URL: data as parameters, not shell text.
SCENARIO_FILE = "scenario.yaml"
RUNNER_SHELL_NAME = "scenariokit-master"
RUNNER_SHELL = (
    'scenariokit run "$1" --engine locust --master --master-bind 0.0.0.0:5557 --expect-workers "$2" '
    f'--base-url "$3" --out {LOCUST_RESULTS}/run --quiet; echo $? > {LOCUST_RESULTS}/exit-code; '
    "exec sleep infinity"
)


@dataclass(frozen=True)
class Manifests:
    """File name -> the documents it holds (each a dict)."""

    files: dict[str, list[dict[str, Any]]]

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, documents in sorted(self.files.items()):
            path = out_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            text = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=120)
            path.write_text(text, encoding="utf-8", newline="\n")
            written.append(path)
        return written


class _Dumper(yaml.SafeDumper):
    """yaml.safe_dump's dumper, with a file's text as a literal block (readable in `kubectl get -o yaml`);
    the emitter itself falls back to a quoted scalar where a block cannot hold the text exactly."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def kube_name(text: str) -> str:
    """A DNS-1123 label from any text: lower-case letters, digits and `-`, a letter first, then a short
    hash of the original so that two names that clean to the same stay apart."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[: NAME_CHARS - 9].strip("-")
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"sk-{cleaned}-{digest}" if cleaned else f"sk-{digest}"


def kubernetes_manifests(
    scenario: Scenario, workers: dict[str, int], base_url: str | None = None, runner_image: str | None = None
) -> Manifests:
    """The k6 and Locust manifests, `workers` per engine (k6 runner pods; Locust worker pods). With
    `runner_image` (an image with scenariokit installed) the Locust master is scenariokit's own runner,
    `scenariokit run --master`, which writes and judges one run folder."""
    url = base_url or scenario.target.base_url
    if not all(1 <= n <= MAX_WORKERS for n in workers.values()):
        raise _refused(
            scenario,
            f"{max(workers.values()):,} workers is more than a deployment of {MAX_WORKERS:,}",
            "a machine of more cores (--machine-cores) needs fewer k6 instances; or pass --workers N",
        )
    if not re.fullmatch(r"https?://[^\s\x00-\x1f\x7f]+", url):
        raise _refused(
            scenario,
            f"--deploy kubernetes needs a URL the cluster reaches; the target's base_url is `{url}`",
            "the embedded server runs only beside the runner: pass --base-url http://service:port",
        )
    name = kube_name(scenario.name)
    files = {
        "k6/testrun.yaml": k6_documents(scenario, name, workers["k6"], url, _compiled(scenario, "k6")),
        "locust/locust.yaml": locust_documents(
            scenario, name, workers["locust"], url, _compiled(scenario, "locust"), runner_image
        ),
    }
    return Manifests(files)


def _compiled(scenario: Scenario, engine: str) -> CompiledScript:
    script = get_engine(engine).compile(scenario)
    errors = [d for d in script.diagnostics if d.severity.value == "error"]
    if errors:
        raise ScenarioError(errors)
    return script


def _scenario_source(scenario: Scenario) -> str:
    """The scenario's YAML for the runner in the cluster; its data sets must be built in (a file beside it
    is not in the ConfigMap)."""
    files = [d.name for d in scenario.datasets if not d.source.startswith("builtin:")]
    if files:
        raise _refused(
            scenario,
            f"--runner-image runs the scenario itself, and data set {files[0]} reads files beside it",
            "use built-in data sets for --runner-image, or deploy without it (docs/kubernetes.md)",
        )
    return Path(scenario.source_path).read_text(encoding="utf-8")


def _refused(scenario: Scenario, message: str, hint: str) -> ScenarioError:
    return ScenarioError([Diagnostic(Span(str(scenario.source_path), 0, 0), message, hint)])


def _metadata(scenario: Scenario, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": _labels(name, component),
        # the scenario's own name, whole: an annotation value is any string
        "annotations": {
            "scenariokit.io/scenario": scenario.name,
            "scenariokit.io/source-sha256": scenario.source_sha256,
        },
    }


def _labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "scenariokit",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
    }


def _split(script: CompiledScript) -> tuple[dict[str, str], dict[str, str]]:
    """(top-level files, data files by their name inside data/): a ConfigMap key holds no `/`."""
    top, data = {}, {}
    for path, content in script.files.items():
        parts = PurePosixPath(path).parts
        if len(parts) == 1:
            top[path] = content
        elif len(parts) == 2 and parts[0] == "data":
            data[parts[1]] = content
        else:
            raise ScenarioError([Diagnostic(Span(path, 0, 0), f"`{path}` cannot go into a ConfigMap")])
    return top, data


def _config_map(scenario: Scenario, name: str, component: str, data: dict[str, str]) -> dict[str, Any]:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX_BYTES:
        raise _refused(
            scenario,
            f"the ConfigMap {name} would hold {size:,} bytes; Kubernetes keeps {CONFIGMAP_MAX_BYTES:,}",
            "use smaller data sets (fewer or smaller images) for a deployed run",
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(scenario, name, component),
        "data": dict(sorted(data.items())),
    }


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


# --- k6 ----------------------------------------------------------------------------------------------


def k6_documents(
    scenario: Scenario, name: str, parallelism: int, url: str, script: CompiledScript
) -> list[dict[str, Any]]:
    top, data = _split(script)
    script_map = f"{name}-k6"
    documents = [_config_map(scenario, script_map, "k6-script", top)]
    runner: dict[str, Any] = {
        "metadata": {"labels": _labels(name, "k6-runner")},
        # records to the runner's log (console.log, raw lines); k6's own GC setting, as the local driver's
        "env": _env({"SCENARIOKIT_BASE_URL": url, "SCENARIOKIT_RECORDS": "console", "GOGC": K6_GOGC}),
    }
    if data:
        data_map = f"{name}-k6-data"
        documents.append(_config_map(scenario, data_map, "k6-data", data))
        runner["volumes"] = [{"name": "data", "configMap": {"name": data_map}}]
        runner["volumeMounts"] = [{"name": "data", "mountPath": f"{K6_MOUNT}/data", "readOnly": True}]
    documents.append(
        {
            "apiVersion": "k6.io/v1alpha1",
            "kind": "TestRun",
            "metadata": _metadata(scenario, name, "k6"),
            "spec": {
                "parallelism": parallelism,
                "script": {"configMap": {"name": script_map, "file": script.entry}},
                "arguments": " ".join(K6_ARGUMENTS),
                "separate": True,  # one runner a node: a k6 instance uses every core it has
                "runner": runner,
            },
        }
    )
    return documents


# --- Locust ------------------------------------------------------------------------------------------


def locust_documents(
    scenario: Scenario,
    name: str,
    workers: int,
    url: str,
    script: CompiledScript,
    runner_image: str | None = None,
) -> list[dict[str, Any]]:
    top, data = _split(script)
    if runner_image is not None:
        top[SCENARIO_FILE] = _scenario_source(scenario)
    script_map = f"{name}-locust"
    documents = [_config_map(scenario, script_map, "locust-script", top)]
    volumes = [{"name": "scenario", "configMap": {"name": script_map}}]
    mounts = [{"name": "scenario", "mountPath": LOCUST_MOUNT, "readOnly": True}]
    if data:
        data_map = f"{name}-locust-data"
        documents.append(_config_map(scenario, data_map, "locust-data", data))
        volumes.append({"name": "data", "configMap": {"name": data_map}})
        mounts.append({"name": "data", "mountPath": f"{LOCUST_MOUNT}/data", "readOnly": True})
    master = f"{name}-master"
    locustfile = f"{LOCUST_MOUNT}/{script.entry}"
    master_args = ["-f", locustfile, "--master", "--host", url, "--expect-workers", str(workers)]
    # the shape starts the run once the workers are in and ends it; the master stays up afterwards (a
    # Deployment restarts a process that exits) so that its records can be copied out (docs/kubernetes.md)
    master_args += ["--autostart", "--autoquit", "-1", "--enable-rebalancing", "--loglevel", "WARNING"]
    worker_args = ["-f", locustfile, "--worker", "--master-host", master, "--master-port", str(MASTER_PORT)]
    results = {"name": "results", "emptyDir": {}}
    master_env = {"SCENARIOKIT_RESULTS_DIR": LOCUST_RESULTS, "SCENARIOKIT_WORKERS": str(workers)}
    master_deployment = _deployment(
        scenario,
        master,
        "locust-master",
        1,
        master_args,
        master_env,
        [*volumes, results],
        [*mounts, {"name": "results", "mountPath": LOCUST_RESULTS}],
    )
    if runner_image is not None:
        container = master_deployment["spec"]["template"]["spec"]["containers"][0]
        container.update(image=runner_image, command=["sh", "-c", RUNNER_SHELL], env=[])
        # the values reach the shell as its positional parameters, never as its text
        container["args"] = [RUNNER_SHELL_NAME, f"{LOCUST_MOUNT}/{SCENARIO_FILE}", str(workers), url]
    documents += [
        master_deployment,
        _service(scenario, master),
        _deployment(
            scenario,
            f"{name}-worker",
            "locust-worker",
            workers,
            worker_args,
            {"SCENARIOKIT_BASE_URL": url},
            volumes,
            mounts,
            cpu="1",  # a Locust process uses one core: one worker a core
        ),
    ]
    return documents


def _deployment(
    scenario: Scenario,
    name: str,
    component: str,
    replicas: int,
    args: list[str],
    env: dict[str, str],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    cpu: str | None = None,
) -> dict[str, Any]:
    labels = _labels(name, component)
    container: dict[str, Any] = {
        "name": "locust",
        "image": LOCUST_IMAGE,
        "args": args,
        "env": _env(env),
        "volumeMounts": mounts,
        "ports": [{"containerPort": MASTER_PORT}, {"containerPort": WEB_PORT}],
    }
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(scenario, name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": volumes},
            },
        },
    }


def _service(scenario: Scenario, master: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(scenario, master, "locust-master"),
        "spec": {
            "selector": _labels(master, "locust-master"),
            "ports": [
                {"name": "workers", "port": MASTER_PORT, "targetPort": MASTER_PORT},
                {"name": "web", "port": WEB_PORT, "targetPort": WEB_PORT},
            ],
        },
    }
