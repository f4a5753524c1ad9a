"""Every example scenario compiles for both engines, quickly, and `plan` describes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.compile.ir import Scenario
from scenariokit.compile.pipeline import load_scenario
from scenariokit.compile.plan import make_plan
from scenariokit.engines import compile_scenario

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_without_warnings(path: Path) -> None:
    loaded = load_scenario(path.relative_to(ROOT))
    assert loaded.warnings == (), [w.render() for w in loaded.warnings]


@pytest.mark.parametrize("engine", ["locust", "k6"])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_compiles(path: Path, engine: str, tmp_path: Path) -> None:
    loaded = load_scenario(path.relative_to(ROOT))
    script = compile_scenario(loaded.scenario, engine)
    assert script.entry in script.files
    entry = script.write(tmp_path)
    assert entry.read_text().count(loaded.scenario.source_sha256) == 1


def test_the_headline_scenario_spikes_past_its_steady_level() -> None:
    scenario = load_scenario(Path("scenarios/holiday-spike.yaml")).scenario
    labels = [s.label for s in scenario.load.stages]
    assert "flash-sale" in labels
    assert scenario.load.peak >= 3 * scenario.load.level_at(30)
    assert scenario.load.duration_s <= 180  # the README's run finishes well inside 5 minutes


def test_smoke_is_at_most_20_seconds() -> None:
    assert load_scenario(Path("scenarios/smoke.yaml")).scenario.load.duration_s <= 20


GUIDE_MIX = [
    ("identify", 3, "POST", "/api/identify"),
    ("ocr", 1, "POST", "/api/ocr"),
    ("error-cases.empty-image", 1, "POST", "/api/identify"),
    ("error-cases.wrong-field", 1, "POST", "/api/identify"),
]
GUIDE_SLOS = ["mean(latency) <= 300ms", "error_rate <= 0.5%", "success_rate > 99.5%"]


def guide_mix(path: str) -> tuple[Scenario, list[tuple[str, float, str, object]]]:
    scenario = load_scenario(Path(path)).scenario
    requests = [(r.name, r.weight, r.method, r.path) for r in scenario.requests]
    return scenario, requests


def test_the_guides_fleet_scenario_spawns_10000_users_at_100_per_second() -> None:
    scenario, requests = guide_mix("scenarios/recognition-api-fleet.yaml")
    ramp = scenario.load.stages[0]
    assert (ramp.start, ramp.end, ramp.duration_s) == (0, 10_000, 100)
    assert requests == GUIDE_MIX
    assert (scenario.load.think_time.kind, scenario.load.think_time.params) == (
        "uniform",
        (("low", 0.5), ("high", 2.5)),
    )
    assert [s.text for s in scenario.slos] == ["max(throughput) >= 5000/s", *GUIDE_SLOS]
    plan = make_plan(scenario)
    assert plan.peak == 10_000 and sum(plan.expected_requests.values()) > 5_000_000


def test_the_guides_scenario_sends_its_requests_by_url_to_the_embedded_server() -> None:
    scenario, requests = guide_mix("scenarios/recognition-api.yaml")
    assert scenario.target.is_embedded and requests == GUIDE_MIX
    assert (scenario.load.think_time.kind, scenario.load.think_time.params) == (
        "uniform",
        (("low", 0.5), ("high", 2.5)),
    )
    (images,) = scenario.datasets
    assert images.served
    identify, ocr, empty, wrong = scenario.requests
    for request in (identify, ocr):
        assert isinstance(request.json_body, dict) and set(request.json_body) == {"image_url"}
        assert [type(p).__name__ for p in request.json_body["image_url"].parts] == ["EnvRef", "DataRef"]
    assert (empty.json_body, wrong.json_body) == ({"image_url": ""}, {"wrong_field": "test"})
    assert [s.text for s in scenario.slos][1:] == GUIDE_SLOS
    assert scenario.load.duration_s <= 40  # the README's run


def test_plan_of_an_open_model_uses_littles_law() -> None:
    scenario = load_scenario(Path("scenarios/open-arrivals.yaml")).scenario
    plan = make_plan(scenario)
    assert plan.peak == 5
    assert plan.users_needed_at_peak == pytest.approx(5 * 0.8)
    assert plan.pre_allocated_users >= 4 and plan.max_users >= plan.pre_allocated_users
    expected_total = (0.5 + 2) / 2 * 20 + 2 * 30 + 5 * 10 + 2 * 20
    assert sum(plan.expected_requests.values()) == pytest.approx(expected_total)


def test_plan_command_prints_curve_and_mix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "scenarios/holiday-spike.yaml"]) == 0
    out = capsys.readouterr().out
    for fragment in ("flash-sale", "identify", "expected requests", "peak 24 users"):
        assert fragment in out
