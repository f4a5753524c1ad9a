"""Lowering: models -> IR. Chat bodies, REST and raw requests, data sets, Little's law, SLO checks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from scenariokit.compile.ir import (
    EnvRef,
    JsonTemplate,
    LiteralText,
    Monitoring,
    MonitorTarget,
    Scenario,
    Template,
)
from scenariokit.compile.pipeline import load_scenario
from scenariokit.run.orchestrate import RunOptions, uses_prometheus
from scenariokit.run.prometheus import config as prometheus_config

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def written(value: JsonTemplate) -> object:
    """A text or JSON value with each template written back as a string (braces of literal text as is)."""
    if isinstance(value, Template):
        return "".join(
            p.text if isinstance(p, LiteralText) else f"${{env:{p.name}}}" if isinstance(p, EnvRef) else
            f"{{{p.dataset}.{p.field}}}"
            for p in value.parts
        )  # fmt: skip
    if isinstance(value, dict):
        return {k: written(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(written(v) for v in value)
    return value


def scenario_from(tmp_path: Path, text: str) -> Scenario:
    (tmp_path / "imgs").mkdir(exist_ok=True)
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    (tmp_path / "imgs" / "a.txt").write_text("HELLO\n")
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path).scenario


CHAT = """\
version: 1
name: chat
target: {kind: openai-chat, base_url: "http://127.0.0.1:9/", model: ocr, headers: {X-Key: "${env:K}"}}
load: {curve: "ramp(0, 4, 10s) -> hold(20s)", think_time: "uniform(1s, 3s)"}
data: {images: ./imgs}
requests:
  read: {weight: 2, system: "be brief", prompt: "Read.", image: "{images}", max_tokens: 8, temperature: 0,
         stream: true, expect: {contains: "{images.text}"}}
  bad: {weight: 0.5, raw: {json: {model: ocr, messages: []}, headers: {X-Extra: "1"}},
        expect: {status: [400, 422]}}
slo: ["p95(ttft) < 1s for read", "error_rate < 1%"]
"""


def test_chat_request_becomes_an_openai_body(tmp_path: Path) -> None:
    s = scenario_from(tmp_path, CHAT)
    read = s.requests[0]
    assert (read.method, read.path, read.chat, read.stream) == ("POST", "/v1/chat/completions", True, True)
    assert written(read.json_body) == {
        "model": "ocr",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read."},
                    {"type": "image_url", "image_url": {"url": "{images.data_url}"}},
                ],
            },
        ],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert written(read.expect.contains) == "{images.text}"
    assert read.datasets == ("images",)
    assert s.target.base_url == "http://127.0.0.1:9"


def test_raw_request_is_sent_as_written_with_merged_headers(tmp_path: Path) -> None:
    bad = scenario_from(tmp_path, CHAT).requests[1]
    assert (bad.method, bad.path, bad.chat) == ("POST", "/v1/chat/completions", False)
    assert bad.json_body == {"model": "ocr", "messages": []}
    # the target's headers, the request's own, and the Content-Type of a JSON body: all it sends
    assert written(bad.headers) == (
        ("X-Key", "${env:K}"),
        ("X-Extra", "1"),
        ("Content-Type", "application/json"),
    )
    assert bad.datasets == ()
    assert bad.expect.status == (400, 422)


HEADER_MERGE = """\
version: 1
name: merge
target: {kind: http, base_url: "http://127.0.0.1:9", headers: {Authorization: "Bearer ${env:K}", X-T: t}}
load: {curve: "hold(1, 5s)"}
requests:
  own-auth: {path: /a, headers: {authorization: Bearer own}}
  own-type: {path: /b, json: {x: 1}, headers: {Content-type: application/vnd.api+json}}
  text: {path: /c, body: hi}
  raw: {headers: {x-t: request}, raw: {path: /d, json: {}, headers: {X-T: raw, CONTENT-TYPE: text/plain}}}
slo: ["error_rate < 1%"]
"""


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        # the request's header replaces the target's of the same name in any case, in its place, spelled
        # as the request spells it
        ("own-auth", (("authorization", "Bearer own"), ("X-T", "t"))),
        # a content type in any spelling keeps the JSON body's default out
        (
            "own-type",
            (
                ("Authorization", "Bearer ${env:K}"),
                ("X-T", "t"),
                ("Content-type", "application/vnd.api+json"),
            ),
        ),
        # a text body gets no Content-Type
        ("text", (("Authorization", "Bearer ${env:K}"), ("X-T", "t"))),
        # raw: headers override the request's, which override the target's
        ("raw", (("Authorization", "Bearer ${env:K}"), ("X-T", "raw"), ("CONTENT-TYPE", "text/plain"))),
    ],
)
def test_headers_merge_case_insensitively(
    tmp_path: Path, name: str, headers: tuple[tuple[str, str], ...]
) -> None:
    (request,) = [r for r in scenario_from(tmp_path, HEADER_MERGE).requests if r.name == name]
    assert written(request.headers) == headers


def test_templates_are_parsed_into_parts_that_point_at_the_yaml(tmp_path: Path) -> None:
    read = scenario_from(tmp_path, CHAT).requests[0]
    (auth,) = [value for name, value in read.headers if name == "X-Key"]
    assert isinstance(auth, Template) and [type(p) for p in auth.parts] == [EnvRef]
    assert (auth.parts[0].span.line, auth.parts[0].span.column) == (3, 92)
    url = read.json_body["messages"][1]["content"][1]["image_url"]["url"]  # type: ignore[index]
    assert isinstance(url, Template)
    ((ref,),) = [url.parts]
    assert (ref.dataset, ref.field) == ("images", "data_url")  # `{images}`: the default field, named
    assert (ref.span.line, ref.span.column) == (7, 66)
    # a string without a reference is plain text, its braces unescaped
    assert read.json_body["messages"][0]["content"] == "be brief"  # type: ignore[index]


def test_folder_data_set_carries_images_and_known_answers(tmp_path: Path) -> None:
    (images,) = scenario_from(tmp_path, CHAT).datasets
    (record,) = images.records
    assert record["data_url"].startswith("data:image/png;base64,")
    assert base64.b64decode(record["base64"]) == PNG
    assert record["text"] == "HELLO"
    assert images.default_field == "data_url"


def test_closed_load_and_think_time(tmp_path: Path) -> None:
    load = scenario_from(tmp_path, CHAT).load
    assert load.model == "closed"
    assert [(st.start, st.end, st.duration_s) for st in load.stages] == [(0, 4, 10), (4, 4, 20)]
    assert load.think_time.mean_s == 2.0


def test_open_model_sizes_users_by_littles_law(tmp_path: Path) -> None:
    text = CHAT.replace(
        '"ramp(0, 4, 10s) -> hold(20s)", think_time: "uniform(1s, 3s)"',
        '"ramp(1/s, 10/s, 10s)", model: open, expected_latency: 2s',
    )
    load = scenario_from(tmp_path, text).load
    assert load.model == "open"
    assert load.pre_allocated_users == 24  # 10/s x 2 s x 1.2
    assert load.max_users == 80  # 10/s x 2 s x 4


def test_open_model_warns_that_think_time_is_ignored(tmp_path: Path) -> None:
    text = CHAT.replace("think_time:", "model: open, think_time:")
    path = tmp_path / "w.yaml"
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    path.write_text(text)
    warnings = load_scenario(path).warnings
    assert any("think time is ignored" in w.message for w in warnings)


def test_literal_secret_in_authorization_header_is_a_warning(tmp_path: Path) -> None:
    text = CHAT.replace('X-Key: "${env:K}"', "Authorization: Bearer sk-123")
    path = tmp_path / "w.yaml"
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    path.write_text(text)
    (warning,) = load_scenario(path).warnings
    assert "literal secret" in warning.message and "${env:API_KEY}" in (warning.hint or "")


REST = """\
version: 1
name: rest
target: {kind: http, base_url: "http://127.0.0.1:9", embedded: {workers: 1}}
load: {curve: "hold(2, 5s)"}
requests:
  health: {path: /health}
  post: {path: /api/v1/ocr, json: {image_base64: "x", n: [1, 2]}}
  text: {method: PUT, path: /t, body: "{{literal}}", headers: {Content-Type: text/plain}}
slo: ["p99(latency) < 1s during hold", "throughput >= 0.5/s"]
"""


def test_rest_requests_pick_methods_and_bodies(tmp_path: Path) -> None:
    s = scenario_from(tmp_path, REST)
    health, post, text = s.requests
    assert (health.method, health.path, health.json_body, health.text_body) == ("GET", "/health", None, None)
    assert (post.method, post.json_body) == ("POST", {"image_base64": "x", "n": [1, 2]})
    assert (text.method, text.text_body, text.chat) == ("PUT", "{literal}", False)
    assert s.target.embedded_options == (("workers", 1),)
    assert [slo.metric for slo in s.slos] == ["latency", "throughput"]
    assert s.slos[0].window is not None and s.slos[0].window.stage == "hold"


@pytest.mark.parametrize("weights", [(3, 1), (0.5, 0.25)])
def test_weights_keep_their_ratio(tmp_path: Path, weights: tuple[float, float]) -> None:
    text = REST.replace(
        "health: {path: /health}", f"health: {{weight: {weights[0]}, path: /health}}"
    ).replace("post: {path:", f"post: {{weight: {weights[1]}, path:".replace("{{", "{"))
    s = scenario_from(tmp_path, text)
    assert s.requests[0].weight / s.requests[1].weight == pytest.approx(weights[0] / weights[1])


def test_monitoring_section_lowers_to_the_ir(tmp_path: Path) -> None:
    assert scenario_from(tmp_path, CHAT).monitoring == Monitoring(prometheus=False, interval_s=1.0)
    s = scenario_from(tmp_path, CHAT + "monitoring: {prometheus: true, interval: 500ms}\n")
    assert s.monitoring == Monitoring(prometheus=True, interval_s=0.5)


def test_monitoring_targets_lower_with_their_roles_and_default_names(tmp_path: Path) -> None:
    section = (
        "monitoring:\n  targets:\n"
        "    - {url: http://127.0.0.1:9100/metrics, role: node}\n"
        "    - {url: https://model-host:8001/metrics, role: process, name: server}\n"
    )
    assert scenario_from(tmp_path, CHAT + section).monitoring.targets == (
        MonitorTarget(name="node-1", url="http://127.0.0.1:9100/metrics", role="node"),
        MonitorTarget(name="server", url="https://model-host:8001/metrics", role="process"),
    )


@pytest.mark.parametrize(
    ("section", "flag", "expected"),
    [(False, None, False), (True, None, True), (True, "builtin", False), (False, "prometheus", True)],
)
def test_the_command_line_wins_over_the_monitoring_section(
    tmp_path: Path, section: bool, flag: str | None, expected: bool
) -> None:
    s = scenario_from(tmp_path, CHAT + f"monitoring: {{prometheus: {str(section).lower()}}}\n")
    assert uses_prometheus(s, RunOptions(monitor=flag)) is expected


def test_prometheus_scrapes_at_the_sampling_interval() -> None:
    assert prometheus_config(0.5)["global"] == {
        "scrape_interval": "500ms",
        "evaluation_interval": "500ms",
    }
