"""The one config of the RL stage (consumed by tyro in experiments/rl_iter.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from hera_jax.compile_cache import DEFAULT_DIR as DEFAULT_COMPILE_CACHE
from hera_jax.agents.config import AgentsConfig
from hera_jax.dataset import DataConfig
from hera_jax.envs.profiles import fill_run_defaults
from hera_jax.rollout.episode import DEFAULT_MAX_STEPS
from hera_jax.features import FeatureSpec
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, Range
from hera_jax.rollout.engine import EngineConfig
from hera_jax.router.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class PreferenceTrainConfig:
    learning_rate: float = 3e-4
    """Constant AdamW learning rate of the fine-tune (after a one-epoch warmup)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    batch_size: int = 256
    """Rows per minibatch (capped at the number of rows)."""
    epochs: int = 5
    """Epochs per RL iteration (each warm-starts from the last). A group's label is one draw of the device's dice,
    and long fine-tunes fit the draws: short fine-tunes gained more frontier area than 40 epochs on TWC and
    ScienceWorld (README, RL, and its results folder)."""
    seed: int = 0
    """PRNG seed of the minibatch order."""

    LIMITS: ClassVar[dict] = {"learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE, "batch_size": COUNT,
                              "epochs": COUNT}


@dataclasses.dataclass(frozen=True)
class ExplorationConfig:
    """Exploration of the RL rollouts: the probability of flipping the router's choice at a step."""

    rate: float = 0.25
    """The flip probability (of iteration 1 when --exploration.schedule decays it)."""
    schedule: Literal["constant", "linear", "exponential"] = "constant"
    """Rate over iterations (rl/exploration.py): constant --exploration.rate, or a linear / exponential decay from
    it at iteration 1 to --exploration.final-rate at --exploration.decay-iters, constant after."""
    final_rate: float = 0.05
    """Rate at the end of a decay."""
    decay_iters: int = 5
    """Iteration at which a decaying schedule reaches --exploration.final-rate (fixed, so --iters can grow on
    resume)."""

    LIMITS: ClassVar[dict] = {"rate": PROBABILITY, "final_rate": PROBABILITY, "decay_iters": COUNT}


@dataclasses.dataclass(frozen=True)
class PreferenceConfig:
    """Stage 2's preference for a group of identical states (rl/visits.py, rl/preferences.py): which routing choice
    it prefers, and how much the group weighs in the fine-tune. (IL's "labels" are the device/cloud agreement.)"""

    cost_weight: float = 0.02
    """Price of one cloud call in units of return: a choice's score is mean return - cost_weight * future calls
    (--preference.rule linear); with 'lexicographic' it only scales the margins of groups decided by their calls."""
    rule: Literal["linear", "lexicographic"] = "linear"
    """'linear' = the choice with the higher mean return - cost_weight * mean future cloud calls (Hera);
    'lexicographic' = the higher mean return, and within --preference.return-tolerance the fewer mean future cloud
    calls. Ties go to the device."""
    return_tolerance: float = 0.0
    """'lexicographic' only: mean returns closer than this count as equal (then the cloud calls decide)."""
    return_kind: Literal["success", "score"] = "success"
    """Return from a step on: episode success (0/1), or the environment's score progress still made (0..1)."""
    return_estimate: Literal["lookahead", "monte-carlo"] = "lookahead"
    """How a visit's return and future cloud calls are estimated: 'monte-carlo' = what followed in its own episode;
    'lookahead' = its step plus the mean over all visits of the next state (choices reaching the same state get the
    same continuation, so later luck does not decide the preference; see rl/visits.py)."""
    group_weighting: Literal["margin", "uniform", "class_balanced"] = "margin"
    """Weight of each group in the loss: its margin (Hera), the same for all, or class-balanced ("prefer cloud" and
    "prefer device" groups carry equal total weight)."""

    LIMITS: ClassVar[dict] = {"cost_weight": NON_NEGATIVE, "return_tolerance": NON_NEGATIVE}


# RLConfig fields that moved into the groups above: their place in a run's config.json written before (resuming
# such a run compares them at their new place) and on the command line.
MOVED_FIELDS: dict[str, str] = {
    "exploration": "exploration.rate", "exploration_schedule": "exploration.schedule",
    "exploration_final": "exploration.final_rate", "exploration_decay_iters": "exploration.decay_iters",
    "cost_weight": "preference.cost_weight", "label_rule": "preference.rule",
    "return_tolerance": "preference.return_tolerance", "return_kind": "preference.return_kind",
    "return_estimate": "preference.return_estimate", "group_weighting": "preference.group_weighting",
}


def stored_preference(settings: dict) -> PreferenceConfig:
    """The preference settings of an RL run's config.json, from before or after they moved into `preference`."""
    fields = {f.name for f in dataclasses.fields(PreferenceConfig)}
    flat = {new.partition(".")[2]: settings[old] for old, new in MOVED_FIELDS.items()
            if new.startswith("preference.") and old in settings}
    return PreferenceConfig(**{k: v for k, v in {**flat, **settings.get("preference", {})}.items() if k in fields})


@dataclasses.dataclass(frozen=True)
class RLConfig(DataConfig):
    """Hera stage 2, iterated: roll out the routed hybrid agent with exploration, group identical states, label
    each group by the routing choice with the higher return net of future cloud calls, fine-tune the router,
    checkpoint, evaluate on held-out variations. Default agents are STAND-INS, not LLMs (see --agents.cloud, --agents.device).
    The IL dataset (--dataset) gives the IL start and the IL labels mixed into every fine-tune; its embedding cache
    (--features-dir) is copied into the run folder, never modified."""

    iters: int = 5
    """RL iterations to reach; rerunning with a larger value (and the same --out) continues a finished run."""
    rollouts_per_task: int = 3
    """Rollouts per training variation and iteration, each with its own exploration seed."""
    train_variations: int | None = None
    """Training variations per task (the first ones of the environment's train split). Default per --env
    (hera_jax.envs.profiles): ScienceWorld 50, twc 140, cookingworld 6; 2 for an environment without a profile."""
    eval_variations: int | None = None
    """Held-out variations per task for evaluation (the first ones of the test split; never rolled out in RL).
    Default per --env: ScienceWorld 20, twc 12, cookingworld 9 (fewer where a task has fewer)."""
    tasks: tuple[str, ...] = ()
    """Tasks to roll out and evaluate; empty = the --num-tasks seen tasks of the IL dataset with the shortest
    episodes (a ScienceWorld reset costs far more than a step, so short tasks keep an iteration cheap)."""
    num_tasks: int = 6
    """With no --tasks: how many seen tasks to use (0 = all tasks not held out as unseen)."""
    exploration: ExplorationConfig = ExplorationConfig()
    """How often the router's choice is flipped during RL rollouts (seeded; never in evaluation), per iteration."""
    preference: PreferenceConfig = PreferenceConfig()
    """How each group of identical states gets its preference (device or cloud) and its weight in the fine-tune."""
    il_weight: float = 0.2
    """IL mixing weight: weight of the IL loss on IL training states that no valid RL group covers, against 1 for
    the RL groups' loss (keeps the router from forgetting what RL says nothing about; 0 = RL labels only)."""
    il_pos_weight: float | None = None
    """Weight of "needs cloud" IL rows in the IL part; None = #negatives / #positives, the IL stage's balance."""
    early_stopping_groups_percent: int = 0
    """Share (%) of the state groups held out of each fine-tune (chosen by state key, the same in every iteration);
    the fine-tune keeps the epoch with the lowest margin-weighted loss on them (or the start, if none is lower).
    0 = off: --train.epochs on every group. A group's label is one draw of the device's dice at that state, so a
    warm-started network otherwise learns the draws of the states it trained on."""
    window: int = 0
    """Iterations whose rollouts are pooled into the groups (0 = all so far; 1 = only the current one)."""
    threshold: float = 0.5
    """p(cloud) at or above which the router sends a step to the cloud."""
    agents: AgentsConfig = AgentsConfig()
    """Cloud and device agents (default: STAND-INS, not LLMs), their endpoints, budgets and deadlines."""
    init_checkpoint: Path | None = None
    """Start from this IL router checkpoint folder (experiments/il.py's <run>/checkpoint); default: train it here."""
    features: FeatureSpec = FeatureSpec()
    """State features of an IL router trained here. With --init-checkpoint the run uses (and records) the
    checkpoint's; a --features.* flag that differs from them is refused."""
    il_train: TrainConfig = TrainConfig()
    """Settings of the IL router trained here when no --init-checkpoint is given."""
    train: PreferenceTrainConfig = PreferenceTrainConfig()
    """Fine-tune settings of each RL iteration."""
    max_steps: int = DEFAULT_MAX_STEPS
    """Per-episode step limit."""
    max_steps_gold_factor: float | None = None
    """Also end an episode after ceil(this x its gold path's length) steps, where the env has gold paths (0: off;
    default per --env: 2, ALFWorld 0 since its cloud stand-in re-plans):
    steps after an unrecoverable mistake teach nothing and cost run time."""
    baselines: bool = True
    """Also evaluate cloud-only and device-only on the held-out variations once (iteration 0)."""
    seed: int = 0
    """Seed of the exploration (with the iteration and rollout index) and of the fine-tunes."""
    compile_cache: Path | None = DEFAULT_COMPILE_CACHE
    """Persistent XLA compile cache folder (a second run skips compiling); None turns it off."""
    out: Path | None = None
    """Run folder (default runs/rl/<timestamp>). An existing one with the same settings is resumed after its last
    finished iteration."""
    resume: bool = False
    """Without --out: resume the most recent run under runs/rl."""
    progress: bool = True
    """Show progress bars."""
    engine: EngineConfig = EngineConfig()
    """How the rollouts run (lockstep batch size, Ray workers, simulator watchdog); never changes the records. The
    batch size defaults per --env (ScienceWorld 2, TextWorldExpress 8: hera_jax.envs.profiles)."""

    # Fields that may differ between a run and its resumption; everything else must match (hera_jax.runs).
    KEPT_ON_INTERRUPT: ClassVar[str] = "finished iterations and episodes are kept"  # what a Ctrl-C leaves (cli.py)
    MAY_CHANGE_ON_RESUME: ClassVar[tuple[str, ...]] = ("compile_cache", "iters", "out", "resume", "progress",
                                                       "engine",
                                                       *(f"agents.{name}" for name in AgentsConfig.RUN_ONLY))
    LIMITS: ClassVar[dict] = {"iters": NON_NEGATIVE, "rollouts_per_task": COUNT, "train_variations": COUNT,
                              "eval_variations": COUNT, "num_tasks": NON_NEGATIVE, "il_weight": NON_NEGATIVE,
                              "il_pos_weight": POSITIVE, "window": NON_NEGATIVE, "threshold": PROBABILITY,
                              "early_stopping_groups_percent": Range(0, 99),
                              "max_steps": COUNT, "max_steps_gold_factor": NON_NEGATIVE}
    MOVED_FIELDS: ClassVar[dict[str, str]] = MOVED_FIELDS

    def __post_init__(self):
        fill_run_defaults(self, "rl_sizes")
