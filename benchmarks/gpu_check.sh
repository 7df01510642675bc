#!/usr/bin/env bash
# The CUDA path on a real GPU, in one prepared command (issue 11). At most ~8 minutes on one H100/H200.
#
#   bash benchmarks/gpu_check.sh            # from the repository root (or a copy of the working tree)
#
# Needs torch (CUDA build), numpy, h5py, pandas, matplotlib, seaborn, pytest; no network, no install of the
# package: it runs with PYTHONPATH=src. Snakemake, which the GPU machine lacks, is installed from wheels in .whl/
# when that folder exists (benchmarks/README.md, "GPU check", says how to fetch them); without it the default
# experiment part is skipped with one line. Without a CUDA GPU every CUDA part is skipped with one line each and
# the script still exits 0 (that is how CI and a CPU machine run it).
#
# Steps: (1) pytest -m cuda; (2) benchmarks/run.py train_xmedia (target >= 5x vs the reference-style loop),
# train_stacked, map_nuswide_torch; (3) the default experiment with --config device=cuda, timed, its table
# compared with the CPU table of the same commit (results/tables/default.csv, if present: carry it), printing the
# largest MAP difference per method. Everything printed also goes to $OUT/gpu_check.log (or
# benchmarks/results/gpu_check.log).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR="${OUT:-benchmarks/results}"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
rc=0

stamp "== gpu_check on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
"$PY" -c "import torch; print('torch', torch.__version__, '| device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA GPU visible')"

stamp "== 1. pytest -m cuda"
if [ "$HAS_CUDA" = 1 ]; then
  timeout 150 "$PY" -m pytest -q -m cuda tests/test_gpu_path.py -p no:cacheprovider || rc=1
else
  echo "SKIP pytest -m cuda: no CUDA GPU visible to torch"
fi

stamp "== 2. benchmarks (benchmarks/run.py)"
for case in train_xmedia train_stacked map_nuswide_torch; do
  if [ "$HAS_CUDA" = 1 ]; then
    stamp "-- $case"
    timeout 150 "$PY" benchmarks/run.py --only "$case" || rc=1
  else
    echo "SKIP benchmark $case: no CUDA GPU visible to torch (its ratio is only meaningful on the GPU)"
  fi
done

stamp "== 3. default experiment with device=cuda"
if [ "$HAS_CUDA" != 1 ]; then
  echo "SKIP default experiment on CUDA: no CUDA GPU visible to torch"
else
  if ! "$PY" -c "import snakemake" 2>/dev/null && [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site \
      .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpu_check_site" && export PATH="/tmp/gpu_check_site/bin:$PATH"
  fi
  if ! "$PY" -c "import snakemake" 2>/dev/null; then
    echo "SKIP default experiment on CUDA: snakemake is not importable and no .whl/ folder of wheels was brought"
  else
    work=$(mktemp -d)
    cores=$(nproc)
    stamp "snakemake --cores $cores default --config device=cuda (in $work)"
    start=$(date +%s)
    timeout 330 "$PY" -m snakemake --snakefile Snakefile --directory "$work" --cores "$cores" default \
      --config device=cuda data_root="$PWD/resources" -q > "$LOG_DIR/gpu_default_snakemake.log" 2>&1
    smk=$?
    stamp "default on CUDA: exit $smk, wall $(( $(date +%s) - start )) s (log: gpu_default_snakemake.log)"
    [ "$smk" -eq 0 ] || rc=1
    if [ "$smk" -eq 0 ] && [ -f results/tables/default.csv ]; then
      cp "$work/results/tables/default.csv" "$LOG_DIR/default_cuda.csv"
      "$PY" - "$work/results/tables/default.csv" results/tables/default.csv <<'PYEOF'
import sys
import pandas as pd
gpu, cpu = (pd.read_csv(p) for p in sys.argv[1:3])
key = ["dataset", "task", "method", "noise", "bits"]
both = gpu.merge(cpu, on=key, suffixes=("_cuda", "_cpu"))
both["abs_diff"] = (both["map_cuda"] - both["map_cpu"]).abs()
print(f"{len(both)} cells compared (CUDA vs the CPU table of this commit); largest |MAP difference| per method:")
print(both.groupby("method", sort=False)["abs_diff"].agg(["max", "median"]).round(2).to_string())
PYEOF
    elif [ "$smk" -eq 0 ]; then
      echo "SKIP CPU comparison: results/tables/default.csv (the CPU table of this commit) was not brought along"
    fi
  fi
fi
stamp "== done (exit $rc)"
exit "$rc"
