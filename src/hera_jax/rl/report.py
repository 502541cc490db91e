"""The RL iterations as a table (readable at 80 columns)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hera_jax.rl.run import RLRun, agents_title, load_history


def print_report(run: RLRun) -> None:
    agents = agents_title(run.episodes.cloud, run.episodes.device)
    run.console.print(iteration_table(load_history(run.run_dir), agents))


def iteration_table(history: Sequence[dict[str, Any]], agents: str):
    """Two narrow tables (each fits 80 columns): held-out evaluation and rollouts per iteration, then the labels
    and fine-tune of each iteration."""
    from rich.console import Group
    from rich.table import Table

    fmt = lambda v, f="{:.3f}": "—" if v is None else f.format(v)  # noqa: E731
    results = Table(title=f"Cost-aware RL, greedy router on held-out variations — agents: {agents}",
                    caption="eval: the router at its threshold on held-out variations (no exploration); rollout: "
                            "this iteration's exploring rollouts on train variations, whose outcomes made the labels; "
                            "cloud ratio: share of steps the cloud acted")
    for c in ("iter", "eval\nsuccess", "eval\ncloud ratio", "rollout\nsuccess", "rollout\ncloud ratio", "time s"):
        results.add_column(c, justify="right")
    labels = Table(title="RL labels and fine-tune per iteration",
                   caption="visits: states visited in the run's rollouts; groups: distinct states among them; "
                           "valid: groups with outcomes of both routing choices; label cloud / device: valid groups "
                           "whose better choice is the cloud / the device; IL rows mixed: IL train states trained "
                           "on with their IL label (no group covers them); agreement: share of labelled visits "
                           "(weighted as in the loss) the fine-tuned router routes as labelled")
    for c in ("iter", "visits", "groups", "valid", "label\ncloud", "label\ndevice", "IL rows\nmixed", "agreement"):
        labels.add_column(c, justify="right")
    for m in history:
        ev, ro, gr, tr = m["eval"], m.get("rollouts", {}), m.get("groups", {}), m.get("train", {})
        name = "IL start" if m["iteration"] == 0 else str(m["iteration"])
        results.add_row(name, fmt(ev["success_rate"]), fmt(ev["cloud_step_ratio"]), fmt(ro.get("success_rate")),
                        fmt(ro.get("cloud_step_ratio")), f"{sum(m.get('timings_s', {}).values()):.0f}")
        if m["iteration"] > 0:
            labels.add_row(name, *(fmt(gr.get(k), "{}") for k in ("visits", "groups", "groups_valid", "label_cloud",
                                                                   "label_device", "il_rows_mixed")),
                           fmt(tr.get("margin_weighted_label_agreement")))
    base = history[0].get("baselines") if history else None
    for name, b in (base or {}).items():
        results.add_row(name.replace("_", "-"), f"{b['success_rate']:.3f}", f"{b['cloud_step_ratio']:.3f}",
                        "—", "—", "—")
    return Group(results, labels) if labels.row_count else results
