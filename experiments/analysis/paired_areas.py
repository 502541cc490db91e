"""Paired bootstrap difference of every method's frontier area against a chosen reference method.

    python experiments/analysis/paired_areas.py runs/evaluate/<run> il0

`hera_jax.evaluate.report.interval_tables(..., reference=...)`: the same resamples for every method, so the
differences are paired.
"""

import sys

import pandas as pd

from hera_jax.evaluate.report import interval_tables

run, reference = sys.argv[1], sys.argv[2]
episodes = pd.read_csv(f"{run}/episodes.csv")
_, methods = interval_tables(episodes, reference=reference)
key = f"area_minus_{reference}"
for _, row in methods.iterrows():
    if row.method in (reference, "cloud_only", "device_only"):
        continue
    print(f"{row.eval_split} {row.method}: area {row.area:.3f}; minus {reference}: {row[key]:+.3f} "
          f"[{row[key + '_low']:+.3f}, {row[key + '_high']:+.3f}]")
