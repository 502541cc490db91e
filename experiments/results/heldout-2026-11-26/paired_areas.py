"""Paired bootstrap difference of every method's frontier area against a chosen reference method.

    python experiments/results/heldout-2026-11-26/paired_areas.py runs/evaluate/<run> il0

Reuses `hera_jax.evaluate.report.interval_tables`, which pairs every method against the method named 'random'; the
reference is renamed to 'random' (the real random baseline is dropped) so the same resamples give the differences.
"""

import sys

import pandas as pd

from hera_jax.evaluate.report import interval_tables

run, reference = sys.argv[1], sys.argv[2]
episodes = pd.read_csv(f"{run}/episodes.csv")
episodes = episodes[episodes.method != "random"].copy()
episodes.loc[episodes.method == reference, "method"] = "random"
_, methods = interval_tables(episodes)
for _, row in methods.iterrows():
    if row.method in ("random", "cloud_only", "device_only"):
        continue
    print(f"{row.eval_split} {row.method}: area {row.area:.3f}; minus {reference}: {row.area_minus_random:+.3f} "
          f"[{row.area_minus_random_low:+.3f}, {row.area_minus_random_high:+.3f}]")
