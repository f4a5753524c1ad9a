"""Hand-built IR scenarios for backend tests that must not depend on the front end.

As `lower` would build them: each request's headers are all it sends (the target's merged in, and a
Content-Type for a JSON body), and its templates are parsed (`{images}` reads the default field).
"""

from __future__ import annotations

from scenariokit.compile.ir import (
    DataRef,
    Dataset,
    Distribution,
    EnvRef,
    Expect,
    LiteralText,
    LoadProfile,
    RequestTemplate,
    Scenario,
    Slo,
    Stage,
    Target,
    Template,
    Window,
    merge_headers,
)

AUTH_SOURCE = (("Authorization", "Bearer ${env:API_KEY}"),)  # the target's headers, as written
JSON_HEADERS = merge_headers(
    (("Authorization", Template((LiteralText("Bearer "), EnvRef("API_KEY")))),), json_body=True
)
IMAGE = Template((DataRef("images", "data_url"),))  # `{images}`

CARDS = Dataset(
    name="images",
    source="builtin:text-cards",
    fields=("data_url", "base64", "text", "mime"),
    default_field="data_url",
    records=(
        {
            "data_url": "data:image/png;base64,iVBORw0KGgo=",
            "base64": "iVBORw0KGgo=",
            "text": "HOLIDAY SALE 2026",
            "mime": "image/png",
        },
        {
            "data_url": "data:image/png;base64,AAAA",
            "base64": "AAAA",
            "text": "OPEN 24 HOURS",
            "mime": "image/png",
        },
    ),
)


def chat_message(prompt: str) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": prompt},
                {"type": "image_url", "image_url": {"url": IMAGE}},
            ],
        }
    ]


def closed_chat_scenario(base_url: str = "http://127.0.0.1:8000") -> Scenario:
    """Closed model, chat target, a streamed request, a checked OCR request and a deliberately bad one."""
    return Scenario(
        name="chat-mix",
        source_path="scenarios/chat-mix.yaml",
        source_sha256="0" * 64,
        target=Target(
            kind="openai-chat",
            base_url=base_url,
            model="ocr",
            headers=AUTH_SOURCE,
        ),
        load=LoadProfile(
            model="closed",
            stages=(
                Stage("ramp", "ramp", 2.0, 0, 4),
                Stage("hold", "hold", 3.0, 4, 4),
                Stage("spike", "spike", 0.0, 4, 8),
                Stage("spike", "spike", 2.0, 8, 8),
                Stage("spike", "spike", 0.0, 8, 4),
                Stage("ramp", "ramp#2", 1.0, 4, 0),
            ),
            think_time=Distribution("uniform", (("low", 0.01), ("high", 0.05))),
        ),
        requests=(
            RequestTemplate(
                name="identify",
                weight=3,
                method="POST",
                path="/v1/chat/completions",
                headers=JSON_HEADERS,
                json_body={
                    "model": "ocr",
                    "messages": chat_message("Name the main object."),
                    "max_tokens": 16,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                chat=True,
                stream=True,
            ),
            RequestTemplate(
                name="ocr",
                weight=1,
                method="POST",
                path="/v1/chat/completions",
                headers=JSON_HEADERS,
                json_body={"model": "ocr", "messages": chat_message("Read the text."), "max_tokens": 64},
                chat=True,
                expect=Expect(contains=Template((DataRef("images", "text"),))),
            ),
            RequestTemplate(
                name="empty-image",
                weight=0.1,
                method="POST",
                path="/v1/chat/completions",
                headers=JSON_HEADERS,
                json_body={"model": "ocr", "messages": []},
                expect=Expect(status=(400,)),
            ),
        ),
        datasets=(CARDS,),
        slos=(
            Slo("p99(latency) < 500ms", "latency", "p99", "<", 0.5),
            Slo("p95(ttft) < 300ms for identify", "ttft", "p95", "<", 0.3, requests=("identify",)),
            Slo("error_rate < 0.5%", "error_rate", None, "<", 0.005),
            Slo("throughput >= 50/s", "throughput", None, ">=", 50.0),
            Slo("p99(latency) < 1s during spike", "latency", "p99", "<", 1.0, window=Window(stage="spike")),
        ),
        engine="locust",
    )


def open_rest_scenario(base_url: str = "http://127.0.0.1:8000") -> Scenario:
    """Open model (arrival rate), plain REST target, constant think time ignored by the open model."""
    return Scenario(
        name="rest-open",
        source_path="scenarios/rest-open.yaml",
        source_sha256="1" * 64,
        target=Target(kind="http", base_url=base_url),
        load=LoadProfile(
            model="open",
            stages=(Stage("ramp", "ramp", 2.0, 5, 20), Stage("hold", "hold", 4.0, 20, 20)),
            pre_allocated_users=10,
            max_users=50,
        ),
        requests=(
            RequestTemplate(
                name="identify",
                weight=3,
                method="POST",
                path="/api/v1/identify",
                headers=merge_headers(json_body=True),
                json_body={"image_url": IMAGE, "threshold": 0.8},
            ),
            RequestTemplate(
                name="ocr",
                weight=1,
                method="POST",
                path="/api/v1/ocr",
                headers=merge_headers(json_body=True),
                json_body={"image_base64": Template((DataRef("images", "base64"),))},
            ),
            RequestTemplate(name="health", weight=1, method="GET", path="/health"),
        ),
        datasets=(CARDS,),
        slos=(
            Slo("p95(latency) < 200ms for identify", "latency", "p95", "<", 0.2, requests=("identify",)),
            Slo("dropped_iterations <= 0", "dropped_iterations", None, "<=", 0.0),
        ),
        engine="k6",
    )
