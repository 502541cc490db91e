"""A collected dataset as arrays the router trains on: steps, splits and IL labels.

Splits follow the environment's own variation splits (train/dev/test), so a variation never appears in two splits;
tasks listed as unseen are taken out of train/dev entirely and form the `test_unseen` split.
"""

from __future__ import annotations

import dataclasses
import difflib
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hera_jax.envs import check_env_name
from hera_jax.errors import HeraError
from hera_jax.envs.profiles import SHIPPED_DATASETS, profile
from hera_jax.columns import load_columns
from hera_jax.features import DEVICE_SIGNALS
from hera_jax.rollout.records import STEPS_FILE, DatasetError, LoadReport, read_manifest

SPLIT_NAMES = ("train", "dev", "test", "test_unseen")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which collected data a command reads: the fields il, rl_iter, sweep and evaluate share (their configs extend
    this one, so the flags stay `--env`, `--dataset`, ...)."""

    env: str = "scienceworld"
    """Environment registry name (the dataset must come from it); its shipped dataset is used without --dataset."""
    dataset: Path | None = None
    """Dataset folder written by experiments/collect.py (default: the shipped dataset of --env)."""
    features_dir: Path | None = None
    """The dataset's embedding cache (default: <dataset>/features); each command's description says whether it adds
    to it."""
    unseen_tasks: tuple[str, ...] | None = None
    """Task types held out of training, as the 'test_unseen' split (default: per environment of the dataset's
    manifest, hera_jax.envs.profiles, e.g. ScienceWorld: melt, chemistry-mix-paint-tertiary-color)."""

    def dataset_dir(self) -> Path:
        return resolve_dataset(self.dataset, self.env)

    def features_path(self) -> Path:
        return Path(self.features_dir) if self.features_dir is not None else self.dataset_dir() / "features"


def resolve_dataset(dataset: str | Path | None, env: str) -> Path:
    """`dataset` if given, else the shipped dataset of `env`."""
    if dataset is not None:
        return Path(dataset)
    check_env_name(env)
    shipped = profile(env).dataset
    if shipped is None:
        close = difflib.get_close_matches(env, list(SHIPPED_DATASETS), n=1)
        hint = f"did you mean --env {close[0]!r}? " if close else ""
        raise DatasetError(f"no shipped dataset for env {env!r}; {hint}the shipped ones are --env "
                           f"{', '.join(sorted(SHIPPED_DATASETS))}; or pass --dataset <a collected dataset folder>")
    return shipped


@dataclasses.dataclass(frozen=True)
class StepTable:
    """Column arrays of every step of the complete episodes in a dataset. `episode_id`, `task` and `split` are object
    arrays of str (rows share their values' str objects, see columns._decode), not fixed-width string arrays."""

    episode_id: np.ndarray
    task: np.ndarray
    variation: np.ndarray
    split: np.ndarray  # one of SPLIT_NAMES after unseen tasks are moved out
    step: np.ndarray
    state_index: np.ndarray
    """int32 per row: index into `distinct_keys` / `distinct_texts` (texts are held once per distinct state)."""
    distinct_keys: list[str]
    distinct_texts: list[str]
    label: np.ndarray  # int8 IL label, 1 = needs cloud
    success: np.ndarray
    manifest: dict
    report: LoadReport
    unseen_tasks: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    """The dataset folder(s) the rows come from (several for a union, see `load_union_table`)."""
    source: np.ndarray | None = None
    """Per row: index into `datasets` (None = all rows come from the one dataset)."""
    device_signals: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """features.DEVICE_SIGNALS name -> float32 per row: the device's confidence in its replayed action (NaN where
    the device reported none, e.g. a stand-in)."""

    def __len__(self) -> int:
        return len(self.step)

    @property
    def state_key(self) -> list[str]:
        """Per row (a list of N strings: prefer `state_index` + `distinct_keys` on large tables)."""
        return [self.distinct_keys[i] for i in self.state_index.tolist()]

    @property
    def state_text(self) -> list[str]:
        """Per row (a list of N strings: prefer `state_index` + `distinct_texts` on large tables)."""
        return [self.distinct_texts[i] for i in self.state_index.tolist()]

    def mask(self, split: str) -> np.ndarray:
        return self.split == split

    def source_mask(self, index: int) -> np.ndarray:
        """Rows of `datasets[index]`."""
        if self.source is None:
            return np.full(len(self), index == 0)
        return self.source == index

    def trained_on(self) -> list[dict]:
        """What a router trained on this table saw, per dataset: folder, environment, unseen tasks, state format.
        Stored in checkpoint metadata so an evaluation can say (and check) what a router was trained on."""
        manifests = self.manifest.get("union_of") or [self.manifest]
        datasets = self.datasets or ("",)
        out = []
        for index, (folder, manifest) in enumerate(zip(datasets, manifests)):
            rows = self.source_mask(index)
            out.append({
                "dataset": folder,
                "env": dataset_env(manifest),
                "unseen_tasks": sorted(set(self.task[rows & self.mask("test_unseen")].tolist())),
                **{k: manifest.get("settings", {}).get(k) for k in STATE_FORMAT_FIELDS},
            })
        return out


def manifest_agents_title(agents: dict) -> str:
    """One line for plots and tables from a manifest's `agents` (role -> description); stand-ins are named as such."""
    described = {role: agents.get(role, {}) for role in ("cloud", "device")}
    names = ", ".join(f"{role}={a.get('name')}" + (" (real LLM)" if a.get("kind") == "llm" else "")
                      for role, a in described.items())
    stand_ins = [role for role, a in agents.items() if a.get("kind") == "stand-in"]
    if len(stand_ins) == len(agents) and agents:
        return f"agents: STAND-INS ({names}), not LLMs"
    if stand_ins:
        return f"agents: {names} — {' and '.join(stand_ins)} is a STAND-IN, not an LLM"
    return f"agents: {names}"


def load_il_table(dataset_dir: str | Path, unseen_tasks: Sequence[str] | None = None,
                  use_cache: bool = True) -> StepTable:
    """Load complete episodes with IL labels. `unseen_tasks=None` takes the default of the manifest's environment.
    The columns come from the dataset's columns cache when it matches the records (columns.py), else from the
    validated rows (`use_cache=False`: always from the rows, nothing written)."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(
            f"{dataset_dir}: dataset folder not found; collect one with experiments/collect.py --out {shlex.quote(str(dataset_dir))}"
        )
    manifest = read_manifest(dataset_dir)
    if unseen_tasks is None:
        unseen_tasks = profile(manifest.get("env", {}).get("name", "")).unseen_tasks
    columns, report = load_columns(dataset_dir, use_cache=use_cache)
    if not len(columns["step"]):
        raise DatasetError(
            f"{dataset_dir / STEPS_FILE}: no complete episodes"
            + (f" ({len(report.problems)} problem(s), first: {report.problems[0]})" if report.problems else "")
            + "; run experiments/collect.py to fill it"
        )
    missing_replay = np.flatnonzero(columns["label"] < 0)
    if missing_replay.size:
        first = int(missing_replay[0])
        raise DatasetError(
            f"{dataset_dir / STEPS_FILE}: {missing_replay.size} steps lack device_action or cloud_action "
            f"(e.g. episode {columns['episode_id'][first]} step {columns['step'][first]}); IL needs the device "
            "replayed on cloud states (collect.py's default mode)"
        )
    check_no_split_leak(columns, dataset_dir / STEPS_FILE, report)
    table = StepTable(
        episode_id=columns["episode_id"],
        task=columns["task"],
        variation=columns["variation"],
        split=columns["split"],
        step=columns["step"],
        state_index=columns["state_index"],
        distinct_keys=columns["distinct_keys"],
        distinct_texts=columns["distinct_texts"],
        label=columns["label"],
        success=columns["success"],
        manifest=manifest,
        report=report,
        unseen_tasks=(),
        datasets=(str(dataset_dir),),
        source=np.zeros(len(columns["step"]), np.int32),
        device_signals={name: columns[name] for name in DEVICE_SIGNALS},
    )
    return hold_out_tasks(table, unseen_tasks)


def check_no_split_leak(columns: dict, where: Path, report: LoadReport) -> None:
    """Refuse a task and variation (one world: every environment here numbers its variations across splits) played
    in two splits, and an episode of one split that repeats, state for state, an episode of the same task and
    variation in another split (e.g. a train episode, or its first steps, copied under a new id into test): a router
    would be tested on what it trained on, and no metric would show it. Episodes of *different* variations that play identically (some
    environments have look-alike variations in different splits) are reported once as a note in `report`."""
    episode_codes = columns["episode_id_codes"]
    starts = np.flatnonzero(np.r_[True, episode_codes[1:] != episode_codes[:-1]])
    ends = np.r_[starts[1:], len(episode_codes)]
    # per episode fingerprint: the first episode seen in each (split, variation)
    seen: dict[bytes, dict[tuple[str, int], int]] = {}
    look_alikes: list[tuple[int, int]] = []
    split_of_world: dict[tuple[str, int], tuple[str, int]] = {}
    for start, end in zip(starts.tolist(), ends.tolist()):
        world = (str(columns["task"][start]), int(columns["variation"][start]))
        first_split, first = split_of_world.setdefault(world, (str(columns["split"][start]), start))
        if first_split != str(columns["split"][start]):
            raise DatasetError(
                f"{where}: episode {columns['episode_id'][start]} ({columns['split'][start]}) plays task "
                f"{world[0]!r} variation {world[1]} like episode {columns['episode_id'][first]} ({first_split}): one "
                "world in two splits leaks training data into evaluation; remove one of them")
        fingerprint = columns["state_index"][start:end].tobytes() + b"|" + columns["task"][start].encode()
        split, variation = str(columns["split"][start]), int(columns["variation"][start])
        earlier = seen.setdefault(fingerprint, {})
        for (other_split, _), other in earlier.items():
            if other_split != split:  # a different variation: a same one was refused above
                look_alikes.append((start, other))
        earlier.setdefault((split, variation), start)
    if look_alikes:
        start, other = look_alikes[0]
        report.notes.append(
            f"{where}: {len(look_alikes)} episode(s) play state for state like an episode of another split with a "
            f"different variation (e.g. {columns['episode_id'][start]} ({columns['split'][start]}) and "
            f"{columns['episode_id'][other]} ({columns['split'][other]})): look-alike variations of the environment, "
            "kept; their test states are not new to the router")


def hold_out_tasks(table: StepTable, unseen_tasks: Sequence[str]) -> StepTable:
    """`table` with the rows of `unseen_tasks` moved to the `test_unseen` split (out of train/dev entirely)."""
    known = set(table.task.tolist())
    unknown = sorted(set(unseen_tasks) - known)
    if unknown:
        problems = table.report.problems
        raise DatasetError(
            f"unseen task(s) {unknown} are not in {', '.join(table.datasets)}; "
            f"its tasks are: {', '.join(sorted(known))}"
            + (f" ({len(problems)} problem(s) loading it, so episodes may be missing; first: {problems[0]})"
               if problems else "")
        )
    split = np.where(np.isin(table.task, list(unseen_tasks)), "test_unseen", table.split.astype(object))
    return dataclasses.replace(table, split=split, unseen_tasks=tuple(table.unseen_tasks) + tuple(unseen_tasks))


# Manifest settings that shape the router's input text; datasets (and routers) with different values see
# differently built states, so they are not mixed.
STATE_FORMAT_FIELDS = ("history_k", "max_obs_chars")


def dataset_env(manifest: dict) -> str | None:
    return (manifest.get("env") or {}).get("name")


def check_dataset_env(collected_in: str | None, env: str, dataset: Path) -> None:
    """A dataset must come from --env (a manifest that names only the base environment, e.g. 'webshop' for
    'webshop:<url>', matches any of its variants; a dataset without a manifest env matches any)."""
    if collected_in is None or collected_in == env or (":" not in collected_in and collected_in == env.partition(":")[0]):
        return
    raise HeraError(f"{dataset}/manifest.json: env.name is {collected_in!r}, not --env {env!r}; pass --dataset of "
                    f"that environment, or --env {collected_in}")


def resolve_datasets(items: Sequence[str | Path]) -> list[Path]:
    """Each item is a dataset folder, or an environment name with a shipped dataset (e.g. textworld_express:twc)."""
    out = []
    for item in items:
        text = str(item)
        out.append(SHIPPED_DATASETS[text] if text in SHIPPED_DATASETS and not Path(text).is_dir() else Path(text))
    return out


def load_union_table(dataset_dirs: Sequence[str | Path], unseen_tasks: Sequence[str] | None = None) -> StepTable:
    """Several datasets as one table to train one router on. Each keeps its own splits, IL labels and (by default)
    its environment's unseen tasks; an explicit `unseen_tasks` is applied to whichever datasets hold those tasks.

    Refused with one line naming the file and field: a dataset given twice, a manifest without an environment
    name (`read_manifest`), different state formats (`STATE_FORMAT_FIELDS`) or agents, tasks or episode ids
    shared by two datasets.
    """
    dirs = [Path(d) for d in dataset_dirs]
    if not dirs:
        raise DatasetError("no dataset given")
    if len(dirs) == 1:
        return load_il_table(dirs[0], unseen_tasks)
    resolved = [d.resolve() for d in dirs]
    for i, d in enumerate(resolved):
        if d in resolved[:i]:
            raise DatasetError(f"{dirs[i]}: dataset given twice; list each dataset once")
    manifests = [read_manifest(d) for d in dirs]  # each refused unless it names its environment, agents, settings
    first, first_manifest = dirs[0], manifests[0]
    for d, manifest in zip(dirs[1:], manifests[1:]):
        for field in STATE_FORMAT_FIELDS:
            a, b = first_manifest.get("settings", {}).get(field), manifest.get("settings", {}).get(field)
            if a != b:
                raise DatasetError(
                    f"{d / 'manifest.json'}: settings.{field} is {b!r} but {first / 'manifest.json'} has {a!r}; "
                    "the router's state texts would be built differently, so these datasets cannot be trained on "
                    "together (re-collect one with the other's setting)"
                )
        for role in sorted(set(first_manifest.get("agents", {})) | set(manifest.get("agents", {}))):
            a, b = first_manifest.get("agents", {}).get(role), manifest.get("agents", {}).get(role)
            if a != b:
                raise DatasetError(
                    f"{d / 'manifest.json'}: agents.{role} is {b!r} but {first / 'manifest.json'} has {a!r}; "
                    "IL labels of different agent pairs mean different things and are not mixed"
                )
    if unseen_tasks is None:  # each dataset's own environment default
        tables = [load_il_table(d) for d in dirs]
    else:  # each explicit task is held out of whichever dataset holds it
        tables = [load_il_table(d, ()) for d in dirs]
        tasks_of = [set(t.task.tolist()) for t in tables]
        missing = sorted(set(unseen_tasks) - set().union(*tasks_of))
        if missing:
            raise DatasetError(f"unseen task(s) {missing} are in none of {', '.join(map(str, dirs))}")
        tables = [hold_out_tasks(t, [u for u in unseen_tasks if u in tasks]) for t, tasks in zip(tables, tasks_of)]
    owner: dict[str, Path] = {}
    for d, table in zip(dirs, tables):
        for task in sorted(set(table.task.tolist())):
            if task in owner:
                raise DatasetError(
                    f"{d / STEPS_FILE}: task {task!r} is also in {owner[task] / STEPS_FILE}; tasks must belong to "
                    "one dataset of a union (its splits and unseen tasks are per dataset)"
                )
            owner[task] = d
    episode_owner: dict[str, Path] = {}
    for d, table in zip(dirs, tables):
        for episode in dict.fromkeys(table.episode_id.tolist()):
            if episode in episode_owner:
                raise DatasetError(f"{d / STEPS_FILE}: episode id {episode!r} is also in {episode_owner[episode]}")
            episode_owner[episode] = d
    report = LoadReport(
        path=", ".join(str(d / STEPS_FILE) for d in dirs),
        num_lines=sum(t.report.num_lines for t in tables),
        num_steps=sum(t.report.num_steps for t in tables),
        num_episodes=sum(t.report.num_episodes for t in tables),
        problems=[p for t in tables for p in t.report.problems],
        notes=[n for t in tables for n in t.report.notes],
    )
    manifest = {
        "env": {"name": " + ".join(dataset_env(m) for m in manifests)},
        "agents": first_manifest.get("agents", {}),
        "settings": first_manifest.get("settings", {}),
        "union_of": manifests,
    }
    return StepTable(
        episode_id=np.concatenate([t.episode_id for t in tables]),
        task=np.concatenate([t.task for t in tables]),
        variation=np.concatenate([t.variation for t in tables]),
        split=np.concatenate([t.split for t in tables]),
        step=np.concatenate([t.step for t in tables]),
        state_index=np.concatenate([t.state_index + offset for t, offset in
                                    zip(tables, np.cumsum([0] + [len(t.distinct_keys) for t in tables[:-1]]))]),
        distinct_keys=[k for t in tables for k in t.distinct_keys],
        distinct_texts=[x for t in tables for x in t.distinct_texts],
        label=np.concatenate([t.label for t in tables]),
        success=np.concatenate([t.success for t in tables]),
        manifest=manifest,
        report=report,
        unseen_tasks=tuple(u for t in tables for u in t.unseen_tasks),
        datasets=tuple(str(d) for d in dirs),
        source=np.concatenate([np.full(len(t), i, np.int32) for i, t in enumerate(tables)]),
        device_signals={name: np.concatenate([t.device_signals[name] for t in tables]) for name in DEVICE_SIGNALS},
    )


def check_trainable(table: StepTable, dataset_dir: str | Path) -> None:
    for name in ("train", "dev"):
        labels = table.label[table.mask(name)]
        if labels.size == 0:
            raise DatasetError(f"{dataset_dir}: the {name} split is empty; collect some {name} variations")
        if name == "train" and labels.min() == labels.max():
            raise DatasetError(
                f"{dataset_dir}: every train state has label {int(labels[0])} "
                f"({'needs cloud' if labels[0] else 'device is enough'}); a router needs both classes. "
                "Collect with a device agent that sometimes agrees and sometimes disagrees with the cloud."
            )
