"""The evaluation command's one config (experiments/evaluate.py) and its price table, apart from the evaluation's code
so the flags parse without JAX or pandas."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar, Literal

from hera_jax.agents.config import AgentsConfig
from hera_jax.compile_cache import DEFAULT_DIR as DEFAULT_COMPILE_CACHE
from hera_jax.dataset import DataConfig
from hera_jax.envs.profiles import fill_run_defaults
from hera_jax.evaluate.baselines import with_baseline_knobs
from hera_jax.limits import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY
from hera_jax.rollout.engine import EngineConfig
from hera_jax.runs import RUNS_ROOT


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Cloud prices for the cost estimate. Token counts come from the cloud backend; where it reports none
    (stand-ins), input tokens are estimated from the prompt text and output tokens are a fixed guess."""

    model: str = "gpt-4o (list price, assumed)"
    usd_per_million_input: float = 2.50
    usd_per_million_output: float = 10.00
    chars_per_token: float = 4.0
    prompt_overhead_tokens: int = 500  # instructions and valid-action hints around the state text
    est_output_tokens: int = 10

    LIMITS: ClassVar[dict] = {"usd_per_million_input": NON_NEGATIVE, "usd_per_million_output": NON_NEGATIVE,
                              "chars_per_token": POSITIVE, "prompt_overhead_tokens": NON_NEGATIVE,
                              "est_output_tokens": NON_NEGATIVE}



@with_baseline_knobs  # adds each baseline's own settings (--random-rates, --confidence-min-margin, ...)
@dataclasses.dataclass(frozen=True)
class EvalConfig(DataConfig):
    """Frontiers of step-level routers vs baselines (success vs cloud-step ratio) on held-out tasks. The dataset's
    tasks are evaluated, the task-level baseline is trained on its train split and its features cache (--features-dir)
    is only read (new states go to --features-cache); the unseen tasks default to those of the first router's IL
    run."""

    routers: tuple[str, ...] = ()
    """Trained routers as NAME=CHECKPOINT_DIR[@STEP|@all], any number, e.g. il=runs/il/X/checkpoint
    rl=runs/rl/Y/checkpoints@all (one curve per RL iteration: rl0, rl1, ...). Default: il=<the most recent
    runs/il/* trained on --env>."""
    tasks: tuple[str, ...] | None = None
    """Seen task types to evaluate, or 'all' for every seen task of the dataset (default: the environment profile's
    evaluation tasks the dataset holds, e.g. 8 short ScienceWorld tasks; else all)."""
    dev_per_task: int | None = None
    """Dev-split variations per seen task (budget targeting picks knob values on these). Default per --env
    (hera_jax.envs.profiles): ScienceWorld 2, TWC 5, CookingWorld 2."""
    test_per_task: int | None = None
    """Test-split variations per seen task (default per --env: ScienceWorld 100, TWC 134, CookingWorld 2; fewer
    where a task has fewer)."""
    unseen_per_task: int | None = None
    """Test-split variations per unseen task (default per --env: ScienceWorld 5, TWC 30, CookingWorld 3)."""
    seen_test_split: Literal["test", "dev"] = "test"
    """Environment split the seen-task test episodes come from. 'dev': the dev split's variations after the first
    --dev-per-task (which pick knobs), for an environment whose dev split is a seen-game evaluation set
    (ALFWorld's valid_seen; pass the dataset's own dev count as --dev-per-task so its dev games stay out of test)."""
    thresholds: tuple[float, ...] = (0.25, 0.5, 0.75)
    """Router thresholds swept (p_cloud >= threshold -> cloud)."""
    threshold_shares: tuple[float, ...] = ()
    """Instead of --thresholds: per router, the thresholds that send these shares of the dataset's dev states to the
    cloud (as calibrate.py computes them), so each router's points span the same range of cloud use whatever the
    scale of its p_cloud (e.g. 0.25 0.5 0.75)."""
    baselines: tuple[str, ...] = ("random", "device_confidence", "device_p_top", "device_margin")
    """Baselines to run (registry: random, task_level, device_confidence, device_p_top, device_margin, swiftsage,
    oracle, bayes, bayes_harm). The device_* baselines need an LLM device (p_top and margin a scoring one:
    --agents.device gguf-score) and are skipped, with a note, for the stand-in; add task_level and swiftsage
    (2 points each) for the paper's other baselines, and oracle for the upper bound.
    oracle, bayes and bayes_harm are STAND-IN-only limits: they read the stand-in device's dice (oracle) or its error
    model (bayes: p(device error) >= threshold; bayes_harm: p(error) x p(unrecoverable) >= threshold). Each
    baseline's knob values are its own flag, declared in its module (--random-rates, --confidence-min-margin, ...)."""
    compare_to: str | None = None
    """Also report every method's frontier area minus this method's (e.g. `il`, an RL run's IL start), paired (the
    same resamples), printed and saved in summary.json (`intervals.area_minus_<name>`). Random step routing is
    always the first reference."""
    cloud_budget: float = 0.3
    """Target cloud-step ratio: each method's knob is picked on dev to stay within it, then reported on test; and
    each method's frontier success at this ratio (a mix of its knob values) with a 95 % CI, in summary.json
    (`intervals.frontier_areas`: success_at_budget, retained_at_budget = share of cloud-only success)."""
    prices: PriceTable = PriceTable()
    """Cloud price table for the cost estimate."""
    agents: AgentsConfig = AgentsConfig()
    """Cloud and device agents (default: STAND-INS, not LLMs; the device seed defaults to the dataset's, so the
    stand-in device is the one the router learned), their endpoints, budgets and deadlines."""
    max_steps: int | None = None
    """Per-episode step limit (default: the dataset's, which the router's step feature was trained with)."""
    max_steps_gold_factor: float | None = None
    """Also end an episode after ceil(this x its gold path's length) steps, where the env has gold paths (0: off;
    default per --env: 2, ALFWorld 0 since its cloud stand-in re-plans).
    Lost episodes otherwise run on to --max-steps and hold most cloud calls and run time (README, diagnosis)."""
    features_cache: Path = RUNS_ROOT / "evaluate" / "features"
    """The evaluation's own embedding cache (kept across runs so reruns embed nothing); datasets' caches are only read."""
    seed: int = 0
    """Seed of the random baseline's draws."""
    replay_from: Path | None = None
    """Recompute metrics, table and plot from this run folder's recorded rollouts; no agent or simulator runs.
    --cloud-budget and --prices apply anew; outputs go to --out (default: that folder)."""
    compile_cache: Path | None = DEFAULT_COMPILE_CACHE
    """Persistent XLA compile cache folder (a second run skips compiling); None turns it off."""
    out: Path | None = None
    """Run folder (default: runs/evaluate/<timestamp>). An existing folder with the same settings is resumed."""
    progress: bool = True
    """Show progress bars."""
    engine: EngineConfig = EngineConfig()
    """How the episodes run (lockstep batch size, Ray workers, simulator watchdog); never changes the records. Ray
    workers embed their own new states and write none to --features-cache. The batch size defaults per --env
    (ScienceWorld 2, TextWorldExpress 8: hera_jax.envs.profiles)."""

    KEPT_ON_INTERRUPT: ClassVar[str] = "finished episodes are kept"  # what a Ctrl-C leaves (cli.py)
    # Fields that may differ when an existing run folder is resumed (they change the report, not the episodes).
    # --routers may be spelled otherwise (DIR@STEP for DIR) on resume: check_same_routers compares what they load
    MAY_CHANGE_ON_RESUME: ClassVar[tuple[str, ...]] = ("compile_cache", "out", "progress", "cloud_budget",
                                                       "compare_to", "prices", "engine", "routers",
                                                       *(f"agents.{name}" for name in AgentsConfig.RUN_ONLY))
    LIMITS: ClassVar[dict] = {"dev_per_task": NON_NEGATIVE, "test_per_task": NON_NEGATIVE,
                              "unseen_per_task": NON_NEGATIVE, "thresholds": PROBABILITY,
                              "threshold_shares": PROBABILITY, "cloud_budget": PROBABILITY,
                              "max_steps": COUNT, "max_steps_gold_factor": NON_NEGATIVE}

    def __post_init__(self):
        fill_run_defaults(self, "eval_sizes")
