"""`experiments/il.py` end to end on large datasets: wall time, peak RSS and its phases; then one RL fine-tune on
the same data (`rl_finetune_once.py`, with STAND-IN visits) the same way.

For each size a dataset is made with `make_large_dataset.py` (resampled shipped episodes, so nothing is embedded),
then il.py runs twice in new processes: "cold" (no columns cache: every row is read and validated) and "warm" (the
columns cache written by the first run; the compile cache is warm too). Phases come from the run's metrics.json;
"start-up" is the process wall time minus il.py's own total (interpreter, imports, device init).

    python benchmarks/bench_end_to_end.py --sizes 100k
    python benchmarks/bench_end_to_end.py --sizes 1M,10M --work /tmp/hera_e2e     # the GPU rows
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path

from common import (IL_PHASES, ROOT, environment, human, il_run_phases, parse_sizes, print_table, run_measured,
                    write_json)

from hera_jax.cli import run_cli
from hera_jax.columns import columns_path



@dataclasses.dataclass(frozen=True)
class BenchEndToEndConfig:
    """Time il.py end to end (cold and warm) on resampled datasets of the given sizes."""

    sizes: str = "100k"
    """Dataset sizes in steps, comma separated; k and M suffixes allowed."""
    work: Path = Path("/tmp/hera_e2e")
    """Where the datasets and run folders go (datasets are reused when present)."""
    source: Path = ROOT / "data" / "scienceworld_standin"
    """Dataset whose episodes are resampled."""
    il_flags: str = ""
    """Extra flags for il.py, as one string (e.g. "--train.max-epochs 20 --train.patience 20")."""
    rl: bool = True
    """Also time one RL fine-tune of the warm run's router on the same data (rl_finetune_once.py: the dataset's
    steps as STAND-IN routed visits), in a child process of its own."""
    out: Path = ROOT / "benchmarks" / "results" / "end_to_end.json"


RL_PHASES = ("load_il_data", "read_visits_first", "read_visits", "labels_and_visit_features", "fine_tune_incl_compile",
             "checkpoint")


def time_rl_finetune(work: Path, dataset: Path, il_run: Path) -> dict:
    """rl_finetune_once.py in a child process: its phases, wall time and peak RSS."""
    name = il_run.name.replace("il_", "rl_")
    out, log = work / f"{name}.json", work / f"{name}.log"
    wall, rss, rc = run_measured([sys.executable, "benchmarks/rl_finetune_once.py", "--dataset", str(dataset),
                                  "--checkpoint", str(il_run / "checkpoint"), "--out", str(out)], log)
    if rc:
        raise SystemExit(f"rl_finetune_once.py failed (rc {rc}); see {log}:\n{log.read_text()[-2000:]}")
    result = json.loads(out.read_text())
    row = {**result, "wall_s": wall, "peak_rss_gb": rss, "startup_s": wall - result["total_s"]}
    print(json.dumps({k: v for k, v in row.items() if k != "train_stats"}), file=sys.stderr)
    return row


def main(config: BenchEndToEndConfig) -> dict:
    config.work.mkdir(parents=True, exist_ok=True)
    results, rl_rows = [], []
    for size in parse_sizes(config.sizes):
        dataset = config.work / f"dataset_{human(size)}"
        if not dataset.exists():
            wall, rss, rc = run_measured([sys.executable, "benchmarks/make_large_dataset.py", "--steps", str(size),
                                          "--source", str(config.source), "--out", str(dataset)],
                                         config.work / f"make_{human(size)}.log")
            if rc:
                raise SystemExit(f"make_large_dataset.py failed (rc {rc}); see {config.work}/make_{human(size)}.log")
            print(f"made {dataset} in {wall:.1f} s", file=sys.stderr)
        columns_path(dataset).unlink(missing_ok=True)
        for mode in ("cold", "warm"):
            run_dir = config.work / f"il_{human(size)}_{mode}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            log = config.work / f"il_{human(size)}_{mode}.log"
            wall, rss, rc = run_measured([sys.executable, "experiments/il.py", "--dataset", str(dataset), "--out",
                                          str(run_dir), *shlex.split(config.il_flags)], log)
            if rc:
                raise SystemExit(f"il.py failed (rc {rc}); see {log}:\n{log.read_text()[-2000:]}")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            timings = metrics["timings_s"]
            row = {"steps": metrics["num_steps"], "mode": mode, "wall_s": wall, "peak_rss_gb": rss,
                   **il_run_phases(timings, wall),
                   "rows_per_s_load": metrics["num_steps"] / max(timings["load"], 1e-9),
                   "dev_auroc": metrics["metrics"]["dev"]["auroc"], "epochs_run": metrics["epochs_run"]}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
        if config.rl:
            rl_rows.append(time_rl_finetune(config.work, dataset, config.work / f"il_{human(size)}_warm"))
    columns = ["steps", "mode", "wall s", "peak RSS GB", "start-up s", *[f"{p} s" for p in IL_PHASES], "load rows/s"]
    print_table("il.py end to end", columns, [
        [human(r["steps"]), r["mode"], r["wall_s"], r["peak_rss_gb"], r["startup_s"],
         *[r[f"{p}_s"] for p in IL_PHASES], r["rows_per_s_load"]] for r in results])
    if rl_rows:
        print_table("one RL fine-tune on the same data (STAND-IN visits: the steps, actors drawn at random)",
                    ["visits", "wall s", "peak RSS GB", "start-up s", *[f"{p} s" for p in RL_PHASES]],
                    [[human(r["visits"]), r["wall_s"], r["peak_rss_gb"], r["startup_s"],
                      *[r["phases_s"][p] for p in RL_PHASES]] for r in rl_rows])
    payload = {"environment": environment(), "config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
               "results": results, "rl_finetune": rl_rows}
    print(f"wrote {write_json(config.out, payload)}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchEndToEndConfig)
