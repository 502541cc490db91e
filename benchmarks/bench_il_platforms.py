"""`experiments/il.py` on the shipped data, on the platform JAX picks (a GPU where there is one) and on the host's
CPU, each cold and warm: the "GPU no slower than CPU" comparison.

Each platform runs il.py `--runs` times, each in a fresh process, with a compile cache of its own (so the first run
compiles and the later ones read the cache). The CPU runs get `JAX_PLATFORMS=cpu` and are pinned to `--cpu-cores`
of the host's cores, like the 2-core machine the CPU figures come from. Per run: wall time of the process, il.py's
own phases (metrics.json) and start-up (wall minus il.py's total: interpreter, imports, device init). On a machine
without an accelerator both rows run on the CPU, and the table says so in its device column.

    python benchmarks/bench_il_platforms.py --out benchmarks/results/h100/il_platforms.json   # on a GPU machine
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from common import IL_PHASES, ROOT, environment, il_run_phases, print_table, run_measured, write_json

from hera_jax.cli import run_cli



@dataclasses.dataclass(frozen=True)
class BenchILPlatformsConfig:
    """Time il.py on the default JAX platform and on pinned host CPU cores, cold then warm."""

    runs: int = 2
    """Processes per platform: the first compiles (cold), the others read its compile cache (warm)."""
    cpu_cores: int = 2
    """Host cores the CPU runs are pinned to."""
    il_flags: str = ""
    """Extra flags for every il.py run (e.g. "--dataset data/<other>")."""
    work: Path = Path(tempfile.gettempdir()) / "hera_il_platforms"
    """Run folders, compile caches and logs (emptied first)."""
    out: Path = ROOT / "benchmarks" / "results" / "il_platforms.json"


def time_il(config: BenchILPlatformsConfig, platform: str) -> list[dict]:
    """il.py `config.runs` times on `platform` ("default" or "cpu"): one row per run."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    cores = None
    if platform == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        allowed = sorted(os.sched_getaffinity(0))
        if config.cpu_cores > len(allowed):
            raise SystemExit(f"--cpu-cores {config.cpu_cores}: this process may use only {len(allowed)} cores")
        cores = set(allowed[:config.cpu_cores])
    cache = config.work / f"compile_cache_{platform}"
    rows = []
    for run in range(config.runs):
        run_dir, log = config.work / f"il_{platform}_{run}", config.work / f"il_{platform}_{run}.log"
        wall, rss, rc = run_measured([sys.executable, "experiments/il.py", "--out", str(run_dir), "--compile-cache",
                                      str(cache), *shlex.split(config.il_flags)], log, env=env, cores=cores)
        if rc:
            raise SystemExit(f"il.py on {platform} failed (rc {rc}); see {log}:\n{log.read_text()[-2000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        timings = metrics["timings_s"]
        rows.append({"platform": platform, "device": metrics["devices"][0], "run": "cold" if run == 0 else "warm",
                     "cores": sorted(cores) if cores else None, "wall_s": wall, "peak_rss_gb": rss,
                     **il_run_phases(timings, wall),
                     "total_s": timings["total"], "test_auroc": metrics["metrics"]["test"]["auroc"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main(config: BenchILPlatformsConfig) -> dict:
    shutil.rmtree(config.work, ignore_errors=True)
    config.work.mkdir(parents=True)
    rows = [row for platform in ("default", "cpu") for row in time_il(config, platform)]
    print_table("il.py on the shipped data: the default JAX platform vs pinned host CPU cores",
                ["platform", "device", "run", "wall s", "start-up s", *[f"{p} s" for p in IL_PHASES], "il.py total s"],
                [[r["platform"], r["device"], r["run"], r["wall_s"], r["startup_s"], *[r[f"{p}_s"] for p in IL_PHASES],
                  r["total_s"]] for r in rows])
    warm = {p: min((r["wall_s"] for r in rows if r["platform"] == p and r["run"] == "warm"), default=None)
            for p in ("default", "cpu")}
    if warm["default"] is not None and warm["cpu"] is not None:
        print(f"warm wall time, default platform / CPU: {warm['default'] / warm['cpu']:.2f}")
    payload = {"environment": environment(), "config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
               "results": rows, "warm_wall_s": warm}
    print(f"wrote {write_json(config.out, payload)}")
    return payload


if __name__ == "__main__":
    run_cli(main, BenchILPlatformsConfig)
