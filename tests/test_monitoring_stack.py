"""The monitoring stack (monitoring/), checked offline: `promtool check config` on the Prometheus config
(as shipped and as `--monitor prometheus` writes it), every dashboard query as a recording rule that
`promtool check rules` parses and `promtool test rules` evaluates on series named as the exporters name
them, compose.yaml against the compose specification's JSON Schema (bundled in check-jsonschema, run with
the network unreachable), and the Grafana JSON's fields. Each check also gets a broken file that must fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest

from scenariokit.cli import main
from scenariokit.compile.ir import MonitorTarget
from scenariokit.compile.pipeline import load_scenario
from scenariokit.engines.records import RequestRecord
from scenariokit.ports import free_port
from scenariokit.run import stack
from scenariokit.run.exporter import COMPOSE_PORT, LiveExporter, parse_listen
from scenariokit.run.prometheus import PrometheusServer, config, write_config
from tests.support.exporters import GpuReading, TextExporter, dcgm_text

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "monitoring"
PROMETHEUS_YML = MONITORING / "prometheus" / "prometheus.yml"
RULES = MONITORING / stack.RULES_FILE
COMPOSE = MONITORING / "compose.yaml"
DASHBOARDS = stack.dashboards(MONITORING)
DATASOURCE_VAR = "${datasource}"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have promtool (Debian's prometheus): .ci/run installs it with apt-get")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


# --- Prometheus config ---------------------------------------------------------------------------


def test_promtool_accepts_the_shipped_config_and_its_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS_YML))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout  # the glob rules/*.yml found the dashboards' rules


def test_promtool_accepts_the_config_the_runner_writes(tmp_path: Path) -> None:
    """The run folder's copy, with its file_sd files for the target, the exporter and monitoring.targets
    (promtool reads the SD files too: a malformed one fails the check)."""
    targets = (
        MonitorTarget(name="gpu-1", url="http://10.0.0.5:9400/metrics", role="dcgm"),
        MonitorTarget(name="generator", url="https://127.0.0.1:9100/metrics", role="node"),
    )
    path = write_config(tmp_path, "http://127.0.0.1:8000/v1", "http://127.0.0.1:5555/metrics", 0.5, targets)
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    # only the jobs left without targets warn (no vllm*.json, process*.json here)
    warnings = [line for line in result.stdout.splitlines() if "WARNING" in line]
    assert warnings and all("does not exist" in line for line in warnings), warnings
    sd = json.loads((tmp_path / "targets" / "dcgm-gpu-1.json").read_text())
    assert sd == [
        {
            "targets": ["10.0.0.5:9400"],
            "labels": {"__scheme__": "http", "__metrics_path__": "/metrics", "name": "gpu-1"},
        }
    ]
    target = json.loads((tmp_path / "targets" / "target.json").read_text())[0]
    assert target["labels"]["__metrics_path__"] == "/v1/metrics"
    # the same file but for the intervals: one config for compose and for --monitor prometheus
    written, shipped = yaml.safe_load(path.read_text()), yaml.safe_load(PROMETHEUS_YML.read_text())
    assert written["global"] == {"scrape_interval": "500ms", "evaluation_interval": "500ms"}
    assert {k: v for k, v in written.items() if k != "global"} == {
        k: v for k, v in shipped.items() if k != "global"
    }


def test_at_the_shipped_interval_the_runner_copies_the_file_verbatim(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:2/metrics", 1.0)
    assert path.read_text() == PROMETHEUS_YML.read_text()
    assert (tmp_path / "rules" / "dashboards.yml").read_text() == RULES.read_text()
    assert config(1.0) == yaml.safe_load(PROMETHEUS_YML.read_text())


@pytest.mark.parametrize(
    ("breakage", "replace"),
    [
        ("a duration that is not one", ("scrape_interval: 1s", "scrape_interval: fast")),
        ("two jobs with one name", ("job_name: dcgm", "job_name: vllm")),
        ("an unknown key", ("rule_files:", "rule_filez:")),
    ],
)
def test_promtool_rejects_a_broken_config(tmp_path: Path, breakage: str, replace: tuple[str, str]) -> None:
    shutil.copytree(PROMETHEUS_YML.parent, tmp_path / "prometheus")
    broken = tmp_path / "prometheus" / "prometheus.yml"
    text = broken.read_text()
    assert replace[0] in text
    broken.write_text(text.replace(replace[0], replace[1], 1))
    assert promtool("check", "config", str(broken)).returncode != 0, breakage


def test_promtool_rejects_a_malformed_targets_file(tmp_path: Path) -> None:
    shutil.copytree(PROMETHEUS_YML.parent, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "targets" / "dcgm.json").write_text('[{"targets": "gpu-1:9400"}]')
    assert promtool("check", "config", str(tmp_path / "prometheus" / "prometheus.yml")).returncode != 0


# --- recording rules = the dashboards' queries ------------------------------------------------------


def test_checked_in_rules_are_the_dashboards_queries() -> None:
    assert RULES.read_text() == stack.rules_text(DASHBOARDS), (
        "monitoring/prometheus/rules/dashboards.yml is stale: run `python -m scenariokit.run.stack rules`"
    )
    exprs = [
        t["expr"]
        for d in DASHBOARDS
        for p in json.loads(d.read_text())["panels"]
        for t in p.get("targets", [])
    ]
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert sorted(exprs) == sorted(rules) and len(rules) >= 20


def test_promtool_parses_every_dashboard_query() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_dashboard_query_that_does_not_parse_fails_promtool(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARDS[0].read_text())
    dashboard["panels"][1]["targets"][0]["expr"] = (
        "sum(rate(scenariokit_requests_total[10s])"  # one ")" short
    )
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dashboard))
    (tmp_path / "rules.yml").write_text(stack.rules_text([broken]))
    result = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr


def test_rule_names_lead_back_to_their_panel() -> None:
    assert stack.record_name("scenariokit-run", 12, "B") == "scenariokit_run:panel12:b"
    with pytest.raises(ValueError):
        stack.record_name("9 lives", 1, "A")  # a rule name may not start with a digit


# The rules evaluated by Prometheus's own engine (promtool test rules) on series named and labelled as the
# exporters name them: DCGM's default counters (NVIDIA/dcgm-exporter etc/default-counters.csv, MiB and %),
# node_exporter's cpu/meminfo/netdev collectors, scenariokit's exporter (checked against its real output
# below). Values chosen so each expected figure is easy to verify by hand.
RULE_TEST = """\
rule_files: [{rules}]
evaluation_interval: 5s
tests:
  - interval: 5s
    input_series:
      - series: 'DCGM_FI_DEV_FB_USED{{gpu="0",Hostname="gpu-1",UUID="GPU-a"}}'
        values: '60000x12'
      - series: 'DCGM_FI_DEV_FB_FREE{{gpu="0",Hostname="gpu-1",UUID="GPU-a"}}'
        values: '20000x12'
      - series: 'DCGM_FI_DEV_GPU_UTIL{{gpu="0",Hostname="gpu-1",UUID="GPU-a"}}'
        values: '85x12'
      - series: 'node_cpu_seconds_total{{cpu="0",mode="idle",instance="gpu-1:9100",name="gpu-1"}}'
        values: '0+1.25x12'
      - series: 'node_network_receive_bytes_total{{device="eth0",instance="gpu-1:9100",name="gpu-1"}}'
        values: '0+5000x12'
      - series: 'node_network_receive_bytes_total{{device="lo",instance="gpu-1:9100",name="gpu-1"}}'
        values: '0+999999x12'
      - series: 'scenariokit_requests_total{{name="ocr",outcome="ok"}}'
        values: '0+45x12'
      - series: 'scenariokit_requests_total{{name="ocr",outcome="timeout"}}'
        values: '0+5x12'
      - series: 'scenariokit_intended_load'
        values: '10x12'
    promql_expr_test:
      - expr: {gpu_memory}
        eval_time: 30s
        exp_samples: [{{labels: '{gpu_memory}{{Hostname="gpu-1",gpu="0"}}', value: 0.75}}]
      - expr: {gpu_util}
        eval_time: 30s
        exp_samples: [{{labels: '{gpu_util}{{Hostname="gpu-1",gpu="0"}}', value: 85}}]
      - expr: {cpu_busy}
        eval_time: 30s
        exp_samples: [{{labels: '{cpu_busy}{{instance="gpu-1:9100",name="gpu-1"}}', value: 0.75}}]
      - expr: {net_in}
        eval_time: 30s
        exp_samples: [{{labels: '{net_in}{{instance="gpu-1:9100",name="gpu-1"}}', value: 1000}}]
      - expr: {achieved}
        eval_time: 30s
        exp_samples: [{{labels: '{achieved}', value: 10}}]
      - expr: {errors_by_kind}
        eval_time: 30s
        exp_samples: [{{labels: '{errors_by_kind}{{outcome="timeout"}}', value: 1}}]
"""


def rule_for(title: str, ref_id: str = "A") -> str:
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["title"] == title:
                return stack.record_name(dashboard["uid"], panel["id"], ref_id)
    raise AssertionError(f"no panel titled {title!r}")


def rule_test_file(tmp_path: Path) -> Path:
    path = tmp_path / "dashboards_test.yml"
    path.write_text(
        RULE_TEST.format(
            rules=RULES,
            gpu_memory=rule_for("GPU framebuffer memory used"),
            gpu_util=rule_for("GPU utilisation"),
            cpu_busy=rule_for("CPU busy"),
            net_in=rule_for("Network bytes per second (no loopback)"),
            achieved=rule_for("Load: intended vs achieved", "B"),
            errors_by_kind=rule_for("Errors per second by kind"),
        )
    )
    return path


def test_the_rules_compute_the_panels_figures_from_exporter_shaped_series(tmp_path: Path) -> None:
    result = promtool("test", "rules", str(rule_test_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_rule_test(tmp_path: Path) -> None:
    path = rule_test_file(tmp_path)
    path.write_text(path.read_text().replace("value: 0.75}]", "value: 0.5}]", 1))
    assert promtool("test", "rules", str(path)).returncode != 0


def test_every_scenariokit_series_a_panel_reads_is_one_the_exporter_serves(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "version: 1\nname: s\ntarget: {kind: http, base_url: 'http://127.0.0.1:1'}\n"
        "load: {curve: 'hold(1s)'}\nrequests:\n  get: {method: GET, path: /}\nslo: [error_rate < 5%]\n"
    )
    exporter = LiveExporter(load_scenario(scenario_file).scenario)
    exporter.add([RequestRecord(t=0.0, name="get", stage="s", status=200, ok=True, error=None, latency=0.01)])
    exposed = set(
        re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", generate_latest(exporter.registry).decode(), re.M)
    )
    exporter.slo.labels("error_rate < 5%").set(1)
    exposed |= set(
        re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", generate_latest(exporter.registry).decode(), re.M)
    )
    read = {
        n
        for e in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
        for n in re.findall(r"scenariokit_[a-z_]+", e["expr"])
    }
    assert read and read <= exposed, read - exposed


# --- compose ----------------------------------------------------------------------------------------


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema's bundled compose-spec schema, with every proxy pointing at a closed port: a
    download attempt would fail the check, so passing shows it works offline."""
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead}
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_compose_file_follows_the_compose_specification() -> None:
    result = check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("breakage", "edit"),
    [
        ("a misspelt service key", lambda c: c["services"]["grafana"].update(volumez=[])),
        ("an image that is not a string", lambda c: c["services"]["prometheus"].update(image=42)),
        ("ports as a mapping", lambda c: c["services"]["grafana"].update(ports={"3000": 3000})),
    ],
)
def test_a_broken_compose_file_fails_the_schema(tmp_path: Path, breakage: str, edit: Any) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    edit(compose)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(compose))
    assert check_compose(broken).returncode == 1, breakage


def test_compose_pins_its_images_and_mounts_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        assert re.fullmatch(r"[a-z/-]+:v?\d+\.\d+\.\d+", service["image"]), f"{name} is not pinned"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (MONITORING / source).exists(), f"{name} mounts {source}, which is not there"
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # the runner's exporter is where the shipped targets file says, at the port --metrics-listen documents
    shipped = json.loads((MONITORING / "prometheus" / "targets" / "scenariokit.json").read_text())
    assert shipped[0]["targets"] == [f"host.docker.internal:{COMPOSE_PORT}"]


# --- Grafana ----------------------------------------------------------------------------------------


def dashboard_problems(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana needs to load a provisioned dashboard and run its queries."""
    problems = [f"no {key}" for key in ("uid", "title", "panels") if not dashboard.get(key)]
    variables = {
        v.get("name")
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "datasource"
    }
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    for panel in dashboard.get("panels", []):
        where = f"panel {panel.get('id')} ({panel.get('title')})"
        if panel.get("type") == "row":
            continue
        if not panel.get("type") or not panel.get("gridPos"):
            problems.append(f"{where}: no type or gridPos")
        if not panel.get("targets"):
            problems.append(f"{where}: no queries")
        for target in [panel, *panel.get("targets", [])]:
            source = target.get("datasource") or {}
            if source.get("type") != "prometheus" or source.get("uid") != DATASOURCE_VAR:
                problems.append(f"{where}: datasource is not the Prometheus variable")
        for target in panel.get("targets", []):
            if not str(target.get("expr", "")).strip() or not target.get("refId"):
                problems.append(f"{where}: a query without expr or refId")
            if "$" in str(target.get("expr", "")):
                problems.append(
                    f"{where}: a Grafana variable in a query (the recording rule could not hold it)"
                )
    if DATASOURCE_VAR[2:-1] not in variables:
        problems.append("no `datasource` variable of type datasource")
    return problems


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_has_what_grafana_needs(path: Path) -> None:
    assert dashboard_problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize(
    ("breakage", "edit", "problem"),
    [
        ("no uid", lambda d: d.pop("uid"), "no uid"),
        ("a panel without datasource", lambda d: d["panels"][1].pop("datasource"), "datasource"),
        ("a query without expr", lambda d: d["panels"][1]["targets"][0].pop("expr"), "without expr"),
        ("a repeated panel id", lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "ids repeat"),
        (
            "a Grafana variable",
            lambda d: d["panels"][1]["targets"][0].update(expr="rate(x[$__rate_interval])"),
            "variable",
        ),
        ("no datasource variable", lambda d: d["templating"].update(list=[]), "no `datasource`"),
    ],
)
def test_a_broken_dashboard_is_caught(breakage: str, edit: Any, problem: str) -> None:
    dashboard = copy.deepcopy(json.loads(DASHBOARDS[0].read_text()))
    edit(dashboard)
    assert any(problem in p for p in dashboard_problems(dashboard)), breakage


def test_dashboard_covers_the_issues_panels() -> None:
    exprs = " ".join(
        t["expr"]
        for d in DASHBOARDS
        for p in json.loads(d.read_text())["panels"]
        for t in p.get("targets", [])
    )
    for series in (
        "scenariokit_intended_load",  # load: intended ...
        "scenariokit_requests_total",  # ... vs achieved, errors by kind
        "scenariokit_request_duration_seconds_bucket",  # latency percentiles
        "scenariokit_slo_status",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_network_transmit_bytes_total",
    ):
        assert series in exprs, series


def test_provisioning_points_grafana_at_the_mounted_dashboards_and_prometheus() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    grafana = compose["services"]["grafana"]
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/scenariokit.yaml").read_text())
    assert f"./grafana/dashboards:{providers['providers'][0]['options']['path']}:ro" in grafana["volumes"]
    sources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    source = sources["datasources"][0]
    assert (
        source["type"] == "prometheus" and source["isDefault"] and source["url"] == "http://prometheus:9090"
    )


# --- --metrics-listen -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("0.0.0.0:9646", ("0.0.0.0", 9646)), ("127.0.0.1:1", ("127.0.0.1", 1)), ("[::1]:9646", ("::1", 9646))],
)
def test_metrics_listen_parses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "9646",
        "0.0.0.0:",
        "0.0.0.0:0",
        "0.0.0.0:65536",
        "0.0.0.0:-1",
        "example.com:9646",
        ":9646",
        "0.0.0.0:96 46",
        "[::1:9646",
    ],
)
def test_metrics_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


def test_the_exporter_serves_where_it_is_told(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "version: 1\nname: s\ntarget: {kind: http, base_url: 'http://127.0.0.1:1'}\n"
        "load: {curve: 'hold(1s)'}\nrequests:\n  get: {method: GET, path: /}\n"
    )
    exporter = LiveExporter(load_scenario(scenario_file).scenario)
    port = free_port()
    url = exporter.start("0.0.0.0", port)
    try:
        assert url == f"http://127.0.0.1:{port}/metrics"
        assert "scenariokit_run_info" in httpx.get(url, timeout=5).text
    finally:
        exporter.stop()


@pytest.mark.engine  # reaches `scenariokit run` (refused before any engine starts)
def test_metrics_listen_on_a_busy_port_is_refused_before_any_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "version: 1\nname: s\ntarget: {kind: http, base_url: 'http://127.0.0.1:1'}\n"
        "load: {curve: 'hold(1s)'}\nrequests:\n  get: {method: GET, path: /}\n"
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = tmp_path / "run"
        code = main(["run", str(scenario_file), "--out", str(out), "--metrics-listen", f"127.0.0.1:{port}"])
    assert code == 2
    assert f"--metrics-listen: 127.0.0.1:{port} cannot be used" in capsys.readouterr().err
    assert not out.exists()  # refused before the run folder was claimed


@pytest.mark.engine  # reaches `scenariokit run`'s argument parser
def test_metrics_listen_that_is_not_an_address_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(tmp_path / "missing.yaml"), "--metrics-listen", "localhost:9646"])
    assert exit_.value.code == 2 and "is not an IP address" in capsys.readouterr().err


# --- the same files in a real Prometheus (Debian's), as --monitor prometheus starts it --------------


@pytest.mark.slow
def test_the_runners_prometheus_scrapes_monitoring_targets_into_the_dashboards_rules(tmp_path: Path) -> None:
    """The run's copy of the config, the targets files written from `monitoring.targets`, a DCGM endpoint
    (tests/support/exporters.py) scraped, and the GPU panels' rules evaluated on what it served."""
    if shutil.which("prometheus") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's prometheus: .ci/run installs it with apt-get")
        pytest.skip("Debian's prometheus is not installed (apt-get install prometheus)")
    gpus = [GpuReading(util_percent=85, used_mib=60000, free_mib=20000), GpuReading(40, 40000, 40000)]
    with TextExporter(lambda: dcgm_text(gpus)) as dcgm, TextExporter(lambda: "up_fixture 1\n") as target:
        targets = (MonitorTarget(name="gpu-1", url=dcgm.url, role="dcgm"),)
        with PrometheusServer(tmp_path, target.url, target.url, 1.0, targets) as server:
            memory, util = rule_for("GPU framebuffer memory used"), rule_for("GPU utilisation")
            deadline, got = time.monotonic() + 30, {}
            while time.monotonic() < deadline and len(got) < 2:
                for rule in (memory, util):
                    body = httpx.get(f"{server.url}/api/v1/query", params={"query": rule}, timeout=5).json()
                    if body["data"]["result"]:
                        got[rule] = {r["metric"]["gpu"]: float(r["value"][1]) for r in body["data"]["result"]}
                time.sleep(0.5)
            up = httpx.get(f"{server.url}/api/v1/query", params={"query": "up"}, timeout=5).json()
    assert got.get(memory) == {"0": 0.75, "1": 0.5}, got
    assert got.get(util) == {"0": 85.0, "1": 40.0}, got
    jobs = {(r["metric"]["job"], r["metric"].get("name")) for r in up["data"]["result"]}
    assert jobs == {("dcgm", "gpu-1"), ("target", "target"), ("scenariokit", "runner")}
