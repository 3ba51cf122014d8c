#!/usr/bin/env bash
# Recipe comparison for issue 12: short runs of experiment=mnist_gaussian at equal steps, validation split only.
# Usage: bash bench/recipes.sh <data_dir> <out_root> <steps> "<name>:<overrides>" ...
# Each run validates on the first 1,000 validation images every 100 steps; pictures off (they cost time, not
# quality). The table prints val/nll_bound at each check, the run's wall time and its seconds per step.
set -euo pipefail
mkdir -p "$2"
data_dir=$1 out_root=$2 steps=$3; shift 3
for spec in "$@"; do
  name=${spec%%:*} overrides=${spec#*:}
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  python train.py experiment=mnist_gaussian paths.data_dir="$data_dir" logger=csv callbacks.pictures=null \
    data.num_workers=0 trainer.max_steps="$steps" trainer.val_check_interval=100 \
    trainer.limit_val_batches=10 trainer.limit_test_batches=0 trainer.enable_progress_bar=false \
    hydra.run.dir="$out_root/$name" $overrides > "$out_root/$name.log" 2>&1
  end=$(date +%s.%N)
  python - "$out_root/$name" "$start" "$end" "$name" "$steps" <<'PY'
import csv, glob, sys
folder, start, end, name, steps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
rows = [r for r in csv.DictReader(open(glob.glob(f"{folder}/csv/*/metrics.csv")[0])) if r.get("val/nll_bound")]
vals = "  ".join(f"step {int(r['step']) + 1}: {float(r['val/nll_bound']):.2f}" for r in rows)
print(f"{name:24s} wall {end - start:6.0f} s  {vals}", flush=True)
PY
done
