"""The knee, found on a real run: a step sweep against the embedded server with a small limit.

The server runs at most 2 requests at once (`max_in_flight: 2`), each holding its slot for a 100 ms added
latency plus the moderation model's few milliseconds. Queueing theory predicts the knee at 2 users:
throughput doubles from 1 to 2 users, then stays near 2 / 0.11 s ≈ 18/s while latency climbs in steps of
one service time. The analysis must find exactly that level from the records alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenariokit.cli import main

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.solo]

PREDICTED_KNEE = 2  # = max_in_flight
SCENARIO = f"""\
version: 1
name: knee-limit
target:
  kind: openai-chat
  base_url: embedded
  model: moderation
  timeout: 20s
  embedded: {{workers: 1, max_in_flight: {PREDICTED_KNEE}, max_queue: 64, fault: latency=100ms}}
load:
  curve: steps(1, 5, 1, 4s) as sweep
  think_time: none
data:
  images: {{source: builtin:text-cards, count: 4}}
requests:
  moderate: {{prompt: "Is this image safe?", image: "{{images}}", max_tokens: 4}}
slo:
  - error_rate < 2%
"""
# < 2%, not < 1%: the sweep sends about 300 requests, and 0 errors bound the rate below 1% at 95% only from
# 299 (a run one request short was inconclusive); below 2% from 149.


def test_step_sweep_finds_the_knee_the_server_limit_predicts(tmp_path: Path) -> None:
    path = tmp_path / "knee.yaml"
    path.write_text(SCENARIO)
    code = main(["run", str(path), "--engine", "k6", "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    analysis = json.loads((tmp_path / "run" / "summary.json").read_text())["analysis"]
    levels = {lv["level"]: lv for lv in analysis["levels"]}
    assert sorted(levels) == [1, 2, 3, 4, 5]
    knee = analysis["knee"]
    assert knee["found"] and knee["level"] == PREDICTED_KNEE, knee["explanation"]
    # the two-segment fit puts the bend there too, and the flat part is no accident of noise
    assert abs(knee["fit"]["knee_level"] - PREDICTED_KNEE) <= 0.5 and knee["fit"]["p_value"] < 0.01
    # below the knee throughput grows with users; past it, it holds while latency climbs
    assert levels[2]["throughput"] > 1.6 * levels[1]["throughput"]
    assert levels[5]["throughput"] < 1.2 * levels[2]["throughput"]
    assert levels[5]["p50"] > 1.8 * levels[2]["p50"]
    # the server's queue shows it (host CPU may come first when other tests share the cores)
    queue = next(s for s in analysis["signals"] if s["component"] == "target: request queue")
    assert queue["level"] >= PREDICTED_KNEE
