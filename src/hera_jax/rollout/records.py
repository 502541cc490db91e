"""Trajectory records: one JSON line per agent step, written an episode at a time, append-only.

A file is valid JSONL that `pandas.read_json(path, lines=True)` reads. Readers validate every line against one
declared schema, the writer's `StepRecord` (via pydantic): a bad line is reported as file:line: field: problem and
skipped. Every line carries `episode_steps`, so an episode cut short by a killed run or a bad line (fewer valid lines
than it announces) is detected, reported with file:line, and left out; the complete episodes before it still load,
and a rerun of the same collection redoes only what is missing. Manifests are validated by schema too.

A finished dataset may be stored gzipped (`steps.jsonl.gz`, how the larger shipped datasets travel): readers take
either name, and appending to a gzipped one first unpacks it in place (atomically), so files stay append-only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
import os
import shutil
import typing
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, get_args

import pydantic
import typing_extensions

from hera_jax.errors import HeraError
from hera_jax.files import write_json_atomic  # noqa: F401  (re-exported: manifests are written with it)

FORMAT_VERSION = 1
STEPS_FILE = "steps.jsonl"
MANIFEST_FILE = "manifest.json"
Actor = Literal["device", "cloud"]
Split = Literal["train", "dev", "test"]
ACTORS = get_args(Actor)
SPLITS = get_args(Split)

# Field types of the schema every reader validates rows against (strict: no "3" for 3, no 1 for true).
Count = Annotated[int, pydantic.Field(ge=0)]
FiniteFloat = Annotated[float, pydantic.Field(allow_inf_nan=False)]
NonEmptyStr = Annotated[str, pydantic.Field(min_length=1)]


class DatasetError(HeraError, ValueError):
    """A dataset on disk is missing, malformed or unusable; the message says where and what to do."""


@dataclasses.dataclass
class StepRecord:
    """One step as written (one JSON object per line, fields in this order) and, through `STEP_SCHEMA`, the schema
    every reader validates a line against."""

    episode_id: NonEmptyStr
    env: str
    task: NonEmptyStr
    variation: Count
    split: Split  # the environment's own variation split: train / dev / test
    step: Count
    episode_steps: Annotated[int, pydantic.Field(ge=1)]  # number of steps this episode has; detects partial episodes
    state_text: str
    state_key: NonEmptyStr  # the features cache is keyed by it: an empty or null key would poison the cache
    actor: Actor  # who acted at this step
    action: str
    device_action: str | None
    cloud_action: str | None
    reward: FiniteFloat
    score: FiniteFloat
    done: bool
    success: bool  # episode-level: did the episode this step belongs to succeed
    cloud_calls_so_far: Count = 0  # cloud calls before this step in this episode
    p_cloud: FiniteFloat | None = None  # router output when a router chose the actor
    route_reason: str | None = None  # why this actor acted (e.g. "replay", "router", "explore", "cloud-only")
    device_tokens_in: Count | None = None
    device_tokens_out: Count | None = None
    cloud_tokens_in: Count | None = None
    cloud_tokens_out: Count | None = None
    device_latency_s: FiniteFloat | None = None
    cloud_latency_s: FiniteFloat | None = None
    device_parse_ok: bool | None = None  # False when an LLM reply could not be mapped to a valid action
    cloud_parse_ok: bool | None = None
    # the device's confidence in its action, where its backend reports it (an LLM; stand-ins report none):
    # log-probability (per token for scoring backends), entropy, and for scoring backends the softmax probability
    # of the chosen action over the valid actions and its margin to the second
    device_logprob: FiniteFloat | None = None
    device_entropy: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] | None = None
    device_p_top: Annotated[float, pydantic.Field(ge=0, le=1)] | None = None
    device_margin: Annotated[float, pydantic.Field(ge=0, le=1)] | None = None

    def __post_init__(self) -> None:
        if self.actor not in ACTORS:
            raise ValueError(f"actor must be one of {ACTORS}, got {self.actor!r}")


STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord))
STEP_SCHEMA = pydantic.TypeAdapter(StepRecord)


def _row_schema() -> tuple[pydantic.TypeAdapter, dict[str, Any]]:
    """`StepRecord`'s fields as a TypedDict schema, and the defaults of those a line may leave out. Validating into
    a dict skips building a dataclass instance per line (benchmarks/RESULTS.md, "the validating read in one pass")."""
    hints = typing.get_type_hints(StepRecord, include_extras=True)
    fields = dataclasses.fields(StepRecord)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    row = typing_extensions.TypedDict("StepRow", {f.name: typing_extensions.NotRequired[hints[f.name]]
                                                  if f.name in defaults else hints[f.name] for f in fields})
    return pydantic.TypeAdapter(row), defaults


# what readers validate each line with: the rows it gives are those of STEP_SCHEMA's records (tests/test_records.py)
_ROW_SCHEMA, _ROW_DEFAULTS = _row_schema()
# every field in order, the left-out ones at their defaults (the others are overwritten: a valid row has them)
_ROW_TEMPLATE = {name: _ROW_DEFAULTS.get(name) for name in STEP_FIELDS}


def append_episode(path: str | Path, steps: Sequence[StepRecord]) -> None:
    """Append one whole episode in a single write, then fsync, so a kill leaves at most one partial episode."""
    if not steps:
        raise ValueError("an episode needs at least one step")
    lines = [json.dumps(dataclasses.asdict(s), ensure_ascii=False) + "\n" for s in steps]
    for step, line in zip(steps, lines):  # validated on write exactly as on read: no row readers would reject
        row, problem = parse_step_line(line.encode("utf-8"))
        if problem:
            raise DatasetError(f"{path}: refusing to write episode {step.episode_id} step {step.step}: {problem}")
    payload = "".join(lines)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _unpack_gzipped(path)
    _drop_cut_tail(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:  # a full disk: name the file (a failed write carries no file name)
        raise OSError(error.errno, f"{error.strerror}; episode {steps[0].episode_id} was not written whole (the next "
                      "append removes its cut-off part)", str(path)) from None


def gzipped_name(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".gz")


def stored_steps_file(path: str | Path) -> Path | None:
    """The file that holds the steps of `path`: itself, or its gzipped twin `<name>.gz`; None when neither exists."""
    path, packed = Path(path), gzipped_name(path)
    if path.exists() and packed.exists() and _holds_all_of(path, packed):
        packed.unlink()  # an unpack killed between its rename and its delete: the .gz is a stale copy
    if path.exists() and packed.exists():
        raise DatasetError(f"{path}: both it and {packed} exist, so which one holds the episodes is ambiguous; keep "
                           "one (e.g. unpack the .gz and append it, or delete the stale one)")
    if path.exists():
        return path
    return packed if packed.exists() else None


def existing_steps_file(path: str | Path) -> Path:
    """`stored_steps_file`, or a DatasetError saying how to create the missing file."""
    stored = stored_steps_file(path)
    if stored is None:
        raise DatasetError(f"{path}: no such trajectory file; run experiments/collect.py to create it")
    return stored


def _holds_all_of(path: Path, packed: Path) -> bool:
    """Whether `path` starts with the whole content of the gzipped `packed` (then appending continued from it)."""
    try:
        with gzip.open(packed, "rb") as src, open(path, "rb") as plain:
            for block in iter(lambda: src.read(1 << 20), b""):
                if plain.read(len(block)) != block:
                    return False
    except (OSError, EOFError, zlib.error):
        return False
    return True


def _unpack_gzipped(path: Path) -> None:
    """Before appending to `path` whose episodes are stored as `path.gz`: unpack it next to it and only then remove
    the .gz, so a kill at any point leaves every episode on disk."""
    packed = gzipped_name(path)
    if path.exists() or not packed.exists():
        return
    partial = path.with_name(path.name + ".unpacking")
    with gzip.open(packed, "rb") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, path)
    packed.unlink()


def _drop_cut_tail(path: Path) -> None:
    """Remove what a write cut short (a kill, a full disk) left at the end of the file, before the next append.

    Episodes are written whole, one write each, so such a write leaves the first part of one episode after the last
    complete one: some of its lines and at most one cut line. Readers would skip it and warn on every load; no
    complete episode is touched. A tail that is not one episode's first part (edited by hand) is kept; its last line
    is ended, so that the next episode starts on its own line, and readers report and skip the broken line.
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        for reach in (1 << 16, 1 << 23):  # the last lines first; far more than an episode's lines if needed
            start = max(0, size - reach)
            f.seek(start)
            tail = f.read()
            cut = _end_of_last_episode(tail, whole_file=start == 0)
            if cut is not None or start == 0:
                break
        if cut is not None and start + cut < size:
            f.truncate(start + cut)
            size = start + cut
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":  # a last row complete but for its newline, or a kept broken line
                f.write(b"\n")


def _end_of_last_episode(tail: bytes, whole_file: bool) -> int | None:
    """The offset in `tail` right after the last complete episode's last row, when all that follows it is the
    first part of one episode (valid rows of one episode id, then at most one cut line); else None. A last row
    that is valid but for its missing newline counts as a whole row."""
    lines = tail.split(b"\n")  # the last item is b"" when `tail` ends with a newline
    last_is_row = bool(lines[-1]) and parse_step_line(lines[-1] + b"\n")[1] is None
    rows = lines[0 if whole_file else 1:] if last_is_row else lines[0 if whole_file else 1:-1]
    # where the row after the one looked at starts (as if the last row had its newline)
    position = len(tail) + 1 if last_is_row else len(tail) - len(lines[-1])
    episodes = set()
    for line in reversed(rows):  # whole rows, last first
        row, problem = parse_step_line(line + b"\n")
        if problem:
            return None
        if row is None:  # a blank line: readers skip it, and so does the search for the last episode's end
            position -= len(line) + 1
            continue
        if row["step"] == row["episode_steps"] - 1:
            return min(position, len(tail)) if len(episodes) <= 1 else None
        episodes.add(row["episode_id"])
        position -= len(line) + 1
    return 0 if whole_file and len(episodes) <= 1 else None


@dataclasses.dataclass
class LoadReport:
    path: str
    num_lines: int = 0
    num_steps: int = 0
    num_episodes: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)  # "file:line: what" for each skipped thing
    notes: list[str] = dataclasses.field(default_factory=list)  # loaded, but worth knowing (look-alike variations)


def shown_problems(report: LoadReport, limit: int = 5) -> list[str]:
    """What to print of a load: the first `limit` skipped lines and episodes and one line counting the rest (64 bad
    lines are not 64 warnings; the file names where they are), then every note in full."""
    problems = report.problems
    if len(problems) > limit:
        hidden = len(problems) - limit
        problems = [*problems[:limit],
                    f"... and {hidden} more skipped line(s) or episode(s) like these in the same file(s)"]
    return [*problems, *report.notes]


# the buffer a steps file is read through: a line is a kilobyte or two, and through the default 8 KB buffer reading
# lines costs several times as much (benchmarks/RESULTS.md, "the validating read in one pass")
READ_BUFFER = 1 << 20


def read_steps(path: str | Path, strict: bool = False) -> tuple[list[dict[str, Any]], LoadReport]:
    """Read complete episodes from a steps file.

    Every line is validated against the `StepRecord` schema. A bad line (not UTF-8, truncated or invalid JSON, a
    missing field, a wrong type or value) is reported as "file:line: field: problem" and skipped, which leaves its
    episode incomplete: incomplete episodes are reported and skipped as a whole, so a resumed collection redoes them.
    With `strict=True`, the first problem raises `DatasetError` instead.
    """
    report = LoadReport(path=str(path))
    rows = [row for episode in iter_episodes(path, report, strict) for row in episode]
    return rows, report


def iter_episodes(path: str | Path, report: LoadReport, strict: bool = False) -> Iterator[list[dict[str, Any]]]:
    """`read_steps` as a stream: each complete episode's rows, in file order, holding one episode at a time.
    Problems go to `report` (line problems first, then episode problems, as `read_steps` reports them); its
    counters are final once the stream is exhausted."""
    path = existing_steps_file(path)
    # bytes: one undecodable line is reported, not a UnicodeDecodeError for the file
    with open(path, "rb", buffering=READ_BUFFER) as f:
        yield from episodes_of_file(f, path, report, strict)


def episodes_of_file(f: BinaryIO, path: Path, report: LoadReport, strict: bool = False,
                     digest: Any = None) -> Iterator[list[dict[str, Any]]]:
    """`iter_episodes` of `f`, the steps file at `path` opened in binary mode (gzipped if `path` ends in .gz). With
    `digest` (a hash object with `update`, e.g. one of files.HASHES), the stored bytes (compressed, for .gz) are fed
    to it as they are read, through to the end of the file once the stream is exhausted (stopped early, it holds
    what was read so far, `f.tell()` bytes): a reader that keys a cache by the file's hash reads the file once, not
    twice."""
    report.path = str(path)
    stream = f if digest is None else io.BufferedReader(_Hashing(f, digest), READ_BUFFER)
    source = gzip.GzipFile(fileobj=stream, mode="rb") if path.suffix == ".gz" else stream
    yield from episodes_of_lines(_lines(source, path, report, strict), path, report, strict)
    if digest is not None:  # a cut .gz stops the lines early, or bytes after the last gzip member
        for _ in iter(lambda: stream.read(1 << 22), b""):
            pass


class _Hashing(io.RawIOBase):
    """A binary file read through that feeds every byte read to a hash object."""

    def __init__(self, f: BinaryIO, digest: Any) -> None:
        self._f, self._digest = f, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


class ContinuesEarlierEpisode(Exception):
    """Appended lines that go on with the episode before them: only a read of the whole file can judge them."""


def episodes_of_lines(lines: Iterable[bytes], path: Path, report: LoadReport, strict: bool = False,
                      after: tuple[str, int] | None = None, seen: Iterable[str] = (),
                      episode_problems: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
    """`iter_episodes` of a file's lines from the line after `report.num_lines` on. To read only the lines appended
    after a read that found no problems, give that read's counters in `report`, its episode ids as `seen` and its
    last row's (episode id, step) as `after`: the rows and problems are then those a read of the whole file would
    add. Raises ContinuesEarlierEpisode where the first appended row would extend that last episode. Episode
    problems go to `report.problems` after the line problems, or to `episode_problems` where it is given."""
    held: list[str] = [] if episode_problems is None else episode_problems
    kept_ids = set(seen)
    run: list = []  # [first line, last line, problem] of consecutive lines with the same problem: reported once

    def report_run() -> None:
        if run:
            first, last, problem = run
            where = f"{path}:{first}" if first == last else f"{path}:{first}-{last}"
            count = "" if first == last else f" ({last - first + 1} lines)"
            _problem(report, strict, f"{where}: {problem}{count}; skipped")
            run.clear()

    def finished(episode_id: str, lines: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]] | None:
        expected = lines[0][1]["episode_steps"]
        if len(lines) != expected or [r["step"] for _, r in lines] != list(range(expected)):
            message = (f"{path}:{lines[0][0]}: episode {episode_id} has {len(lines)} of {expected} steps "
                       "(a run was interrupted); skipped, rerun the command that wrote it to redo it")
        elif episode_id in kept_ids:
            message = f"{path}:{lines[0][0]}: episode {episode_id} appears twice; kept the first"
        else:
            kept_ids.add(episode_id)
            report.num_episodes += 1
            report.num_steps += len(lines)
            return [r for _, r in lines]
        if strict:
            raise DatasetError(message)
        held.append(message)
        return None

    # Lines of one episode attempt are consecutive (an episode is appended in one write). A rerun after a kill
    # appends a whole new attempt after a partial one, so episodes are grouped into attempts, not by id alone.
    attempt: tuple[str, list[tuple[int, dict[str, Any]]]] | None = None
    for lineno, raw in enumerate(lines, start=report.num_lines + 1):
        report.num_lines = lineno
        row, problem = parse_step_line(raw)
        if problem:
            if run and run[2] == problem and run[1] == lineno - 1:
                run[1] = lineno
            else:
                report_run()
                run.extend([lineno, lineno, problem])
                if strict:
                    report_run()
        if row is None:
            continue
        if after is not None:
            if after[0] == row["episode_id"] and row["step"] > after[1]:
                raise ContinuesEarlierEpisode(f"{path}:{lineno}")
            after = None
        if attempt and attempt[0] == row["episode_id"] and row["step"] > attempt[1][-1][1]["step"]:
            attempt[1].append((lineno, row))
            continue
        if attempt and (episode := finished(*attempt)) is not None:
            yield episode
        attempt = (row["episode_id"], [(lineno, row)])
    if attempt and (episode := finished(*attempt)) is not None:
        yield episode
    report_run()
    if episode_problems is None:
        report.problems.extend(held)


def _lines(f, path: Path, report: LoadReport, strict: bool) -> Iterable[bytes]:
    """The file's lines; a cut or corrupt .gz ends them with a reported problem (the lines before it still count)."""
    lineno = 0
    try:
        for lineno, raw in enumerate(f, start=1):
            yield raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        _problem(report, strict, f"{path}: the gzip stream is cut or corrupt after line {lineno} ({e}); the lines "
                                 "after it are lost, the complete episodes before it load")


def parse_step_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a valid line, (None, None) for a blank one, (None, "what is wrong") otherwise."""
    try:  # the bytes as they are (pydantic checks their UTF-8): no decoded copy of a valid line
        row = _ROW_SCHEMA.validate_json(raw, strict=True)
    except pydantic.ValidationError:
        return _parse_decoded(raw)  # said from the decoded text, the way the problem is reported
    return _with_defaults(row), None


def _parse_decoded(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """`parse_step_line` by way of the decoded text."""
    if not raw.strip():
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
    try:
        row = _ROW_SCHEMA.validate_json(text, strict=True)
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":
            where = "truncated last line" if not text.endswith("\n") else "invalid JSON"
            return None, f"{where} ({errors[0]['ctx']['error']})"
        missing = [_field_name(error) for error in errors if error["type"] == "missing"]
        problems = [f"missing field(s) {', '.join(missing)}"] if missing else []
        problems += [f"{_field_name(error)}: {error['msg']} (got {_short_repr(error['input'])})"
                     for error in errors if error["type"] != "missing"]
        return None, "; ".join(problems)
    return _with_defaults(row), None


def _with_defaults(row: dict[str, Any]) -> dict[str, Any]:
    """A validated row with the fields it left out at their defaults, in the record's field order."""
    return row if len(row) == len(STEP_FIELDS) else {**_ROW_TEMPLATE, **row}


def _field_name(error: dict[str, Any]) -> str:
    return ".".join(map(str, error["loc"])) or "row"


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _problem(report: LoadReport, strict: bool, message: str) -> None:
    if strict:
        raise DatasetError(message)
    report.problems.append(message)


def completed_episode_ids(path: str | Path) -> set[str]:
    """Episode ids already fully written; used to resume a collection without duplicates."""
    if stored_steps_file(path) is None:
        return set()
    rows, _ = read_steps(path)
    return {r["episode_id"] for r in rows}


def load_dataframe(path: str | Path):
    """Complete episodes as a pandas DataFrame (one row per step) plus the load report."""
    import pandas as pd

    rows, report = read_steps(path)
    frame = pd.DataFrame(rows, columns=list(STEP_FIELDS) if not rows else None)
    return frame, report


# ---- manifest ---------------------------------------------------------------------------------------------------


class _ManifestEnv(pydantic.BaseModel, extra="allow"):
    name: NonEmptyStr


class ManifestSchema(pydantic.BaseModel, extra="allow"):
    """The manifest fields readers rely on: which environment (its default unseen tasks), which agents (what an IL
    label means) and which settings (how state texts are built). Other fields are kept as written."""

    env: _ManifestEnv
    agents: dict[str, dict[str, Any]]
    settings: dict[str, Any]


def read_manifest(dataset_dir: str | Path) -> dict[str, Any]:
    """The dataset's manifest, refused with one line naming the file and field when it lacks what readers need."""
    path = Path(dataset_dir) / MANIFEST_FILE
    if not path.exists():
        raise DatasetError(f"{path}: no manifest; is {dataset_dir} a dataset written by experiments/collect.py?")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}:{e.lineno}: invalid JSON in manifest ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: manifest is not valid UTF-8 ({e.reason} at byte {e.start})") from e
    try:
        ManifestSchema.model_validate(manifest, strict=True)
    except pydantic.ValidationError as e:
        error = e.errors(include_url=False)[0]
        field = ".".join(map(str, error["loc"])) or "manifest"
        problem = "is missing" if error["type"] == "missing" else f"is invalid: {error['msg']}"
        raise DatasetError(
            f"{path}: field {field} {problem}; restore the manifest written by experiments/collect.py "
            "(it says which environment, agents and settings the dataset comes from)"
        ) from None
    return manifest


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    episodes = {r["episode_id"]: r for r in rows}
    return {
        "num_steps": len(rows),
        "num_episodes": len(episodes),
        "tasks": sorted({r["task"] for r in rows}),
        "success_rate": (sum(bool(r["success"]) for r in episodes.values()) / len(episodes)) if episodes else 0.0,
    }
