"""`scenariokit compile FILE --deploy kubernetes` (issue 17), validated offline: the built-in kinds with
kubernetes-validate (its bundled OpenAPI schemas, strict: an unknown field fails), the k6-operator TestRun
against our own schema written from the operator's CRD (src/scenariokit/deploy/testrun.schema.json,
v1.6.0), a broken manifest failing each check, and hostile values staying values."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scenariokit.cli import main
from scenariokit.compile.pipeline import load_scenario
from scenariokit.deploy.kubernetes import CONFIGMAP_MAX_BYTES, kube_name
from scenariokit.engines import compile_scenario
from scenariokit.exitcodes import ExitCode
from scenariokit.run.calibrate import Calibration, EngineCost, host_facts
from scenariokit.run.capacity import Machine, capacity_plan

ROOT = Path(__file__).resolve().parents[1]
MILLION = ROOT / "scenarios" / "million-users.yaml"
SCHEMA = json.loads((ROOT / "src/scenariokit/deploy/testrun.schema.json").read_text(encoding="utf-8"))
KUBERNETES = kubernetes_validate.utils.latest_version()
# YAML's own syntax in a value: quotes, a comment, flow braces, an anchor, a tag, a block indicator
HOSTILE_URL = "http://target:8000/a'b\"c#d:{e}&f*g!h|i>j%k@l`m?n=[o]"
HOSTILE_BODY = "x\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\n"


def deploy(tmp_path: Path, source: Path, *flags: str) -> dict[str, list[dict[str, Any]]]:
    out = tmp_path / "deploy"
    assert main(["compile", str(source), "--deploy", "kubernetes", "-o", str(out), *flags]) == ExitCode.OK
    return {
        str(p.relative_to(out)): list(yaml.safe_load_all(p.read_text(encoding="utf-8")))
        for p in sorted(out.rglob("*.yaml"))
    }


def by_kind(files: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [d for docs in files.values() for d in docs if d["kind"] == kind]


def check_builtin(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def check_testrun(document: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(document)


def test_the_manifests_validate_offline(tmp_path: Path) -> None:
    files = deploy(tmp_path, MILLION, "--workers", "3")
    assert sorted(files) == ["k6/testrun.yaml", "locust/locust.yaml"]
    kinds = sorted(d["kind"] for docs in files.values() for d in docs)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "Service", "TestRun"]
    for docs in files.values():
        for document in docs:
            (check_testrun if document["kind"] == "TestRun" else check_builtin)(document)
    (testrun,) = by_kind(files, "TestRun")
    assert testrun["spec"]["parallelism"] == 3
    master, worker = sorted(by_kind(files, "Deployment"), key=lambda d: d["metadata"]["name"])
    assert worker["spec"]["replicas"] == 3 and master["spec"]["replicas"] == 1
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--expect-workers") + 1] == "3"
    # the workers find the master by the Service's name, and the Service selects the master's pods
    (service,) = by_kind(files, "Service")
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert worker_args[worker_args.index("--master-host") + 1] == service["metadata"]["name"]
    assert service["spec"]["selector"] == master["spec"]["template"]["metadata"]["labels"]


def test_the_configmaps_hold_the_compiled_scripts_byte_for_byte(tmp_path: Path) -> None:
    files = deploy(tmp_path, MILLION, "--workers", "2")
    scenario = load_scenario(MILLION).scenario
    maps = {d["metadata"]["name"]: d["data"] for d in by_kind(files, "ConfigMap")}
    for engine in ("k6", "locust"):
        compiled = compile_scenario(scenario, engine)
        (held,) = [data for name, data in maps.items() if name.endswith(f"-{engine}")]
        assert held == compiled.files
    (testrun,) = by_kind(files, "TestRun")
    assert testrun["spec"]["script"]["configMap"]["file"] == compile_scenario(scenario, "k6").entry


def test_the_worker_count_comes_from_the_capacity_plan(tmp_path: Path) -> None:
    costs = {n: EngineCost(n, "t", 500.0, 50e6, 300e3) for n in ("k6", "locust")}
    calibration = Calibration("2026-12-01T00:00:00+00:00", host_facts(), costs)
    path = tmp_path / "c.json"
    path.write_text(calibration.as_json(), encoding="utf-8")
    files = deploy(
        tmp_path, MILLION, "--calibration", str(path), "--machine-cores", "16", "--machine-memory", "64GiB"
    )
    plan = capacity_plan(load_scenario(MILLION).scenario, calibration, Machine(16, 64 * 2**30))
    workers = {layout.engine: layout.workers for layout in plan.layouts}
    assert by_kind(files, "TestRun")[0]["spec"]["parallelism"] == workers["k6"] > 1
    (worker,) = [d for d in by_kind(files, "Deployment") if d["metadata"]["name"].endswith("-worker")]
    assert worker["spec"]["replicas"] == workers["locust"] > 1


def test_hostile_values_stay_values(tmp_path: Path) -> None:
    source = tmp_path / "Evil.Name_1.yaml"
    source.write_text(
        "version: 1\nname: Evil.Name_1\ntarget: {kind: http, base_url: 'http://127.0.0.1:9'}\n"
        "load: {curve: 'hold(5, 10s)'}\nrequests:\n"
        f"  a: {{method: POST, path: /, json: {{note: {json.dumps(HOSTILE_BODY)}}}}}\n",
        encoding="utf-8",
    )
    files = deploy(tmp_path, source, "--workers", "1", "--base-url", HOSTILE_URL)
    assert not by_kind(files, "Secret")
    assert len([d for docs in files.values() for d in docs]) == 6
    (testrun,) = by_kind(files, "TestRun")
    env = {e["name"]: e["value"] for e in testrun["spec"]["runner"]["env"]}
    assert env["SCENARIOKIT_BASE_URL"] == HOSTILE_URL
    assert testrun["metadata"]["annotations"]["scenariokit.io/scenario"] == "Evil.Name_1"
    assert testrun["metadata"]["name"] == kube_name("Evil.Name_1")
    for docs in files.values():
        for document in docs:
            (check_testrun if document["kind"] == "TestRun" else check_builtin)(document)


@pytest.mark.parametrize(
    "name", ["Evil.Name_1", "x" * 100, "A", "---", "Ünïcode", "a..b", "..", "9lives", "-x-"]
)
def test_kube_names_are_dns_labels_and_keep_apart(name: str) -> None:
    made = kube_name(name)
    assert len(made) + len("-locust-master") <= 63
    jsonschema.validate(made, SCHEMA["properties"]["metadata"]["properties"]["name"])
    assert made != kube_name(name + "x")


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ([], "needs a URL the cluster reaches"),  # the embedded server
        (["--base-url", "http://a\n---\nkind: Secret"], "needs a URL the cluster reaches"),
        (["--base-url", "file:///etc/passwd"], "needs a URL the cluster reaches"),
        (["--base-url", "http://a:1", "--workers", "1000000"], "more than a deployment of 100,000"),
    ],
)
def test_an_unreachable_target_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], says: str
) -> None:
    out = tmp_path / "deploy"
    argv = ["compile", str(ROOT / "scenarios" / "smoke.yaml"), "--deploy", "kubernetes", "-o", str(out)]
    assert main([*argv, "--workers", "2", *flags]) == ExitCode.INVALID_SCENARIO
    assert says in capsys.readouterr().err and not out.exists()


def test_a_configmap_over_kubernetes_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "big.yaml"
    rows = "\n".join(f"{i},{'x' * 2000}" for i in range(CONFIGMAP_MAX_BYTES // 2000 + 10))
    (tmp_path / "big.csv").write_text("id,text\n" + rows + "\n", encoding="utf-8")
    source.write_text(
        "version: 1\nname: big\ntarget: {kind: http, base_url: 'http://127.0.0.1:9'}\n"
        "load: {curve: 'hold(5, 10s)'}\ndata:\n  rows: big.csv\nrequests:\n  a: {path: '/{rows.id}'}\n",
        encoding="utf-8",
    )
    argv = ["compile", str(source), "--deploy", "kubernetes", "-o", str(tmp_path / "d"), "--workers", "1"]
    assert main(argv) == ExitCode.INVALID_SCENARIO
    assert "Kubernetes keeps 1,048,576" in capsys.readouterr().err


def test_deploy_without_workers_or_calibration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a clean clone's CI: none stored
    argv = ["compile", str(MILLION), "--deploy", "kubernetes", "-o", str(tmp_path / "d")]
    assert main(argv) == ExitCode.INVALID_SCENARIO
    assert "no calibration at" in capsys.readouterr().err


def test_the_output_is_deterministic(tmp_path: Path) -> None:
    first = deploy(tmp_path / "1", MILLION, "--workers", "4")
    assert deploy(tmp_path / "2", MILLION, "--workers", "4") == first


# --- a broken manifest fails each check ------------------------------------------------------------


def _manifests(tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    return deploy(tmp_path, MILLION, "--workers", "2")


BROKEN_BUILTIN = [
    ("Deployment", lambda d: d["spec"].__setitem__("replicas", "three")),  # a string where int32 is due
    ("Deployment", lambda d: d["spec"].__setitem__("replica", 2)),  # a misspelt field (strict)
    ("Deployment", lambda d: d["spec"].pop("selector")),  # a required field
    ("Service", lambda d: d["spec"]["ports"][0].__setitem__("port", "5557")),
    ("ConfigMap", lambda d: d.__setitem__("data", {"a": 1})),  # data values are strings
]


@pytest.mark.parametrize(("kind", "breaks"), BROKEN_BUILTIN)
def test_a_broken_builtin_manifest_fails_kubernetes_validate(tmp_path: Path, kind: str, breaks: Any) -> None:
    document = copy.deepcopy(by_kind(_manifests(tmp_path), kind)[0])
    check_builtin(document)
    breaks(document)
    with pytest.raises(kubernetes_validate.ValidationError):
        check_builtin(document)


BROKEN_TESTRUN = [
    lambda s: s.__setitem__("parallelism", 0),
    lambda s: s.__setitem__("parallelism", "2"),
    lambda s: s.pop("script"),
    lambda s: s.__setitem__("script", {}),
    lambda s: s["script"].__setitem__("localFile", "/test/x.js"),  # two sources
    lambda s: s.__setitem__("parralelism", 2),  # a misspelt field
    lambda s: s.__setitem__("cleanup", "always"),
    lambda s: s["runner"]["env"].append({"value": "no name"}),
    lambda s: s["script"]["configMap"].__setitem__("name", "Not_A_Label"),
]


@pytest.mark.parametrize("breaks", BROKEN_TESTRUN)
def test_a_broken_testrun_fails_its_schema(tmp_path: Path, breaks: Any) -> None:
    (testrun,) = by_kind(_manifests(tmp_path), "TestRun")
    document = copy.deepcopy(testrun)
    check_testrun(document)
    breaks(document["spec"])
    with pytest.raises(jsonschema.ValidationError):
        check_testrun(document)


def test_kubernetes_validate_needs_no_network(tmp_path: Path) -> None:
    """Its schemas are in the wheel: a check in a network namespace of its own (no interface up) passes."""
    document = by_kind(_manifests(tmp_path), "Deployment")[0]
    code = f"import kubernetes_validate as k; k.validate({document!r}, {KUBERNETES!r}, strict=True)"
    try:
        done = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("no unshare(1) here")
    if b"unshare failed" in done.stderr or b"Operation not permitted" in done.stderr:
        pytest.skip("cannot make a network namespace here (needs root)")
    assert done.returncode == 0, done.stderr.decode()


def test_a_runner_image_makes_the_master_scenariokit_s_own_runner(tmp_path: Path) -> None:
    files = deploy(
        tmp_path,
        MILLION,
        "--workers",
        "3",
        "--runner-image",
        "registry.example/scenariokit:1",
        "--base-url",
        HOSTILE_URL,
    )
    master = next(d for d in by_kind(files, "Deployment") if d["metadata"]["name"].endswith("-master"))
    container = master["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/scenariokit:1"
    assert container["command"][:2] == ["sh", "-c"] and "scenariokit run" in container["command"][2]
    # the values are the shell's parameters: `sh -c TEXT NAME $1 $2 $3`, the URL whole
    assert container["args"][1:] == ["/scenario/scenario.yaml", "3", HOSTILE_URL]
    (held,) = [d["data"] for d in by_kind(files, "ConfigMap") if d["metadata"]["name"].endswith("-locust")]
    assert held["scenario.yaml"] == MILLION.read_text(encoding="utf-8")
    check_builtin(master)
    # the shell really receives them as data: run its text with `scenariokit` a stand-in that prints argv
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scenariokit").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    (bin_dir / "scenariokit").chmod(0o755)
    shell = container["command"][2].replace("/results", str(tmp_path)).replace("exec sleep infinity", "true")
    done = subprocess.run(
        ["sh", "-c", shell, *container["args"]],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    argv = done.stdout.splitlines()
    assert (
        argv[argv.index("--base-url") + 1] == HOSTILE_URL and argv[argv.index("--expect-workers") + 1] == "3"
    )
    assert (tmp_path / "exit-code").read_text().strip() == "0"


def test_a_runner_image_refuses_data_read_from_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rows.csv").write_text("id\n1\n", encoding="utf-8")
    source = tmp_path / "s.yaml"
    source.write_text(
        "version: 1\nname: s\ntarget: {kind: http, base_url: 'http://127.0.0.1:9'}\n"
        "load: {curve: 'hold(5, 10s)'}\ndata:\n  rows: rows.csv\nrequests:\n  a: {path: '/{rows.id}'}\n",
        encoding="utf-8",
    )
    argv = ["compile", str(source), "--deploy", "kubernetes", "-o", str(tmp_path / "d"), "--workers", "1"]
    assert main([*argv, "--runner-image", "x"]) == ExitCode.INVALID_SCENARIO
    assert "data set rows reads files beside it" in capsys.readouterr().err
    assert main(argv) == ExitCode.OK  # the stock master has no such need


def test_collect_refuses_what_is_not_a_run_s_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scenariokit collect`: an empty folder, a folder whose only record file is a link (it could name any
    file here), and a run folder already used are exit 2 before anything is written."""
    empty = tmp_path / "empty"
    empty.mkdir()
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "records-k6.0.jsonl").symlink_to("/etc/hostname")
    for raw in (empty, linked, tmp_path / "missing"):
        out = tmp_path / f"run-{raw.name}"
        assert main(["collect", str(MILLION), str(raw), "--out", str(out)]) == ExitCode.INVALID_SCENARIO
        assert "holds no records-*.jsonl" in capsys.readouterr().err and not out.exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x", encoding="utf-8")
    good = tmp_path / "good"
    good.mkdir()
    (good / "records-1-1.jsonl").write_text("", encoding="utf-8")
    assert main(["collect", str(MILLION), str(good), "--out", str(used)]) == ExitCode.INVALID_SCENARIO
