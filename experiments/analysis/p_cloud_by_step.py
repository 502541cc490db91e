"""Spread of a router's p(cloud) over the states of one step kind, on the gold path of held-out episodes.

    python experiments/analysis/p_cloud_by_step.py runs/evaluate/<run> il@0.3 rl@0.3

For each named point (method@threshold) of an evaluation folder: the states its episodes visited while still on
the cloud-only episode's path (the gold path for the gold-path stand-in cloud), grouped by task and the verb of the
gold action, with the median and the 10 % / 90 % quantiles of p(cloud) and the share of states below 0.02. A router
that learnt the device's dice at its training states spreads p(cloud) of one step kind over (0, 1).
"""

import collections
import json
import sys

import numpy as np

from hera_jax.research.diagnosis import gold_walk

run, points = sys.argv[1], sys.argv[2:]
episodes = collections.defaultdict(list)
with open(f"{run}/rollouts.jsonl") as f:
    for line in f:
        row = json.loads(line)
        if "/test/" in row["episode_id"]:
            episodes[row["episode_id"]].append(row)
gold = {}
for eid, rows in episodes.items():
    if eid.startswith("eval/cloud_only/"):
        gold[rows[0]["task"], rows[0]["variation"]] = [r["action"] for r in sorted(rows, key=lambda r: r["step"])]
for point in points:
    method, threshold = point.split("@")
    by_kind = collections.defaultdict(list)
    for eid, rows in episodes.items():
        if not eid.startswith(f"eval/{method}/{threshold}/"):
            continue
        rows = sorted(rows, key=lambda r: r["step"])
        due, _, detours_before = gold_walk(gold[rows[0]["task"], rows[0]["variation"]], [r["action"] for r in rows])
        for r, action, detours in zip(rows, due, detours_before):
            if action is None or detours > 0:
                break  # left the path: later states have no gold action to name their kind
            by_kind[r["task"], action.split()[0]].append(r["p_cloud"])
    print(f"{point}: p(cloud) on the gold path of its test episodes")
    print(f"  {'task':28s} {'verb':8s} {'states':>6s} {'median':>7s} {'q10':>6s} {'q90':>6s} {'<0.02':>6s}")
    for (task, verb), p in sorted(by_kind.items()):
        p = np.asarray(p, float)
        print(f"  {task:28s} {verb:8s} {len(p):6d} {np.median(p):7.3f} {np.quantile(p, 0.1):6.3f} "
              f"{np.quantile(p, 0.9):6.3f} {np.mean(p < 0.02):6.2f}")
