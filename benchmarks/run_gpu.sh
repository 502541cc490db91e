#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md, as run on the device machine (no tyro there: carried as wheels in .whl).
# Usage (device tool): bash benchmarks/run_gpu.sh {il|rest|sweep|labels|compile-cache|e2e|scaling}; results land in $OUT (default benchmarks/results/gpu).
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if ! python3 -c "import tyro" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
case "${1:-il}" in
  il)
    timeout 560 python3 benchmarks/bench_il.py --sizes 10k,100k,1M --torch-max-epochs 5 --out "$OUT/il.json" 2>&1 \
      | grep -v Warning | tee "$OUT/il.log" ;;
  rest)
    timeout 150 python3 benchmarks/bench_sweep.py --states 100k --out "$OUT/sweep.json" 2>&1 | tee "$OUT/sweep.log"
    timeout 120 python3 benchmarks/bench_rl.py --sizes 10k,100k,1M --out "$OUT/rl.json" 2>&1 | tee "$OUT/rl.log"
    # Where the IL compile time goes: XLA's GEMM autotuning (Triton fusions) vs steady-state speed.
    for flags in --xla_gpu_autotune_level=0 --xla_gpu_enable_triton_gemm=false; do
      XLA_FLAGS=$flags timeout 70 python3 benchmarks/bench_il.py --sizes 1M --frameworks jax \
        --out "$OUT/il_jax_$(echo ${flags#--xla_gpu_} | tr = _).json" 2>&1 | grep "'states'" | tee -a "$OUT/il_flags.log"
    done
    timeout 150 python3 benchmarks/bench_sweep.py --states 1M --out "$OUT/sweep_1M.json" 2>&1 | tee "$OUT/sweep_1M.log" ;;
  sweep)
    timeout 330 python3 benchmarks/bench_sweep.py --states 100k,1M --out "$OUT/sweep.json" 2>&1 | tee "$OUT/sweep.log"
    timeout 150 python3 benchmarks/bench_sweep.py --states 100k --matmul-precision float32 \
      --out "$OUT/sweep_float32.json" 2>&1 | tee "$OUT/sweep_float32.log" ;;
  labels)
    # 64 configurations whose label sources differ: 2 seeds x 2 learning rates x 4 widths x (IL, IL+RL at 3 costs)
    timeout 400 python3 benchmarks/bench_sweep.py --states 100k,1M --grid.seeds 0 1 --grid.learning-rates 1e-3 3e-3 \
      --grid.label-sources il il+rl --grid.cost-weights 0 0.02 0.05 --out "$OUT/sweep_labels.json" 2>&1 \
      | tee "$OUT/sweep_labels.log" ;;
  e2e)
    # il.py end to end on resampled 1M- and 10M-step datasets, cold (rows read and validated, compile cache empty)
    # and warm (columns cache and compile cache filled by the cold run)
    timeout 590 python3 benchmarks/bench_end_to_end.py --sizes ${E2E_SIZES:-1M,10M} --work /tmp/hera_e2e \
      --out "$OUT/end_to_end.json" 2>&1 | tee "$OUT/end_to_end.log" ;;
  scaling)
    # data-parallel IL at 10M states and the 64- / 256-configuration sweeps on 1, 2, 4, 8 of the host's GPUs
    # (those it has); on a one-GPU machine, the one-device baselines
    timeout 590 python3 benchmarks/bench_scaling.py --out "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.log" ;;
  compile-cache)
    # il.py and sweep.py on the shipped ScienceWorld data, twice each with one new compile cache: the first process
    # compiles and fills it, the second reads it
    cache=$(mktemp -d)
    for cmd in il sweep; do
      for run in first second; do
        start=$(date +%s.%N)
        timeout 240 python3 experiments/$cmd.py --compile-cache "$cache" --out "/tmp/cc_${cmd}_$run" \
          > "$OUT/cc_${cmd}_$run.log" 2>&1
        rc=$?
        wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
        echo "$cmd.py $run process: rc $rc wall $wall s" | tee -a "$OUT/compile_cache.log"
      done
    done ;;
esac
