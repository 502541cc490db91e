"""A dataset's steps as the columns the IL and RL stages use, cached by the steps file's content hash.

Reading `steps.jsonl` validates every row (records.py), which is what a million-row dataset spends its start-up on.
The columns a router needs (ids, splits, steps, IL labels, success, and each row's index into the distinct states;
for stage 2's visits also episode lengths, scores, who acted and exploration flips) are written once to
`<dataset>/features/steps_columns.npz` (an RL iteration's rollouts: `iter_<iii>/rollouts_columns.npz`), keyed by the
digest of the steps file (STEPS_HASH). Records are append-only: when the file is the cached version with episodes
appended (its first bytes hash to the cached digest), the next load validates only the appended lines and extends the
columns; any other change (an edit, a cut) makes it validate every row and rebuild, hashing the file in the same
pass. A plain file of two PARALLEL_MIN_BYTES or more is validated in parts of at least that size, cut at episode
starts, by one worker process a core, and their columns and reports are joined as one read gives them. A later
process skips hashing the file (benchmarks/RESULTS.md, "a warm load") when its size, mtime, inode and ctime are
still those of the file that was hashed, as git's index does; a file changed in the minute before it was hashed
gets no such record (a change within one timestamp tick could keep them all), so it is hashed again.
State texts are kept once per distinct state, not once per row. Repeated strings are stored as codes into a
vocabulary, texts as one UTF-8 blob with offsets, so nothing is pickled.
"""

from __future__ import annotations

import array
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hera_jax.features import DEVICE_SIGNALS
from hera_jax.files import HASHES, digest_with_stat, feed, signature_of, stat_of_open, was_still
from hera_jax.labels import il_label
from hera_jax.rollout.records import (READ_BUFFER, STEPS_FILE, ContinuesEarlierEpisode, LoadReport,
                                      episodes_of_file, episodes_of_lines, existing_steps_file, parse_step_line)

COLUMNS_FILE = "steps_columns.npz"
COLUMNS_VERSION = 4  # bump when the stored columns, how they are derived (labels.il_label) or STEPS_HASH change
STEPS_HASH = "blake3"  # what the cache is keyed by: the steps file's digest (files.HASHES)
CODED = ("episode_id", "task", "split")  # repeated strings: codes into a vocabulary
NUMERIC = ("variation", "step", "state_index", "label", "success", "episode_steps", "score", "cloud_acted",
           "explored", *DEVICE_SIGNALS)


def columns_path(dataset_dir: Path) -> Path:
    return Path(dataset_dir) / "features" / COLUMNS_FILE


def load_columns(dataset_dir: str | Path, use_cache: bool = True) -> tuple[dict[str, Any], LoadReport]:
    """The dataset's step columns (see `rows_to_columns`) and the load report of the rows they came from.

    With `use_cache`, a columns file whose recorded hash equals the steps file's is read instead of the rows, and
    one of an earlier version that the file grew from by appended lines is extended by those lines alone;
    otherwise the rows are read (validated). The columns file is (re)written atomically. A dataset folder that
    cannot be written to still loads, from its rows."""
    dataset_dir = Path(dataset_dir)
    return load_step_columns(existing_steps_file(dataset_dir / STEPS_FILE), columns_path(dataset_dir), use_cache)


def load_step_columns(steps: Path, cache: Path, use_cache: bool = True) -> tuple[dict[str, Any], LoadReport]:
    """`load_columns` of any step-records file (e.g. an RL iteration's rollouts), its columns cached at `cache`."""
    if use_cache and cache.exists() and (cached := _load_cached(cache, steps)) is not None:
        return cached
    steps = existing_steps_file(steps)  # refuses a plain file beside a different .gz, drops a stale .gz
    if (in_parts := _read_in_parts(steps, use_cache)) is not None:
        columns, report, digest_hex, size, signature = in_parts
        if digest_hex is not None:
            _try_write_cache(cache, digest_hex, size, signature, columns, report)
        return columns, report
    report = LoadReport(path=str(steps))
    digest = HASHES[STEPS_HASH]() if use_cache else None
    # hashed as it is read: the digest is of exactly the bytes validated
    with open(steps, "rb", buffering=READ_BUFFER) as f:
        started, stat = time.time_ns(), os.fstat(f.fileno())
        columns = rows_to_columns(row for episode in episodes_of_file(f, steps, report, digest=digest)
                                  for row in episode)
        size, unchanged = f.tell(), signature_of(os.fstat(f.fileno())) == signature_of(stat)
    # cached only if the file did not change while it was read (a collection may append meanwhile)
    if digest is not None and unchanged:
        _try_write_cache(cache, digest.hexdigest(), size, signature_of(stat) if was_still(stat, started) else None,
                         columns, report)
    return columns, report


# A whole read of a plain steps file is split at episode boundaries over worker processes, one a core, in parts of
# at least this size.
PARALLEL_MIN_BYTES = 64 << 20
_PARTS_FOLDER_PREFIX = "hera_read_"  # the temporary folder of one read in parts


def _read_in_parts(steps: Path, use_cache: bool) -> tuple[dict[str, Any], LoadReport, str | None, int,
                                                         tuple[int, ...] | None] | None:
    """The whole read of a large plain steps file split at episode boundaries over worker processes, one part each:
    each validates its lines and writes their columns, which are concatenated here while this process hashes the
    file. Returns (columns, report, digest or None, bytes hashed, stat to record or None), the digest None when the
    file changed during the read (nothing to cache) or `use_cache` is off; None where it does not apply (a .gz,
    a small file, one core, an odd line near a boundary, a worker that failed) or where an episode id is kept in
    two parts (whether the later one "appears twice" is for the one-process read to say)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if steps.suffix == ".gz" or cores < 2 or os.stat(steps).st_size < 2 * PARALLEL_MIN_BYTES:  # the common case
        return None
    with open(steps, "rb") as f, tempfile.TemporaryDirectory(prefix=_PARTS_FOLDER_PREFIX) as folder:
        started, stat = time.time_ns(), os.fstat(f.fileno())
        bounds = _episode_bounds(f, stat.st_size, min(cores, stat.st_size // PARALLEL_MIN_BYTES))
        if bounds is None:
            return None
        outs = [Path(folder) / f"part_{i}.npz" for i in range(len(bounds) - 1)]
        # plain interpreters, not multiprocessing: nothing depends on re-importing this process's __main__. A session
        # of their own, so a Ctrl-C reaches only this process, which ends them; a pipe from it, so they end with it.
        workers: list[subprocess.Popen] = []
        failure = None
        try:
            for start, end, out in zip(bounds, bounds[1:], outs):
                with open(out.with_suffix(".err"), "wb") as err:
                    workers.append(subprocess.Popen(
                        [sys.executable, "-c", _PART_WORKER, _PACKAGE_ROOT, str(os.getpid()), str(steps), str(start),
                         str(end), str(out)],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True))
            digest = None
            if use_cache:  # meanwhile, here: the file's hash (keys the cache); None if it was cut meanwhile
                f.seek(0)
                digest, _ = _hash_prefix(f, stat.st_size)
            for worker, start, end, out in zip(workers, bounds, bounds[1:], outs):
                if worker.wait() != 0 and failure is None:
                    said = out.with_suffix(".err").read_bytes().decode(errors="replace").strip().splitlines()
                    failure = (f"the worker for bytes {start}-{end} exited with status {worker.returncode}"
                               + (f": {said[-1]}" if said else ""))
        except OSError as e:  # no process to be had (a process limit, no memory): one process reads it
            failure = f"no worker process could be started ({e})"
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
                worker.stdin.close()
        unchanged = signature_of(os.fstat(f.fileno())) == signature_of(stat)
        if failure is not None:
            # the one-process read gives the same columns; said, because it costs that read's time again
            warnings.warn(f"{steps}: reading in parts failed, {failure}; reading it in one process", stacklevel=2)
            return None
        parts = [_read_part_file(out) for out in outs]
    ids = [part["episode_id_vocab"] for part, _, _ in parts]
    if len(set().union(*ids)) < sum(map(len, ids)):  # "appears twice" across parts: the one-process read judges it
        return None
    report = _merged_reports(str(steps), [(report, line_problems) for _, report, line_problems in parts])
    if report is None:
        return None
    columns = concat_columns(*(part for part, _, _ in parts))
    if digest is None or not unchanged:
        return columns, report, None, stat.st_size, None
    return columns, report, digest.hexdigest(), stat.st_size, signature_of(stat) if was_still(stat, started) else None


def _episode_bounds(f, size: int, parts: int) -> list[int] | None:
    """Byte offsets that cut the open steps file into about `parts` parts (first 0, last `size`), each cut at the
    start of a line that begins a new episode attempt, so that each part reads as it would in a read of the whole
    file; None for fewer than two parts, or where a line near a cut is not a valid row."""
    bounds = [0]
    for k in range(1, parts):
        f.seek(max(k * size // parts, bounds[-1]))
        f.readline()  # to the start of a line
        previous = None
        while True:
            offset, line = f.tell(), f.readline()
            if not line:
                break
            row, _ = parse_step_line(line)
            if row is None:
                return None
            if previous is not None and (row["episode_id"] != previous[0] or row["step"] <= previous[1]):
                bounds.append(offset)
                break
            previous = row["episode_id"], row["step"]
    bounds = sorted(set(bounds) - {size}) + [size]
    return bounds if len(bounds) >= 3 else None


# where this hera_jax was imported from: a worker imports the same copy, not one in its working folder
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_PART_WORKER = ("import sys; sys.path[:] = [sys.argv[1], *(p for p in sys.path if p not in ('', '.'))]; "
                "from hera_jax.columns import part_worker; part_worker(*sys.argv[1:])")


def part_worker(package_root: str, parent: str, path: str, start: str, end: str, out: str) -> None:
    """A worker process of `_read_in_parts` (whose pid is `parent`): `write_part`, ended at once if its parent goes
    (its stdin closes, or it is no longer this process's parent), and then removing the parent's temporary folder."""
    if _PACKAGE_ROOT != package_root:
        sys.exit(f"hera_jax imported from {_PACKAGE_ROOT}, not {package_root}")

    def parent_gone() -> None:  # a parent killed outright (SIGKILL) cannot remove its folder: its workers do
        if Path(out).parent.name.startswith(_PARTS_FOLDER_PREFIX):  # never a folder that is not the reader's own
            shutil.rmtree(Path(out).parent, ignore_errors=True)
        os._exit(1)

    def end_with_parent() -> None:
        while os.read(0, 1 << 10):  # the raw fd: a buffered reader's lock would stall the interpreter's exit
            pass
        parent_gone()

    threading.Thread(target=end_with_parent, daemon=True).start()
    if os.getppid() != int(parent):  # it went while this process started
        parent_gone()
    write_part(path, start, end, out)
    if os.getppid() != int(parent):  # it went while this part was read, and the thread above did not get to run
        parent_gone()


def write_part(path: str, start: str, end: str, out: str) -> None:
    """Validate the lines in bytes [start, end) of the steps file at `path` and write their columns and report to
    `out` (in the columns cache's format, episode problems after the line problems), if its folder still exists."""
    report = LoadReport(path=path)
    with open(path, "rb", buffering=READ_BUFFER) as f:
        f.seek(int(start))

        def lines() -> Iterator[bytes]:
            left = int(end) - int(start)
            while left > 0 and (line := f.readline(left)):
                left -= len(line)
                yield line

        episode_problems: list[str] = []
        columns = rows_to_columns((row for episode in episodes_of_lines(
            lines(), Path(path), report, episode_problems=episode_problems) for row in episode), decoded=False)
    line_problems = len(report.problems)
    report.problems += episode_problems
    if Path(out).parent.is_dir():  # else the reader is gone: nothing to leave behind
        _write_cache(Path(out), "", int(end) - int(start), None, columns, report, line_problems=line_problems)


def _read_part_file(path: Path) -> tuple[dict[str, Any], LoadReport, int]:
    """A worker's part: its columns (codes, not decoded), its report (line numbers counted from the part's start)
    and how many of its problems are line problems (the episode problems follow them)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["meta"].tobytes())
        return _stored_columns(z, decoded=False), LoadReport(**meta["report"]), meta["line_problems"]


def _merged_reports(path: str, parts: list[tuple[LoadReport, int]]) -> LoadReport | None:
    """The report of a whole read from its parts' reports: counters summed, each part's problems numbered from the
    file's first line, the line problems of all parts before their episode problems (as one read reports them);
    None if a problem does not start with "<path>:<line>" (then the one-process read reports it)."""
    merged = LoadReport(path=path)
    episode_problems: list[str] = []
    where = re.compile(re.escape(path) + r":(\d+)(?:-(\d+))?(?=:)")
    for report, line_problems in parts:
        offset = merged.num_lines
        for i, problem in enumerate(report.problems):
            if (match := where.match(problem)) is None:
                return None
            first, last = int(match[1]) + offset, match[2] and int(match[2]) + offset
            lines = f"{first}-{last}" if last else f"{first}"
            (merged.problems if i < line_problems else episode_problems).append(
                f"{path}:{lines}{problem[match.end():]}")
        merged.num_lines += report.num_lines
        merged.num_steps += report.num_steps
        merged.num_episodes += report.num_episodes
        merged.notes += report.notes
    merged.problems += episode_problems
    return merged


def rows_to_columns(rows: Iterable[dict[str, Any]], decoded: bool = True) -> dict[str, Any]:
    """Columns of validated step rows (a list or a stream): the CODED string columns (without `decoded`, only their
    codes and vocabularies: a part's worker leaves the string arrays to the reader that joins the parts), `variation`
    int64, `step` int32, `state_index` int32 into `distinct_keys` / `distinct_texts` (first-seen order), `label` int8
    IL label (-1 where the device or the cloud action is missing), `success` bool, and the device's confidence
    signals (features.DEVICE_SIGNALS) float32, NaN where the device reported none; for stage 2, `episode_steps`
    int32, `score` float32, `cloud_acted` bool (the cloud took the step) and `explored` bool (the routing choice was
    an exploration flip). Holds no per-row Python strings."""
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
        name_codes, name_vocab = np.array(codes[name], np.int32), list(vocab[name])
        columns.update(_decode(name, name_vocab, name_codes) if decoded
                       else {f"{name}_codes": name_codes, f"{name}_vocab": name_vocab})
    dtypes = {"variation": np.int64, "step": np.int32, "state_index": np.int32, "label": np.int8, "success": bool,
              "episode_steps": np.int32, "score": np.float32, "cloud_acted": bool, "explored": bool,
              **{name: np.float32 for name in DEVICE_SIGNALS}}
    for name, values in numbers.items():
        columns[name] = np.array(values, dtypes[name])
    columns.update(distinct_keys=list(index_of), distinct_texts=distinct_texts)
    return columns


def concat_columns(*parts: dict[str, Any]) -> dict[str, Any]:
    """The columns of the parts' rows one after another, as `rows_to_columns` of all of them gives them: the
    vocabularies and distinct states in first-seen order, each part's codes and state indices mapped onto them.
    Only the codes and vocabularies of the CODED columns are read, not their string arrays."""
    columns: dict[str, Any] = {}
    for name in CODED:
        vocab, codes = _merged([part[f"{name}_vocab"] for part in parts], [part[f"{name}_codes"] for part in parts])
        columns.update(_decode(name, vocab, codes))
    keys, columns["state_index"] = _merged([part["distinct_keys"] for part in parts],
                                           [part["state_index"] for part in parts])
    text_of: dict[str, str] = {}
    for part in parts:
        for key, text in zip(part["distinct_keys"], part["distinct_texts"]):
            text_of.setdefault(key, text)
    for name in NUMERIC:
        if name != "state_index":
            columns[name] = np.concatenate([part[name] for part in parts]).astype(parts[0][name].dtype)
    columns.update(distinct_keys=keys, distinct_texts=[text_of[key] for key in keys])
    return columns


def _merged(vocabs: list[list[str]], codes: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
    """One vocabulary of the words of `vocabs` in first-seen order, and each part's `codes` (into its own
    vocabulary) as codes into it, concatenated."""
    index_of: dict[str, int] = {}
    merged = [np.array([index_of.setdefault(word, len(index_of)) for word in vocab], np.int32)[part_codes]
              if len(vocab) else np.asarray(part_codes, np.int32) for vocab, part_codes in zip(vocabs, codes)]
    return list(index_of), np.concatenate(merged).astype(np.int32)


def _load_cached(cache: Path, steps: Path) -> tuple[dict[str, Any], LoadReport] | None:
    """The columns and load report of `steps` from its columns cache: as they are when the cache is of this version
    of the file, extended when the file is the cached version with lines appended; None when the cache is of no use
    (then every row is read). The file is hashed only when its stat is not the one recorded with the cache and its
    size is the cached version's; a cache that had to be checked by its hash records the stat then, for the next
    process."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            match = _cache_match(meta, list(stat_of_open(steps)), gzipped=steps.suffix == ".gz")
            signature = None
            if match == "hash":
                digest, signature = digest_with_stat(steps, STEPS_HASH)
                match = "same" if digest == meta["steps_digest"] else "stale"
            if match == "stale":
                return None
            columns = _stored_columns(z, decoded=match != "grown")  # a grown file's are decoded once extended
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # unreadable or cut: rebuilt from the rows
        return None
    if match == "grown":
        return _load_appended(steps, columns, meta, cache)
    report = _stored_report(meta, steps)
    if signature is not None:  # the stat of the very file whose hash matched, for the next process
        _try_write_cache(cache, meta["steps_digest"], signature[0], signature, columns, report)
    return columns, report


def _cache_match(meta: dict[str, Any], stat: list[int], gzipped: bool) -> str:
    """How a cache with this `meta` relates to a steps file with this (size, mtime, inode, ctime): "same" (its
    recorded stat), "hash" (to be decided by the file's hash), "grown" (possibly the cached version with lines
    appended: `_load_appended` decides) or "stale"."""
    if meta.get("version") != COLUMNS_VERSION:
        return "stale"
    if meta.get("steps_stat") == stat:
        return "same"
    cached_size = meta.get("steps_bytes")
    if cached_size is None or cached_size == stat[0]:
        return "hash"
    # a read with problems is not extended: a problem at its end (a cut episode, a stalled writer's half-written
    # line) could read differently with what follows
    extendable = stat[0] > cached_size and not meta["report"]["problems"] and not gzipped
    return "grown" if extendable else "stale"


def _load_appended(steps: Path, columns: dict[str, Any], meta: dict[str, Any],
                   cache: Path) -> tuple[dict[str, Any], LoadReport] | None:
    """`_load_cached` of a file that grew: if its first bytes are the cached version (hashed) and end a line, only
    the lines after them are validated, the columns extended and cached; else None."""
    head_size = meta["steps_bytes"]
    with open(steps, "rb", buffering=READ_BUFFER) as f:
        started, stat = time.time_ns(), os.fstat(f.fileno())
        digest, ends_line = _hash_prefix(f, head_size)
        if digest is None or not ends_line or digest.hexdigest() != meta["steps_digest"]:
            return None

        def hashed_lines() -> Iterator[bytes]:  # so that the digest is of exactly the bytes validated
            for line in f:
                digest.update(line)
                yield line

        report = _stored_report(meta, steps)
        # the vocabulary holds the id exactly (a string array drops trailing NULs)
        last = (columns["episode_id_vocab"][columns["episode_id_codes"][-1]], int(columns["step"][-1])) \
            if len(columns["step"]) else None
        try:
            tail = rows_to_columns((row for episode in episodes_of_lines(
                hashed_lines(), steps, report, after=last, seen=columns["episode_id_vocab"]) for row in episode),
                decoded=False)
        except ContinuesEarlierEpisode:
            return None
        size, unchanged = f.tell(), signature_of(os.fstat(f.fileno())) == signature_of(stat)
    columns = concat_columns(columns, tail)
    if unchanged:  # else appended to while it was read: right for the lines read, but no one version to cache
        _try_write_cache(cache, digest.hexdigest(), size, signature_of(stat) if was_still(stat, started) else None,
                         columns, report)
    return columns, report


def _hash_prefix(f, size: int) -> tuple[Any, bool]:
    """The digest object of the open file's first `size` bytes (None if it is shorter) and whether they end a line."""
    digest = HASHES[STEPS_HASH]()
    last = feed(f, digest, size)
    return (digest if f.tell() == size else None), last in (b"\n", b"")


def _stored_report(meta: dict[str, Any], steps: Path) -> LoadReport:
    """The cached read's report, naming `steps` where the file was read under another path (a moved dataset)."""
    report = LoadReport(**meta["report"])
    old, new = report.path, str(steps)
    report.path = new
    report.problems = [new + p[len(old):] if p.startswith(old + ":") else p for p in report.problems]
    return report


def _try_write_cache(path: Path, digest: str, size: int, signature: tuple[int, ...] | None,
                     columns: dict[str, Any], report: LoadReport) -> None:
    try:
        _write_cache(path, digest, size, signature, columns, report)
    except OSError:  # a read-only dataset folder: load from rows every time, correctly
        pass


def _write_cache(path: Path, digest: str, size: int, signature: tuple[int, ...] | None, columns: dict[str, Any],
                 report: LoadReport, **more_meta: Any) -> None:
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
    meta = {"version": COLUMNS_VERSION, "steps_digest": digest, "steps_bytes": size,
            "steps_stat": list(signature) if signature else None, "report": report.__dict__, **more_meta}
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


def _stored_columns(z, decoded: bool = True) -> dict[str, Any]:
    """The columns of an open columns cache (an `np.load` of it); without `decoded`, the CODED columns as their
    codes and vocabularies only (their string arrays are the slow part of a large load)."""
    columns: dict[str, Any] = {}
    for name in CODED:
        vocab, codes = _unpack_strings(z[f"{name}_vocab"], z[f"{name}_vocab_offsets"]), z[f"{name}_codes"]
        columns.update(_decode(name, vocab, codes) if decoded else {f"{name}_codes": codes, f"{name}_vocab": vocab})
    for name in ("distinct_keys", "distinct_texts"):
        columns[name] = _unpack_strings(z[name], z[f"{name}_offsets"])
    for name in NUMERIC:
        columns[name] = z[name]
    return columns


def _decode(name: str, vocab: list[str], codes: np.ndarray) -> dict[str, Any]:
    """A coded column: its codes, its vocabulary and the column itself, an object array whose rows share the
    vocabulary's str objects. A fixed-width `<U` array would hold 4 bytes a character of the longest word on every
    row (gigabytes of episode ids at 10M rows), and sorts and compares slower (benchmarks/RESULTS.md)."""
    words = np.empty(len(vocab), dtype=object)
    words[:] = vocab
    return {name: words[codes], f"{name}_codes": codes, f"{name}_vocab": vocab}


def _pack_strings(values: list[str]) -> np.ndarray:
    return np.frombuffer("".join(values).encode("utf-8"), np.uint8) if values else np.zeros(0, np.uint8)


def _offsets(values: list[str]) -> np.ndarray:
    """Byte offsets of each value in the packed blob (len(values) + 1 entries)."""
    return np.cumsum([0] + [len(v.encode("utf-8")) for v in values], dtype=np.int64)


def _unpack_strings(blob: np.ndarray, offsets: np.ndarray) -> list[str]:
    data = blob.tobytes()
    return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
