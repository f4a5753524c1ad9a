"""`serve: http` data sets (issue 19): lowered to `${env:SCENARIOKIT_DATA_URL}` + each image's path, and
served by the runner's image server (run/images.py) on 127.0.0.1, over real HTTP: the table's paths only,
no listing, no escape, bounded connections. The run that sends the guide's `image_url` bodies through it to
the embedded server is in tests/test_guide_workflow.py."""

from __future__ import annotations

import base64
import http.client
import socket
import time
from pathlib import Path

import httpx
import pytest

from scenariokit.compile.diagnostics import ScenarioError
from scenariokit.compile.ir import DATA_URL_ENV, DataRef, EnvRef, Scenario, Template
from scenariokit.compile.pipeline import load_scenario
from scenariokit.run.images import MAX_CONNECTIONS, read_stats, serving_images

SCENARIO = """\
version: 1
name: served
target: {{kind: http, base_url: embedded}}
load: {{curve: "hold(1, 5s)"}}
data:
  images: {data}
requests:
  identify: {{method: POST, path: /api/identify, json: {{image_url: "{{images.url}}"}}}}
"""
SERVED = "{source: builtin:text-cards, count: 3, serve: http}"


def logs(run_dir: Path) -> Path:
    (run_dir / "logs").mkdir(exist_ok=True)
    return run_dir / "logs"


def compiled(tmp_path: Path, data: str = SERVED) -> Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(data=data))
    return load_scenario(path).scenario


def test_a_served_sets_url_renders_the_image_servers_origin_and_the_images_path(tmp_path: Path) -> None:
    scenario = compiled(tmp_path)
    (dataset,) = scenario.datasets
    assert dataset.served and "url" in dataset.fields
    assert [r["url"] for r in dataset.records] == [f"/images/{i}/card-{i:03d}.png" for i in range(3)]
    body = scenario.requests[0].json_body
    assert isinstance(body["image_url"], Template)
    assert [type(p) for p in body["image_url"].parts] == [EnvRef, DataRef]
    assert body["image_url"].parts[0].name == DATA_URL_ENV


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{source: cases.csv, serve: http}", "has no images to serve"),
        ("{source: with-url.csv, serve: http}", "has a `url` column already"),
        ("{source: builtin:text-cards, serve: ftp}", "serve"),
        ("{source: builtin:text-cards, serve: [http]}", "serve"),
    ],
)
def test_serve_is_refused_where_it_cannot_hold(tmp_path: Path, data: str, message: str) -> None:
    (tmp_path / "cases.csv").write_text("prompt\nhello\n")
    (tmp_path / "card.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "with-url.csv").write_text("image,url\ncard.png,http://example.com/a.png\n")
    with pytest.raises(ScenarioError) as caught:
        compiled(tmp_path, data)
    assert message in str(caught.value)


def test_an_unserved_sets_url_is_an_unknown_field(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="has no field `url`"):
        compiled(tmp_path, "builtin:text-cards")


def test_the_image_server_serves_its_table_and_nothing_else(tmp_path: Path) -> None:
    scenario = compiled(tmp_path)
    cards = {r["url"]: r for r in scenario.datasets[0].records}
    with serving_images(scenario, logs(tmp_path)) as origin:
        assert origin is not None and origin.startswith("http://127.0.0.1:")
        for path, record in cards.items():
            answer = httpx.get(origin + path)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
            assert answer.content == base64.b64decode(record["base64"])
        assert httpx.head(origin + next(iter(cards))).content == b""
        hostile = [
            "/",
            "/images/",
            "/images/0/",
            "/images/0/../1/card-001.png",
            "/images/0/%2e%2e/x",
            "/images/0/card-000.png?x=1",
            "//etc/passwd",
            "/images/0/card-000.png/",
            "/..%2f..%2fetc",
        ]
        for path in hostile:
            conn = http.client.HTTPConnection("127.0.0.1", int(origin.rsplit(":", 1)[1]), timeout=5)
            conn.request("GET", path)  # sent as written: httpx would normalise the dots
            assert conn.getresponse().status == 404, path
            conn.close()
        assert httpx.post(origin + next(iter(cards))).status_code == 501
    stats = read_stats(tmp_path)
    assert stats is not None
    assert (stats.served, stats.not_found, stats.refused) == (4, len(hostile), 0)


def test_the_image_server_closes_connections_past_its_bound(tmp_path: Path) -> None:
    scenario = compiled(tmp_path)
    with serving_images(scenario, logs(tmp_path)) as origin:
        assert origin is not None
        port = int(origin.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS)]
        try:
            time.sleep(0.2)  # each has its thread, waiting for a request line
            with socket.create_connection(("127.0.0.1", port)) as extra:
                extra.settimeout(5)
                extra.sendall(b"GET /images/0/card-000.png HTTP/1.0\r\n\r\n")
                assert extra.recv(100) == b""  # closed unanswered
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(origin + "/images/0/card-000.png").status_code == 200  # the slots came back
    stats = read_stats(tmp_path)
    assert stats is not None and stats.refused == 1


def test_a_scenario_that_serves_nothing_starts_no_server(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(data="builtin:text-cards").replace("{images.url}", "{images}"))
    with serving_images(load_scenario(path).scenario, logs(tmp_path)) as origin:
        assert origin is None
    assert read_stats(tmp_path) is None
