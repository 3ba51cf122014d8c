"""Train DRAW: `python train.py attention=gaussian T=64` (see `python train.py --help`)."""

import hydra
from omegaconf import DictConfig

from draw_exp.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return train(cfg).get("test/nll_bound")  # returned for Hydra sweepers that minimise it


if __name__ == "__main__":
    main()
