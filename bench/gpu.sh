#!/usr/bin/env bash
# The GPU figures in one call of the lent device machine (issues 12 and 14), prepared and tried on the CPU first,
# because a lease is short (15 minutes of device time in all, machine start-up included).
#
#   bash bench/gpu.sh prepare        # here, once: wheels and binarized MNIST (3.6 MB compressed) into .gpu/
#   bash bench/gpu.sh run [MINUTES]  # there: the device tool's run(command="bash bench/gpu.sh run 3",
#                                    #   carry=[".gpu"], timeout_s=600)
#
# `run` installs hydra-core and omegaconf from the carried wheels (the device's python lacks them), unpacks the data,
# times one training step of each engine at batch 50 and checks its loss and gradients against the textbook loop in
# float64 on the GPU (bench/train_step.py --device cuda --check; no test runs on a GPU), each engine within
# MODE_TIMEOUT seconds, compilation included (with BATCHES="50 200" the fastest and the textbook loop at 200 too),
# trains experiment=mnist_gaussian with the fastest engine from INIT (default: the shipped continued attention
# model) for MINUTES of training time, tests the best checkpoint by the validation bound, and leaves under $OUT (at
# most 8 files come back):
#   console.txt      everything printed, with nvidia-smi and the versions
#   train_step.txt   the engines' step times; train_step.json the same as data
#   metrics.csv      the run's CSV log (validation bound per epoch, time/elapsed_s)
#   metrics.json     its final figures (test bound, steps, wall time)
#   train.log        the run's log
#   best.ckpt        its best checkpoint (the newest if the run was cut short): the next call continues from it with
#                    INIT=.gpu/best.ckpt LR=<the rate the schedule reached> (copy it into .gpu/ first)
# Budget: the bench takes at most 4 x MODE_TIMEOUT (the eager engines take seconds), training MINUTES, starting
# Python about 40 s each time (twice), the test about a minute: with the defaults (MODE_TIMEOUT=90, MINUTES=3) about
# 8 minutes at most, inside a 10-minute device command.
# Environment: INIT, LR (default 2.6e-4, the rate the shipped model's schedule had reached), WARMUP (500),
# ENGINE (train.py's model.engine; default the fastest measured), MODES (the engines timed, in order), MODE_TIMEOUT,
# BATCHES (batch sizes timed: 50, and 200 if named),
# EXTRA (more train.py overrides), DEVICE (cuda; cpu to try the script here), STEPS and BENCH (bench/train_step.py's
# timed steps and more arguments), PYTHON (python3), OUT.
# Session 12 (H200, the first GPU lent): with the old order the compiled engines never ran inside the time left,
# and the eager fused loop took 0.47 s a step at batch 50, launch-bound (docs/results.md, "GPU"); hence the CUDA-graph
# engine first.
# Without a GPU, every part runs on the CPU in about two minutes with DEVICE=cpu STEPS=2 BENCH="--T 4" INIT=null
# MODES="fused_loop textbook" EXTRA="T=4 trainer.limit_train_batches=20 trainer.limit_val_batches=2
# trainer.limit_test_batches=2" bash bench/gpu.sh run 1
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
minutes=${2:-3}
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

# Each engine's step time at the preset's batch (50), in one process (starting Python took about 40 s there), the
# CUDA-graph engine first: it is the GPU's candidate, and a compile that overruns MODE_TIMEOUT costs that engine
# alone. With BATCHES="50 200", also the fastest and the textbook loop at 200, where a GPU is less launch-bound.
bench() {  # batch, modes...
    local batch=$1; shift
    $PY bench/train_step.py --device "$DEVICE" --attention gaussian --batch "$batch" --steps "$STEPS" --modes "$@" \
        --in-process --check --mode-timeout "${MODE_TIMEOUT:-90}" ${BENCH:-} --json "$OUT/train_step_$batch.json" \
        | tee -a "$OUT/train_step.txt" || echo "train_step batch $batch: exit $?"
}
# shellcheck disable=SC2086  # MODES is a list
bench 50 ${MODES:-fused_loop_cudagraphs fused_loop textbook handwritten_bptt}
fastest=$($PY -c "import json, sys; print(max(json.load(open(sys.argv[1])), key=lambda r: r['images_per_s'])['mode'])" \
    "$OUT/train_step_50.json" 2>/dev/null || echo auto)
echo "fastest engine at batch 50: $fastest"
for batch in ${BATCHES:-50}; do
    [[ "$batch" == 50 ]] && continue
    bench "$batch" textbook $([[ "$fastest" == auto || "$fastest" == textbook ]] || echo "$fastest")
done
$PY - "$OUT" <<'PY' || true
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = [
    row | {"batch": int(f.stem.split("_")[-1])}
    for f in sorted(out.glob("train_step_*.json"))
    for row in json.loads(f.read_text())
]
(out / "train_step.json").write_text(json.dumps(rows, indent=1))
for f in out.glob("train_step_*.json"):
    f.unlink()
PY
engine=${ENGINE:-$fastest}

accelerator=$([[ "$DEVICE" == cuda ]] && echo gpu || echo cpu)
status=0
# timeout: the copies below must run even if the test overruns, or nothing of the run comes back
timeout $((minutes * 60 + 150)) $PY train.py experiment=mnist_gaussian "paths.data_dir=$data" logger=csv \
    "hydra.run.dir=$run" "trainer.accelerator=$accelerator" trainer.enable_progress_bar=false \
    "trainer.max_time=00:00:$(printf %02d "$minutes"):00" "init_from=$INIT" "model.engine=$engine" "model.lr=$LR" \
    "model.lr_warmup_steps=$WARMUP" model.kl_warmup_steps=0 callbacks.pictures.every_n_epochs=1000 ${EXTRA:-} \
    || status=$?  # kl_warmup_steps=0: the weights already use their latents; the preset's warm-up is for a new model
echo "train.py: exit $status"
cp "$run"/csv/version_0/metrics.csv "$OUT"/ 2>/dev/null || true
cp "$run"/metrics.json "$run"/train.log "$OUT"/ 2>/dev/null || true
# The best checkpoint as it is (about 12 MB, under the 16 MB a returned file may have): slimming it would start
# Python once more.
best=$(ls -t "$run"/checkpoints/epoch*.ckpt 2>/dev/null | head -1 || true)
best=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['best_checkpoint'] or '')" "$run/metrics.json" \
    2>/dev/null || echo "$best")
[[ -n "$best" ]] && cp "$best" "$OUT/best.ckpt" && echo "best checkpoint: $best"
ls -la "$OUT"
exit "$status"
