"""Write an N-step dataset in the project's format by resampling a shipped dataset's episodes under new ids.

Each copy of a source episode keeps its task, variation, split and states, so identical states recur across copies
the way they do across real rollouts of one task (realistic state-group sizes), and the source's features caches
cover every state (nothing is embedded). The manifest says the data is resampled and for benchmarks only, and keeps
the source's agents (stand-ins stay labelled as such).

    python benchmarks/make_large_dataset.py --steps 1M --out /tmp/hera_1M
    python benchmarks/make_large_dataset.py --steps 10M --out /tmp/hera_10M --gzip
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import sys
import time
from pathlib import Path

from common import ROOT, parse_sizes

from hera_jax.cli import run_cli
from hera_jax.rollout.records import MANIFEST_FILE, STEPS_FILE, read_manifest, read_steps, write_json_atomic


@dataclasses.dataclass(frozen=True)
class MakeLargeConfig:
    """Resample a dataset's episodes into an N-step benchmark dataset."""

    out: Path
    """New dataset folder (must not exist)."""
    steps: str = "1M"
    """Number of steps to write (k and M suffixes allowed); the last episode is written whole."""
    source: Path = ROOT / "data" / "scienceworld_standin"
    """Dataset whose episodes are resampled (its features caches are copied along)."""
    gzip: bool = False
    """Write steps.jsonl.gz instead of steps.jsonl."""


def make_large(config: MakeLargeConfig) -> dict:
    target = parse_sizes(config.steps)[0]
    if config.out.exists():
        raise SystemExit(f"{config.out}: already exists; pick a new folder")
    rows, _ = read_steps(config.source / STEPS_FILE, strict=True)
    episodes: dict[str, list[dict]] = {}
    for row in rows:
        episodes.setdefault(row["episode_id"], []).append(row)
    # every line as a template with the episode id left open: one string join per written step
    templates = [[json.dumps({**r, "episode_id": "\x00"}, ensure_ascii=False).split('"\\u0000"') for r in steps]
                 for steps in episodes.values()]
    ids = list(episodes)
    config.out.mkdir(parents=True)
    name = STEPS_FILE + (".gz" if config.gzip else "")
    opener = (lambda p: gzip.open(p, "wt", encoding="utf-8", compresslevel=1)) if config.gzip else (
        lambda p: open(p, "w", encoding="utf-8", buffering=1 << 24))
    written, copies, start, next_report = 0, 0, time.perf_counter(), 0.1
    with opener(config.out / name) as f:
        while written < target:
            for episode_id, lines in zip(ids, templates):
                new_id = json.dumps(f"{episode_id}#r{copies}")
                f.write("".join(new_id.join(parts) + "\n" for parts in lines))
                written += len(lines)
                if written >= target:
                    break
                if written >= next_report * target:
                    print(f"  {written:,} of {target:,} steps ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
                    next_report += 0.1
            copies += 1
    source_features = config.source / "features"
    if source_features.is_dir():
        shutil.copytree(source_features, config.out / "features",
                        ignore=shutil.ignore_patterns("*.lock", "steps_columns.npz*"))
    manifest = read_manifest(config.source)
    manifest.pop("summary", None)
    manifest["resampled_from"] = {"dataset": str(config.source), "episodes": len(ids), "copies": copies,
                                  "note": "episodes repeated under new ids for benchmarks only; not new rollouts"}
    write_json_atomic(config.out / MANIFEST_FILE, manifest)
    summary = {"out": str(config.out), "steps": written, "source_episodes": len(ids), "copies": copies,
               "seconds": round(time.perf_counter() - start, 1),
               "bytes": (config.out / name).stat().st_size}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(make_large, MakeLargeConfig)
