"""Everything the experiments know about one environment, in one place: its shipped dataset, which tasks are
collected, held out and evaluated, the default evaluation and RL sizes, and its constructor options.

Experiments read `profile(env)` instead of branching on the environment's name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

_DATA_DIR = Path(__file__).resolve().parents[3] / "data"


@dataclasses.dataclass(frozen=True)
class EvalSizes:
    """Default variations per task of an evaluation (experiments/evaluate.py)."""

    dev_per_task: int = 1
    test_per_task: int = 1
    unseen_per_task: int = 2


@dataclasses.dataclass(frozen=True)
class RLSizes:
    """Default variations per task of an RL iteration (experiments/rl_iter.py)."""

    train_variations: int = 2
    eval_variations: int = 3


@dataclasses.dataclass(frozen=True)
class EnvProfile:
    name: str
    """Registry name (hera_jax.envs.make_env)."""
    dataset: Path | None = None
    """The dataset shipped in data/ (collected with stand-in agents), or None."""
    unseen_tasks: tuple[str, ...] = ()
    """Task types held out of training by default (the unseen-task test split)."""
    collect_tasks: tuple[str, ...] | None = None
    """Tasks collected by default; None = every task of the environment."""
    eval_tasks: tuple[str, ...] | None = None
    """Seen tasks evaluated by default (those the dataset holds); None = every seen task of the dataset."""
    eval_sizes: EvalSizes = EvalSizes()
    rl_sizes: RLSizes = RLSizes()
    engine_batch_size: int = 2
    """Default `--engine.batch-size` of rl_iter.py and evaluate.py (episodes stepped together, one simulator each;
    never changes the records)."""
    max_steps_gold_factor: float = 2.0
    """Default `--max-steps-gold-factor` of rl_iter.py and evaluate.py: an episode also ends after this many times
    its gold path's length. 0 (off) where the cloud stand-in re-plans and its path may be longer (ALFWorld)."""
    stand_ins: tuple[tuple[str, str], ...] = ()
    """Stand-in agent names this environment builds instead (`--agents.cloud oracle` -> 'expert' on ALFWorld)."""
    engine_workers: int = 1
    """Default `--engine.workers` of collect.py, rl_iter.py and evaluate.py (Ray workers; never changes the
    records)."""
    option_defaults: tuple[tuple[str, Any], ...] = ()
    """Constructor options of the environment and their defaults (e.g. ScienceWorld's simplification)."""

    def env_options(self, manifest: dict | None = None, **given: Any) -> dict[str, Any]:
        """The environment's constructor options: `given` (flags) where not None, else the dataset manifest's
        `env` entry, else the default. Options this environment does not take are dropped."""
        recorded = (manifest or {}).get("env", {})
        return {key: given[key] if given.get(key) is not None else recorded.get(key, default)
                for key, default in self.option_defaults}


# ScienceWorld's 14 collected tasks; the last two are held out entirely from training (unseen-task test split).
_SCIENCEWORLD_UNSEEN = ("melt", "chemistry-mix-paint-tertiary-color")
_SCIENCEWORLD_SEEN = (
    "boil", "change-the-state-of-matter-of", "chemistry-mix", "chemistry-mix-paint-secondary-color", "find-animal",
    "find-plant", "freeze", "lifespan-longest-lived", "measure-melting-point-known-substance", "power-component",
    "test-conductivity", "use-thermometer",
)

PROFILES: dict[str, EnvProfile] = {p.name: p for p in (
    EnvProfile(
        "scienceworld",
        dataset=_DATA_DIR / "scienceworld_standin",
        unseen_tasks=_SCIENCEWORLD_UNSEEN,
        collect_tasks=_SCIENCEWORLD_SEEN + _SCIENCEWORLD_UNSEEN,
        # the shorter seen tasks, so the default evaluation fits in minutes on 2 CPU cores (boil, freeze and the
        # melting-point tasks run 35-60 steps an episode); --tasks all evaluates all of the dataset's tasks
        eval_tasks=("chemistry-mix", "chemistry-mix-paint-secondary-color", "find-animal", "find-plant",
                    "lifespan-longest-lived", "power-component", "test-conductivity", "use-thermometer"),
        # 2 dev + up to 100 test variations of 8 seen tasks (most have fewer: 404 test episodes per point, sized
        # for a 95 % interval half-width of about 0.05 on success) and 5 of each unseen task (run time: README,
        # Evaluation)
        eval_sizes=EvalSizes(dev_per_task=2, test_per_task=100, unseen_per_task=5),
        # its 6 shortest seen tasks x up to 50 variations x 3 rollouts (684 exploration rollouts an iteration: two
        # tasks have 18 and 10) and up to 20 held-out variations each (94); run time: README, RL
        rl_sizes=RLSizes(train_variations=50, eval_variations=20),
        # B=2: on 2 CPU cores every extra ScienceWorld JVM warms up its own JIT, so larger batches are slower
        # (benchmarks/RESULTS.md)
        engine_batch_size=2,
        option_defaults=(("simplification", "easy"),),
    ),
    # TextWorldExpress "tasks" are difficulty presets; holding out two of four would leave too little to train on.
    # It has 2-3 seen presets and 1 unseen one, so more variations each. TWC's episodes are cheap with reused
    # simulators: 402 seen-task test episodes per point (3 presets x 134, sized for a 95 % interval half-width of
    # about 0.05 on success) and 30 unseen ones (README, Evaluation). CookingWorld keeps 4 seen-task test episodes
    # per point and 3 unseen (not measured at scale). TWC's RL rolls out 140 training variations x 3 presets x 3
    # rollouts (1,260 an iteration; README, RL) and holds out 12 per preset (36); CookingWorld keeps about 36
    # rollouts and 18 held-out episodes. Its simulators are light, so 8 episodes step together (faster than one at
    # a time: benchmarks/RESULTS.md).
    *(EnvProfile(f"textworld_express:{game}", dataset=_DATA_DIR / f"textworld_express_{game}_standin",
                 unseen_tasks=(f"{game}-doors",), eval_sizes=eval_sizes,
                 rl_sizes=RLSizes(train_variations=train, eval_variations=held_out), engine_batch_size=8)
      for game, eval_sizes, train, held_out in (("twc", EvalSizes(5, 134, 30), 140, 12),
                                                 ("cookingworld", EvalSizes(2, 2, 3), 6, 9))),
    # ALFWorld: the six task types are all seen (its generalisation test is unseen rooms: valid_unseen = "test").
    # The stand-ins follow its hand-coded expert, which re-plans from the current state.
    EnvProfile(
        "alfworld",
        dataset=_DATA_DIR / "alfworld_standin",
        # the default evaluation: 2 valid_seen + 12 valid_unseen games per task type (sized to run in minutes on 2
        # cores; --test-per-task 100 takes all 134 valid_unseen games: README, ALFWorld)
        eval_sizes=EvalSizes(dev_per_task=2, test_per_task=12, unseen_per_task=0),
        # 8 train games x 6 task types x 3 rollouts an iteration, 4 valid_unseen games each held out
        rl_sizes=RLSizes(train_variations=8, eval_variations=4),
        # its simulator is Python: lockstep threads share one core, Ray workers use both
        engine_batch_size=1,
        engine_workers=2,
        max_steps_gold_factor=0.0,
        stand_ins=(("oracle", "expert"), ("perturbed", "perturbed-expert")),
    ),
    # The paper's other environments: adapters exist (hera_jax/envs), no dataset is shipped.
    EnvProfile("webshop"),
    EnvProfile("appworld"),
)}

# Environments with a dataset in data/.
SHIPPED_DATASETS: dict[str, Path] = {name: p.dataset for name, p in PROFILES.items() if p.dataset is not None}


def profile(env: str) -> EnvProfile:
    """The profile of a registry name; a variant without its own profile (e.g. 'webshop:http://host:3000') gets its
    base environment's, and an environment without one gets the generic defaults."""
    if env in PROFILES:
        return PROFILES[env]
    base = env.partition(":")[0]
    return PROFILES[base] if base in PROFILES else EnvProfile(env)


def fill_run_defaults(config: Any, sizes: str) -> None:
    """Resolve a frozen run config's per-environment defaults in place, so config.json (and resuming) sees plain
    numbers: each field of the profile's `sizes` record ("eval_sizes", "rl_sizes") left None, the gold-length cap,
    and the engine's batch size and workers. For the __post_init__ of evaluate's and rl_iter's configs."""
    env_profile = profile(config.env)
    record = getattr(env_profile, sizes)
    for field in dataclasses.fields(record):
        if getattr(config, field.name) is None:
            object.__setattr__(config, field.name, getattr(record, field.name))
    if config.max_steps_gold_factor is None:
        object.__setattr__(config, "max_steps_gold_factor", env_profile.max_steps_gold_factor)
    object.__setattr__(config, "engine", config.engine.with_defaults(env_profile.engine_batch_size,
                                                                     env_profile.engine_workers))
