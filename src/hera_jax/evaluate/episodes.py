"""Evaluation rollouts on disk and back: episode ids that say which method/point/split produced them, per-episode
metrics (success, score, cloud steps, tokens, estimated cost) from step records, without calling any agent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hera_jax.evaluate.config import PriceTable  # noqa: F401  (re-exported)

EVAL_SPLITS = ("dev", "test", "test_unseen")
_PREFIX = "eval"


def param_tag(param: float | None) -> str:
    return "-" if param is None or (isinstance(param, float) and math.isnan(param)) else f"{param:g}"


def episode_id(method: str, param: float | None, eval_split: str, task: str, variation: int) -> str:
    return f"{_PREFIX}/{method}/{param_tag(param)}/{eval_split}/{task}/{variation}"


def parse_episode_id(value: str) -> dict:
    prefix, method, param, eval_split, task, variation = value.split("/")
    if prefix != _PREFIX:
        raise ValueError(f"not an evaluation episode id: {value!r}")
    return {
        "method": method,
        "param": float("nan") if param == "-" else float(param),
        "eval_split": eval_split,
        "task": task,
        "variation": int(variation),
    }


def episodes_per_task(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Finished episodes per eval split and task, over every method and point (`eval_split -> task -> count`).

    An interrupted evaluation keeps the episodes that finished, and short ones (easy tasks) finish first, so its
    tables can weight the tasks unlike the plan; this is what its PARTIAL note shows."""
    counts: dict[str, dict[str, int]] = {}
    for episode in dict.fromkeys(r["episode_id"] for r in rows):
        parsed = parse_episode_id(episode)
        per_task = counts.setdefault(parsed["eval_split"], {})
        per_task[parsed["task"]] = per_task.get(parsed["task"], 0) + 1
    return {split: dict(sorted(per_task.items())) for split, per_task in sorted(counts.items())}


def episode_table(rows: list[dict], prices: PriceTable) -> pd.DataFrame:
    """One row per evaluation episode: method, param, eval_split, task, success, score, steps, cloud_steps,
    cloud_tokens, cost_usd, tokens_estimated."""
    steps = pd.DataFrame(rows)
    if steps.empty:
        return pd.DataFrame(columns=["episode_id", "method", "param", "eval_split", "task", "variation", "success",
                                     "score", "steps", "cloud_steps", "cloud_tokens", "cost_usd", "tokens_estimated"])
    is_cloud = (steps["actor"] == "cloud").to_numpy()
    reported_in = pd.to_numeric(steps.get("cloud_tokens_in"), errors="coerce").to_numpy(np.float64)
    reported_out = pd.to_numeric(steps.get("cloud_tokens_out"), errors="coerce").to_numpy(np.float64)
    chars = steps["state_text"].str.len().to_numpy(np.float64)
    est_in = np.ceil(chars / prices.chars_per_token) + prices.prompt_overhead_tokens
    tokens_in = np.where(np.isnan(reported_in), est_in, reported_in) * is_cloud
    tokens_out = np.where(np.isnan(reported_out), prices.est_output_tokens, reported_out) * is_cloud
    cost = (tokens_in * prices.usd_per_million_input + tokens_out * prices.usd_per_million_output) / 1e6
    steps = steps.assign(
        _cloud=is_cloud.astype(np.int64),
        _tokens=tokens_in + tokens_out,
        _cost=cost,
        _estimated=is_cloud & (np.isnan(reported_in) | np.isnan(reported_out)),
        # ScienceWorld reports -100 for a failed task; as in the paper's scores, a failure counts as 0
        _score=np.clip(pd.to_numeric(steps["score"]).to_numpy(np.float64), 0.0, None),
    )
    grouped = steps.sort_values(["episode_id", "step"]).groupby("episode_id", sort=False)
    table = pd.DataFrame({
        "success": grouped["success"].last().astype(bool),
        "score": grouped["_score"].last(),
        "steps": grouped["step"].size(),
        "cloud_steps": grouped["_cloud"].sum(),
        "cloud_tokens": grouped["_tokens"].sum(),
        "cost_usd": grouped["_cost"].sum(),
        "tokens_estimated": grouped["_estimated"].any(),
    }).reset_index()
    meta = pd.DataFrame([parse_episode_id(e) for e in table["episode_id"]])
    return pd.concat([table[["episode_id"]], meta, table.drop(columns="episode_id")], axis=1)
