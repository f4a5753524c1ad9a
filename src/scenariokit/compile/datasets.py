"""Data sets a scenario draws request values from, materialized at compile time.

Every record is a flat mapping of strings, so both engines can use it as plain data. Image records carry
`data_url` (the default field: what `{images}` renders to), `base64`, `mime`, `file`, and, where the answer
is known, `text` (the printed text of a card) so a scenario can check correctness under load.
"""

from __future__ import annotations

import base64
import csv
import mimetypes
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
IMAGE_FIELDS = ("id", "data_url", "base64", "mime", "file", "text")
BUILTIN_SETS = ("text-cards",)
MAX_TOTAL_BYTES = 64 * 1024 * 1024


class DatasetError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class LoadedData:
    fields: tuple[str, ...]
    default_field: str
    records: tuple[dict[str, str], ...]


def load_dataset(source: str, base_dir: Path, count: int | None, seed: int) -> LoadedData:
    if source.startswith("builtin:"):
        return _builtin(source.removeprefix("builtin:"), count or 16, seed)
    path = (base_dir / source).resolve()
    if not path.exists():
        raise DatasetError(
            f"data source `{source}` not found (looked in {path})",
            "use `builtin:text-cards`, a folder of images, or a CSV file",
        )
    if path.is_dir():
        return _folder(path, count)
    if path.suffix.lower() == ".csv":
        return _csv(path, count)
    raise DatasetError(f"`{source}` is neither a folder nor a .csv file")


def image_record(index: int, data: bytes, mime: str, file: str, text: str = "") -> dict[str, str]:
    encoded = base64.b64encode(data).decode("ascii")
    return {
        "id": str(index),
        "data_url": f"data:{mime};base64,{encoded}",
        "base64": encoded,
        "mime": mime,
        "file": file,
        "text": text,
    }


def _builtin(name: str, count: int, seed: int) -> LoadedData:
    if name != "text-cards":
        raise DatasetError(f"unknown built-in data set `{name}`", f"built-in sets: {', '.join(BUILTIN_SETS)}")
    from scenariokit.compile.cards import text_cards  # the embedded server renders the cards it can read

    records = tuple(
        image_record(i, card.png, "image/png", f"card-{i:03d}.png", card.text)
        for i, card in enumerate(text_cards(count, seed))
    )
    return LoadedData(IMAGE_FIELDS, "data_url", records)


def _folder(path: Path, count: int | None) -> LoadedData:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
    files = files[:count] if count else files
    _check_size(sum(p.stat().st_size for p in files), path)
    records = tuple(
        image_record(i, p.read_bytes(), _mime(p), p.name, _sidecar_text(p)) for i, p in enumerate(files)
    )
    return LoadedData(IMAGE_FIELDS, "data_url", records)


def _csv(path: Path, count: int | None) -> LoadedData:
    """A CSV's columns become fields; an `image` column naming files adds the image fields."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetError(f"CSV file {path} has no rows", "the first line names the columns")
    rows = rows[:count] if count else rows
    columns = tuple(rows[0].keys())
    if "image" not in columns:
        records = tuple({k: v or "" for k, v in row.items()} for row in rows)
        return LoadedData(columns, columns[0], records)
    images = [(path.parent / row["image"]).resolve() for row in rows]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DatasetError(f"CSV names image files that do not exist: {', '.join(missing[:3])}")
    _check_size(sum(p.stat().st_size for p in images), path)
    records = tuple(
        {
            **{k: v or "" for k, v in row.items()},
            **image_record(i, p.read_bytes(), _mime(p), p.name, row.get("text", "")),
        }
        for i, (row, p) in enumerate(zip(rows, images, strict=True))
    )
    fields = tuple(dict.fromkeys((*columns, *IMAGE_FIELDS)))
    return LoadedData(fields, "data_url", records)


def _mime(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _sidecar_text(path: Path) -> str:
    """The known answer for an image, from `name.txt` beside it, if present."""
    sidecar = path.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""


def _check_size(total: int, path: Path) -> None:
    if total > MAX_TOTAL_BYTES:
        raise DatasetError(
            f"data set {path} is {total / 1e6:.0f} MB; the limit is {MAX_TOTAL_BYTES // 2**20} MiB",
            "use `count:` to take fewer images",
        )
