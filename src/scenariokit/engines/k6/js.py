"""JavaScript literals for values from a scenario: data, never code (every k6 script is built from them)."""

from __future__ import annotations

import json
from typing import Any


def js_literal(value: Any) -> str:
    """A JavaScript literal for a JSON value that is safe anywhere in a script (even inside <script>).

    `ensure_ascii` escapes every non-ASCII character (U+2028/2029 included) and control character; `<`, `>`
    and `&` only ever occur inside strings in JSON text, where `\\u003c` etc. mean the same.
    """
    if _has_proto_key(value):
        return _js_container(value)
    text = json.dumps(value, ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def js_key(key: str) -> str:
    """An object key: `__proto__` written as a computed key, which makes an own property (written plainly
    in an object literal it would set the object's prototype, and the key would never be sent)."""
    return f"[{js_literal(key)}]" if key == "__proto__" else js_literal(key)


def _has_proto_key(value: Any) -> bool:
    if isinstance(value, dict):
        return "__proto__" in value or any(_has_proto_key(item) for item in value.values())
    return isinstance(value, list) and any(_has_proto_key(item) for item in value)


def _js_container(value: Any) -> str:
    """js_literal's output, built piece by piece so that keys go through js_key."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{js_key(key)}: {js_literal(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(js_literal(item) for item in value) + "]"
    return js_literal(value)


def comment_safe(text: str) -> str:
    """Printable ASCII only (anything else as `?`): safe in a `//` comment, which a line terminator ends."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def number(value: float) -> str:
    """A number as k6 and JavaScript read it: 500, 0.995, 1e-06 (12 significant digits, no -0)."""
    text = format(value, ".12g")
    return "0" if text == "-0" else text
