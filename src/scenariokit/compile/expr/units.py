"""Units: what the lexer's quantity tokens mean in SI units, and `format_duration` to print them back.

Durations: `us` (or `µs`), `ms`, `s`, `m` (or `min`), `h`, combined largest first (`1h30m`, `1m30.5s`).
Rates: `/s` (or `/sec`), `/m` (or `/min`), `/h`. Percentages: `%`. Everything becomes seconds, per-second
rates and fractions.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Literal

DURATION_UNITS: dict[str, float] = {
    "h": 3600.0,
    "m": 60.0,
    "min": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
}
# Largest first; a duration's parts must go strictly down this order (`1m30s`, not `30s1m` or `1s1s`).
_DURATION_RANK = {"h": 0, "m": 1, "min": 1, "s": 2, "ms": 3, "us": 4, "µs": 4}
RATE_UNITS: dict[str, float] = {"s": 1.0, "sec": 1.0, "m": 1 / 60, "min": 1 / 60, "h": 1 / 3600}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|min|h|m|s)")
_UNIT_AFTER_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(.*)", re.S)

# A growth's amount (`5MB/h`: decimal kB, MB, GB; binary KiB, MiB, GiB) and its time (`/h` or `/d`).
BYTE_UNITS: dict[str, float] = {
    "B": 1.0,
    "kB": 1e3,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 1024.0,
    "MiB": 1024.0**2,
    "GiB": 1024.0**3,
}
GROWTH_PER: dict[str, float] = {"h": 1.0, "d": 1 / 24}  # to per hour
_GROWTH = re.compile(r"(\d+(?:\.\d+)?)(%|[A-Za-z]+)/(h|d)")

QuantityKind = Literal["duration", "rate", "percent", "number", "percent_growth", "byte_growth", "byte_rate"]
KIND_NAMES: dict[QuantityKind, str] = {
    "duration": "a duration",
    "rate": "a rate",
    "percent": "a percentage",
    "number": "a plain number",
    "percent_growth": "a relative growth",
    "byte_growth": "a memory growth",
    "byte_rate": "a bandwidth",
}
UNITS_HELP = (
    "durations take us, ms, s, m or h (`1m30s`); rates /s, /m or /h (`50/s`); percentages % (`0.5%`); "
    "growths %/h or bytes per hour or day (`10%/h`, `5MB/h`, `1GiB/d`); bandwidths bytes per second "
    "(`100KB/s`)"
)


class UnitError(ValueError):
    """A quantity token that is not well-formed; `message` and `hint` are for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Quantity:
    """A number with its kind, converted to SI (seconds, per second, fraction), and where it was written."""

    kind: QuantityKind
    value: float
    text: str
    start: int = 0
    end: int = 0

    @property
    def number_text(self) -> str:
        """The digits as written, without the unit: `500` for `500ms`."""
        match = re.match(r"-?\d+(?:\.\d+)?", self.text)
        return match.group(0) if match else self.text


def quantity(token_type: str, text: str, start: int = 0) -> Quantity:
    """Classify one lexed quantity (token type DURATION, RATE, PERCENT, NUMBER or BAD_QUANTITY)."""
    kind = token_type.rsplit("__", 1)[-1]  # imported terminals may be namespaced (calls__DURATION)
    end = start + len(text)
    if kind == "BAD_QUANTITY":
        unit = _UNIT_AFTER_NUMBER.match(text)
        suffix = unit.group(1) if unit else text
        raise UnitError(f"unknown unit `{suffix}` in `{text}`", UNITS_HELP)
    negative = text.startswith("-")
    body = text[1:] if negative else text
    if kind == "DURATION":
        value = _duration_value(body)
        result = Quantity("duration", value, text, start, end)
    elif kind == "RATE":
        number, unit = body.split("/", 1)
        result = Quantity("rate", float(number) * RATE_UNITS[unit], text, start, end)
    elif kind == "PERCENT":
        result = Quantity("percent", float(body[:-1]) / 100, text, start, end)
    elif kind == "NUMBER":
        result = Quantity("number", float(body), text, start, end)
    elif kind == "GROWTH":
        result = _growth(text, start, end)
    elif kind == "BYTE_RATE":
        amount = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)/(?:s|sec)", body)
        assert amount is not None, text  # the lexer's BYTE_RATE pattern
        result = Quantity("byte_rate", float(amount.group(1)) * BYTE_UNITS[amount.group(2)], text, start, end)
    else:
        raise AssertionError(token_type)
    if not math.isfinite(result.value):
        raise UnitError(f"`{text}` is too large")
    # a growth may be negative (`throughput_trend > -5%/h`): the SLO knows whether that means anything
    if negative and result.value != 0 and kind != "GROWTH":
        raise UnitError(f"`{text}` is negative", "durations, rates, levels and thresholds are never below 0")
    return result


def _growth(text: str, start: int, end: int) -> Quantity:
    """`10%/h` -> 0.1 per hour; `5MB/h` -> 5e6 bytes per hour; `-2%/d` -> -0.02/24 per hour."""
    match = _GROWTH.fullmatch(text.lstrip("-"))
    assert match is not None, text  # the lexer's GROWTH pattern
    number, amount, per = match.groups()
    sign = -1.0 if text.startswith("-") else 1.0
    if amount == "%":
        return Quantity("percent_growth", sign * float(number) / 100 * GROWTH_PER[per], text, start, end)
    return Quantity(
        "byte_growth", sign * float(number) * BYTE_UNITS[amount] * GROWTH_PER[per], text, start, end
    )


def _duration_value(body: str) -> float:
    parts = _DURATION_PART.findall(body)
    ranks = [_DURATION_RANK[unit] for _, unit in parts]
    total = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
    if any(a >= b for a, b in itertools.pairwise(ranks)):
        fix = format_duration(total) if math.isfinite(total) else "1h30m"
        raise UnitError(f"`{body}`: write a duration's units largest first, each once", f"write {fix}")
    return total


def format_duration(seconds: float) -> str:
    """Seconds as the shortest duration text both our parser and k6 (Go) read: 90 -> 1m30s, 0.5 -> 500ms.

    Rounded to the microsecond. Sub-second values use ms or us; longer ones h, m and s, with a
    decimal fraction of a second when needed (`1m30.25s`).
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    micros = round(seconds * 1_000_000)
    if micros == 0:
        return "0s"
    if micros < 1_000_000:
        if micros % 1000 == 0:
            return f"{micros // 1000}ms"
        if micros < 1000:
            return f"{micros}us"
        return f"{micros // 1000}.{micros % 1000:03d}".rstrip("0") + "ms"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    whole, frac = divmod(rest, 1_000_000)
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if minutes else ""
    if whole or frac:
        text += f"{whole}.{frac:06d}".rstrip("0") + "s" if frac else f"{whole}s"
    return text


def format_rate(per_second: float) -> str:
    """A per-second rate as text our parser reads back: 50 -> 50/s, 0.5 -> 0.5/s (no exponent notation)."""
    if not math.isfinite(per_second) or per_second < 0:
        raise ValueError(f"cannot format {per_second!r} as a rate")
    return _plain_number(per_second) + "/s"


def _plain_number(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"
