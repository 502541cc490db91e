from __future__ import annotations

import contextlib
import json
import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hera_jax.rollout.records import StepRecord, append_episode, write_json_atomic
from hera_jax.state import state_key

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DATASET = ROOT / "data" / "scienceworld_standin"


def make_steps(episode_id: str, task: str, split: str, device_cloud: list[tuple[str, str]], variation: int = 0):
    steps = []
    for i, (device, cloud) in enumerate(device_cloud):
        text = f"Task: {task}\nNow: observation {i} of {episode_id}"
        steps.append(
            StepRecord(
                episode_id=episode_id, env="toy", task=task, variation=variation, split=split, step=i,
                episode_steps=len(device_cloud), state_text=text, state_key=state_key(text), actor="cloud",
                action=cloud, device_action=device, cloud_action=cloud, reward=0.0, score=0.0,
                done=i == len(device_cloud) - 1, success=True,
            )
        )
    return steps


def write_toy_dataset(folder: Path, episodes: list[list[StepRecord]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "manifest.json", {"env": {"name": "toy"}, "agents": {}, "settings": {}})
    for steps in episodes:
        append_episode(folder / "steps.jsonl", steps)
    return folder


@pytest.fixture
def toy_dataset(tmp_path):
    def build(pairs_by_split: dict[str, list[list[tuple[str, str]]]], task="t1"):
        episodes = []
        for split, eps in pairs_by_split.items():
            for j, pairs in enumerate(eps):
                # variations are numbered across splits (one world belongs to one split), as in every environment
                episodes.append(make_steps(f"{task}/{split}/{j}", task, split, pairs, variation=len(episodes)))
        return write_toy_dataset(tmp_path / "ds", episodes)

    return build


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def script_in_process(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """Run `python experiments/<script> ARGS` in this process and return (exit status, stdout, stderr): for a
    command that stops at its flags or inputs, the test pays no interpreter start and no JAX import of its own."""

    import jax

    # a command that gets past its flags turns on the persistent compile cache: for this process, not the others
    global_options = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                      "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in global_options}

    def run(script: str, *args: str) -> tuple[int, str, str]:
        path = ROOT / "experiments" / script
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        # a failing command leaves a silent hook for its exit; pytest's own must come back after the test
        monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
        capsys.readouterr()
        message = ""
        try:
            runpy.run_path(str(path), run_name="__main__")
            code = 0
        except SystemExit as exit_:  # as the interpreter reads it: None is 0, a text goes to stderr with 1
            code, message = ((exit_.code or 0), "") if not isinstance(exit_.code, str) else (1, exit_.code + "\n")
        finally:
            for name, value in before.items():
                jax.config.update(name, value)
            with contextlib.suppress(ImportError, AttributeError):  # JAX keeps the cache it opened first
                from jax._src import compilation_cache

                compilation_cache.reset_cache()
        out, err = capsys.readouterr()
        return code, out, err + message

    return run
