"""Train DRAW: `python train.py attention=gaussian T=64` (see `python train.py --help`)."""

import hydra
from omegaconf import DictConfig

from draw_exp.console import expected_errors_in_one_line, quiet_library_noise
from draw_exp.run_folder import register_resolvers
from draw_exp.training import train

register_resolvers()  # ${unique_folder:...} in hydra.run.dir
quiet_library_noise()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    with expected_errors_in_one_line():
        return train(cfg).get("test/nll_bound")  # returned for Hydra sweepers that minimise it


if __name__ == "__main__":
    main()
