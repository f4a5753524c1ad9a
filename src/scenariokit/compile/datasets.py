"""Data sets a scenario draws request values from, materialized at compile time.

Every record is a flat mapping of strings, so both engines can use it as plain data. Image records carry
`data_url` (the default field: what `{images}` renders to), `base64`, `mime`, `file`, and, where the answer
is known, `text` (the printed text of a card) so a scenario can check correctness under load.
"""

from __future__ import annotations

import base64
import csv
import io
import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from scenariokit.compile.limits import MAX_CARDS, MAX_DATA_BYTES, MAX_DATA_FILE_BYTES, MAX_DATASET_BYTES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
IMAGE_FIELDS = ("id", "data_url", "base64", "mime", "file", "text")
BUILTIN_SETS = ("text-cards",)
# Pseudo file systems: their files pass for regular ones (with a size of 0) and hold a process's secrets.
_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))
_MIB = 2**20


class DatasetError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class LoadedData:
    fields: tuple[str, ...]
    default_field: str
    records: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class DataRoot:
    """Where data files may come from: `tree` holds every file a data set reads (the scenario's folder, or
    `--data-root`); a relative name starts from `base` (the scenario's folder)."""

    tree: Path
    base: Path
    named: bool = False  # the tree was given as --data-root

    @classmethod
    def of(cls, scenario_dir: Path, data_root: Path | None = None) -> DataRoot:
        base = scenario_dir.resolve()
        return cls(data_root.resolve() if data_root else base, base, data_root is not None)

    def describe(self) -> str:
        return f"the data root ({self.tree})" if self.named else "the scenario's folder"


@dataclass
class DataBudget:
    """What all data sets of one scenario may cost together: two sets naming one big folder read it twice."""

    bytes: int = 0
    cards: int = 0

    def spend_bytes(self, count: int) -> None:
        self.bytes += count
        if self.bytes > MAX_DATA_BYTES:
            raise DatasetError(
                f"the data sets are larger than {MAX_DATA_BYTES // _MIB} MiB together",
                "use `count:` to take fewer records",
            )

    def spend_cards(self, count: int) -> None:
        self.cards += count
        if self.cards > MAX_CARDS:
            raise DatasetError(
                f"the built-in data sets draw more than {MAX_CARDS} cards together",
                "each card takes milliseconds to draw: a few dozen make a varied set (`count:`)",
            )


def load_dataset(
    source: str, root: DataRoot, count: int | None, seed: int, budget: DataBudget | None = None
) -> LoadedData:
    """One data set's records. `budget` is shared by the scenario's data sets (default: this one's own)."""
    budget = budget or DataBudget()
    if source.startswith("builtin:"):
        return _builtin(source.removeprefix("builtin:"), count or 16, seed, budget)
    files = _Files(root, budget)
    path = files.inside(source, root.base)
    if path.is_dir():
        return _folder(files, path, count)
    if path.suffix.lower() == ".csv":
        return _csv(files, path, count)
    if not path.exists():
        raise DatasetError(
            f"data source `{source}` not found in {root.describe()}",
            "use `builtin:text-cards`, a folder of images, or a CSV file",
        )
    raise DatasetError(f"`{source}` is neither a folder nor a .csv file")


class _Files:
    """Reads one data set's files: each inside the root's tree (links resolved), a regular file, at most
    MAX_DATA_FILE_BYTES, and together at most MAX_DATASET_BYTES. A name that leaves the tree gets the same
    error whether or not it exists, so a scenario cannot probe the machine."""

    def __init__(self, root: DataRoot, budget: DataBudget) -> None:
        self.root = root
        self.budget = budget
        self.total = 0

    def inside(self, name: str, start: Path) -> Path:
        """`name`, relative to `start`, as a path inside the tree with its links resolved."""
        outside = DatasetError(
            f"`{name}` is outside {self.root.describe()}",
            "data files are named relative to the scenario, inside its folder (or --data-root): "
            "no absolute paths, `..` or links out of it",
        )
        if "\0" in name:
            raise DatasetError(f"{name!r} is not a file name", "file names cannot hold a NUL character")
        if Path(name).is_absolute() or not _within(Path(os.path.normpath(start / name)), self.root.tree):
            raise outside
        try:
            resolved = (start / name).resolve()
        except (OSError, RuntimeError):  # a link loop
            raise outside from None
        if not _within(resolved, self.root.tree):
            raise outside
        return resolved

    def read(self, path: Path) -> bytes:
        shown = self.shown(path)
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or any(_within(path, p) for p in _PSEUDO):
                raise DatasetError(f"`{shown}` is not a regular file", "data files are images or CSV files")
            if info.st_size > MAX_DATA_FILE_BYTES:
                raise self._too_large(shown)
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DatasetError(f"`{shown}` not found") from None
        except OSError as exc:
            raise DatasetError(f"cannot read `{shown}`: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check above
                raise DatasetError(f"`{shown}` is not a regular file")
            data = handle.read(MAX_DATA_FILE_BYTES + 1)
        if len(data) > MAX_DATA_FILE_BYTES:  # grew since, or a size stat did not tell
            raise self._too_large(shown)
        self.total += len(data)
        if self.total > MAX_DATASET_BYTES:
            raise DatasetError(
                f"the data set is larger than {MAX_DATASET_BYTES // _MIB} MiB (at `{shown}`)",
                "use `count:` to take fewer records",
            )
        self.budget.spend_bytes(len(data))
        return data

    @staticmethod
    def _too_large(shown: str) -> DatasetError:
        return DatasetError(
            f"`{shown}` is larger than {MAX_DATA_FILE_BYTES // _MIB} MiB",
            "data files are single images or CSV tables: make it smaller",
        )

    def shown(self, path: Path) -> str:
        """A path inside the tree as the scenario would name it."""
        return os.path.relpath(path, self.root.base)


def _within(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


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


def _builtin(name: str, count: int, seed: int, budget: DataBudget) -> LoadedData:
    if name != "text-cards":
        raise DatasetError(f"unknown built-in data set `{name}`", f"built-in sets: {', '.join(BUILTIN_SETS)}")
    from scenariokit.compile.cards import text_cards  # the embedded server renders the cards it can read

    budget.spend_cards(count)
    cards = text_cards(count, seed)
    budget.spend_bytes(sum(len(card.png) for card in cards))
    records = tuple(
        image_record(i, card.png, "image/png", f"card-{i:03d}.png", card.text) for i, card in enumerate(cards)
    )
    return LoadedData(IMAGE_FIELDS, "data_url", records)


def _folder(files: _Files, path: Path, count: int | None) -> LoadedData:
    images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder `{files.shown(path)}`")
    images = images[:count] if count else images
    records = []
    for i, image in enumerate(images):
        resolved = files.inside(image.name, path)
        data = files.read(resolved)
        records.append(image_record(i, data, _mime(image), image.name, _sidecar_text(files, image)))
    return LoadedData(IMAGE_FIELDS, "data_url", tuple(records))


def _csv(files: _Files, path: Path, count: int | None) -> LoadedData:
    """A CSV's columns become fields; an `image` column naming files (relative to the CSV) adds the image
    fields."""
    rows = _csv_rows(files, path)
    rows = rows[:count] if count else rows
    columns = tuple(rows[0].keys())
    if "image" not in columns:
        records = tuple({k: v or "" for k, v in row.items()} for row in rows)
        return LoadedData(columns, columns[0], records)
    records = []
    for i, row in enumerate(rows):
        try:
            image, data = _csv_image(files, path, row["image"] or "")
        except DatasetError as exc:  # say where: the CSV's line
            raise DatasetError(f"`{files.shown(path)}` row {i + 2}: {exc}", exc.hint) from None
        records.append(
            {
                **{k: v or "" for k, v in row.items()},
                **image_record(i, data, _mime(image), image.name, row.get("text") or ""),
            }
        )
    fields = tuple(dict.fromkeys((*columns, *IMAGE_FIELDS)))
    return LoadedData(fields, "data_url", tuple(records))


def _csv_image(files: _Files, path: Path, name: str) -> tuple[Path, bytes]:
    if not name:
        raise DatasetError("no `image`", "every row names an image file, relative to the CSV file")
    image = files.inside(name, path.parent)
    return image, files.read(image)


def _csv_rows(files: _Files, path: Path) -> list[dict[str, str | None]]:
    shown = files.shown(path)
    try:
        rows = list(csv.DictReader(io.StringIO(files.read(path).decode("utf-8"), newline="")))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"`{shown}` is not UTF-8 text ({exc.reason})", "save it as UTF-8") from None
    except csv.Error as exc:
        raise DatasetError(f"`{shown}` is not a readable CSV file: {exc}") from None
    if not rows:
        raise DatasetError(f"CSV file `{shown}` has no rows", "the first line names the columns")
    for i, row in enumerate(rows):
        if None in row:  # DictReader's key for fields beyond the header
            raise DatasetError(f"`{shown}` row {i + 2} has more fields than the first line names")
    return rows


def _mime(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _sidecar_text(files: _Files, image: Path) -> str:
    """The known answer for an image, from `name.txt` beside it, if present."""
    sidecar = image.with_suffix(".txt")
    if not os.path.lexists(sidecar):
        return ""
    data = files.read(files.inside(sidecar.name, image.parent))
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DatasetError(f"`{files.shown(sidecar)}` is not UTF-8 text", "save it as UTF-8") from None
