"""A dataset's steps as the columns the IL and RL stages use, cached by the steps file's content hash.

Reading `steps.jsonl` validates every row (records.py), which is what a million-row dataset spends its start-up on.
The columns a router needs (ids, splits, steps, IL labels, success, and each row's index into the distinct states;
for stage 2's visits also episode lengths, scores, who acted and exploration flips) are written once to
`<dataset>/features/steps_columns.npz` (an RL iteration's rollouts: `iter_<iii>/rollouts_columns.npz`), keyed by the
sha256 of the steps file. Records are append-only: when the file is the cached version with episodes appended
(its first bytes hash to the cached digest), the next load validates only the appended lines and extends the
columns; any other change (an edit, a cut) makes it validate every row and rebuild. A later process skips hashing the file (benchmarks/RESULTS.md, "a warm load") when
its size, mtime, inode and ctime are still those of the file that was hashed, as git's index does; a file changed
in the minute before it was hashed gets no such record (a change within one timestamp tick could keep them all), so
it is hashed again. State texts are kept once per distinct state, not once per row. Repeated strings are stored as
codes into a vocabulary, texts as one UTF-8 blob with offsets, so nothing is pickled.
"""

from __future__ import annotations

import array
import dataclasses
import hashlib
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hera_jax.features import DEVICE_SIGNALS
from hera_jax.files import sha256_of, sha256_with_stat, signature_of, stat_of_open, was_still
from hera_jax.labels import il_label
from hera_jax.rollout.records import (STEPS_FILE, ContinuesEarlierEpisode, LoadReport, episodes_of_lines,
                                      existing_steps_file, iter_episodes)

COLUMNS_FILE = "steps_columns.npz"
COLUMNS_VERSION = 3  # bump when the stored columns or how they are derived (labels.il_label) change
CODED = ("episode_id", "task", "split")  # repeated strings: codes into a vocabulary
NUMERIC = ("variation", "step", "state_index", "label", "success", "episode_steps", "score", "cloud_acted",
           "explored", *DEVICE_SIGNALS)


def columns_path(dataset_dir: Path) -> Path:
    return Path(dataset_dir) / "features" / COLUMNS_FILE


def load_columns(dataset_dir: str | Path, use_cache: bool = True) -> tuple[dict[str, Any], LoadReport]:
    """The dataset's step columns (see `rows_to_columns`) and the load report of the rows they came from.

    With `use_cache`, a columns file whose recorded hash equals the steps file's is read instead of the rows;
    otherwise the rows are read (validated) and the columns file is (re)written atomically. A dataset folder that
    cannot be written to still loads, from its rows."""
    dataset_dir = Path(dataset_dir)
    return load_step_columns(existing_steps_file(dataset_dir / STEPS_FILE), columns_path(dataset_dir), use_cache)


def load_step_columns(steps: Path, cache: Path, use_cache: bool = True) -> tuple[dict[str, Any], LoadReport]:
    """`load_columns` of any step-records file (e.g. an RL iteration's rollouts), its columns cached at `cache`."""
    if use_cache and cache.exists():
        cached = _read_cache(cache, steps)
        if isinstance(cached, tuple):
            return cached
        # the file grew: if it is the cached version with episodes appended, only those are read
        if cached is not None and (appended := _load_appended(steps, cached, cache)) is not None:
            return appended
    digest, signature = sha256_with_stat(steps)
    size = os.stat(steps).st_size  # an append since the hash only makes a later load read everything again
    report = LoadReport(path=str(steps))
    columns = rows_to_columns(row for episode in iter_episodes(steps, report) for row in episode)
    # cached only if the file still has the content that was hashed (a collection may append while we read)
    if use_cache and sha256_of(steps) == digest:
        _try_write_cache(cache, digest, size, signature, columns, report)
    return columns, report


def rows_to_columns(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Columns of validated step rows (a list or a stream): the CODED string columns, `variation` int64, `step`
    int32, `state_index` int32 into `distinct_keys` / `distinct_texts` (first-seen order), `label` int8 IL label
    (-1 where the device or the cloud action is missing), `success` bool, and the device's confidence signals
    (features.DEVICE_SIGNALS) float32, NaN where the device reported none; for stage 2, `episode_steps` int32,
    `score` float32, `cloud_acted` bool (the cloud took the step) and `explored` bool (the routing choice was an
    exploration flip). Holds no per-row Python strings."""
    index_of: dict[str, int] = {}
    distinct_texts: list[str] = []
    label_of: dict[tuple[str, str], int] = {}
    vocab: dict[str, dict[str, int]] = {name: {} for name in CODED}
    codes: dict[str, array.array] = {name: array.array("i") for name in CODED}
    numbers = {"variation": array.array("q"), "step": array.array("i"), "state_index": array.array("i"),
               "label": array.array("b"), "success": array.array("b"), "episode_steps": array.array("i"),
               "score": array.array("f"), "cloud_acted": array.array("b"), "explored": array.array("b"),
               **{name: array.array("f") for name in DEVICE_SIGNALS}}
    for r in rows:
        for name in CODED:
            codes[name].append(vocab[name].setdefault(r[name], len(vocab[name])))
        key = r["state_key"]
        position = index_of.get(key)
        if position is None:
            position = index_of[key] = len(distinct_texts)
            distinct_texts.append(r["state_text"])
        device, cloud = r["device_action"], r["cloud_action"]
        numbers["variation"].append(r["variation"])
        numbers["step"].append(r["step"])
        numbers["state_index"].append(position)
        if device is None or cloud is None:
            label = -1
        elif (label := label_of.get((device, cloud))) is None:  # a task's action pairs recur across its episodes
            label = label_of[device, cloud] = il_label(device, cloud)
        numbers["label"].append(label)
        numbers["success"].append(bool(r["success"]))
        numbers["episode_steps"].append(r["episode_steps"])
        numbers["score"].append(r["score"])
        numbers["cloud_acted"].append(r["actor"] == "cloud")
        numbers["explored"].append(r.get("route_reason") == "explore")
        for name in DEVICE_SIGNALS:
            value = r.get(name)
            numbers[name].append(np.nan if value is None else value)
    columns: dict[str, Any] = {}
    for name in CODED:
        columns.update(_decode(name, list(vocab[name]), np.array(codes[name], np.int32)))
    dtypes = {"variation": np.int64, "step": np.int32, "state_index": np.int32, "label": np.int8, "success": bool,
              "episode_steps": np.int32, "score": np.float32, "cloud_acted": bool, "explored": bool,
              **{name: np.float32 for name in DEVICE_SIGNALS}}
    for name, values in numbers.items():
        columns[name] = np.array(values, dtypes[name])
    columns.update(distinct_keys=list(index_of), distinct_texts=distinct_texts)
    return columns


def concat_columns(head: dict[str, Any], tail: dict[str, Any]) -> dict[str, Any]:
    """The columns of `head`'s rows followed by `tail`'s, as `rows_to_columns` of all of them gives them: the
    vocabularies and distinct states in first-seen order, the tail's codes and state indices mapped onto them."""
    columns: dict[str, Any] = {}
    for name in CODED:
        vocab, codes = _merged(head[f"{name}_vocab"], tail[f"{name}_vocab"], tail[f"{name}_codes"])
        columns.update(_decode(name, vocab, np.concatenate([head[f"{name}_codes"], codes]).astype(np.int32)))
    index_of = {key: i for i, key in enumerate(head["distinct_keys"])}
    texts = list(head["distinct_texts"])
    for key, text in zip(tail["distinct_keys"], tail["distinct_texts"]):
        if index_of.setdefault(key, len(index_of)) == len(texts):
            texts.append(text)
    tail_index = np.array([index_of[key] for key in tail["distinct_keys"]], np.int32)
    columns["state_index"] = np.concatenate([head["state_index"], tail_index[tail["state_index"]]]).astype(np.int32)
    for name in NUMERIC:
        if name != "state_index":
            columns[name] = np.concatenate([head[name], tail[name]]).astype(head[name].dtype)
    columns.update(distinct_keys=list(index_of), distinct_texts=texts)
    return columns


def _merged(head_vocab: list[str], tail_vocab: list[str], tail_codes: np.ndarray) -> tuple[list[str], np.ndarray]:
    index_of = {word: i for i, word in enumerate(head_vocab)}
    mapping = np.array([index_of.setdefault(word, len(index_of)) for word in tail_vocab], np.int32)
    return list(index_of), mapping[tail_codes] if len(tail_codes) else tail_codes


@dataclasses.dataclass(frozen=True)
class _Cached:
    """A cache of an earlier version of the steps file, to extend when the file is that version with lines after."""

    columns: dict[str, Any]
    meta: dict[str, Any]


def _load_appended(steps: Path, cached: _Cached, cache: Path) -> tuple[dict[str, Any], LoadReport] | None:
    """The columns and load report of `steps` read as the cached version's bytes followed by appended lines,
    validating only those, and cached for the next load; None where the file is not that (then all of it is read):
    its first bytes are not the cached version (hashed), that version did not end a line, a gzipped file, or a
    cached read that had problems (a problem at the end, a cut episode say, could join with what follows)."""
    head = LoadReport(**cached.meta["report"])
    head_size = cached.meta.get("steps_bytes")
    if head_size is None or head.problems or steps.suffix == ".gz":
        return None
    with open(steps, "rb") as f:
        started, stat = time.time_ns(), os.fstat(f.fileno())
        if stat.st_size <= head_size:
            return None
        digest, last = hashlib.sha256(), b"\n"
        for block in iter(lambda: f.read(min(1 << 22, head_size - f.tell())), b""):
            digest.update(block)
            last = block[-1:]
        if f.tell() != head_size or last != b"\n" or digest.hexdigest() != cached.meta["steps_sha256"]:
            return None

        def hashed_lines() -> Iterator[bytes]:  # the digest is then of exactly the bytes validated
            for line in f:
                digest.update(line)
                yield line

        columns = cached.columns
        report = dataclasses.replace(head, path=str(steps), problems=[], notes=list(head.notes))
        after = (str(columns["episode_id"][-1]), int(columns["step"][-1])) if len(columns["step"]) else None
        try:
            tail = rows_to_columns(row for episode in episodes_of_lines(
                hashed_lines(), steps, report, after=after, seen=columns["episode_id_vocab"]) for row in episode)
        except ContinuesEarlierEpisode:
            return None
        size, unchanged = f.tell(), signature_of(os.fstat(f.fileno())) == signature_of(stat)
    columns = concat_columns(columns, tail)
    if unchanged:  # else appended to while it was read: right for the lines read, but no one version to cache
        _try_write_cache(cache, digest.hexdigest(), size, signature_of(stat) if was_still(stat, started) else None,
                         columns, report)
    return columns, report


def _try_write_cache(path: Path, digest: str, size: int, signature: tuple[int, ...] | None,
                     columns: dict[str, Any], report: LoadReport) -> None:
    try:
        _write_cache(path, digest, size, signature, columns, report)
    except OSError:  # a read-only dataset folder: load from rows every time, correctly
        pass


def _write_cache(path: Path, digest: str, size: int, signature: tuple[int, ...] | None, columns: dict[str, Any],
                 report: LoadReport) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name in CODED:
        arrays[f"{name}_codes"] = columns[f"{name}_codes"]
        arrays[f"{name}_vocab"] = _pack_strings(columns[f"{name}_vocab"])
        arrays[f"{name}_vocab_offsets"] = _offsets(columns[f"{name}_vocab"])
    for name in ("distinct_keys", "distinct_texts"):
        arrays[name] = _pack_strings(columns[name])
        arrays[f"{name}_offsets"] = _offsets(columns[name])
    for name in NUMERIC:
        arrays[name] = columns[name]
    meta = {"version": COLUMNS_VERSION, "steps_sha256": digest, "steps_bytes": size,
            "steps_stat": list(signature) if signature else None, "report": report.__dict__}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")  # unique per writer
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the cache from others sharing the dataset
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path, steps: Path) -> tuple[dict[str, Any], LoadReport] | _Cached | None:
    """The cached columns and their load report if they belong to this version of the records; `_Cached` if they
    belong to a shorter version that the records may have grown from (`_load_appended` checks); else None (then
    they are rebuilt). The steps file is hashed only when its stat is not the one recorded with the cache and its
    size is the cached version's; a cache that had to be checked by its hash records the stat then, for the next
    process."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("version") != COLUMNS_VERSION:
                return None
            recorded, stat = meta.get("steps_stat"), list(stat_of_open(steps))
            signature, grown = None, False
            if recorded is None or recorded != stat:
                cached_size = meta.get("steps_bytes")
                grown = cached_size is not None and stat[0] > cached_size
                if not grown:
                    digest, signature = sha256_with_stat(steps)
                    if digest != meta.get("steps_sha256"):
                        return None
            columns: dict[str, Any] = {}
            for name in CODED:
                columns.update(_decode(name, _unpack_strings(z[f"{name}_vocab"], z[f"{name}_vocab_offsets"]),
                                       z[f"{name}_codes"]))
            for name in ("distinct_keys", "distinct_texts"):
                columns[name] = _unpack_strings(z[name], z[f"{name}_offsets"])
            for name in NUMERIC:
                columns[name] = z[name]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # unreadable or cut: rebuilt from the rows
        return None
    if grown:
        return _Cached(columns, meta)
    report = LoadReport(**meta["report"])
    if signature is not None:  # the stat of the very file whose hash matched, for the next process
        _try_write_cache(path, meta["steps_sha256"], signature[0], signature, columns, report)
    return columns, report


def _decode(name: str, vocab: list[str], codes: np.ndarray) -> dict[str, Any]:
    """A coded column: its codes, its vocabulary and the string array itself."""
    words = np.asarray(vocab, dtype=str) if vocab else np.asarray([], str)
    return {name: words[codes] if len(words) else words, f"{name}_codes": codes, f"{name}_vocab": vocab}


def _pack_strings(values: list[str]) -> np.ndarray:
    return np.frombuffer("".join(values).encode("utf-8"), np.uint8) if values else np.zeros(0, np.uint8)


def _offsets(values: list[str]) -> np.ndarray:
    """Byte offsets of each value in the packed blob (len(values) + 1 entries)."""
    return np.cumsum([0] + [len(v.encode("utf-8")) for v in values], dtype=np.int64)


def _unpack_strings(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = blob.tobytes()
    return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
