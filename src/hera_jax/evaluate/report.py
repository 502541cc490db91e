"""From per-episode metrics to what users read: every point, budget targeting, headline numbers, the plot, a table.

Numerics go through `frontier` (pure array functions); this module only groups, titles, draws and formats.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

from hera_jax.evaluate.frontier import aggregate_points, frontier_auc, pick_for_budget, retained
from hera_jax.evaluate.stats import CONFIDENCE, SplitLayout, UnitTable, bootstrap_intervals, split_metrics

REFERENCES = ("device_only", "cloud_only")
TEST_SPLITS = ("test", "test_unseen")
SPLIT_TITLES = {
    "dev": "dev (held-out variations, for budget targeting)",
    "test": "test: held-out variations of seen tasks",
    "test_unseen": "test: unseen task types",
}


def points_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, param, eval_split) with the metrics of `frontier.aggregate_points`."""
    keys = episodes[["method", "param", "eval_split"]].astype({"param": float}).fillna({"param": np.nan})
    point_keys = keys["method"] + "\x1f" + keys["param"].map(repr) + "\x1f" + keys["eval_split"]
    codes, uniques = pd.factorize(point_keys)
    metrics = aggregate_points(
        jnp.asarray(codes),
        episodes["success"].to_numpy(np.float32),
        episodes["score"].to_numpy(np.float32),
        episodes["steps"].to_numpy(np.float32),
        episodes["cloud_steps"].to_numpy(np.float32),
        episodes["cloud_tokens"].to_numpy(np.float32),
        episodes["cost_usd"].to_numpy(np.float32),
        len(uniques),
    )
    first = keys.groupby(codes).first()
    table = pd.concat([first.reset_index(drop=True), pd.DataFrame({k: np.asarray(v) for k, v in metrics.items()})],
                      axis=1)
    table["episodes"] = table["episodes"].astype(int)
    return table.sort_values(["eval_split", "method", "cloud_step_ratio"]).reset_index(drop=True)


def interval_tables(episodes: pd.DataFrame, limits: tuple[str, ...] = (), seed: int = 0,
                    n_resamples: int = 9999, reference: str = "random",
                    budget: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """95 % bootstrap intervals (`stats.bootstrap_intervals`), resampling the (task, variation) units of each eval
    split, the same resample for every point of the split (paired across methods).

    Returns (per point: method, param, eval_split, success / cloud_step_ratio / success_retained with _low/_high;
    per method on the test splits: area, area_minus_<reference> (random step routing unless another method is
    named, e.g. an RL run's IL start), share_of_<limit> for each limit present, success_at_budget and
    retained_at_budget (the frontier's success at cloud-step ratio `budget`, and its share of cloud-only success),
    with _low/_high). Areas are under the success vs cloud-step ratio frontier, device-only and cloud-only as
    anchors.
    """
    point_rows, method_rows = [], []
    for split, mine in episodes.groupby("eval_split", sort=True):
        unit, unit_keys = pd.factorize(mine.task + "\x1f" + mine.variation.astype(str))
        num_units = len(unit_keys)
        keys = mine[["method", "param"]].astype({"param": float})
        point, point_keys = pd.factorize(keys["method"] + "\x1f" + keys["param"].map(repr))
        first = keys.groupby(point).first().reset_index(drop=True)
        shape = (num_units, len(point_keys))

        def scatter(values):
            grid = np.zeros(shape)
            np.add.at(grid, (unit, point), np.asarray(values, np.float64))
            return grid

        table = UnitTable(scatter(mine.success), scatter(mine.steps), scatter(mine.cloud_steps),
                          scatter(np.ones(len(mine))))
        methods = list(dict.fromkeys(first.method))
        members = [np.flatnonzero(first.method.to_numpy() == m) for m in methods]
        method_points = np.full((len(methods), max(len(m) for m in members)), -1)
        for row, indices in enumerate(members):
            method_points[row, : len(indices)] = indices

        def point_of(name):
            return int(members[methods.index(name)][0]) if name in methods else -1

        present_limits = [m for m in limits if m in methods]
        layout = SplitLayout(method_points, device_only=point_of("device_only"), cloud_only=point_of("cloud_only"),
                             random=methods.index(reference) if reference in methods else -1,
                             limits=tuple(methods.index(m) for m in present_limits), budget=budget)
        shapes = {k: v.shape[1:] for k, v in split_metrics(np.ones((1, num_units)), table, layout).items()}

        def statistic(weights):
            metrics = split_metrics(weights, table, layout)
            return np.concatenate([metrics[k].reshape(len(weights), -1) for k in shapes], axis=1)

        intervals = bootstrap_intervals(statistic, num_units, n_resamples=n_resamples, seed=seed)
        ends = {}
        offset = 0
        for key, key_shape in shapes.items():
            size = int(np.prod(key_shape))
            ends[key] = tuple(a[offset: offset + size].reshape(key_shape)
                              for a in (intervals.estimate, intervals.low, intervals.high))
            offset += size
        for p in range(len(point_keys)):
            row = {"method": first.method[p], "param": first.param[p], "eval_split": split}
            for key in ("success", "cloud_step_ratio", "success_retained"):
                estimate, low, high = (a[p] for a in ends[key])
                row.update({key: estimate, f"{key}_low": low, f"{key}_high": high})
            point_rows.append(row)
        if split not in TEST_SPLITS:
            continue  # dev has no anchors: its areas would not be comparable
        for m, method in enumerate(methods):
            row = {"method": method, "eval_split": split}
            for key, name in (("area", "area"), ("area_minus_random", f"area_minus_{reference}"),
                              ("success_at_budget", "success_at_budget"), ("retained_at_budget", "retained_at_budget")):
                estimate, low, high = (a[m] for a in ends[key])
                row.update({name: estimate, f"{name}_low": low, f"{name}_high": high})
            for li, limit in enumerate(present_limits):
                estimate, low, high = (a[m, li] for a in ends["area_share"])
                row.update({f"share_of_{limit}": estimate, f"share_of_{limit}_low": low,
                            f"share_of_{limit}_high": high})
            method_rows.append(row)
    return pd.DataFrame(point_rows), pd.DataFrame(method_rows)


def with_intervals(points: pd.DataFrame, point_intervals: pd.DataFrame) -> pd.DataFrame:
    """`points` with the _low/_high columns of `interval_tables` (and success_retained) joined on its keys."""
    if point_intervals.empty:
        return points
    extra = point_intervals.drop(columns=["success", "cloud_step_ratio"])
    # knob values are floats and NaN for methods without one: join on their repr, which matches NaN with NaN
    merged = points.assign(_param=points.param.astype(float).map(repr)).merge(
        extra.assign(_param=extra.param.astype(float).map(repr)).drop(columns="param"),
        on=["method", "_param", "eval_split"], how="left")
    return merged.drop(columns="_param")


def _reference(points: pd.DataFrame, method: str, split: str, column: str) -> float:
    row = points[(points.method == method) & (points.eval_split == split)]
    return float(row[column].iloc[0]) if len(row) else float("nan")


def _interval(row, key: str) -> list[float] | None:
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    return None if low is None or pd.isna(low) or pd.isna(high) else [float(low), float(high)]


def headline(points: pd.DataFrame, budget: float, methods: list[str],
             method_intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method: area under the frontier on each test split, and the dev-picked point at `budget` on test.

    The knob value is chosen on dev (highest dev success within the budget) and then used unchanged on test, so the
    test cloud-step ratio is what the budget really bought on unseen data. With intervals (`points` through
    `with_intervals`, and `method_intervals` of `interval_tables`), each number has a 95 % interval `<key>_ci`
    [low, high], and the area also its difference to random step routing and its shares of the limit baselines.
    """
    rows = []
    for method in methods:
        row: dict = {"method": method}
        dev = points[(points.method == method) & (points.eval_split == "dev")].reset_index(drop=True)
        chosen_param, feasible = float("nan"), False
        if len(dev):
            index, feasible = pick_for_budget(dev.cloud_step_ratio, dev.success_rate, budget)
            chosen_param = float(dev.param[index])
            row.update(budget_param=chosen_param, budget_met_on_dev=feasible,
                       dev_cloud_step_ratio=float(dev.cloud_step_ratio[index]),
                       dev_success=float(dev.success_rate[index]))
        for split in TEST_SPLITS:
            mine = points[(points.method == method) & (points.eval_split == split)]
            if not len(mine):
                continue
            cloud_success = _reference(points, "cloud_only", split, "success_rate")
            cloud_score = _reference(points, "cloud_only", split, "mean_score")
            anchors = tuple(
                (x, _reference(points, ref, split, "success_rate")) for x, ref in ((0.0, "device_only"), (1.0, "cloud_only"))
            )
            score_anchors = tuple(
                (x, _reference(points, ref, split, "mean_score")) for x, ref in ((0.0, "device_only"), (1.0, "cloud_only"))
            )
            auc = frontier_auc(mine.cloud_step_ratio, mine.success_rate, anchors)
            row[f"{split}/auc_success"] = auc
            row[f"{split}/auc_success_retained"] = float(retained(np.array([auc]), cloud_success)[0])
            row[f"{split}/auc_score"] = frontier_auc(mine.cloud_step_ratio, mine.mean_score, score_anchors)
            if method_intervals is not None and len(method_intervals):
                found = method_intervals[(method_intervals.method == method) & (method_intervals.eval_split == split)]
                if len(found):
                    found = found.iloc[0]
                    row[f"{split}/auc_success_ci"] = _interval(found, "area")
                    row[f"{split}/auc_minus_random"] = float(found["area_minus_random"])
                    row[f"{split}/auc_minus_random_ci"] = _interval(found, "area_minus_random")
                    for key in ("success_at_budget", "retained_at_budget"):
                        row[f"{split}/frontier_{key}"] = float(found[key])
                        row[f"{split}/frontier_{key}_ci"] = _interval(found, key)
                    for key in found.index:
                        if key.startswith("share_of_") and not key.endswith(("_low", "_high")):
                            row[f"{split}/auc_{key}"] = float(found[key])
                            row[f"{split}/auc_{key}_ci"] = _interval(found, key)
            at = mine[np.isclose(mine.param, chosen_param, equal_nan=True)] if len(dev) else mine
            if len(at) != 1:
                continue
            at = at.iloc[0]
            row.update({
                f"{split}/cloud_step_ratio": float(at.cloud_step_ratio),
                f"{split}/success": float(at.success_rate),
                f"{split}/success_se": float(at.success_se),
                f"{split}/success_retained": float(retained(np.array([at.success_rate]), cloud_success)[0]),
                f"{split}/mean_score": float(at.mean_score),
                f"{split}/score_retained": float(retained(np.array([at.mean_score]), cloud_score)[0]),
                f"{split}/cloud_calls_per_episode": float(at.cloud_calls_per_episode),
                f"{split}/cloud_tokens_per_episode": float(at.cloud_tokens_per_episode),
                f"{split}/cost_per_episode": float(at.cost_per_episode),
                f"{split}/episodes": int(at.episodes),
            })
            for key in ("cloud_step_ratio", "success", "success_retained"):
                if f"{key}_low" in at.index:
                    row[f"{split}/{key}_ci"] = _interval(at, key)
        rows.append(row)
    return pd.DataFrame(rows)


_STYLE = {  # method -> (colour, marker); routers not listed get colours from the cycle
    "random": ("#9e9e9e", "o"),
    "task_level": ("#8c6d31", "s"),
    "swiftsage": ("#2ca02c", "^"),
    "device_confidence": ("#17becf", "v"),
    "device_p_top": ("#17becf", "<"),
    "device_margin": ("#17becf", ">"),
    "oracle": ("#d62728", "*"),
    "bayes": ("#8c564b", "P"),
    "bayes_harm": ("#e7298a", "h"),
    "device_only": ("#000000", "X"),
    "cloud_only": ("#000000", "D"),
}
_ROUTER_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#e377c2", "#bcbd22", "#7f7f7f")
_ROUTER_MARKERS = ("o", "s", "^", "d")


def router_styles(routers: list[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) of each router in a plot; past 6 routers the colours repeat with another marker, so no two
    of up to 24 routers look alike."""
    return {m: (_ROUTER_COLOURS[i % len(_ROUTER_COLOURS)],
                _ROUTER_MARKERS[i // len(_ROUTER_COLOURS) % len(_ROUTER_MARKERS)]) for i, m in enumerate(routers)}


def plot_frontiers(points: pd.DataFrame, path: Path, agents_title: str, budget: float | None, titles: dict[str, str],
                   picked: dict[str, float] | None = None, method_intervals: pd.DataFrame | None = None) -> Path:
    """PNG with success rate (top) and mean score (bottom) vs cloud-step ratio, one column per test split.

    `picked` (method -> knob value chosen on dev for the budget) is drawn as a ring around that test point. With
    intervals (`points` through `with_intervals`; `method_intervals` of `interval_tables`), success points carry
    95 % error bars on both axes and each success panel's legend gives every method's frontier area and interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in TEST_SPLITS if (points.eval_split == s).any()] or sorted(points.eval_split.unique())
    fig, axes = plt.subplots(2, len(splits), figsize=(6.2 * len(splits), 9), squeeze=False)
    routers = [m for m in dict.fromkeys(points.method) if m not in _STYLE]
    style = {**_STYLE, **router_styles(routers)}
    for col, split in enumerate(splits):
        for row, (metric, ylabel) in enumerate((("success_rate", "success rate"), ("mean_score", "mean score"))):
            ax = axes[row][col]
            for method in dict.fromkeys(points.method):
                mine = points[(points.method == method) & (points.eval_split == split)].sort_values("cloud_step_ratio")
                if not len(mine):
                    continue
                colour, marker = style[method]
                single = len(mine) == 1
                legend = titles.get(method, method)
                if row == 0 and method_intervals is not None and len(method_intervals):
                    found = method_intervals[(method_intervals.method == method)
                                             & (method_intervals.eval_split == split)]
                    if len(found):
                        f = found.iloc[0]
                        legend += f" — AUC {_fmt(f.area)} [{_fmt(f.area_low)}, {_fmt(f.area_high)}]"
                ax.plot(mine.cloud_step_ratio, mine[metric], marker=marker, color=colour,
                        linestyle="none" if single else "-", markersize=12 if single else 6,
                        linewidth=2.2 if method in routers else 1.3, label=legend, zorder=3)
                if row == 0 and "success_low" in mine:
                    ax.errorbar(mine.cloud_step_ratio, mine[metric],
                                xerr=_bar(mine.cloud_step_ratio, mine.cloud_step_ratio_low, mine.cloud_step_ratio_high),
                                yerr=_bar(mine[metric], mine.success_low, mine.success_high),
                                fmt="none", ecolor=colour, alpha=0.55, capsize=2.5, linewidth=1, zorder=2)
                if picked and method in picked and not single:
                    at = mine[np.isclose(mine.param, picked[method])]
                    ax.plot(at.cloud_step_ratio, at[metric], marker="o", markersize=15, markerfacecolor="none",
                            markeredgecolor=colour, linestyle="none", zorder=4)
            if budget is not None:
                ax.axvline(budget, color="#555555", linestyle=":", linewidth=1,
                           label=f"budget {budget:g} (rings: knob picked on dev)" if row == col == 0 else None)
            ax.set_xlim(-0.03, 1.03)
            ax.set_xlabel("cloud-step ratio")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if row == 0:
                n = int(points[(points.eval_split == split)].episodes.max())
                bars = ", bars: 95 % bootstrap CI over episodes" if "success_low" in points else ""
                ax.set_title(f"{SPLIT_TITLES.get(split, split)}\n({n} episodes per point{bars})", fontsize=10)
                if col == 0 or method_intervals is not None:
                    ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Device/cloud routing frontiers — {agents_title}", fontsize=11,
                 color="#b00000" if "STAND-IN" in agents_title else "black")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bar(value, low, high) -> np.ndarray:
    """[2, N] error-bar lengths below/above `value` (0 where the interval is missing)."""
    value, low, high = (np.asarray(a, np.float64) for a in (value, low, high))
    return np.nan_to_num(np.stack([value - low, high - value]).clip(0.0))


def _fmt(value, spec: str = ".3f") -> str:
    try:
        return "—" if value is None or np.isnan(value) else format(value, spec)
    except TypeError:
        return str(value)


def _pm(row, key: str, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    """'value ±half-width' of a summary entry and its `_ci` (the half-width of the 95 % interval), or the value."""
    value = row.get(key, np.nan)
    value = np.nan if value is None else scale * value
    if isinstance(value, (int, float, np.number)) and not np.isfinite(value):  # undefined (e.g. retained when cloud-only never succeeds): a dash, no unit
        return _fmt(np.nan, spec)
    text = _fmt(value, spec) + suffix
    interval = row.get(f"{key}_ci")
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        text += f" ±{_fmt(scale * (interval[1] - interval[0]) / 2, spec)}"
    return text


def _bracket(row, key: str, spec: str = "+.2f") -> str:
    """'value [low,high]' of a summary entry and its `_ci`, or the value."""
    interval = row.get(f"{key}_ci")
    text = _fmt(row.get(key, np.nan), spec)
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        text += f" [{_fmt(interval[0], spec)},{_fmt(interval[1], spec)}]"
    return text


SPLIT_LABELS = (("test", "test"), ("test_unseen", "unseen"))  # the test split and the held-out task types


def rich_headline(summary: pd.DataFrame, budget: float, title: str, titles: dict[str, str]):
    """Two tables that fit 80 columns, one row per (method, test split): the point whose knob was picked on dev
    for the budget, and the area under each method's frontier; ± is the half-width of the 95 % bootstrap interval
    where `headline` was given intervals."""
    from rich.table import Table

    at_budget = Table(title=title, caption=(
        f"knob picked on dev for cloud-step ratio <= {budget:g} ('!' = not reachable on dev), used on test; "
        "retained = % of cloud-only success; $ = estimated cloud cost per episode"))
    frontier = Table(title="Frontier area (success vs cloud-step ratio, device-only and cloud-only as its ends)",
                     caption="vs random: paired difference to random step routing [95 % CI]")
    for c in ("method", "split", "knob", "ratio", "success", "retained", "$/ep"):
        at_budget.add_column(c, justify="left" if c in ("method", "split") else "right", overflow="fold")
    for c in ("method", "split", "area", "vs random", "calls/ep"):
        frontier.add_column(c, justify="left" if c in ("method", "split") else "right", overflow="fold")
    for _, r in summary.iterrows():
        for split, short in SPLIT_LABELS:
            if f"{split}/auc_success" not in r or pd.isna(r.get(f"{split}/auc_success")):
                continue
            row = {k.removeprefix(f"{split}/"): v for k, v in r.items() if k.startswith(f"{split}/")}
            knob = _fmt(r.get("budget_param"), ".3g")
            if not r.get("budget_met_on_dev", True) and knob != "—":
                knob += "!"
            name = titles.get(r["method"], r["method"])
            at_budget.add_row(name, short, knob, _pm(row, "cloud_step_ratio", ".2f"), _pm(row, "success", ".2f"),
                              _pm(row, "success_retained", ".0f", 100.0, "%"), _fmt(row.get("cost_per_episode"), ".3f"))
            frontier.add_row(name, short, _pm(row, "auc_success", ".3f"),
                             _bracket(row, "auc_minus_random") if r["method"] != "random" else "—",
                             _fmt(row.get("cloud_calls_per_episode"), ".1f"))
        at_budget.add_section()
        frontier.add_section()
    from rich.console import Group

    return Group(at_budget, frontier)


def rich_limit_shares(summary: pd.DataFrame, methods: list[str], limits: list[str], titles: dict[str, str]):
    """Each method's frontier area as a share of each limit baseline's, with 95 % intervals (paired), or None when
    no limit baseline ran."""
    from rich.table import Table

    columns = [limit for limit in limits if any(k.endswith(f"auc_share_of_{limit}") for k in summary.columns)]
    if not columns:
        return None
    table = Table(title="Frontier area as a share of the limits' (STAND-IN limits: they know the stand-in device's "
                        f"error model or dice) [{CONFIDENCE:.0%} CI]")
    table.add_column("method")
    table.add_column("split")
    for limit in columns:
        table.add_column(f"of {titles.get(limit, limit)}", justify="right")
    for _, r in summary[summary.method.isin(methods)].iterrows():
        for split, short in SPLIT_LABELS:
            if pd.isna(r.get(f"{split}/auc_success", np.nan)):
                continue
            table.add_row(titles.get(r["method"], r["method"]), short,
                          *(_bracket(r, f"{split}/auc_share_of_{limit}", ".0%") for limit in columns))
    return table


def rich_paired_areas(method_intervals: pd.DataFrame, reference: str, titles: dict[str, str]):
    """Each method's frontier area minus `reference`'s on the test splits, paired (`interval_tables(...,
    reference=reference)`), with 95 % intervals: a method beats the reference where the interval lies above 0."""
    from rich.table import Table

    key = f"area_minus_{reference}"
    table = Table(title=f"Frontier area minus {titles.get(reference, reference)}'s (paired) [{CONFIDENCE:.0%} CI]")
    for column in ("method", "split", "area", f"minus {reference}"):
        table.add_column(column, justify="left" if column in ("method", "split") else "right")
    for _, r in method_intervals.iterrows():
        if r["method"] in (reference, *REFERENCES):
            continue
        short = dict(SPLIT_LABELS).get(r["eval_split"], r["eval_split"])
        table.add_row(titles.get(r["method"], r["method"]), short, f"{r['area']:.3f}",
                      f"{r[key]:+.3f} [{r[key + '_low']:+.3f}, {r[key + '_high']:+.3f}]")
    return table


def rich_budget_frontier(method_intervals: pd.DataFrame, budget: float, titles: dict[str, str], agents_title: str):
    """Each method's frontier success at cloud-step ratio `budget` (a mix of its knob values, episode by episode)
    on the test splits, and that as a share of cloud-only success, with 95 % intervals; `agents_title` says which
    agents acted (stand-ins say so)."""
    from rich.table import Table

    table = Table(title=f"Success on the frontier at {budget:.3g} cloud steps (a mix of each method's knob values) "
                        f"[{CONFIDENCE:.0%} CI] — {agents_title}")
    for column in ("method", "split", "success", "of cloud-only's"):
        table.add_column(column, justify="left" if column in ("method", "split") else "right")
    for _, r in method_intervals.iterrows():
        if r["method"] in REFERENCES:
            continue
        short = dict(SPLIT_LABELS).get(r["eval_split"], r["eval_split"])
        table.add_row(titles.get(r["method"], r["method"]), short,
                      f"{r['success_at_budget']:.3f} [{r['success_at_budget_low']:.3f}, "
                      f"{r['success_at_budget_high']:.3f}]",
                      # no share of a cloud-only success of 0: "—", as in the frontier table
                      f"{_fmt(r['retained_at_budget'], '.1%')} [{_fmt(r['retained_at_budget_low'], '.1%')}, "
                      f"{_fmt(r['retained_at_budget_high'], '.1%')}]")
    return table
