import json
import subprocess
import sys

import numpy as np
import pytest

from hera_jax.evaluate.episodes import PriceTable, episode_id, episode_table, parse_episode_id
from hera_jax.evaluate.report import headline, plot_frontiers, points_table
from hera_jax.rollout.records import StepRecord, append_episode, write_json_atomic
from tests.conftest import ROOT

STAND_INS = {
    "cloud": {"name": "gold-path-oracle", "kind": "stand-in"},
    "device": {"name": "perturbed-gold-device", "kind": "stand-in"},
}


def episode(method, param, split, variation, actors, success, final_score=100.0, task="boil"):
    eid = episode_id(method, param, split, task, variation)
    n = len(actors)
    return [
        StepRecord(
            episode_id=eid, env="toy", task=task, variation=variation, split="test", step=i, episode_steps=n,
            state_text="x" * 40, state_key=f"{eid}/{i}", actor=actor, action="a", device_action=None,
            cloud_action=None, reward=0.0, score=final_score if i == n - 1 else 0.0, done=i == n - 1, success=success,
        )
        for i, actor in enumerate(actors)
    ]


def constructed_rollouts():
    """dev/test points of a router at two thresholds, plus references; success rises with cloud use."""
    eps = []
    for split in ("test", "test_unseen"):
        for v in range(2):
            eps.append(episode("device_only", None, split, v, ["device"] * 4, False, -100.0))
            eps.append(episode("cloud_only", None, split, v, ["cloud"] * 4, True))
    for split in ("dev", "test", "test_unseen"):
        for v in range(2):
            # threshold 0.7: 1 of 4 steps to cloud; succeeds in one of two episodes
            eps.append(episode("il", 0.7, split, v, ["cloud", "device", "device", "device"], v == 0, 50.0))
            # threshold 0.3: 3 of 4 steps to cloud; always succeeds
            eps.append(episode("il", 0.3, split, v, ["cloud", "cloud", "cloud", "device"], True))
    return [r for steps in eps for r in steps]


def rows_of(records):
    return [r.__dict__ for r in records]


def test_episode_ids_round_trip():
    eid = episode_id("rl2", 0.35, "test_unseen", "chemistry-mix", 7)
    assert parse_episode_id(eid) == {"method": "rl2", "param": 0.35, "eval_split": "test_unseen",
                                     "task": "chemistry-mix", "variation": 7}
    assert np.isnan(parse_episode_id(episode_id("oracle", None, "test", "t", 1))["param"])


def test_episodes_per_task_counts_each_finished_episode_once_per_split_and_task():
    from hera_jax.evaluate.episodes import episodes_per_task

    rows = rows_of(constructed_rollouts()) + rows_of(
        episode("il", 0.3, "test", 7, ["cloud", "device"], True, task="melt"))
    assert episodes_per_task(rows) == {"dev": {"boil": 4}, "test": {"boil": 8, "melt": 1}, "test_unseen": {"boil": 8}}
    assert episodes_per_task([]) == {}


def test_episode_table_estimates_cost_and_clips_failed_scores():
    prices = PriceTable(usd_per_million_input=1.0, usd_per_million_output=2.0, chars_per_token=4.0,
                        prompt_overhead_tokens=10, est_output_tokens=5)
    table = episode_table(rows_of(episode("il", 0.5, "test", 0, ["cloud", "device", "cloud"], False, -100.0)), prices)
    row = table.iloc[0]
    assert (row.method, row.eval_split, row.steps, row.cloud_steps) == ("il", "test", 3, 2)
    assert row.score == 0.0 and not row.success and row.tokens_estimated
    np.testing.assert_allclose(row.cloud_tokens, 2 * (40 / 4 + 10 + 5))
    np.testing.assert_allclose(row.cost_usd, 2 * (20 * 1.0 + 5 * 2.0) / 1e6)


def test_reported_tokens_are_used_when_present():
    records = episode("cloud_only", None, "test", 0, ["cloud", "cloud"], True)
    for r in records:
        r.cloud_tokens_in, r.cloud_tokens_out = 100, 7
    row = episode_table(rows_of(records), PriceTable()).iloc[0]
    assert row.cloud_tokens == 214 and not row.tokens_estimated


def test_budget_targeting_picks_on_dev_and_reports_test():
    points = points_table(episode_table(rows_of(constructed_rollouts()), PriceTable()))
    il_test = points[(points.method == "il") & (points.eval_split == "test")].set_index("param")
    np.testing.assert_allclose(il_test.loc[0.7, "cloud_step_ratio"], 0.25)
    np.testing.assert_allclose(il_test.loc[0.3, "success_rate"], 1.0)

    summary = headline(points, budget=0.3, methods=["device_only", "cloud_only", "il"]).set_index("method")
    assert summary.loc["il", "budget_param"] == 0.7 and summary.loc["il", "budget_met_on_dev"]
    np.testing.assert_allclose(summary.loc["il", "test/cloud_step_ratio"], 0.25)
    np.testing.assert_allclose(summary.loc["il", "test/success_retained"], 0.5)
    # frontier: (0, 0) device, (0.25, 0.5), (0.75, 1.0), (1, 1) cloud
    np.testing.assert_allclose(summary.loc["il", "test/auc_success"], 0.0625 + 0.375 + 0.25)

    generous = headline(points, budget=0.8, methods=["il"]).set_index("method")
    assert generous.loc["il", "budget_param"] == 0.3
    strict = headline(points, budget=0.1, methods=["il"]).set_index("method")
    assert not strict.loc["il", "budget_met_on_dev"] and strict.loc["il", "budget_param"] == 0.7


def test_routers_in_one_plot_never_share_colour_and_marker():
    from hera_jax.evaluate.report import _STYLE, router_styles

    styles = router_styles([f"rl{i}" for i in range(24)])
    assert len(set(styles.values())) == 24
    assert not set(styles.values()) & set(_STYLE.values())  # nor look like a baseline


def test_plot_is_written_and_non_empty(tmp_path):
    points = points_table(episode_table(rows_of(constructed_rollouts()), PriceTable()))
    path = plot_frontiers(points, tmp_path / "frontier.png", "agents: STAND-INS (x), not LLMs", 0.3,
                          {"il": "router: il"})
    assert path.exists() and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_replay_recomputes_outputs_without_agents(tmp_path):
    run = tmp_path / "run"
    for steps in [constructed_rollouts()]:
        append_episode(run / "rollouts.jsonl", steps)
    write_json_atomic(run / "config.json", {"agents": STAND_INS, "notes": []})
    out = tmp_path / "replayed"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "evaluate.py"), "--replay-from", str(run), "--out", str(out),
         "--cloud-budget", "0.8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "STAND-INS" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    il = next(h for h in summary["headline"] if h["method"] == "il")
    assert il["budget_param"] == 0.3 and summary["cloud_budget"] == 0.8
    assert (out / "frontier.png").stat().st_size > 10_000
    assert len(json.loads((out / "points.json").read_text())) == 10  # 2 refs x 2 splits + 2 thresholds x 3 splits
    assert len(il["test/auc_success_ci"]) == 2 and len(il["test/success_ci"]) == 2  # 95 % CIs saved
    assert {a["method"] for a in summary["intervals"]["frontier_areas"]} == {"device_only", "cloud_only", "il"}
    assert "±" in proc.stdout  # CI half-widths printed
    # the run folder has no summary.json: an interrupted evaluation, and the replay says so
    assert "PARTIAL" in proc.stdout and summary["timings_s"]["partial"] is True
    partial_note = next(n for n in summary["notes"] if n.startswith("PARTIAL"))
    assert "dev: boil 4; test: boil 8; test_unseen: boil 8" in partial_note  # the finished episodes' task mix
    write_json_atomic(run / "summary.json", {"timings_s": {"total": 1.0}})  # as a finished run leaves it
    again = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "evaluate.py"), "--replay-from", str(run), "--out",
         str(tmp_path / "again")], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "PARTIAL" not in again.stdout


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_compare_to_saves_and_prints_paired_area_differences_against_a_named_method(tmp_path):
    run = tmp_path / "run"
    append_episode(run / "rollouts.jsonl", constructed_rollouts())
    write_json_atomic(run / "config.json", {"agents": STAND_INS, "notes": []})

    def replay(*extra):
        return subprocess.run([sys.executable, str(ROOT / "experiments" / "evaluate.py"), "--replay-from", str(run),
                               "--out", str(tmp_path / "out"), *extra], capture_output=True, text=True, timeout=300)

    proc = replay("--compare-to", "cloud_only")
    assert proc.returncode == 0, proc.stderr
    assert "minus cloud_only" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {(r["method"], r["eval_split"]): r for r in summary["intervals"]["area_minus_cloud_only"]}
    areas = {(r["method"], r["eval_split"]): r["area"] for r in summary["intervals"]["frontier_areas"]}
    for split in ("test", "test_unseen"):
        il, cloud = rows[("il", split)], areas[("cloud_only", split)]
        np.testing.assert_allclose(il["area_minus_cloud_only"], areas[("il", split)] - cloud, atol=1e-12)
        assert il["area_minus_cloud_only_low"] <= il["area_minus_cloud_only"] <= il["area_minus_cloud_only_high"]
        assert rows[("cloud_only", split)]["area_minus_cloud_only"] == 0.0
    assert il["area_minus_cloud_only"] > 0  # the router's points lie above the device-cloud line
    bad = replay("--compare-to", "rl")
    assert bad.returncode == 2 and "--compare-to 'rl'" in bad.stderr and "il" in bad.stderr


@pytest.mark.slow  # among the slowest of the quick loop; CI runs it
def test_replay_of_a_folder_without_rollouts_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "evaluate.py"), "--replay-from", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.splitlines()) == 1


def test_replay_refuses_routers_it_cannot_apply(tmp_path):
    """A replay recomputes the recorded routers' outputs: another --routers would be ignored, so it is refused."""
    from hera_jax.errors import HeraError
    from hera_jax.evaluate.evaluate_app import EvalConfig, evaluate

    with pytest.raises(HeraError, match=r"--routers does not apply with --replay-from: the replay recomputes"):
        evaluate(EvalConfig(replay_from=tmp_path, routers=("il=elsewhere/checkpoint",)))


def test_router_arguments_expand_rl_iterations(tmp_path):
    from hera_jax.errors import HeraError
    from hera_jax.evaluate.routers import parse_routers

    for step in ("0", "1", "3", "tmp-partial"):
        (tmp_path / "checkpoints" / step).mkdir(parents=True)
    routers = parse_routers((f"il={tmp_path / 'checkpoints'}@1", f"rl={tmp_path / 'checkpoints'}@all"), "scienceworld")
    assert routers == {"il": (tmp_path / "checkpoints", 1), **{f"rl{s}": (tmp_path / "checkpoints", s) for s in (0, 1, 3)}}
    for bad in ("il", "random=" + str(tmp_path), f"x={tmp_path / 'nope'}", f"x={tmp_path}@last"):
        with pytest.raises(HeraError):
            parse_routers((bad,), "scienceworld")
    # one name twice (also through @all's names) would silently keep only the last
    for twice in ((f"il={tmp_path / 'checkpoints'}@0", f"il={tmp_path / 'checkpoints'}@1"),
                  (f"rl={tmp_path / 'checkpoints'}@all", f"rl1={tmp_path / 'checkpoints'}@0")):
        with pytest.raises(HeraError, match="two routers named"):
            parse_routers(twice, "scienceworld")


def test_interval_tables_pair_methods_and_feed_headline():
    from hera_jax.evaluate.report import interval_tables, with_intervals

    episodes = episode_table(rows_of(constructed_rollouts()), PriceTable())
    point_ci, method_ci = interval_tables(episodes, limits=("il",), n_resamples=500)
    assert set(point_ci.eval_split) == {"dev", "test", "test_unseen"}
    assert set(method_ci.eval_split) == {"test", "test_unseen"}  # areas only where device/cloud-only anchor them
    for key in ("success", "cloud_step_ratio"):
        assert (point_ci[f"{key}_low"] <= point_ci[key] + 1e-12).all()
        assert (point_ci[key] <= point_ci[f"{key}_high"] + 1e-12).all()
    il = method_ci[(method_ci.method == "il") & (method_ci.eval_split == "test")].iloc[0]
    assert il.share_of_il == 1.0 and il.share_of_il_low == 1.0 and il.share_of_il_high == 1.0  # paired: exactly 1
    assert np.isnan(il.area_minus_random)  # no random baseline here
    points = with_intervals(points_table(episodes), point_ci)
    assert len(points) == 10 and points.success_low.notna().all()
    summary = headline(points, 0.8, ["device_only", "cloud_only", "il"], method_ci).set_index("method")
    low, high = summary.loc["il", "test/auc_success_ci"]
    assert low <= summary.loc["il", "test/auc_success"] <= high
    assert summary.loc["il", "test/success_ci"] == [1.0, 1.0]  # threshold 0.3 succeeded on both test episodes
    # the frontier at the budget: within its interval, and as a share of cloud-only success
    low, high = summary.loc["il", "test/frontier_success_at_budget_ci"]
    assert low <= summary.loc["il", "test/frontier_success_at_budget"] <= high


def test_interval_tables_give_each_frontier_at_the_cloud_budget():
    from hera_jax.evaluate.frontier import frontier_value
    from hera_jax.evaluate.report import interval_tables

    episodes = episode_table(rows_of(constructed_rollouts()), PriceTable())
    points = points_table(episodes)
    for budget in (0.2, 0.6):
        _, method_ci = interval_tables(episodes, n_resamples=200, budget=budget)
        test = method_ci[method_ci.eval_split == "test"].set_index("method")
        mine = points[(points.eval_split == "test")]
        il, anchors = mine[mine.method == "il"], mine.set_index("method")
        expected = frontier_value(np.r_[il.cloud_step_ratio, 0.0, 1.0],
                                  np.r_[il.success_rate, anchors.loc["device_only", "success_rate"],
                                        anchors.loc["cloud_only", "success_rate"]], budget)
        np.testing.assert_allclose(test.loc["il", "success_at_budget"], expected, atol=1e-6)
        np.testing.assert_allclose(test.loc["il", "retained_at_budget"],
                                   expected / anchors.loc["cloud_only", "success_rate"], atol=1e-6)
        assert (test.success_at_budget_low <= test.success_at_budget + 1e-12).all()
        assert (test.success_at_budget <= test.success_at_budget_high + 1e-12).all()
        np.testing.assert_allclose(test.loc["cloud_only", "success_at_budget"],
                                   (1 - budget) * anchors.loc["device_only", "success_rate"]
                                   + budget * anchors.loc["cloud_only", "success_rate"], atol=1e-6)
    # the printed table names the agents (stand-ins say so) and the budget
    from rich.console import Console

    from hera_jax.evaluate.report import rich_budget_frontier

    console = Console(width=200, record=True)
    console.print(rich_budget_frontier(method_ci, 0.6, {}, "agents: STAND-INS (x), not LLMs"))
    text = console.export_text()
    assert "STAND-INS" in text and "at 0.6 cloud steps" in text and "il" in text


def test_interval_tables_pair_areas_against_a_named_reference():
    """`reference=` pairs every area against another method than random step routing (e.g. an RL run's IL start):
    the reference's own difference is exactly 0, and the others' estimates are area differences."""
    from hera_jax.evaluate.report import interval_tables

    episodes = episode_table(rows_of(constructed_rollouts()), PriceTable())
    _, by_il = interval_tables(episodes, n_resamples=500, reference="il")
    test = by_il[by_il.eval_split == "test"].set_index("method")
    assert "area_minus_random" not in by_il and "area_minus_il" in by_il
    assert test.loc["il", ["area_minus_il", "area_minus_il_low", "area_minus_il_high"]].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(test.loc["cloud_only", "area_minus_il"],
                               test.loc["cloud_only", "area"] - test.loc["il", "area"], atol=1e-12)
    assert test.loc["cloud_only", "area_minus_il"] != 0.0


def test_the_default_router_is_the_latest_il_run_of_the_evaluated_env(tmp_path, monkeypatch):
    """Not the last name: a TWC run named `twc_seg` sorts after timestamped ScienceWorld runs, and was picked for a
    ScienceWorld evaluation."""
    import os

    from hera_jax.errors import HeraError
    from hera_jax.evaluate import routers

    monkeypatch.setattr(routers, "RUNS_ROOT", tmp_path)
    for mtime, (name, env) in enumerate((("20261126-000000", "scienceworld"), ("twc_seg", "textworld_express:twc"),
                                         ("20261126-010000", "scienceworld"), ("zz_no_config", None))):
        checkpoint = tmp_path / "il" / name / "checkpoint"
        checkpoint.mkdir(parents=True)
        if env is not None:
            (checkpoint.parent / "config.json").write_text(json.dumps({"env": env}))
        os.utime(checkpoint, (1e9 + mtime, 1e9 + mtime))
    pick = routers.parse_routers
    assert pick((), "scienceworld") == {"il": (tmp_path / "il" / "20261126-010000" / "checkpoint", None)}
    assert pick((), "textworld_express:twc") == {"il": (tmp_path / "il" / "twc_seg" / "checkpoint", None)}
    with pytest.raises(HeraError, match="no router trained on textworld_express:cookingworld.*--env"):
        pick((), "textworld_express:cookingworld")


def test_headline_tables_fit_80_columns_with_whole_rows():
    from rich.console import Console

    from hera_jax.evaluate.report import interval_tables, rich_headline, with_intervals

    episodes = episode_table(rows_of(constructed_rollouts()), PriceTable())
    point_ci, method_ci = interval_tables(episodes, limits=("il",), n_resamples=200)
    points = with_intervals(points_table(episodes), point_ci)
    summary = headline(points, 0.8, ["device_only", "cloud_only", "il"], method_ci)
    titles = {"il": "router il (textworld_express:twc)", "device_only": "device only", "cloud_only": "cloud only"}
    console = Console(width=80, record=True, color_system=None)
    console.print(rich_headline(summary, 0.8, "Routing frontier — agents: cloud=gold-path-oracle, device=x", titles))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "success" in text and "vs random" in text and "unseen" in text
    for row in text.splitlines():  # every number cell is whole: no "0.4" on one line and "2" on the next
        assert not row.rstrip().endswith(("±", "[", "+", "-0.", "0."))
    # an undefined share (retained, where cloud-only never succeeds) is a dash without a unit
    from hera_jax.evaluate.report import _pm

    assert _pm({"success_retained": None}, "success_retained", ".0f", 100.0, "%") == "—"
    assert _pm({"success_retained": float("nan")}, "success_retained", ".0f", 100.0, "%") == "—"
    assert _pm({"success_retained": 0.5, "success_retained_ci": [0.4, 0.6]}, "success_retained", ".0f", 100.0,
               "%") == "50% ±10"
    assert "—%" not in text


def test_seen_test_episodes_from_the_dev_split_come_after_the_dev_episodes():
    from hera_jax.evaluate.runner import plan_eval_episodes

    class Splits:
        def variations(self, task, split):
            return {"dev": [100, 101, 102, 103, 104, 105], "test": [200, 201, 202]}[split]

    per_split = {"dev": 2, "test": 3, "test_unseen": 1}
    default = plan_eval_episodes(Splits(), ["a"], ["u"], per_split)
    assert [(e.eval_split, e.env_split, e.variation) for e in default if e.task == "a"] == [
        ("dev", "dev", 100), ("dev", "dev", 101), ("test", "test", 200), ("test", "test", 201), ("test", "test", 202)]
    seen_games = plan_eval_episodes(Splits(), ["a"], ["u"], per_split, seen_test_split="dev")
    by_split = {s: [e.variation for e in seen_games if e.eval_split == s] for s in ("dev", "test", "test_unseen")}
    assert by_split == {"dev": [100, 101], "test": [102, 103, 104], "test_unseen": [200]}
    assert all(e.env_split == "dev" for e in seen_games if e.eval_split == "test")


def test_threshold_shares_put_each_routers_points_at_the_same_dev_cloud_shares(tmp_path):
    from hera_jax.dataset import load_il_table
    from hera_jax.evaluate.evaluate_app import EvalConfig, router_thresholds
    from tests.conftest import make_steps, write_toy_dataset

    episodes = [make_steps(f"t0/{split}/{j}", "t0", split, [(f"a{j}", "a"), (f"b{j}", "b"), ("c", "c"), ("d", "e")],
                           variation=j) for j, split in enumerate(["train", "dev", "dev", "dev", "test"])]
    table = load_il_table(write_toy_dataset(tmp_path / "ds", episodes), ())

    class Scorer:  # p_cloud = a fixed function of the state text, on two different scales
        def __init__(self, scale):
            self.scale = scale

        def features(self, texts, steps, signals):
            return np.asarray([[(sum(map(ord, t)) % 97) / 97] for t in texts], np.float32)

        def p_cloud(self, x):
            return self.scale * x[:, 0]

    routers = {"wide": Scorer(1.0), "narrow": Scorer(0.1)}
    assert router_thresholds(EvalConfig(), routers, table, tmp_path) == {"wide": (0.25, 0.5, 0.75),
                                                                          "narrow": (0.25, 0.5, 0.75)}
    shares = EvalConfig(threshold_shares=(0.25, 0.5))
    picked = router_thresholds(shares, routers, table, tmp_path)
    dev = table.mask("dev")
    for name, scorer in routers.items():
        p = scorer.p_cloud(scorer.features(table.state_text, table.step, {}))[dev]
        for share, threshold in zip(shares.threshold_shares, picked[name]):
            assert abs(float((p >= threshold).mean()) - share) <= 1 / dev.sum() + 1e-9, (name, share, threshold)
    np.testing.assert_allclose(picked["narrow"], np.asarray(picked["wide"]) / 10, rtol=1e-3)  # scale-free
