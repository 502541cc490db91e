"""Diagnose why the IL router does (not) beat random step routing. STAND-IN agents only: the cloud is
the gold path (an oracle), the device the gold path with hashed mistakes; their error model is what the router is
compared with. Sections (`--sections`, any of):

- `il-states`: on the dataset's states, the router's p(cloud) against the IL labels, against the device's TRUE
  error probability and against harm (p(error) x p(unrecoverable)); the ceiling AUROC that the true error
  probability itself reaches on the IL labels (the dice bound any router).
- `routed`: from an `evaluate.py` run folder: where the routed episodes fail (first fatal deviation: verb, gold
  difficulty, on/off the gold path, router p(cloud)), and the router's ranking on routed states, on vs off path.
- `features`: the step_frac scalar on/off over seeds (dev/test AUROC, ranking vs the true error probability), and
  how often the gold action's object is missing from the router's visible text (400-char clip, 256-token limit).
- `harm-router`: trains a router on harm labels (disagreement whose verb the probe found unrecoverable) and saves a
  checkpoint for `evaluate.py --routers harm=<out>/harm_router/checkpoint`.
- `capped`: writes a copy of --eval-run's rollouts with every episode cut after --cap-factor x its gold length (a
  lost episode otherwise runs to the step limit and its wasted cloud calls set the pooled cloud-step ratio); replay
  it with `evaluate.py --replay-from <out>/capped`.

experiments/diagnose.py is its command line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from hera_jax.errors import HeraError

SECTIONS = ("il-states", "routed", "features", "harm-router", "capped")


@dataclasses.dataclass(frozen=True)
class DiagnoseConfig:
    """Diagnose the IL router against the STAND-IN device's known error model (not an LLM)."""

    env: str = "scienceworld"
    """Environment whose shipped dataset is analysed (and whose probe rule gives p(unrecoverable))."""
    router: Path | None = None
    """IL router checkpoint folder (from experiments/il.py); needed by il-states."""
    eval_run: Path | None = None
    """evaluate.py run folder with rollouts.jsonl (needs the cloud_only method for the gold paths); for routed."""
    methods: tuple[str, ...] = ("il", "random", "bayes", "bayes_harm")
    """Methods of the evaluation run whose episodes the routed section analyses."""
    eval_splits: tuple[str, ...] = ("test",)
    """Eval splits the routed section reads (test = held-out variations of seen tasks). Before the TWX adapter
    dropped the random moves of doors presets' gold paths, twc-doors (test_unseen) episodes of one seed had
    different gold paths, so runs made then must leave test_unseen out."""
    sections: tuple[str, ...] = SECTIONS
    """Which analyses to run."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds of the features section."""
    cap_factor: float = 2.0
    """capped: episodes of --eval-run are cut after this many times their gold length (cloud-only steps)."""
    min_unrecoverable: float = 0.5
    """Harm label / fatal deviation: the mistake's verb made at least this share of probe episodes fail."""
    out: Path = Path("runs/diagnose")
    """Folder for diagnosis.json (and the harm router's checkpoint)."""


def _dataset_rows(env: str):
    """The dataset table (splits, IL labels) and its raw rows (device/cloud actions), in the same order."""
    from hera_jax.dataset import load_il_table, resolve_dataset
    from hera_jax.rollout.records import STEPS_FILE, read_steps

    dataset = resolve_dataset(None, env)
    table = load_il_table(dataset)
    rows, _ = read_steps(dataset / STEPS_FILE)
    if [r["state_key"] for r in rows] != table.state_key:
        raise HeraError(f"{dataset}: steps and table disagree on row order")
    return dataset, table, rows


def _device(table):
    from hera_jax.agents.stand_ins import PerturbedGoldDevice

    device = table.manifest["agents"]["device"]
    if device.get("name") != "perturbed-gold-device":
        raise HeraError(f"the diagnosis needs the stand-in device (perturbed-gold-device), dataset has {device}")
    fields = {f.name for f in dataclasses.fields(PerturbedGoldDevice)} - {"name", "is_stand_in"}
    return PerturbedGoldDevice(**{k: v for k, v in device.items() if k in fields})


def _router_scores(checkpoint: Path, table, dataset: Path) -> np.ndarray:
    from hera_jax.router.checkpoint import load_router
    from hera_jax.router.il import build_features

    bundle = load_router(checkpoint)
    features, _ = build_features(table, bundle.feature_spec, dataset / "features")
    return np.asarray(bundle.p_cloud(features))


def il_states(config: DiagnoseConfig) -> dict:
    from hera_jax.research.diagnosis import error_probabilities, soft_auroc, unrecoverable_rates

    dataset, table, rows = _dataset_rows(config.env)
    device = _device(table)
    # IL states lie on the gold path and the cloud stand-in follows it: the cloud action is the gold action due
    p_error = error_probabilities(device, [r["cloud_action"] for r in rows], table.step)
    p_unrec = unrecoverable_rates(config.env, [r["device_action"] for r in rows])
    fatal = table.label.astype(bool) & (p_unrec >= config.min_unrecoverable)
    gold_verb_harm = _gold_verb_harm(config.env, rows, table)
    harm = p_error * gold_verb_harm
    p_cloud = _router_scores(config.router, table, dataset) if config.router else None
    out = {}
    for split in ("dev", "test", "test_unseen"):
        m = table.mask(split)
        entry = {
            "states": int(m.sum()),
            "il_label_rate": float(table.label[m].mean()),
            "fatal_label_rate": float(fatal[m].mean()),
            "ceiling_auroc_true_p_error_vs_il_labels": soft_auroc(p_error[m], table.label[m]),
            "true_p_error_vs_fatal_labels": soft_auroc(p_error[m], fatal[m]),
            "true_harm_vs_fatal_labels": soft_auroc(harm[m], fatal[m]),
            # the most a perfect ranking reaches against soft labels (they are not 0/1)
            "ceiling_soft_true_p_error": soft_auroc(p_error[m], p_error[m]),
            "ceiling_soft_true_harm": soft_auroc(harm[m], harm[m]),
        }
        if p_cloud is not None:
            entry |= {
                "router_vs_il_labels": soft_auroc(p_cloud[m], table.label[m]),
                "router_vs_fatal_labels": soft_auroc(p_cloud[m], fatal[m]),
                "router_soft_vs_true_p_error": soft_auroc(p_cloud[m], p_error[m]),
                "router_soft_vs_true_harm": soft_auroc(p_cloud[m], harm[m]),
                "spearman_router_true_p_error": _spearman(p_cloud[m], p_error[m]),
            }
        out[split] = entry
    return out


def _gold_verb_harm(env: str, rows, table) -> np.ndarray:
    """p(unrecoverable | the device errs) per state, estimated per verb of the gold action (`_harm_by_gold_verb`)."""
    from hera_jax.evaluate.baselines.bayes_harm import action_verb

    by_verb = _harm_by_gold_verb(env, rows, table)
    return np.asarray([by_verb.get(action_verb(r["cloud_action"]), 0.0) for r in rows])


def _harm_by_gold_verb(env: str, rows, table) -> dict[str, float]:
    """Verb of the gold action -> mean probe unrecoverable rate of the device's recorded mistakes there (train
    split). The records do not hold the device's mistake pool; the mistake's verb mostly follows the gold verb."""
    from hera_jax.evaluate.baselines.bayes_harm import action_verb
    from hera_jax.research.diagnosis import unrecoverable_rates

    gold_verbs = np.asarray([action_verb(r["cloud_action"]) for r in rows])
    rates = unrecoverable_rates(env, [r["device_action"] for r in rows])
    erred = table.label.astype(bool) & table.mask("train")
    return {v: float(rates[erred & (gold_verbs == v)].mean()) for v in set(gold_verbs[erred].tolist())}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def routed(config: DiagnoseConfig) -> dict:
    """Where routed episodes fail, and how the router ranks states it meets in them (on and off the gold path)."""
    import pandas as pd

    from hera_jax.agents.stand_ins import action_difficulty
    from hera_jax.evaluate.baselines.bayes_harm import action_verb
    from hera_jax.research.diagnosis import error_probabilities, gold_walk, soft_auroc, unrecoverable_rates

    if config.eval_run is None:
        raise HeraError("the routed section needs --eval-run (an evaluate.py run folder)")
    _, table, rows = _dataset_rows(config.env)
    device, harm_by_verb = _device(table), _harm_by_gold_verb(config.env, rows, table)
    steps = pd.read_json(config.eval_run / "rollouts.jsonl", lines=True)
    parts = steps.episode_id.str.split("/", expand=True)
    steps["method"], steps["param"], steps["episode"] = parts[1], parts[2], parts[3] + "/" + parts[4] + "/" + parts[5]
    # the cloud stand-in walks the gold path, so cloud-only episodes give each (split, task, variation)'s gold path
    gold = {ep: tuple(g.sort_values("step").action) for ep, g in steps[steps.method == "cloud_only"].groupby("episode")}
    if not gold:
        raise HeraError(f"{config.eval_run}: no cloud_only episodes to take the gold paths from")
    per_step, per_episode = [], []
    # dev episodes (budget targeting) have no cloud-only run; the test splits are what the frontier reports
    analysed = steps[steps.method.isin(config.methods) & steps.episode.isin(list(gold))
                     & parts[3].isin(config.eval_splits)]
    for (method, param, episode), g in analysed.groupby(["method", "param", "episode"]):
        g = g.sort_values("step")
        actions = g.action.tolist()
        due, deviates, detours = gold_walk(gold[episode], actions)
        p_error = error_probabilities(device, due, g.step.to_numpy())
        p_unrec_gold = np.asarray([harm_by_verb.get(action_verb(a), 0.0) if a else 0.0 for a in due])
        fatal = deviates & (unrecoverable_rates(config.env, actions) >= config.min_unrecoverable)
        success = bool(g.success.iloc[-1])
        frame = pd.DataFrame({"method": method, "param": param, "episode": episode, "success": success,
                              "step": g.step.to_numpy(), "actor": g.actor.to_numpy(), "p_cloud": g.p_cloud.to_numpy(),
                              "p_error": p_error,
                              "harm": p_error * p_unrec_gold, "deviates": deviates, "fatal": fatal,
                              "off_path": detours > 0,
                              "difficulty": [action_difficulty(a) if a else "done" for a in due]})
        per_step.append(frame)
        first_fatal = int(np.argmax(fatal)) if fatal.any() else None
        per_episode.append({
            "method": method, "param": param, "success": success, "steps": len(g),
            "episode": episode, "cloud_ratio": float((g.actor == "cloud").mean()), "deviations": int(deviates.sum()),
            "cloud_deviations": int((deviates & (g.actor == "cloud").to_numpy()).sum()),
            "has_fatal": first_fatal is not None,
            "fatal_difficulty": frame.difficulty.iloc[first_fatal] if first_fatal is not None else None,
            "fatal_off_path": bool(detours[first_fatal] > 0) if first_fatal is not None else None,
            "fatal_p_cloud": float(g.p_cloud.iloc[first_fatal]) if first_fatal is not None else None,
            "fatal_p_cloud_rank": float((g.p_cloud.to_numpy() < g.p_cloud.iloc[first_fatal]).mean())
            if first_fatal is not None else None,
            # cloud calls spent after the episode was already lost (a fatal mistake made)
            "cloud_steps": int((g.actor == "cloud").sum()),
            "cloud_steps_after_fatal": int((g.actor.to_numpy()[first_fatal + 1:] == "cloud").sum())
            if first_fatal is not None else 0,
            # risk the method left with the device: expected device errors / fatal errors on device-acted steps
            "device_expected_errors": float(p_error[(g.actor == "device").to_numpy()].sum()),
            "device_expected_harm": float((p_error * p_unrec_gold)[(g.actor == "device").to_numpy()].sum()),
        })
    per_step, per_episode = pd.concat(per_step), pd.DataFrame(per_episode)
    # the cloud stand-in never leaves its own gold path: where it seems to, that episode's simulator gave another
    # gold path than the cloud-only episode's (ScienceWorld's object order depends on the JVM's history), so the
    # reconstruction does not hold there
    consistent = per_episode.cloud_deviations == 0
    keys = per_episode.loc[consistent, ["method", "param", "episode"]]
    per_step = per_step.merge(keys, on=["method", "param", "episode"])
    per_episode = per_episode[consistent]
    out = {"episodes_dropped_gold_path_mismatch": int((~consistent).sum()), "methods": {}}
    for (method, param), e in per_episode.groupby(["method", "param"]):
        failed = e[~e.success]
        out["methods"][f"{method}@{param}"] = {
            "episodes": len(e), "success": float(e.success.mean()), "cloud_ratio": float(e.cloud_ratio.mean()),
            "deviations_per_episode": float(e.deviations.mean()),
            "failed_with_fatal_deviation": f"{int(failed.has_fatal.sum())}/{len(failed)}",
            "succeeded_with_fatal_deviation": f"{int(e[e.success].has_fatal.sum())}/{int(e.success.sum())}",
            "fatal_step_difficulty": failed.fatal_difficulty.value_counts().to_dict(),
            "fatal_step_off_path": f"{int(failed.fatal_off_path.fillna(False).sum())}/{int(failed.has_fatal.sum())}",
            "fatal_step_mean_p_cloud": float(failed.fatal_p_cloud.mean()) if failed.has_fatal.any() else None,
            "fatal_step_p_cloud_rank_in_episode": float(failed.fatal_p_cloud_rank.mean())
            if failed.has_fatal.any() else None,
            "share_of_cloud_steps_after_a_fatal_mistake": float(e.cloud_steps_after_fatal.sum()
                                                                / max(e.cloud_steps.sum(), 1)),
            "mean_steps_failed_vs_succeeded": [float(failed.steps.mean()) if len(failed) else None,
                                              float(e[e.success].steps.mean()) if e.success.any() else None],
            "device_expected_errors_per_episode": float(e.device_expected_errors.mean()),
            "device_expected_harm_per_episode": float(e.device_expected_harm.mean()),
        }
    lost = per_step[per_step.p_cloud.notna() & ~per_step.success]
    if len(lost):  # the IL data's episodes end by step ~25: later steps (and step_frac values) are new to the router
        lost = lost.assign(steps=pd.cut(lost.step, [-1, 9, 19, 39, np.inf], labels=["0-9", "10-19", "20-39", "40+"]))
        out["failed_episodes_by_step"] = {
            method: {"mean_p_cloud": g.groupby("steps", observed=True).p_cloud.mean().round(3).to_dict(),
                     "cloud_share": g.groupby("steps", observed=True).actor.apply(lambda a: (a == "cloud").mean())
                     .round(3).to_dict(), "states": g.groupby("steps", observed=True).size().to_dict()}
            for method, g in lost.groupby("method")}
    scored = per_step[per_step.p_cloud.notna() & (per_step.difficulty != "done")]
    for name, part in (("all", scored), ("on_path", scored[~scored.off_path]), ("off_path", scored[scored.off_path])):
        if len(part) < 10:
            continue
        out[f"router_ranking_{name}"] = {
            "states": len(part),
            "soft_auroc_vs_true_p_error": soft_auroc(part.p_cloud.to_numpy(), part.p_error.to_numpy()),
            "ceiling_soft_true_p_error": soft_auroc(part.p_error.to_numpy(), part.p_error.to_numpy()),
            "soft_auroc_vs_true_harm": soft_auroc(part.p_cloud.to_numpy(), part.harm.to_numpy()),
            "ceiling_soft_true_harm": soft_auroc(part.harm.to_numpy(), part.harm.to_numpy()),
            "mean_p_cloud_by_difficulty": part.groupby("difficulty").p_cloud.mean().round(3).to_dict(),
            "mean_true_p_error_by_difficulty": part.groupby("difficulty").p_error.mean().round(3).to_dict(),
        }
    return out


def features(config: DiagnoseConfig) -> dict:
    """step_frac on/off over seeds, and how often the gold action's object words are missing from what the router
    sees (the 400-char observation clip of the state text, then the encoder's token limit)."""
    from hera_jax.research.diagnosis import error_probabilities, missing_object_words, soft_auroc
    from hera_jax.features import FeatureSpec, load_encoder
    from hera_jax.router.il import build_features, train_and_evaluate
    from hera_jax.router.train import TrainConfig, predict_p_cloud

    dataset, table, rows = _dataset_rows(config.env)
    p_error = error_probabilities(_device(table), [r["cloud_action"] for r in rows], table.step)
    dev = table.mask("dev")
    ablation = {}
    for scalars in (("step_frac",), ()):
        spec = FeatureSpec(scalar_features=scalars)
        x, _ = build_features(table, spec, dataset / "features")
        runs = []
        for seed in config.seeds:
            train = TrainConfig(seed=seed)
            params, _, metrics, _ = train_and_evaluate(table, x, train, dataset)
            p_dev = np.asarray(predict_p_cloud(train, params, x[dev]))
            runs.append({"seed": seed, **{f"{split}_auroc": metrics[split]["auroc"] for split in metrics},
                         "dev_soft_auroc_vs_true_p_error": soft_auroc(p_dev, p_error[dev])})
        keys = [k for k in runs[0] if k != "seed"]
        ablation["+".join(scalars) or "none"] = {
            "runs": runs, "mean": {k: float(np.mean([r[k] for r in runs])) for k in keys},
            "std": {k: float(np.std([r[k] for r in runs])) for k in keys}}
    encoder = load_encoder(FeatureSpec().encoder)
    limit = encoder.max_seq_length
    texts = table.state_text
    token_ids = encoder.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    visible = [encoder.tokenizer.decode(ids[1:limit - 1]) for ids in token_ids]
    gold = [r["cloud_action"] for r in rows]
    missing_text = missing_object_words(gold, texts)
    missing_visible = missing_object_words(gold, visible)
    return {"step_frac_ablation": ablation, "visible_text": {
        "states": len(texts), "token_limit": limit,
        "share_over_token_limit": float(np.mean([len(ids) > limit for ids in token_ids])),
        "share_gold_object_missing_from_state_text": float(missing_text.mean()),
        "share_gold_object_missing_after_token_limit": float(missing_visible.mean()),
        "share_lost_by_token_limit_only": float((missing_visible & ~missing_text).mean())}}


def capped(config: DiagnoseConfig) -> dict:
    """Writes <out>/capped: --eval-run's rollouts with every episode cut after cap_factor x its gold length (lost
    episodes otherwise run to the step limit, and their wasted cloud calls set the pooled cloud-step ratio). Replay
    it with `evaluate.py --replay-from <out>/capped` for the table with paired intervals."""
    from hera_jax.research.diagnosis import cap_episode_rows
    from hera_jax.evaluate.episodes import parse_episode_id
    from hera_jax.files import read_json_object, write_json_atomic
    from hera_jax.rollout.records import read_steps

    if config.eval_run is None:
        raise HeraError("the capped section needs --eval-run (an evaluate.py run folder)")
    rows, _ = read_steps(config.eval_run / "rollouts.jsonl")
    ids = {r["episode_id"]: parse_episode_id(r["episode_id"]) for r in rows}
    gold_len: dict[tuple, int] = {}
    for r in rows:
        i = ids[r["episode_id"]]
        if i["method"] == "cloud_only":
            key = (i["eval_split"], i["task"], i["variation"])
            gold_len[key] = max(gold_len.get(key, 0), r["step"] + 1)
    by_task: dict[str, int] = {}
    for (_, task, _), n in gold_len.items():  # dev episodes have no cloud-only run: the task's longest gold path
        by_task[task] = max(by_task.get(task, 0), n)
    caps = {e: int(np.ceil(config.cap_factor * gold_len.get((i["eval_split"], i["task"], i["variation"]),
                                                            by_task[i["task"]])))
            for e, i in ids.items()}
    out_rows = cap_episode_rows(rows, caps)
    folder = config.out / "capped"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "rollouts.jsonl", "w") as f:
        for r in out_rows:
            f.write(json.dumps(r) + "\n")
    recorded = read_json_object(config.eval_run / "config.json", "the evaluation's settings",
                                "restore it from the evaluation run folder")
    write_json_atomic(folder / "config.json", {**recorded, "notes": recorded.get("notes", []) + [
        f"episodes cut after {config.cap_factor} x their gold length by experiments/diagnose.py --sections capped"]})
    lengths: dict[str, int] = {}
    for r in rows:
        lengths[r["episode_id"]] = max(lengths.get(r["episode_id"], 0), r["step"] + 1)
    won = {r["episode_id"] for r in rows if r["success"]}
    return {"folder": str(folder), "cap_factor": config.cap_factor,
            "successes_lost_to_the_cap": sum(lengths[e] > caps[e] for e in won), "successes": len(won),
            "steps_before": len(rows), "steps_after": len(out_rows)}


def harm_router(config: DiagnoseConfig) -> dict:
    from hera_jax.research.diagnosis import harm_labels
    from hera_jax.features import FeatureSpec
    from hera_jax.router.checkpoint import save_router
    from hera_jax.router.il import build_features, train_and_evaluate
    from hera_jax.router.train import TrainConfig

    dataset, table, rows = _dataset_rows(config.env)
    labels = harm_labels([r["device_action"] for r in rows], [r["cloud_action"] for r in rows], config.env,
                         config.min_unrecoverable)
    harm_table = dataclasses.replace(table, label=labels)
    spec, train = FeatureSpec(), TrainConfig()
    features, _ = build_features(harm_table, spec, dataset / "features")
    params, result, metrics, _ = train_and_evaluate(harm_table, features, train, dataset)
    meta = {"il_summary": {"dataset": str(dataset), "agents": table.manifest["agents"], "agents_are_stand_ins": True,
                           "labels": f"harm (disagreement with probe-unrecoverable verb >= {config.min_unrecoverable})",
                           "metrics": metrics},
            "trained_on": table.trained_on()}
    save_router(config.out / "harm_router" / "checkpoint", int(result.best_epoch), params, train, spec, meta)
    return {"label_rate_train": float(labels[table.mask("train")].mean()), "metrics": metrics,
            "checkpoint": str(config.out / "harm_router" / "checkpoint")}


def diagnose(config: DiagnoseConfig) -> dict:
    """Run the chosen sections; print each and write <out>/diagnosis.json."""
    unknown = sorted(set(config.sections) - set(SECTIONS))
    if unknown:
        raise HeraError(f"--sections: unknown {unknown}; choose from {SECTIONS}")
    needs_run = sorted({"routed", "capped"} & set(config.sections))
    if needs_run and config.eval_run is None:
        raise HeraError(f"--sections {' '.join(needs_run)} need(s) --eval-run (an evaluate.py run folder); nothing ran")
    if config.eval_run is not None and not (config.eval_run / "rollouts.jsonl").exists():
        raise HeraError(f"{config.eval_run}: no rollouts.jsonl; --eval-run takes a folder written by evaluate.py")
    runners = {"il-states": il_states, "routed": routed, "features": features, "harm-router": harm_router,
               "capped": capped}
    report = {"env": config.env, "agents": "STAND-INS (gold-path oracle cloud, perturbed-gold device), not LLMs",
              "config": json.loads(json.dumps(dataclasses.asdict(config), default=str))}
    config.out.mkdir(parents=True, exist_ok=True)
    for section in config.sections:
        report[section] = runners[section](config)
        print(json.dumps({section: report[section]}, indent=1))
    (config.out / "diagnosis.json").write_text(json.dumps(report, indent=1))
    return report

