#!/usr/bin/env bash
# The GPU figures in one call of the lent device machine (issues 12 and 14), prepared and tried on the CPU first,
# because a lease is short (15 minutes of device time in all, machine start-up included).
#
#   bash bench/gpu.sh prepare        # here, once: wheels and binarized MNIST (3.6 MB compressed) into .gpu/
#   bash bench/gpu.sh run [MINUTES]  # there: the device tool's run(command="bash bench/gpu.sh run 6",
#                                    #   carry=[".gpu"], timeout_s=570)
#
# `run` installs hydra-core and omegaconf from the carried wheels (the device's python lacks them), unpacks the data,
# times one training step of each engine (bench/train_step.py --device cuda), trains experiment=mnist_gaussian from
# INIT (default: the shipped continued attention model) for MINUTES of training time on the GPU, tests the best
# checkpoint by the validation bound, and leaves under $OUT (at most 8 files come back):
#   console.txt      everything printed, with nvidia-smi and the versions
#   train_step.txt   the engines' step times; train_step.json the same as data
#   metrics.csv      the run's CSV log (validation bound per epoch, time/elapsed_s)
#   metrics.json     its final figures (test bound, steps, wall time)
#   train.log        the run's log
#   best.ckpt        a slim copy of its best checkpoint: the next call continues from it with
#                    INIT=.gpu/best.ckpt LR=<the rate the schedule reached> (copy it into .gpu/ first)
# Environment: INIT, LR (default 2.6e-4, the rate the shipped model's schedule had reached), WARMUP (500),
# EXTRA (more train.py overrides), DEVICE (cuda; cpu to try the script here), STEPS and BENCH (bench/train_step.py's
# timed steps and more arguments), PYTHON (python3), OUT.
# Without a GPU, every part runs on the CPU in about two minutes with DEVICE=cpu STEPS=2 BENCH="--T 4 --modes fused_loop"
# EXTRA="trainer.limit_train_batches=20 trainer.limit_val_batches=2 trainer.limit_test_batches=2" bash bench/gpu.sh run 1
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu

if [[ "${1:-}" == prepare ]]; then
    data=${2:-../shared/data}
    mkdir -p "$CARRY"
    cp -f ../shared/gpu/*.whl "$CARRY"/
    tar -C "$data" -cf - BinarizedMNIST | gzip -6 >"$CARRY/binarized_mnist.tar.gz"
    ls -la "$CARRY"
    exit 0
fi
[[ "${1:-}" == run ]] || { echo "usage: bash bench/gpu.sh prepare [DATA_DIR] | run [MINUTES]" >&2; exit 2; }
minutes=${2:-6}
[[ "$minutes" =~ ^[0-9]+$ && "$minutes" -ge 1 && "$minutes" -le 9 ]] || {
    echo "MINUTES=$minutes: a whole number from 1 to 9 (a device command may run 10 minutes)" >&2; exit 2; }
[[ -f "$CARRY/binarized_mnist.tar.gz" ]] || { echo "$CARRY/binarized_mnist.tar.gz is missing: run 'bash bench/gpu.sh prepare' here and carry .gpu" >&2; exit 2; }
OUT=${OUT:-/tmp/gpu_out}
DEVICE=${DEVICE:-cuda}
INIT=${INIT:-docs/checkpoints/mnist_gaussian_cpu_continued.ckpt}
LR=${LR:-2.6e-4}
WARMUP=${WARMUP:-500}
STEPS=${STEPS:-15}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
exec > >(tee "$OUT/console.txt") 2>&1

if ! $PY -c "import hydra, omegaconf" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --target /tmp/site "$CARRY"/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-}
data=$(mktemp -d)
run_root=$(mktemp -d)
trap 'rm -rf "$data" "$run_root"' EXIT
tar -C "$data" -xzf "$CARRY/binarized_mnist.tar.gz"
run=$run_root/run
date -u
nvidia-smi 2>/dev/null || echo "nvidia-smi: none"
$PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__, 'cuda', torch.cuda.is_available())"

# The engines' step time at the preset's batch (50) and at 200, where a GPU is less bound by kernel launches.
for batch in 50 200; do
    timeout 150 $PY bench/train_step.py --device "$DEVICE" --attention gaussian --batch "$batch" --steps "$STEPS" \
        ${BENCH:-} --json "$OUT/train_step_$batch.json" | tee -a "$OUT/train_step.txt" || echo "train_step batch $batch: exit $?"
done
$PY - "$OUT" <<'PY' || true
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [row for f in sorted(out.glob("train_step_*.json")) for row in json.loads(f.read_text())]
(out / "train_step.json").write_text(json.dumps(rows, indent=1))
for f in out.glob("train_step_*.json"):
    f.unlink()
PY

accelerator=$([[ "$DEVICE" == cuda ]] && echo gpu || echo cpu)
status=0
$PY train.py experiment=mnist_gaussian "paths.data_dir=$data" logger=csv "hydra.run.dir=$run" \
    "trainer.accelerator=$accelerator" trainer.enable_progress_bar=false "trainer.max_time=00:00:$(printf %02d "$minutes"):00" \
    "init_from=$INIT" "model.lr=$LR" "model.lr_warmup_steps=$WARMUP" callbacks.pictures.every_n_epochs=1000 \
    ${EXTRA:-} || status=$?
echo "train.py: exit $status"
cp "$run"/csv/version_0/metrics.csv "$OUT"/ 2>/dev/null || true
cp "$run"/metrics.json "$run"/train.log "$OUT"/ 2>/dev/null || true
best=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['best_checkpoint'] or '')" "$run/metrics.json" 2>/dev/null || true)
[[ -n "$best" ]] && $PY -m draw_exp.checkpoints "$best" "$OUT/best.ckpt" && echo "best checkpoint: $best"
ls -la "$OUT"
exit "$status"
