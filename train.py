"""Train DRAW: `python train.py attention=gaussian T=64` (see `python train.py --help`)."""

import warnings

import hydra
from omegaconf import DictConfig

from draw_exp.run_folder import register_resolvers
from draw_exp.training import train


# conf/hydra/launcher/submitit_slurm.yaml replaces the plugin's own config of that name, keys and all; Hydra
# still checks it against the plugin's schema and warns that it will stop doing so, which changes nothing here.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/submitit_slurm' is validated against", category=UserWarning)

register_resolvers()  # ${unique_folder:...} in hydra.run.dir


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return train(cfg).get("test/nll_bound")  # returned for Hydra sweepers that minimise it


if __name__ == "__main__":
    main()
