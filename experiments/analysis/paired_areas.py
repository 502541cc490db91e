"""Paired bootstrap difference of every method's frontier area against a chosen reference method, and each method's
success on its frontier at a cloud-step budget.

    python experiments/analysis/paired_areas.py runs/evaluate/<run> il0
    python experiments/analysis/paired_areas.py runs/evaluate/<seed 0> runs/evaluate/<seed 1> il --budget 0.463

Several run folders of the same evaluation plan (e.g. one per `--agents.device-seed`) are pooled: a game's episodes
of every run form one unit, so the bootstrap resamples games with all their seeds.
`hera_jax.evaluate.report.interval_tables(..., reference=...)`: the same resamples for every method, so the
differences are paired.
"""

import argparse

import pandas as pd

from hera_jax.evaluate.report import interval_tables

parser = argparse.ArgumentParser()
parser.add_argument("runs", nargs="+", help="evaluation run folders, then the reference method's name")
parser.add_argument("--budget", type=float, default=0.3, help="cloud-step ratio of the frontier success column")
args = parser.parse_args()
*runs, reference = args.runs
episodes = pd.concat([pd.read_csv(f"{run}/episodes.csv") for run in runs], ignore_index=True)
_, methods = interval_tables(episodes, reference=reference, budget=args.budget)
key = f"area_minus_{reference}"
print(f"{len(runs)} run(s), {len(episodes)} episodes; frontier success at cloud-step ratio {args.budget:g}")
for _, row in methods.iterrows():
    if row.method in ("cloud_only", "device_only"):
        continue
    print(f"{row.eval_split} {row.method}: area {row.area:.3f} [{row.area_low:.3f}, {row.area_high:.3f}]; minus "
          f"{reference}: {row[key]:+.3f} [{row[key + '_low']:+.3f}, {row[key + '_high']:+.3f}]; success at budget "
          f"{row.success_at_budget:.3f} [{row.success_at_budget_low:.3f}, {row.success_at_budget_high:.3f}] = "
          f"{row.retained_at_budget:.1%} [{row.retained_at_budget_low:.1%}, {row.retained_at_budget_high:.1%}] "
          "of cloud-only's")
