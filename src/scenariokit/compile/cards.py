"""Deterministic built-in image sets with known answers: cards with printed text for OCR.

Same arguments, same bytes: the phrases are drawn from a fixed list with a seeded generator, drawn in
DejaVu Sans Bold (shipped inside matplotlib, so available offline) and encoded as PNG without metadata.
Text stays well inside the card: text touching an edge is misread by the OCR model.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PHRASES = (
    "HOLIDAY SALE 2026",
    "OPEN 24 HOURS",
    "FREE SHIPPING",
    "GIFT CARDS",
    "EXIT ONLY",
    "NO PARKING",
    "FRESH BREAD",
    "CLOSED SUNDAY",
    "SALE 50 OFF",
    "GATE 12",
    "PLATFORM 4",
    "AISLE 7",
    "FIRE EXIT",
    "MEMBERS ONLY",
    "KEEP LEFT",
    "PUSH",
    "WELCOME",
    "THANK YOU",
    "CASH ONLY",
    "ORDER HERE",
    "PICK UP",
    "SELF CHECKOUT",
    "LOST AND FOUND",
    "INFORMATION",
)
WIDTH, HEIGHT = 640, 160
FONT_SIZE = 40
MARGIN = 40


@dataclass(frozen=True)
class Card:
    text: str
    png: bytes
    width: int
    height: int


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    return ImageFont.truetype(str(path), FONT_SIZE)


def render_card(text: str) -> Card:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=_font())
    if right - left > WIDTH - 2 * MARGIN:
        raise ValueError(f"{text!r} does not fit on a {WIDTH}px card with {MARGIN}px margins")
    x = (WIDTH - (right - left)) // 2 - left
    y = (HEIGHT - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill="black", font=_font())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return Card(text, buffer.getvalue(), WIDTH, HEIGHT)


def text_cards(count: int = 16, seed: int = 0) -> list[Card]:
    """`count` cards; the first len(PHRASES) are distinct phrases in a seeded order, then they repeat."""
    order = list(PHRASES)
    random.Random(seed).shuffle(order)
    return [render_card(order[i % len(order)]) for i in range(count)]
