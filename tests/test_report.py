"""The HTML report: built from a run folder, escaped, and opened in real headless Chromium (Debian's
`chromium`, which .ci/run installs) with no console errors, its plots drawn and its SLO table present."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scenariokit.cli import main
from scenariokit.results.report import write_reports
from scenariokit.results.summary import rebuild_summary
from tests.support.loopback import LoopbackServer
from tests.test_summary import make_run

SCENARIO = """\
version: 1
name: report-demo
target: {{kind: http, base_url: "{url}"}}
load: {{curve: "steps(1, 4, 1, 2s) as sweep", think_time: constant(20ms)}}
requests:
  fast: {{weight: 3, path: /a}}
  missing: {{weight: 1, path: /missing, expect: {{status: 200}}}}
slo:
  - p99(latency) < 2s
  - error_rate < 1%
  - p95(latency) < 1s for fast during sweep
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium: .ci/run installs it with apt-get")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return found


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message the page produced."""
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,1000",
            "--virtual-time-budget=8000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def test_report_is_written_with_every_section_and_escapes_values(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["scenario_name"] = "</script><script>alert(1)</script>"
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert write_reports(run_dir, rebuild_summary(run_dir)) == []
    html = (run_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for section in ('id="slos"', 'id="analysis"', 'id="requests"', 'id="overview"', 'id="plot-load"'):
        assert section in html, section
    # the SLO table shows what decided each verdict: the share beyond the limit and its bounds, the rule
    assert "0 of 400 beyond: 0.00% to 0.75% (0.95)" in html and "2.525% to 6.012% (0.95)" in html
    assert "Rule: Clopper-Pearson bounds of the error rate at 95% decide" in html


@pytest.mark.engine
def test_real_run_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    scenario = tmp_path / "report.yaml"
    with LoopbackServer(delay_s=0.02, status_by_path={"/missing": 404}) as server:
        scenario.write_text(SCENARIO.format(url=server.url))
        code = main(["run", str(scenario), "--engine", "k6", "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 1  # the /missing requests breach error_rate < 1%
    page = tmp_path / "run" / "report.html"
    dom, console = open_in_chromium(page, tmp_path)
    assert console == [], f"console messages from {browser}: {console}"
    # Plotly drew real SVG into every plot's div (the divs alone are in the page before any script runs)
    for plot in ("load", "latency", "histogram", "errors", "capacity", "host"):
        assert f'id="plot-{plot}"' in dom, plot
        drawn = dom.split(f'id="plot-{plot}"', 1)[1].split('id="plot-', 1)[0]
        assert 'class="main-svg"' in drawn, plot
    assert dom.count('class="main-svg"') >= 6
    slo_rows = re.findall(r'<tr class="slo-row (\w+)">', dom)
    assert slo_rows == ["pass", "fail", "pass"]
    assert "http_4xx:404" in dom and "Knee:" in dom


def test_a_run_that_did_not_finish_is_an_error_in_the_report_whatever_its_slos_say(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    make_run(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    meta |= {"exit_reason": "interrupted", "exit_detail": "stopped by SIGTERM during the run"}
    (run_dir / "run.json").write_text(json.dumps(meta))
    summary = rebuild_summary(run_dir)
    assert write_reports(run_dir, summary) == []
    html = (run_dir / "report.html").read_text()
    heading = html.split("<h1>")[1].split("</h1>")[0]
    assert "ERROR (INTERRUPTED)" in heading and "PASS" not in heading
    assert "stopped by SIGTERM during the run" in html and '<header class="fail">' in html
