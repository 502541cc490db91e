"""The RL loop end to end on a tiny deterministic environment: it runs, checkpoints, and resumes after a kill."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.agents import GoldPathOracle, PerturbedGoldDevice
from hera_jax.envs.base import Observation, StepResult
from hera_jax.features import FeatureSpec
from hera_jax.rl import RLConfig, finished_iterations, open_run, run_rl
from hera_jax.rl.config import ExplorationConfig, PreferenceConfig
from hera_jax.rl.loop import preference_data, preference_options
from hera_jax.rl.run import ROLLOUT_COLUMNS_FILE, ROLLOUTS_FILE, iter_dir
from hera_jax.rl.rollouts import pooled_iterations, pooled_visits
from hera_jax.runs import RunFolderError
from hera_jax.rollout.collect import COLLECT_POLICY, collect, plan_episodes
from hera_jax.rollout.engine import EngineConfig, Policy, WorkerSetup, single_env
from hera_jax.rollout.records import read_steps
from hera_jax.rollout.episode import EpisodeSettings, always
from hera_jax.router.checkpoint import load_router
from hera_jax.rl.train import PreferenceTrainConfig
from hera_jax.rl.visits import grouped_visits, groups_of_keys, heldout_groups, visit_table
from hera_jax.router.train import TrainConfig
from hera_jax.sweep import RLRows, label_targets

# whole stage-2 runs (collect, IL, iterations, resume): the quick loop leaves them to the full run
pytestmark = pytest.mark.slow

DIM = 32


class KeyRoomEnv:
    """Five gold steps; a wrong 'focus on' fails the task, other wrong actions change nothing (a harmless detour)."""

    name = "keyroom"
    version = "test"
    distractors = ("go to garden", "open drawer", "focus on rock", "use rock on door", "take rock")

    def __init__(self):
        self.resets = 0

    def task_names(self):
        return ["t1"]

    def variations(self, task, split):
        return {"train": [0, 1, 2], "dev": [3, 4], "test": [5, 6]}[split]

    def _gold(self):
        item = ("key", "card", "coin", "pin", "chip", "tag", "gem")[self.variation]
        return ("go to hall", "open box", f"take {item}", f"focus on {item}", f"use {item} on door")

    def _valid(self):
        return tuple(sorted(set(self._gold()) | set(self.distractors)))

    def reset(self, task, variation):
        self.resets += 1
        self.variation, self.progress, self.detours = variation, 0, 0
        return Observation(f"You are in a room (variation {variation}).", f"Open the door with the {variation}",
                           self._valid(), self._gold())

    def step(self, action):
        gold = self._gold()
        if action == gold[self.progress]:
            self.progress += 1
            done = self.progress == len(gold)
            score = 100.0 if done else 20.0 * self.progress
            return StepResult(f"Done: {action}. Progress {self.progress}.", 0.0, score, done, done, self._valid())
        if action.startswith("focus on"):
            return StepResult("Wrong focus. Task failed.", 0.0, -100.0, True, False, self._valid())
        self.detours += 1
        return StepResult(f"Nothing useful happens ({action}).", 0.0, 20.0 * self.progress, False, False,
                          self._valid())

    def close(self):
        pass


def bag_of_words(texts):
    """A tiny deterministic text encoder (hashed bag of words), standing in for MiniLM in tests."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


@pytest.fixture(scope="module")
def il_dataset(tmp_path_factory):
    return collect_keyroom_dataset(tmp_path_factory.mktemp("keyroom_il"))


def collect_keyroom_dataset(folder: Path) -> Path:
    """An IL dataset of KeyRoomEnv (3 train, 2 dev, 2 test episodes), collected with the stand-in agents."""
    env = KeyRoomEnv()
    specs = plan_episodes(env, ["t1"], {"train": 3, "dev": 2, "test": 2}, mode="il", seed=0)
    manifest = {"env": {"name": "keyroom"}, "agents": {}, "settings": {"history_k": 2, "max_obs_chars": 200}}
    setup = WorkerSetup(single_env(env), GoldPathOracle(), PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8),
                        {COLLECT_POLICY: Policy(always("cloud"))},
                        EpisodeSettings(replay="device", history_k=2, max_obs_chars=200, max_steps=12))
    collect(specs, lambda: setup, folder, manifest, show_progress=False, setup=setup)
    return folder


def pooled_rows(run, iteration: int) -> list[dict]:
    """The validated rows of the rollouts stage 2 pools at `iteration`: the reference the columns path must equal."""
    return [row for j in pooled_iterations(run, iteration)
            for row in read_steps(iter_dir(run.run_dir, j) / ROLLOUTS_FILE)[0]]


def _config(out: Path, iters: int) -> RLConfig:
    return RLConfig(
        iters=iters, rollouts_per_task=3, train_variations=3, eval_variations=2, exploration=ExplorationConfig(rate=0.3),
        preference=PreferenceConfig(cost_weight=0.02),
        env="keyroom", unseen_tasks=(), features=FeatureSpec("toy-bag-of-words", DIM, text_design="joint"), max_steps=12, out=out,
        il_train=TrainConfig(hidden_sizes=(16,), max_epochs=8, patience=8, batch_size=16),
        train=PreferenceTrainConfig(epochs=6, batch_size=32, learning_rate=1e-3), progress=False, engine=EngineConfig(batch_size=1),
    )


def _run(config, il_dataset, hook=None, env=None):
    env = env or KeyRoomEnv()
    device = PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8)
    run = open_run(config, config.out, env, GoldPathOracle(), device, il_dataset, il_dataset / "features",
                   encode=bag_of_words)
    return run_rl(run, on_iteration_done=hook), env


def _comparable(history):
    """Metrics that must not depend on where a run was interrupted (not timings or embedding-cache hits)."""
    out = []
    for m in history:
        kept = {k: m[k] for k in ("iteration", "eval", "groups", "rollouts", "train") if k in m}
        kept.get("rollouts", {}).pop("newly_embedded_states", None)
        out.append(kept)
    return out


def _checkpoint_params(run_dir, step):
    return load_router(run_dir / "checkpoints", step=step).params


class Killed(BaseException):
    """Stands for the process being killed: not an error the engine's simulator restarts would retry."""


@pytest.fixture(scope="module")
def straight_run(il_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("rl") / "straight"
    history, _ = _run(_config(out, 2), il_dataset)
    return out, history


def test_run_writes_iterations_checkpoints_and_stand_in_labels(straight_run):
    out, history = straight_run
    assert [m["iteration"] for m in history] == [0, 1, 2]
    assert finished_iterations(out) == 2
    for i in range(3):
        assert (out / "checkpoints" / str(i)).is_dir()
    first = history[1]
    assert first["rollouts"]["episodes"] == 3 * 3  # 3 training variations x 3 rollouts
    assert first["rollouts"]["explore_steps"] > 0
    assert first["groups"]["groups_valid"] > 0
    assert first["groups"]["label_cloud"] + first["groups"]["label_device"] == first["groups"]["groups_valid"]
    assert history[2]["groups"]["visits"] > first["groups"]["visits"]  # window 0 pools all iterations so far
    assert history[0]["baselines"]["cloud_only"]["success_rate"] == 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["agents_are_stand_ins"] is True and "STAND-INS" in summary["agents_title"]
    assert (out / "features" / "embeddings_toy-bag-of-words.npz").exists()


def test_resume_after_a_kill_between_iterations_matches_a_straight_run(straight_run, il_dataset, tmp_path):
    straight_out, straight_history = straight_run
    out = tmp_path / "killed"

    def kill_after_first(iteration):
        if iteration == 1:
            raise Killed

    with pytest.raises(Killed):
        _run(_config(out, 2), il_dataset, hook=kill_after_first)
    assert finished_iterations(out) == 1
    history, env = _run(_config(out, 2), il_dataset)
    assert env.resets == 3 * 3 + 2  # only iteration 2: its rollouts and its held-out evaluation
    assert _comparable(history) == _comparable(straight_history)
    jax.tree.map(np.testing.assert_array_equal, _checkpoint_params(out, 2), _checkpoint_params(straight_out, 2))


class CrashingEnv(KeyRoomEnv):
    def __init__(self, crash_at_reset):
        super().__init__()
        self.crash_at_reset = crash_at_reset

    def reset(self, task, variation):
        if self.resets + 1 == self.crash_at_reset:
            raise Killed
        return super().reset(task, variation)


def test_resume_after_a_crash_inside_an_iteration(straight_run, il_dataset, tmp_path):
    straight_out, straight_history = straight_run
    out = tmp_path / "crashed"
    # iteration 0 evaluates 2 + 2 + 2 episodes (router, cloud-only, device-only); crash mid iteration 1's rollouts
    with pytest.raises(Killed):
        _run(_config(out, 2), il_dataset, env=CrashingEnv(crash_at_reset=6 + 5))
    assert finished_iterations(out) == 0
    history, env = _run(_config(out, 2), il_dataset)
    assert env.resets == (9 - 4) + 2 + 9 + 2  # the 4 finished rollouts are not redone
    assert _comparable(history) == _comparable(straight_history)
    jax.tree.map(np.testing.assert_array_equal, _checkpoint_params(out, 2), _checkpoint_params(straight_out, 2))


def test_resuming_with_other_settings_is_refused(straight_run, il_dataset):
    out, _ = straight_run
    changed = dataclasses.replace(_config(out, 2), preference=PreferenceConfig(cost_weight=0.5))
    with pytest.raises(RunFolderError, match=r"preference.cost_weight: run has 0.02, now 0.5"):
        _run(changed, il_dataset)


def test_more_iterations_continue_a_finished_run(straight_run, il_dataset, tmp_path):
    import shutil

    straight_out, _ = straight_run
    out = tmp_path / "continued"
    shutil.copytree(straight_out, out)
    history, env = _run(_config(out, 3), il_dataset)
    assert [m["iteration"] for m in history] == [0, 1, 2, 3]
    assert env.resets == 9 + 2


def test_default_tasks_are_the_shortest_seen_ones_in_dataset_order():
    from types import SimpleNamespace

    from hera_jax.rl.run import shortest_tasks

    # task "a": 2 episodes of 5 steps, "b": 1 episode of 2 steps, "c": 1 episode of 9 steps
    task = np.asarray(["a"] * 10 + ["b"] * 2 + ["c"] * 9)
    episode = np.asarray(["a0"] * 5 + ["a1"] * 5 + ["b0"] * 2 + ["c0"] * 9)
    table = SimpleNamespace(task=task, episode_id=episode)
    assert shortest_tasks(table, ["a", "b", "c"], 2) == ["a", "b"]
    assert shortest_tasks(table, ["a", "b", "c"], 0) == ["a", "b", "c"]


@pytest.mark.parametrize("label_rule,group_weighting", [("linear", "margin"), ("lexicographic", "class_balanced")])
def test_rl_loop_and_sweep_build_the_same_preference_rows(straight_run, il_dataset, label_rule, group_weighting):
    """One builder of preference rows: the loop's fine-tune rows equal the sweep's IL+RL label variant."""
    out, _ = straight_run
    config = dataclasses.replace(_config(out, 2), preference=PreferenceConfig(
        cost_weight=0.02, rule=label_rule, group_weighting=group_weighting, return_tolerance=0.1))
    run = open_run(_config(out, 2), out, KeyRoomEnv(), GoldPathOracle(),
                   PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset,
                   il_dataset / "features", encode=bag_of_words)
    run = dataclasses.replace(run, config=config)
    rows = pooled_rows(run, 2)
    loop_rows = preference_data(run, load_router(out / "checkpoints", step=1), rows)

    grouped = grouped_visits(rows, config.preference.return_kind, config.preference.return_estimate)
    il_mask = run.il.table.mask("train")
    il_keys = [k for k, m in zip(run.il.table.state_key, il_mask) if m]
    rl = RLRows(jnp.asarray(grouped.group), jnp.asarray(grouped.visits.chose_cloud), jnp.asarray(grouped.returns),
                jnp.asarray(grouped.future_calls), jnp.asarray(groups_of_keys(il_keys, grouped.keys)),
                jnp.zeros(len(grouped.keys), bool))
    sweep_rows = label_targets(jnp.asarray(run.il.table.label[il_mask], jnp.int32), rl, len(grouped.keys),
                               jnp.bool_(True), preference_options(config), config.il_weight)
    assert loop_rows.num_visits == len(grouped.visits) and loop_rows.stats["groups_valid"] > 0
    np.testing.assert_array_equal(np.asarray(sweep_rows.y), np.asarray(loop_rows.data.target).astype(np.int32))
    np.testing.assert_allclose(np.asarray(sweep_rows.w), np.asarray(loop_rows.data.weight), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(float(np.sum(loop_rows.data.weight[:loop_rows.num_visits])), 1.0, rtol=1e-5)


def test_early_stopping_holds_out_the_sweeps_groups_and_scores_them_with_their_full_weights(straight_run,
                                                                                            il_dataset):
    """--early-stopping-groups-percent: the fine-tune trains on the rows the sweep trains on with the same groups held
    out (their IL rows too), and the held-out loss weighs exactly the held-out visits, as the full loss does."""
    out, _ = straight_run
    config = dataclasses.replace(_config(out, 2), early_stopping_groups_percent=40)
    run = open_run(_config(out, 2), out, KeyRoomEnv(), GoldPathOracle(),
                   PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset,
                   il_dataset / "features", encode=bag_of_words)
    run = dataclasses.replace(run, config=config)
    rows = pooled_rows(run, 2)
    bundle = load_router(out / "checkpoints", step=1)
    stopped = preference_data(run, bundle, rows)
    full = preference_data(dataclasses.replace(run, config=_config(out, 2)), bundle, rows)

    grouped = grouped_visits(rows, config.preference.return_kind, config.preference.return_estimate)
    heldout = heldout_groups(grouped.keys, 40)
    il_mask = run.il.table.mask("train")
    il_keys = [k for k, m in zip(run.il.table.state_key, il_mask) if m]
    rl = RLRows(jnp.asarray(grouped.group), jnp.asarray(grouped.visits.chose_cloud), jnp.asarray(grouped.returns),
                jnp.asarray(grouped.future_calls), jnp.asarray(groups_of_keys(il_keys, grouped.keys)),
                jnp.asarray(heldout))
    sweep_rows = label_targets(jnp.asarray(run.il.table.label[il_mask], jnp.int32), rl, len(grouped.keys),
                               jnp.bool_(True), preference_options(config), config.il_weight)
    np.testing.assert_allclose(np.asarray(sweep_rows.w), np.asarray(stopped.data.weight), rtol=1e-6, atol=1e-9)
    n_v = stopped.num_visits
    in_heldout = heldout[np.asarray(grouped.group)]
    scored = np.asarray(stopped.data.heldout_weight)
    assert 0 < stopped.stats["heldout_groups_valid"] < stopped.stats["groups_valid"]
    assert (scored[n_v:] == 0).all() and (scored[:n_v][~in_heldout] == 0).all() and scored.sum() > 0
    np.testing.assert_allclose(scored[:n_v][in_heldout], np.asarray(full.data.weight)[:n_v][in_heldout], rtol=1e-6)
    assert (np.asarray(stopped.data.weight)[:n_v][in_heldout] == 0).all()  # never trained on
    assert full.data.heldout_weight is None


def test_a_run_from_init_checkpoint_records_the_checkpoints_inputs_and_refuses_other_feature_flags(straight_run,
                                                                                                   il_dataset, tmp_path):
    """The run keeps --init-checkpoint's router inputs: config.json says so (not the --features defaults), and a
    --features.* flag asking for other inputs is refused in one line instead of being ignored."""
    from hera_jax.errors import HeraError

    out, _ = straight_run
    checkpoint = out / "checkpoints"
    used = load_router(checkpoint).feature_spec
    assert used != FeatureSpec()  # the toy inputs, not the defaults
    agents = (KeyRoomEnv(), GoldPathOracle(), PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8))
    config = dataclasses.replace(_config(tmp_path / "from_ckpt", 1), features=FeatureSpec(), init_checkpoint=checkpoint)
    run = open_run(config, config.out, *agents, il_dataset, il_dataset / "features", encode=bag_of_words)
    assert run.config.features == used == run.spec
    assert json.loads((config.out / "config.json").read_text())["features"] == dataclasses.asdict(used) | {
        k: list(v) for k, v in dataclasses.asdict(used).items() if isinstance(v, tuple)}
    # the same command again resumes (the recorded inputs are the ones it resolves to)
    open_run(config, config.out, *agents, il_dataset, il_dataset / "features", encode=bag_of_words)
    other = dataclasses.replace(config, out=tmp_path / "other",
                                features=dataclasses.replace(used, text_design="segments"))
    with pytest.raises(HeraError, match=r"keeps its inputs, but --features.text-design 'segments' "
                                        r"\(checkpoint: 'joint'\); drop those flags"):
        open_run(other, other.out, *agents, il_dataset, il_dataset / "features", encode=bag_of_words)
    assert not (tmp_path / "other").exists()


def test_resuming_over_a_cut_iteration_metrics_file_stops_before_any_new_rollout(straight_run, il_dataset, tmp_path):
    import shutil

    from hera_jax.errors import HeraError

    out = tmp_path / "copy"
    shutil.copytree(straight_run[0], out)
    metrics = out / "iter_001" / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])
    with pytest.raises(HeraError, match=r"iter_001/metrics.json: not readable as an iteration's metrics"):
        _run(_config(out, 3), il_dataset)
    assert not (out / "iter_003").exists()


def test_agreement_is_none_not_zero_when_no_visit_carries_an_rl_label(straight_run, il_dataset):
    """The RL table's "agreement" is a share of labelled visits: with none (0 valid groups) it is unknown ("—"),
    never 0.000, and with some it is a share."""
    from hera_jax.rl.loop import fine_tune

    out, _ = straight_run
    run = open_run(_config(out, 2), out, KeyRoomEnv(), GoldPathOracle(),
                   PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset,
                   il_dataset / "features", encode=bag_of_words)
    bundle = load_router(out / "checkpoints", step=1)
    rows = preference_data(run, bundle, pooled_rows(run, 2))
    labelled = fine_tune(run.config, bundle, rows.data, rows.num_visits, 2).stats["margin_weighted_label_agreement"]
    assert 0.0 <= labelled <= 1.0
    unlabelled = rows.data._replace(weight=rows.data.weight.at[:rows.num_visits].set(0.0))
    assert fine_tune(run.config, bundle, unlabelled, rows.num_visits, 2).stats["margin_weighted_label_agreement"] is None


def test_an_rl_run_with_early_stopping_reports_the_kept_epoch(il_dataset, tmp_path):
    config = dataclasses.replace(_config(tmp_path / "stopped", 1), early_stopping_groups_percent=40)
    history, _ = _run(config, il_dataset)
    train = history[1]["train"]
    assert -1 <= train["kept_epoch"] < config.train.epochs
    assert train["heldout_loss_min"] <= min(train["heldout_loss_first_epoch"], train["heldout_loss_last_epoch"])
    assert history[1]["groups"]["heldout_groups_valid"] >= 0
    assert 0.0 <= train["margin_weighted_label_agreement"] <= 1.0  # the RL table's "agreement" column


def test_a_kill_while_copying_the_features_cache_leaves_no_cut_off_copy(straight_run, il_dataset, tmp_path,
                                                                        monkeypatch):
    """open_run copies the dataset's embedding cache into the run folder: a kill mid-copy must not leave a cut-off
    file that the rerun takes for the copy (it could not read it; only deleting it by hand let the run go on)."""
    import shutil

    source = straight_run[0] / "features"  # a cache holding every IL state
    out = tmp_path / "run"

    def open_it():
        return open_run(_config(out, 2), out, KeyRoomEnv(), GoldPathOracle(),
                        PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset, source,
                        encode=bag_of_words)

    def killed_mid_copy(src, dst, **_):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise Killed

    monkeypatch.setattr(shutil, "copyfile", killed_mid_copy)
    with pytest.raises(Killed):
        open_it()
    monkeypatch.undo()
    open_it()  # the rerun
    name = "embeddings_toy-bag-of-words.npz"
    assert (out / "features" / name).read_bytes() == (source / name).read_bytes()


@pytest.mark.parametrize("return_kind,window", [("success", 0), ("score", 0), ("score", 1)])
def test_pooled_visits_from_the_columns_cache_equal_the_rows_path(straight_run, il_dataset, monkeypatch,
                                                                  return_kind, window):
    """Stage 2 reads each iteration's rollouts as columns (cached, validated once); the visits, and the preference
    rows built from them, equal what the validated rows give."""
    out, _ = straight_run
    config = dataclasses.replace(_config(out, 2), window=window, preference=PreferenceConfig(
        cost_weight=0.02, return_kind=return_kind))
    run = dataclasses.replace(open_run(_config(out, 2), out, KeyRoomEnv(), GoldPathOracle(),
                                       PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset,
                                       il_dataset / "features", encode=bag_of_words), config=config)
    rows = pooled_rows(run, 2)
    from_rows = visit_table(rows, return_kind)
    import hera_jax.columns as columns_module

    pooled_visits(run, 2)  # writes any cache the run did not
    for j in (1, 2):
        assert (iter_dir(out, j) / ROLLOUT_COLUMNS_FILE).exists()

    def no_rows(*args, **kwargs):
        raise AssertionError("a matching columns cache must be read instead of the rows")

    monkeypatch.setattr(columns_module, "episodes_of_file", no_rows)
    visits = pooled_visits(run, 2)
    assert len(visits) == len(rows) and len(rows) > 0
    assert visits.explored.any() and visits.chose_cloud.any() and not visits.chose_cloud.all()
    for name in ("episode_index", "step", "chose_cloud", "explored", "episode_success"):
        np.testing.assert_array_equal(getattr(visits, name), getattr(from_rows, name), err_msg=name)
    for name in ("returns", "future_cloud_calls"):  # sums within an episode: the scan's order may move the last bit
        np.testing.assert_allclose(getattr(visits, name), getattr(from_rows, name), rtol=0, atol=1e-6, err_msg=name)
    assert visits.state_key == from_rows.state_key and visits.state_text == from_rows.state_text
    bundle = load_router(out / "checkpoints", step=1)
    a, b = preference_data(run, bundle, visits), preference_data(run, bundle, rows)
    assert a.stats == b.stats and a.num_visits == b.num_visits
    for name in ("x", "target", "weight"):
        np.testing.assert_array_equal(np.asarray(getattr(a.data, name)), np.asarray(getattr(b.data, name)))


def test_an_iterations_columns_are_rebuilt_when_its_rollouts_change(straight_run, il_dataset, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(straight_run[0], out)
    config = _config(out, 2)
    run = open_run(config, out, KeyRoomEnv(), GoldPathOracle(),
                   PerturbedGoldDevice(seed=0, error_medium=0.5, error_hard=0.8), il_dataset, il_dataset / "features",
                   encode=bag_of_words)
    before = pooled_visits(run, 2)
    rollouts = iter_dir(out, 2) / "rollouts.jsonl"
    lines = rollouts.read_text().splitlines(keepends=True)
    last_id = json.loads(lines[-1])["episode_id"]
    kept = [line for line in lines if json.loads(line)["episode_id"] != last_id]  # drop the last episode
    rollouts.write_text("".join(kept))
    after = pooled_visits(run, 2)
    assert len(after) == len(before) - (len(lines) - len(kept))
    np.testing.assert_array_equal(after.returns, visit_table(pooled_rows(run, 2), "success").returns)
