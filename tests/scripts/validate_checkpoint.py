"""``python tests/scripts/validate_checkpoint.py CKPT DATA_DIR DEVICES``: the validation metrics of CKPT on the
small MNIST files in DATA_DIR, computed by Lightning's validate with DEVICES CPU processes (DDP, gloo, when
more than one), printed as JSON by rank zero. A script, because Lightning starts DDP ranks by running it again."""

import json
import sys

import pytorch_lightning as pl
import torch.distributed as dist

from draw_exp.data import MNISTDataModule
from draw_exp.lit_module import DrawModule

if __name__ == "__main__":
    ckpt, data_dir, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
    module = DrawModule.load_from_checkpoint(ckpt, weights_only=True)
    # 51 validation images in batches of 10: the shards (26 and 25) and the last batches are uneven.
    datamodule = MNISTDataModule(data_dir=data_dir, val_size=51, batch_size=10, num_workers=0, download=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        print(json.dumps({**metrics, "world_size": trainer.world_size}))
    if dist.is_initialized():
        dist.destroy_process_group()  # a gloo group left to interpreter shutdown can abort the process
