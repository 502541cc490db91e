"""Which routers an evaluation runs (`--routers NAME=DIR[@STEP|@all]`, or the newest IL run of the environment) and
what each was trained on (checkpoint metadata, else its run folder), for titles, cross-environment notes and the hint
that adds an RL run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from hera_jax.dataset import STATE_FORMAT_FIELDS, dataset_env
from hera_jax.envs.profiles import profile
from hera_jax.errors import HeraError
from hera_jax.files import read_json_object
from hera_jax.evaluate.baselines import METHOD_MODULES
from hera_jax.rollout.records import read_manifest
from hera_jax.runs import RUNS_ROOT


def _checkpoint_steps(path: Path) -> list[int]:
    """Finished orbax steps in a checkpoint folder (orbax names each step's folder by its number)."""
    return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())


def parse_routers(items: Sequence[str], env: str) -> dict[str, tuple[Path, int | None]]:
    """NAME=DIR (latest step), NAME=DIR@STEP, or NAME=DIR@all (one router per step, named NAME<step>: e.g. every RL
    iteration of experiments/rl_iter.py's <run>/checkpoints)."""
    if not items:
        runs = [p for p in (RUNS_ROOT / "il").glob("*/checkpoint") if p.is_dir() and _trained_on(p, env)]
        if not runs:
            raise HeraError(f"no router trained on {env} in {RUNS_ROOT / 'il'}: run experiments/il.py "
                            f"--env {env} first, or pass --routers il=PATH/checkpoint")
        # the most recently trained (not the last name: runs named with --out sort anywhere)
        return {"il": (max(runs, key=lambda p: (p.stat().st_mtime, str(p))), None)}
    routers: dict[str, tuple[Path, int | None]] = {}

    def add(name: str, item: str, value: tuple[Path, int | None]) -> None:
        if name in routers:  # a later entry would silently replace the earlier one
            raise HeraError(f"--routers: two routers named {name!r} ({item!r} and an earlier entry); give each its "
                            "own name")
        routers[name] = value

    for item in items:
        name, sep, target = item.partition("=")
        path, _, step = target.partition("@")
        if not sep or not name or not path:
            raise HeraError(f"--routers expects NAME=CHECKPOINT_DIR[@STEP|@all], got {item!r}")
        if name in METHOD_MODULES or name in ("device_only", "cloud_only") or "/" in name:
            raise HeraError(f"router name {name!r} clashes with a baseline name or contains '/'; pick another")
        path = Path(path)
        if not path.is_dir():
            raise HeraError(f"router {name}: {path} is not a checkpoint folder")
        if step == "all":
            steps = _checkpoint_steps(path)
            if not steps:
                raise HeraError(f"router {name}: {path} holds no finished checkpoint steps")
            for s in steps:
                add(f"{name}{s}", item, (path, s))
        elif step:
            if not step.isdigit():
                raise HeraError(f"router {name}: step must be a number or 'all', got {step!r}")
            add(name, item, (path, int(step)))
        else:
            add(name, item, (path, None))
    return routers


def _trained_on(checkpoint: Path, env: str) -> bool:
    """Whether `router_training` says the router saw `env`; an unreadable run folder is no candidate."""
    try:
        return any(source.get("env") == env for source in router_training(checkpoint, {}))
    except (OSError, ValueError, HeraError):
        return False


def rl_run_hint(env: str, il_checkpoint: Path) -> str | None:
    """How to add the newest RL run of `env` (rl_iter.py) to the default evaluation, or None without one."""
    runs = []
    for config_file in (RUNS_ROOT / "rl").glob("*/config.json") if (RUNS_ROOT / "rl").is_dir() else ():
        try:
            if json.loads(config_file.read_text()).get("env") == env:
                runs.append(config_file.parent / "checkpoints")
        except (OSError, ValueError):
            continue
    runs = [r for r in runs if r.is_dir() and _checkpoint_steps(r)]
    if not runs:
        return None
    newest = max(runs, key=lambda p: p.stat().st_mtime)
    return (f"note: evaluating only the IL router {il_checkpoint}; to compare the RL run {newest.parent} too, pass "
            f"--routers il={il_checkpoint} rl={newest}@all")


def _router_run_info(checkpoint: Path) -> dict:
    metrics = checkpoint.parent / "metrics.json"
    return (read_json_object(metrics, "the IL run's metrics", "restore it, or retrain the router with experiments/il.py")
            if metrics.exists() else {})


def _dataset_source(dataset: str | Path, unseen: list[str] | None = None) -> dict:
    """A `StepTable.trained_on()`-style entry for a dataset folder, read from its manifest."""
    try:
        manifest = read_manifest(dataset)
    except HeraError:
        manifest = {}
    settings = manifest.get("settings", {})
    return {"dataset": str(dataset), "env": dataset_env(manifest), "unseen_tasks": unseen,
            **{k: settings.get(k) for k in STATE_FORMAT_FIELDS}}


def router_training(checkpoint: Path, meta: dict) -> list[dict]:
    """What a router was trained on, one entry per dataset (folder, env, unseen tasks, state format), from its
    checkpoint metadata (experiments/il.py writes `trained_on`), else its IL run's metrics.json, else the
    config.json of the RL run it belongs to (<run>/checkpoints). Empty when none of these says."""
    if meta.get("trained_on"):
        return list(meta["trained_on"])
    info = _router_run_info(checkpoint)
    if info.get("trained_on"):
        return list(info["trained_on"])
    if info.get("dataset"):
        return [_dataset_source(info["dataset"], info.get("unseen_tasks"))]
    rl_config = checkpoint.parent / "config.json"
    if rl_config.exists():
        config = read_json_object(rl_config, "the RL run's settings",
                                  "restore it, or pass a router whose run folder is intact")
        env = config.get("env")
        dataset = config.get("dataset") or (profile(env).dataset if env else None)
        if dataset:
            return [_dataset_source(dataset, config.get("unseen_tasks"))]
    return []


def training_title(sources: list[dict]) -> str:
    """Short names of the environments a router was trained on, e.g. 'scienceworld + twc'."""
    if not sources:
        return "unknown data"
    names = [str(s.get("env") or Path(s["dataset"]).name) for s in sources]
    return " + ".join(n.removeprefix("textworld_express:") for n in names)
