#!/bin/bash
# Wall time: the DDP test's command (tiny model, small IDX files) with 2 processes vs 1, then the paper's model on
# real binarized MNIST for 30 steps.
mkdir -p "${OUT_DIR:-/tmp/ddp_wall_time}"
export WANDB_MODE=offline
TINY="attention=gaussian T=2 latent_size=4 lstm_size=16 attention.read_size=2 attention.write_size=3 data.val_size=50 data.batch_size=25 data.num_workers=0 data.download=false trainer.max_epochs=1 trainer.limit_train_batches=3 trainer.log_every_n_steps=1 paths.data_dir=${TINY_DATA:?small IDX files, e.g. from tests/conftest.py write_mnist} logger=csv"
for rep in 1 2; do
for t in "trainer=ddp trainer.devices=2 trainer.accelerator=cpu" "trainer=cpu"; do
  s=$(date +%s.%N); python train.py $TINY $t hydra.run.dir=${OUT_DIR:-/tmp/ddp_wall_time}/tiny_$(date +%s%N) >/dev/null 2>&1; rc=$?
  e=$(date +%s.%N); echo "tiny [$t] rc=$rc wall $(echo "$e - $s" | bc) s"
done; done
REAL="experiment=mnist_gaussian paths.data_dir=${DATA_DIR:-../shared/data} trainer.max_steps=30 trainer.limit_val_batches=10 trainer.limit_test_batches=10 callbacks.pictures=null logger=csv data.num_workers=0"
for t in "trainer=ddp trainer.devices=2 trainer.accelerator=cpu" "trainer=cpu"; do
  d=${OUT_DIR:-/tmp/ddp_wall_time}/real_$(date +%s%N)
  s=$(date +%s.%N); python train.py $REAL $t hydra.run.dir=$d >$d.log 2>&1; rc=$?
  e=$(date +%s.%N); echo "real 30 steps [$t] rc=$rc wall $(echo "$e - $s" | bc) s"
done
