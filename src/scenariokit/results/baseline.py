"""A run's digest: what `compare` needs from a run, without its records, small enough for git.

`scenariokit baseline save RUN` writes it to `baselines/<scenario>/baseline.json`; `run --baseline`,
`compare` and `trend` read it where they would read a run folder. It holds:
- per scope ("all" and each request name, at most MAX_SCOPES names): requests, errors, and the HDR
  histograms of the ok requests' latency (corrected, as compare and the SLOs use) and TTFT, on the grid every
  distribution here uses (results/metrics.py: 1 µs to 1 h, 3 significant digits), as the non-zero buckets
  only: delta-coded bucket indexes and their counts, zlib, base64 (a few KB for thousands of requests);
- the per-second ok and error counts from the engine's start (one day of seconds at most: a longer run's
  counts are summed into wider steps, `width_s`), compressed the same way;
- the SLO verdicts of the run's summary.json, its hardware, the scenario's name and SHA-256, the engine, the
  git commit.

Reading one back is bounded: the file's size, each decompressed array's size and every index are checked,
so a hand-edited or hostile baseline is an error, never a memory blow-up.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import tempfile
import zlib
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scenariokit.engines.records import RequestRecord
from scenariokit.results.hardware import Hardware
from scenariokit.results.metrics import HDR_GRID, hdr_indexes, micros_up, nearest_rank_of_counts
from scenariokit.results.runfolder import CorruptRun, NotARun, RunFolder, RunMeta

DIGEST_FORMAT = 1
BASELINE_FILE = "baseline.json"
MAX_SCOPES = 64  # request names kept with their own histograms; more are counted in "all" only
MAX_SECONDS = 86_400  # per-step counts kept; a longer run's steps are wider
MAX_DIGEST_BYTES = 8 * 2**20  # a digest is tens of KB; a bigger file is not one `baseline save` wrote
BUCKETS = HDR_GRID.counts_len
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BadBaseline(ValueError):
    """A baseline file that cannot be read or is not one `baseline save` wrote (exit 3)."""


class UnsafeName(ValueError):
    """A scenario name that cannot be a folder name under the baselines folder (exit 2)."""


def pack(values: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(values.astype("<u8").tobytes(), 9)).decode("ascii")


def unpack(text: str, max_items: int) -> np.ndarray:
    """The uint64 array `pack` wrote, refusing one of more than `max_items` (a zlib bomb stops there)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw, max_items * 8 + 1)
    except (ValueError, zlib.error) as exc:
        raise BadBaseline(f"a packed array does not decode ({exc})") from None
    if len(data) > max_items * 8 or inflater.unconsumed_tail or len(data) % 8:
        raise BadBaseline(f"a packed array is longer than {max_items} values or cut short")
    return np.frombuffer(data, dtype="<u8").astype(np.int64)


class Histogram(BaseModel):
    """One latency distribution: exact count, sum, min and max; the buckets of HDR_GRID, sparse."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=0)
    sum_s: float
    min_s: float
    max_s: float
    buckets: str = Field(description="packed: the non-zero buckets' index deltas, then their counts")

    @classmethod
    def of(cls, counts: np.ndarray, total: float, low: float, high: float) -> Histogram:
        (where,) = np.nonzero(counts)
        deltas = np.diff(where, prepend=0)
        packed = pack(np.concatenate([deltas, counts[where]]))
        return cls(count=int(counts.sum()), sum_s=total, min_s=low, max_s=high, buckets=packed)

    def counts(self) -> np.ndarray:
        """The dense bucket counts, checked: indexes on the grid, counts adding up to `count`."""
        pairs = unpack(self.buckets, 2 * BUCKETS)
        if len(pairs) % 2:
            raise BadBaseline("a histogram's buckets are not index/count pairs")
        deltas, counts = np.split(pairs, 2)
        where = np.cumsum(deltas)
        if len(where) and (where[-1] >= BUCKETS or np.any(deltas[1:] <= 0)):
            raise BadBaseline("a histogram's bucket index is off the grid or out of order")
        if int(counts.sum()) != self.count or np.any(counts <= 0):
            raise BadBaseline(f"a histogram's buckets do not add up to its count {self.count}")
        dense = np.zeros(BUCKETS, dtype=np.int64)
        dense[where] = counts
        return dense

    @property
    def mean(self) -> float | None:
        return self.sum_s / self.count if self.count else None

    def percentile(self, p: float, counts: np.ndarray | None = None) -> float | None:
        """Nearest rank, clipped to the exact min and max (as sample_stats)."""
        if not self.count:
            return None
        value = nearest_rank_of_counts(self.counts() if counts is None else counts, [p], self.count)[0]
        return min(self.max_s, max(self.min_s, value))


class ScopeDigest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    latency: Histogram | None = None
    ttft: Histogram | None = None


class Seconds(BaseModel):
    """Ok and error counts per step of `width_s` seconds from `start_unix` (the engine's start)."""

    model_config = ConfigDict(extra="forbid")

    start_unix: float
    width_s: int = Field(ge=1)
    ok: str
    errors: str

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ok, errors = unpack(self.ok, MAX_SECONDS), unpack(self.errors, MAX_SECONDS)
        if len(ok) != len(errors):
            raise BadBaseline("the per-second ok and error counts differ in length")
        return ok, errors

    def ok_rates(self) -> list[float]:
        """Ok requests per second of each full step, as compare's throughput test takes them: from the
        first step with an ok request, without the last step (partial)."""
        ok, _ = self.arrays()
        (nonzero,) = np.nonzero(ok)
        if not len(nonzero):
            return []
        steps = ok[nonzero[0] :]
        steps = steps[:-1] if len(steps) > 2 else steps
        return (steps / self.width_s).tolist()


class VerdictDigest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slo: str
    status: str
    value: float | None = None
    unit: str = ""


class Digest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field("scenariokit-baseline", pattern="^scenariokit-baseline$")
    format: int = Field(DIGEST_FORMAT, ge=1, le=DIGEST_FORMAT)
    scenariokit_version: str | None = None
    source: str = Field(description="the run folder it was taken from, as given: displayed, never opened")
    scenario_name: str
    scenario_sha256: str
    git_commit: str | None = None
    engine: str
    engine_version: str = ""
    started_unix: float
    ended_unix: float | None = None
    hardware: Hardware | None = None
    scopes: dict[str, ScopeDigest]
    scopes_left_out: int = Field(0, description="request names past MAX_SCOPES, counted in `all` only")
    seconds: Seconds
    verdict: str | None = None
    verdicts: list[VerdictDigest] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.source

    def throughput(self) -> float | None:
        rates = self.seconds.ok_rates()
        return float(np.mean(rates)) if rates else None


# --- building one from a run folder -----------------------------------------------------------------


class _Accumulator:
    """Histogram counts and totals for one scope, filled a batch at a time."""

    def __init__(self) -> None:
        self.requests = self.errors = 0
        self.series: dict[str, tuple[np.ndarray, list[float]]] = {}

    def add(self, records: list[RequestRecord]) -> None:
        self.requests += len(records)
        self.errors += sum(1 for r in records if not r.ok)
        ok = [r for r in records if r.ok]
        self._values("latency", [r.corrected_latency for r in ok])
        self._values("ttft", [r.ttft for r in ok if r.ttft is not None])

    def _values(self, metric: str, values: list[float]) -> None:
        if not values:
            return
        array = np.asarray(values, dtype=np.float64)
        counts, totals = self.series.setdefault(
            metric, (np.zeros(BUCKETS, np.int64), [0.0, math.inf, -math.inf])
        )
        counts += np.bincount(hdr_indexes(micros_up(array)), minlength=BUCKETS)
        totals[0] += float(array.sum())
        totals[1], totals[2] = min(totals[1], float(array.min())), max(totals[2], float(array.max()))

    def digest(self) -> ScopeDigest:
        hist = {m: Histogram.of(c, t[0], t[1], t[2]) for m, (c, t) in self.series.items()}
        return ScopeDigest(requests=self.requests, errors=self.errors, **hist)


def digest_run(run_dir: Path) -> Digest:
    """The digest of a run folder, its records streamed a batch at a time. Raises NotARun, CorruptRun."""
    folder = RunFolder(run_dir)
    folder.check_records()
    meta = folder.meta
    scopes: dict[str, _Accumulator] = {"all": _Accumulator()}
    left_out: set[str] = set()
    ok_at: dict[int, int] = {}
    err_at: dict[int, int] = {}
    try:
        for batch in folder.records():
            scopes["all"].add(batch)
            _by_name(batch, scopes, left_out)
            _count_seconds(batch, meta.clock_start, ok_at, err_at)
    except (ValueError, KeyError, OSError) as exc:
        raise CorruptRun(f"{run_dir}/records holds unreadable data ({type(exc).__name__}: {exc})") from None
    summary = _side_summary(run_dir / "summary.json")
    return Digest(
        scenariokit_version=meta.scenariokit_version,
        source=str(run_dir),
        scenario_name=meta.scenario_name,
        scenario_sha256=meta.scenario_sha256,
        git_commit=meta.git_commit,
        engine=meta.engine,
        engine_version=meta.engine_version,
        started_unix=meta.clock_start,
        ended_unix=meta.ended_unix,
        hardware=meta.hardware,
        scopes={name: acc.digest() for name, acc in scopes.items()},
        scopes_left_out=len(left_out),
        seconds=_seconds(meta, ok_at, err_at),
        verdict=summary.get("verdict") if isinstance(summary.get("verdict"), str) else None,
        verdicts=_verdicts(summary),
    )


def _by_name(batch: list[RequestRecord], scopes: dict[str, _Accumulator], left_out: set[str]) -> None:
    by_name: dict[str, list[RequestRecord]] = {}
    for record in batch:
        by_name.setdefault(record.name, []).append(record)
    for name, records in by_name.items():
        if name in scopes or len(scopes) <= MAX_SCOPES:
            scopes.setdefault(name, _Accumulator()).add(records)
        else:
            left_out.add(name)


def _count_seconds(
    batch: list[RequestRecord], start: float, ok_at: dict[int, int], err_at: dict[int, int]
) -> None:
    for record in batch:
        second = math.floor(record.t - start)
        bucket = ok_at if record.ok else err_at
        bucket[second] = bucket.get(second, 0) + 1


def _seconds(meta: RunMeta, ok_at: dict[int, int], err_at: dict[int, int]) -> Seconds:
    seconds = [s for s in (*ok_at, *err_at) if s >= 0]  # a request stamped before the start: none here
    length = max(seconds) + 1 if seconds else 0
    width = max(1, math.ceil(length / MAX_SECONDS))
    ok, errors = np.zeros(math.ceil(length / width), np.int64), np.zeros(math.ceil(length / width), np.int64)
    for series, counts in ((ok, ok_at), (errors, err_at)):
        for second, n in counts.items():
            if second >= 0:
                series[second // width] += n
    return Seconds(start_unix=meta.clock_start, width_s=width, ok=pack(ok), errors=pack(errors))


def _side_summary(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_DIGEST_BYTES + 1)
        document = json.loads(raw) if len(raw) <= MAX_DIGEST_BYTES else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return document if isinstance(document, dict) else {}


def _verdicts(summary: dict) -> list[VerdictDigest]:
    out = []
    for item in summary.get("verdicts", [])[:200] if isinstance(summary.get("verdicts"), list) else []:
        try:
            out.append(
                VerdictDigest.model_validate({k: item.get(k) for k in ("slo", "status", "value", "unit")})
            )
        except (ValidationError, AttributeError):
            continue  # a hand-edited summary.json: that verdict is left out, the rest kept
    return out


# --- the baselines folder -----------------------------------------------------------------------------


def baseline_path(root: Path, scenario_name: str) -> Path:
    """`root/<scenario>/baseline.json`; the name must be a plain folder name that stays inside `root`."""
    if not SAFE_NAME.fullmatch(scenario_name) or scenario_name in (".", ".."):
        raise UnsafeName(
            f"the scenario name {scenario_name!r} cannot name a baseline folder (letters, digits, `.`, `_`, "
            "`-`, starting with a letter or digit, at most 128)"
        )
    folder = root / scenario_name
    if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(root.resolve())):
        raise UnsafeName(f"{folder} is a link: a baseline is written only inside {root}")
    return folder / BASELINE_FILE


def save_baseline(run_dir: Path, root: Path) -> tuple[Path, Digest]:
    """Digest the run and write it atomically; raises NotARun, CorruptRun, UnsafeName."""
    meta = RunFolder(run_dir).meta  # the name first: a hostile one is refused before any record is read
    path = baseline_path(root, meta.scenario_name)
    digest = digest_run(run_dir)
    text = digest.model_dump_json(indent=1) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".baseline-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a file meant for git from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path, digest


def read_digest(path: Path) -> Digest:
    """A baseline file (or a folder holding baseline.json), read with a size cap and checked."""
    if path.is_dir():
        path = path / BASELINE_FILE
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_DIGEST_BYTES + 1)
    except OSError as exc:
        raise NotARun(f"{path} cannot be read as a baseline ({exc.strerror or exc})") from None
    if len(raw) > MAX_DIGEST_BYTES:
        raise BadBaseline(
            f"{path} is over {MAX_DIGEST_BYTES >> 20} MiB: not a baseline `baseline save` wrote"
        )
    try:
        digest = Digest.model_validate_json(raw)
        for scope in digest.scopes.values():  # every packed array decodes within its bounds
            for hist in (scope.latency, scope.ttft):
                if hist is not None:
                    hist.counts()
        digest.seconds.arrays()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "the document"
        raise BadBaseline(
            f"{path} is not a baseline `baseline save` wrote: {where}: {first['msg']}"
        ) from None
    except BadBaseline as exc:
        raise BadBaseline(f"{path}: {exc}") from None
    if len(digest.scopes) > MAX_SCOPES + 1:
        raise BadBaseline(
            f"{path} has {len(digest.scopes)} scopes; `baseline save` writes at most {MAX_SCOPES + 1}"
        )
    return digest


def load_any(path: Path) -> Digest:
    """A run folder (digested) or a baseline (file, or its folder)."""
    if path.is_dir() and (path / "run.json").is_file():
        return digest_run(path)
    if path.is_file() or (path / BASELINE_FILE).is_file():
        return read_digest(path)
    raise NotARun(f"{path} is not a run folder (no run.json) nor a baseline (no {BASELINE_FILE})")


def stored_baseline(root: Path, scenario_name: str) -> Path:
    """The baseline file `run --baseline` gates on; raises UnsafeName, NotARun (none saved)."""
    path = baseline_path(root, scenario_name)
    if not path.is_file():
        raise NotARun(
            f"no baseline for {scenario_name!r} in {root} "
            f"(`scenariokit baseline save RUN --dir {root}` makes one)"
        )
    return path
