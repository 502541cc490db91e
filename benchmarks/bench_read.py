"""Loading a dataset's step records into the training table (`hera_jax.columns.load_columns`), each load in a fresh
process: the validating read of every row, a load from the columns cache, and a load after episodes are appended
(only the appended lines are validated and the cache is extended).

The dataset's steps file is copied into `--work` first (a gzipped one is unpacked there): appending never touches
the source. A load right after a write hashes the file; `--still` waits until the copy has been unchanged long
enough (`hera_jax.files.STILL_FOR_NS`) for its recorded stat to stand for its hash, and times that load too.

    python benchmarks/make_large_dataset.py --steps 1M --out /tmp/hera_1M
    python benchmarks/bench_read.py --dataset /tmp/hera_1M --out benchmarks/results/cpu/read_1M.json
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, environment, print_table, write_json

from hera_jax.cli import run_cli
from hera_jax.files import STILL_FOR_NS
from hera_jax.rollout.records import MANIFEST_FILE, STEPS_FILE, StepRecord, append_episode, existing_steps_file

# a fresh interpreter times one load: imports are not the load's cost
TIME_ONE_LOAD = """
import json, sys, time
from hera_jax.columns import load_columns
start = time.perf_counter()
columns, report = load_columns(sys.argv[1], use_cache=sys.argv[2] == "cache")
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(columns["step"]),
                  "problems": len(report.problems)}))
"""


@dataclasses.dataclass(frozen=True)
class BenchReadConfig:
    """Time loading a dataset's steps into the training table: validating, cached, and after an append."""

    dataset: Path = ROOT / "data" / "scienceworld_standin"
    """Dataset folder whose steps are loaded (e.g. one from make_large_dataset.py)."""
    runs: int = 3
    """Fresh processes per kind of load."""
    append_episodes: int = 1
    """Episodes appended before each load of the "after an append" kind (copies of the file's last episode under
    new ids)."""
    still: bool = False
    """Also time a cached load whose recorded stat stands for the file's hash (waits up to a minute first)."""
    work: Path = Path(tempfile.gettempdir()) / "hera_bench_read"
    """Where the dataset's copy goes (emptied first)."""
    out: Path = ROOT / "benchmarks" / "results" / "read.json"


def time_load(folder: Path, use_cache: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", TIME_ONE_LOAD, str(folder), "cache" if use_cache else "rows"],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"loading {folder} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def copy_dataset(source: Path, folder: Path) -> Path:
    """`source`'s manifest and steps (unpacked) in `folder`; its steps file."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "features").mkdir(parents=True)
    shutil.copy(source / MANIFEST_FILE, folder / MANIFEST_FILE)
    steps = existing_steps_file(source / STEPS_FILE)
    with (gzip.open if steps.suffix == ".gz" else open)(steps, "rb") as f, open(folder / STEPS_FILE, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 22)
    return folder / STEPS_FILE


def last_episode(steps: Path) -> list[dict]:
    """The rows of the file's last episode (read from its end)."""
    with open(steps, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - (1 << 22)))
        rows = [json.loads(line) for line in f.read().splitlines()[1:] if line.strip()]
    return [row for row in rows if row["episode_id"] == rows[-1]["episode_id"]]


def main(config: BenchReadConfig) -> dict:
    steps = copy_dataset(config.dataset, config.work / "dataset")
    folder = steps.parent
    template = last_episode(steps)
    results: list[dict] = []

    def measure(kind: str, use_cache: bool = True, before=lambda: None) -> None:
        for run in range(config.runs):
            before()
            results.append({"load": kind, "run": run, **time_load(folder, use_cache)})
            print(json.dumps(results[-1]), file=sys.stderr)

    def append() -> None:
        for _ in range(config.append_episodes):
            episode_id = f"bench-read-appended-{time.time_ns()}"
            append_episode(steps, [StepRecord(**{**row, "episode_id": episode_id}) for row in template])

    measure("every row validated, no cache", use_cache=False)
    results.append({"load": "first load, writes the cache", "run": 0, **time_load(folder, True)})
    measure("cache, file hashed")
    measure(f"after {config.append_episodes} appended episode(s)", before=append)
    if config.still:
        time.sleep(max(0.0, STILL_FOR_NS / 1e9 + 1 - (time.time() - steps.stat().st_ctime)))
        time_load(folder, True)  # the first load of a still file records its stat
        measure("cache, recorded stat (no hashing)")

    kinds = list(dict.fromkeys(r["load"] for r in results))
    summary = []
    for kind in kinds:
        seconds = [r["seconds"] for r in results if r["load"] == kind]
        rows = [r["rows"] for r in results if r["load"] == kind]
        median = statistics.median(seconds)
        summary.append({"load": kind, "runs": len(seconds), "median_s": median, "min_s": min(seconds),
                        "max_s": max(seconds), "rows": max(rows), "rows_per_s": statistics.median(rows) / median})
    print_table(f"load_columns of {config.dataset} (copy in {folder}), fresh processes",
                ["load", "runs", "median s", "min s", "max s", "rows", "rows/s (median)"],
                [[s["load"], s["runs"], s["median_s"], s["min_s"], s["max_s"], s["rows"], s["rows_per_s"]]
                 for s in summary])
    payload = {"environment": environment(), "config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
               "summary": summary, "results": results}
    print(f"wrote {write_json(config.out, payload)}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchReadConfig)
