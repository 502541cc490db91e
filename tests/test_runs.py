"""Issue 14 findings 7, 9, 10 and issue 13 item 3: one run folder per run (a busy folder is refused at once,
a skipped checkpoint save fails loudly), declared resume fields, parse-time flag ranges, and the output fixes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import pytest
from rich.console import Console

from hera_jax.features import FeatureSpec
from hera_jax.limits import ConfigError, validate
from hera_jax.rl.config import MOVED_FIELDS, ExplorationConfig, PreferenceConfig, RLConfig, stored_preference
from hera_jax.rl.report import iteration_table
from hera_jax.router.checkpoint import CheckpointError, save_router
from hera_jax.router.model import RouterMLP
from hera_jax.router.train import TrainConfig
from hera_jax.runs import (LOCK_FILE, RunFolderError, check_resume, config_json, locked_run_dir, new_run_dir,
                           require_empty)
from hera_jax.rollout.records import write_json_atomic
from tests.conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}


def _cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "experiments" / script), *args], capture_output=True,
                          text=True, timeout=600, env=ENV, cwd=ROOT)


def _tiny_router(path):
    spec = FeatureSpec()
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(path, 0, params, TrainConfig(hidden_sizes=(4,)), spec)
    return path


# -- one run per folder ---------------------------------------------------------------------------------------------

def test_a_busy_folder_is_refused_and_an_unused_new_one_is_removed(tmp_path):
    with locked_run_dir(tmp_path / "run"):
        (tmp_path / "run" / "metrics.json").write_text("{}")
        with pytest.raises(RunFolderError, match="busy"):
            with locked_run_dir(tmp_path / "run"):
                pass
    with locked_run_dir(tmp_path / "run"):  # free again once the first run is done
        pass
    with pytest.raises(RunFolderError, match="not empty"):
        require_empty(tmp_path / "run")
    with pytest.raises(ValueError):
        with locked_run_dir(tmp_path / "failed"):
            raise ValueError("bad input before anything was written")
    assert not (tmp_path / "failed").exists()


def test_an_out_folder_that_cannot_be_made_is_one_line_naming_out(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(RunFolderError, match=r"afile: is a file, not a run folder; pass another --out"):
        with locked_run_dir(tmp_path / "afile"):
            pass
    with pytest.raises(RunFolderError, match=r"/proc/hera-run: cannot make the run folder there \(.*\); pass another --out"):
        with locked_run_dir(Path("/proc/hera-run")):
            pass


@pytest.mark.parametrize("script, args", [
    ("il.py", ()),
    ("rl_iter.py", ("--iters", "1")),
    ("sweep.py", ()),
    ("evaluate.py", ("--routers", "ROUTER")),
    ("collect.py", ("--env", "textworld_express:twc")),
])
def test_every_cli_refuses_a_folder_another_run_is_writing(tmp_path, script_in_process, script, args):
    out = tmp_path / "busy"
    args = tuple(f"il={_tiny_router(tmp_path / 'router')}" if a == "ROUTER" else a for a in args)
    with locked_run_dir(out):  # (a lock on its own open file: the command in this process finds it held too)
        write_json_atomic(out / "first_run.json", {"mine": True})
        code, _, err = script_in_process(script, *args, "--out", str(out))
        assert code == 2, err[-2000:]
        assert err.count("\n") == 1 and "busy" in err and "Traceback" not in err
        assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_FILE, "first_run.json"])  # nothing mixed in


def test_a_checkpoint_save_orbax_skips_fails_loudly(tmp_path):
    spec = FeatureSpec(encoder="toy", embedding_dim=6)
    params = RouterMLP((4,)).init(jax.random.key(0), jnp.zeros((1, spec.input_dim)))["params"]
    save_router(tmp_path / "ckpt", 7, params, TrainConfig(hidden_sizes=(4,)), spec)
    for step in (3, 7):  # an earlier run's later (or same) step is in the folder: orbax would skip silently
        with pytest.raises(CheckpointError, match=f"step {step} was not saved"):
            save_router(tmp_path / "ckpt", step, params, TrainConfig(hidden_sizes=(4,)), spec)


def test_new_run_dirs_never_collide(tmp_path):
    first = new_run_dir(tmp_path, "il")
    first.mkdir(parents=True)
    second = new_run_dir(tmp_path, "il")
    assert second != first and second.parent == tmp_path / "il"


def test_resume_allows_only_the_declared_fields_to_change(tmp_path):
    write_json_atomic(tmp_path / "config.json", config_json(RLConfig(iters=2)))
    check_resume(tmp_path, RLConfig(iters=5, progress=False))  # declared in RLConfig.MAY_CHANGE_ON_RESUME
    with pytest.raises(RunFolderError, match=r"exploration.rate: run has 0.25, now 0.5"):
        check_resume(tmp_path, RLConfig(iters=2, exploration=ExplorationConfig(rate=0.5)))



def test_a_damaged_settings_file_is_one_error_naming_it(tmp_path):
    (tmp_path / "config.json").write_text('{"broken')
    with pytest.raises(RunFolderError, match=r"config.json: not readable as the run's settings"):
        check_resume(tmp_path, RLConfig(iters=2))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match=r"config.json: holds list"):
        check_resume(tmp_path, RLConfig(iters=2))


def test_resume_of_a_run_from_before_a_field_existed_matches_only_at_its_default(tmp_path):
    # stage-2 options were added after runs had been started: their config.json lacks them
    stored = config_json(RLConfig(iters=2))
    stored["preference"] = {k: v for k, v in stored["preference"].items() if k != "group_weighting"}
    write_json_atomic(tmp_path / "config.json", stored)
    check_resume(tmp_path, RLConfig(iters=3))
    with pytest.raises(RunFolderError, match=r"preference.group_weighting: run has 'margin', now 'uniform'"):
        check_resume(tmp_path, RLConfig(iters=3, preference=PreferenceConfig(group_weighting="uniform")))


def test_resume_of_a_run_from_before_fields_moved_into_groups_compares_them_at_their_new_place(tmp_path):
    # config.json of a run started when exploration and preference settings were top-level fields
    now = config_json(RLConfig(iters=2))
    stored = {k: v for k, v in now.items() if k not in ("exploration", "preference")}
    for old, new in MOVED_FIELDS.items():
        group, _, field = new.partition(".")
        stored[old] = now[group][field]
    stored.update(exploration=0.3, cost_weight=0.05)  # the old spelling of --exploration.rate, --preference.cost-weight
    write_json_atomic(tmp_path / "config.json", stored)
    same = RLConfig(iters=3, exploration=ExplorationConfig(rate=0.3), preference=PreferenceConfig(cost_weight=0.05))
    check_resume(tmp_path, same)
    with pytest.raises(RunFolderError, match=r"preference.cost_weight: run has 0.05, now 0.02"):
        check_resume(tmp_path, RLConfig(iters=3, exploration=ExplorationConfig(rate=0.3)))
    assert stored_preference(stored) == same.preference
    assert stored_preference(config_json(same)) == same.preference

# -- finding 9: flag ranges at parse time ----------------------------------------------------------------------------

@pytest.mark.parametrize("script, args, message", [
    ("rl_iter.py", ("--iters", "-1"), "--iters must be >= 0, got -1"),
    ("rl_iter.py", ("--exploration.rate", "1.5"), "--exploration.rate must be <= 1, got 1.5"),
    ("rl_iter.py", ("--exploration", "0.3"), "--exploration was renamed: use --exploration.rate"),
    ("rl_iter.py", ("--label-rule", "linear"), "--label-rule was renamed: use --preference.rule"),
    ("il.py", ("--threshold", "2"), "--threshold must be <= 1, got 2.0"),
    ("il.py", ("--train.max-epochs", "0"), "--train.max-epochs must be >= 1, got 0"),
    ("il.py", ("--train.patience", "0"), "--train.patience must be >= 1, got 0"),
    ("collect.py", ("--train-per-task", "-1"), "--train-per-task must be >= 0, got -1"),
    ("evaluate.py", ("--thresholds", "0.5", "1.5"), "--thresholds must be <= 1, got 1.5"),
    ("sweep.py", ("--grid.learning-rates", "0"), "--grid.learning-rates must be > 0, got 0.0"),
])
def test_out_of_range_flags_are_one_line_errors_with_exit_2(tmp_path, script_in_process, script, args, message):
    code, _, err = script_in_process(script, *args, "--out", str(tmp_path / "out"))
    assert (code, err) == (2, f"error: {message}\n")
    assert not (tmp_path / "out").exists()


def test_nested_and_tuple_ranges_are_checked_and_secrets_never_echoed():
    @dataclasses.dataclass(frozen=True)
    class Config:
        rates: tuple[float, ...] = (0.1,)
        name: str = "x"
        train: TrainConfig = TrainConfig()
        LIMITS: ClassVar[dict] = {"rates": TrainConfig.LIMITS["learning_rate"]}

    validate(Config())
    with pytest.raises(ConfigError, match=r"--rates must be > 0, got -0.1"):
        validate(Config(rates=(0.1, -0.1)))
    with pytest.raises(ConfigError, match=r"--train.batch-size must be >= 1, got 0"):
        validate(Config(train=TrainConfig(batch_size=0)))
    with pytest.raises(ConfigError) as error:
        validate(Config(name="sk-0123456789abcdefghij"))
    assert str(error.value).startswith("--name looks like an API key") and "sk-0123" not in str(error.value)


# -- finding 10: output -------------------------------------------------------------------------------------------

def test_rl_table_is_readable_at_80_columns():
    history = [
        {"iteration": 0, "eval": {"success_rate": 0.5, "cloud_step_ratio": 0.333}, "timings_s": {"eval": 12.0},
         "baselines": {"cloud_only": {"success_rate": 1.0, "cloud_step_ratio": 1.0}}},
        {"iteration": 1, "eval": {"success_rate": 0.75, "cloud_step_ratio": 0.25},
         "rollouts": {"success_rate": 0.625, "cloud_step_ratio": 0.3},
         "groups": {"visits": 1234, "groups": 456, "groups_valid": 123, "label_cloud": 50, "label_device": 73,
                    "il_rows_mixed": 900},
         "train": {"margin_weighted_label_agreement": 0.912}, "timings_s": {"rollouts": 100.0}},
    ]
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(iteration_table(history, "cloud=oracle, device=perturbed (STAND-INS, not LLMs)"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for value in ("0.750", "0.625", "1234", "456", "123", "900", "0.912", "cloud-only", "IL start", "agreement"):
        assert value in text
    # every column is explained under its table
    for explained in ("rollout: this iteration's exploring rollouts", "IL rows mixed: IL train states",
                      "agreement: share of labelled visits"):
        assert explained in " ".join(text.split())
    # an iteration with no valid group has no agreement to show: a dash, not 0.000
    history[1]["train"]["margin_weighted_label_agreement"] = None
    console.print(iteration_table(history, "stand-ins"))
    labels_row = [line for line in console.export_text().splitlines() if "1234" in line][-1]
    assert labels_row.rstrip(" │").endswith("—") and "0.000" not in labels_row


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_il_table_header_states_the_threshold(tmp_path):
    proc = _cli("il.py", "--threshold", "0.3", "--train.max-epochs", "2", "--train.patience", "1",
                "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    header = [line for line in proc.stdout.splitlines() if "@0.3" in line]
    assert header and "@0.5" not in proc.stdout and "cloud-step" in proc.stdout  # "cloud-step / ratio / @0.3"


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_sweep_says_what_it_is_doing_before_the_long_steps(tmp_path):
    proc = _cli("sweep.py", "--grid.seeds", "0", "--grid.learning-rates", "0.001", "--train.max-epochs", "2",
                "--out", str(tmp_path / "sweep"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    compiling = next(i for i, line in enumerate(lines) if line.startswith("compiling the sweep"))
    training = next(i for i, line in enumerate(lines) if "training every configuration" in line)
    table = next(i for i, line in enumerate(lines) if "-config sweep on" in line)
    assert compiling < training < table  # each long step is announced before it starts


def test_a_run_stored_before_urls_were_redacted_still_resumes_and_another_endpoint_does_not(tmp_path):
    import dataclasses
    import json

    from hera_jax.agents.config import AgentsConfig
    from hera_jax.runs import RunFolderError, check_resume, config_json

    url = "http://127.0.0.1:9/k/Zq81xLp0Rk2mVb7TnW4cYs9dHf3Ja6Ge/v1"
    config = RLConfig(agents=AgentsConfig(cloud="openai", cloud_base_url=url))
    raw = json.loads(json.dumps(dataclasses.asdict(config), default=str))  # as stored before: the URL in full
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert "Zq81x" not in json.dumps(config_json(config))
    check_resume(tmp_path, config)
    other = RLConfig(agents=AgentsConfig(cloud="openai", cloud_base_url="http://127.0.0.1:9/other/v1"))
    with pytest.raises(RunFolderError, match="cloud_base_url"):
        check_resume(tmp_path, other)
