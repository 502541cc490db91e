"""Markdown tables of one evaluation folder: frontier areas with their paired intervals, and the points.

    python experiments/analysis/rl_tables.py runs/evaluate/<run> [--reference il0]

Reads `summary.json` (areas, `area_minus_<reference>` from `evaluate.py --compare-to`, the frontier at
`--cloud-budget`) and `points.csv`.
"""

import json
import sys

import pandas as pd

run = sys.argv[1]
reference = sys.argv[sys.argv.index("--reference") + 1] if "--reference" in sys.argv else None
summary = json.load(open(f"{run}/summary.json"))
intervals = summary["intervals"]
minus_ref = {(r["eval_split"], r["method"]): r for r in intervals.get(f"area_minus_{reference}", [])}


def ci(row, key):
    return f"{row[key]:+.3f} [{row[key + '_low']:+.3f}, {row[key + '_high']:+.3f}]"


for split in ("test", "test_unseen"):
    print(f"\n{split}: frontier area [95 % CI], paired differences")
    head = "| method | area | minus random |" + (f" minus {reference} |" if reference else "") + " share of bayes | share of bayes_harm |"
    if any("retained_at_budget" in r for r in intervals["frontier_areas"]):
        head += f" % of cloud-only success at {summary['cloud_budget']:g} cloud steps (frontier) |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in sorted((r for r in intervals["frontier_areas"] if r["eval_split"] == split), key=lambda r: -r["area"]):
        cells = [r["method"], f"{r['area']:.3f} [{r['area_low']:.3f}, {r['area_high']:.3f}]", ci(r, "area_minus_random")]
        if reference:
            m = minus_ref.get((split, r["method"]))
            cells.append(ci(m, f"area_minus_{reference}") if m else "")
        cells += [f"{r[k]:.0%} [{r[k + '_low']:.0%}, {r[k + '_high']:.0%}]" if k in r else ""
                  for k in ("share_of_bayes", "share_of_bayes_harm")]
        if "retained_at_budget" in r:  # evaluate.py since 2026-12-03 (third session)
            cells.append(f"{r['retained_at_budget']:.1%} [{r['retained_at_budget_low']:.1%}, "
                         f"{r['retained_at_budget_high']:.1%}]")
        print("| " + " | ".join(cells) + " |")

points = pd.read_csv(f"{run}/points.csv")
print("\ntest points: knob, cloud-step ratio, success [95 % CI]")
print("| method | knob | cloud-step ratio | success |")
print("| --- | --- | --- | --- |")
for _, p in points[points.eval_split == "test"].sort_values(["method", "cloud_step_ratio"]).iterrows():
    print(f"| {p.method} | {p.param} | {p.cloud_step_ratio:.3f} | {p.success_rate:.3f} [{p.success_low:.3f}, {p.success_high:.3f}] |")
