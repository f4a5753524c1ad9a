"""The embedded model server over real HTTP on loopback: answers, streams, metrics, bad input, overload.

One server (two worker processes) is shared by the module; it starts in a few seconds.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import matplotlib
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from scenariokit.compile.cards import text_cards
from scenariokit_server.launcher import ServerHandle, start_server

pytestmark = pytest.mark.engine
CARD = text_cards(3)[1]
CARD_URL = "data:image/png;base64," + base64.b64encode(CARD.png).decode()
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # ships with matplotlib


@pytest.fixture(scope="module")
def server() -> Iterator[ServerHandle]:
    with start_server(workers=2, max_in_flight=2, max_queue=4) as handle:
        yield handle


def chat(image_url: str = CARD_URL, **extra: Any) -> dict[str, Any]:
    return {
        "model": "ocr",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Read the text."},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
        **extra,
    }


def metric_values(server: ServerHandle) -> dict[str, float]:
    text = httpx.get(f"{server.base_url}/metrics").text
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_health_and_models(server: ServerHandle) -> None:
    assert httpx.get(f"{server.base_url}/health").json()["status"] == "ok"
    models = httpx.get(f"{server.base_url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["ocr", "classify", "moderation"]


def test_chat_reads_the_printed_text_of_a_card(server: ServerHandle) -> None:
    body = httpx.post(f"{server.base_url}/v1/chat/completions", json=chat(), timeout=30).json()
    assert body["object"] == "chat.completion"
    assert " ".join(body["choices"][0]["message"]["content"].split()) == CARD.text
    assert body["usage"]["completion_tokens"] == len(CARD.text.split())


def test_streamed_chat_sends_sse_chunks_usage_and_done(server: ServerHandle) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        timeout=30,
        json=chat(stream=True, stream_options={"include_usage": True}),
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == CARD.text
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == len(CARD.text.split())
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)


def test_max_tokens_truncates_with_finish_reason_length(server: ServerHandle) -> None:
    body = httpx.post(f"{server.base_url}/v1/chat/completions", json=chat(max_tokens=1), timeout=30).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == CARD.text.split()[0]


def test_rest_ocr_and_identify(server: ServerHandle) -> None:
    ocr = httpx.post(
        f"{server.base_url}/api/v1/ocr",
        timeout=30,
        json={"image_base64": base64.b64encode(CARD.png).decode()},
    ).json()
    assert ocr["text"] == CARD.text
    assert all(len(line["box"]) == 4 and 0 < line["confidence"] <= 1 for line in ocr["lines"])


def test_rest_identify_names_what_a_photo_shows(server: ServerHandle) -> None:
    photo = base64.b64encode(GRACE_HOPPER.read_bytes()).decode()  # a real photo: a woman in naval uniform
    identify = f"{server.base_url}/api/v1/identify"
    top5 = httpx.post(identify, json={"image_base64": photo, "threshold": 0.0}, timeout=30).json()
    assert top5["model"] == "classify" and len(top5["labels"]) == 5
    scores = [label["score"] for label in top5["labels"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert "military uniform" in [label["label"] for label in top5["labels"]]
    confident = httpx.post(identify, json={"image_base64": photo, "threshold": 0.2}, timeout=30).json()
    assert all(label["score"] >= 0.2 for label in confident["labels"]) and len(confident["labels"]) < 5
    body = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={**chat("data:image/jpeg;base64," + photo), "model": "classify"},
        timeout=30,
    ).json()
    assert body["choices"][0]["message"]["content"] == top5["labels"][0]["label"]


def test_rest_moderate(server: ServerHandle) -> None:
    moderate = f"{server.base_url}/api/v1/moderate"
    everything = httpx.post(moderate, json={"image_url": CARD_URL, "threshold": 0.0}, timeout=30).json()
    scores = {label["label"]: label["score"] for label in everything["labels"]}
    assert set(scores) == {"sfw", "nsfw"} and sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert scores["sfw"] > 0.9  # a white card with black text is safe
    confident = httpx.post(moderate, json={"image_url": CARD_URL, "threshold": 0.5}, timeout=30).json()
    assert [label["label"] for label in confident["labels"]] == ["sfw"]
    body = httpx.post(
        f"{server.base_url}/v1/chat/completions", json={**chat(), "model": "moderation"}, timeout=30
    ).json()
    assert body["choices"][0]["message"]["content"] == "sfw"


def test_metrics_parse_and_counters_move(server: ServerHandle) -> None:
    key = 'vllm:request_success_total{"finished_reason": "stop", "model_name": "ocr"}'
    before = metric_values(server).get(key, 0.0)
    httpx.post(f"{server.base_url}/v1/chat/completions", json=chat(), timeout=30)
    after = metric_values(server)
    assert after[key] == before + 1
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        assert any(k.startswith(name) for k in after)
    assert any(k.startswith("vllm:e2e_request_latency_seconds_count") for k in after)
    assert any(k.startswith("process_resident_memory_bytes") for k in after)


def png_of(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


BAD_INPUT = [
    ("empty messages", {"model": "ocr", "messages": []}, 400),
    ("messages not a list", {"model": "ocr", "messages": "hi"}, 400),
    ("no image", {"model": "ocr", "messages": [{"role": "user", "content": "Read the text."}]}, 400),
    ("bad base64", chat("data:image/png;base64,%%%notbase64"), 400),
    ("not an image", chat("data:image/png;base64," + base64.b64encode(b"hello world").decode()), 400),
    ("http url refused", chat("http://127.0.0.1:9/cat.png"), 400),
    ("file url refused", chat("file:///etc/passwd"), 400),
    ("too many pixels", chat("data:image/png;base64," + png_of(8000, 6000)), 400),
    ("unknown model", {**chat(), "model": "no-such-model"}, 404),
    ("model not a string", {**chat(), "model": 7}, 400),
    ("max_tokens wrong type", chat(max_tokens="many"), 400),
    ("stream wrong type", chat(stream="yes"), 400),
    ("content part not an object", {"model": "ocr", "messages": [{"role": "user", "content": [3]}]}, 400),
    ("body is a list", [1, 2], 400),
]


@pytest.mark.parametrize(("case", "body", "status"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_clear_4xx(server: ServerHandle, case: str, body: Any, status: int) -> None:
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status and error["message"] and error["type"]


def test_body_that_is_not_json_is_a_400(server: ServerHandle) -> None:
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_oversized_image_is_refused_before_decoding(server: ServerHandle) -> None:
    huge = base64.b64encode(b"\x89PNG" + b"\0" * (11 * 1024 * 1024)).decode()
    response = httpx.post(f"{server.base_url}/api/v1/ocr", json={"image_base64": huge}, timeout=30)
    assert response.status_code == 400 and "limit" in response.json()["error"]["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "model",
                        "messages",
                        "content",
                        "type",
                        "image_url",
                        "url",
                        "role",
                        "stream",
                        "max_tokens",
                    ]
                ),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_fuzzed_bodies_never_get_a_5xx(server: ServerHandle, body: Any) -> None:
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code < 500 or response.status_code == 503, response.text


def test_overload_gets_fast_429s_and_the_server_stays_healthy(server: ServerHandle) -> None:
    rss_before = psutil.Process(server.pid).memory_info().rss
    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        futures = [
            pool.submit(httpx.post, f"{server.base_url}/v1/chat/completions", json=chat(), timeout=60)
            for _ in range(40)
        ]
        responses = [f.result() for f in futures]
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 2 and statuses.count(429) >= 20
    assert set(statuses) <= {200, 429}
    rejected = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "1" for r in rejected)
    assert max(r.elapsed.total_seconds() for r in rejected) < 2.0  # refused at once, not after a wait
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert psutil.Process(server.pid).memory_info().rss < rss_before + 200 * 2**20


def test_every_builtin_card_reads_back_exactly(server: ServerHandle) -> None:
    cards = text_cards(24)
    assert len({c.text for c in cards}) == 24 and all(
        c.png == d.png for c, d in zip(cards, text_cards(24), strict=True)
    )

    def read(card: Any) -> str:
        body = {"image_base64": base64.b64encode(card.png).decode()}
        return httpx.post(f"{server.base_url}/api/v1/ocr", json=body, timeout=60).json()["text"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(read, cards))
    assert [" ".join(a.split()) for a in answers] == [c.text for c in cards]


def test_sigterm_lets_in_flight_requests_finish_and_the_port_restarts_clean() -> None:
    handle = start_server(workers=1)
    port = handle.port
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(httpx.post, f"{handle.base_url}/v1/chat/completions", json=chat(), timeout=30)
        time.sleep(0.2)  # the request is in the model now
        handle.process.send_signal(signal.SIGTERM)
        response = future.result()
    assert response.status_code == 200
    assert " ".join(response.json()["choices"][0]["message"]["content"].split()) == CARD.text
    # uvicorn re-raises the signal after its graceful shutdown, so supervisors see why it stopped
    assert handle.process.wait(30) in (0, -signal.SIGTERM)
    with start_server(port, workers=1) as again:
        assert httpx.get(f"{again.base_url}/health").status_code == 200
