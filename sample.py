"""Pictures from a checkpoint: `python sample.py ckpt_path=... [n=64]`: samples, drawing GIFs, attention windows."""

import hydra
from omegaconf import DictConfig

from draw_exp.checkpoint_tasks import run_sample
from draw_exp.console import expected_errors_in_one_line, quiet_library_noise
from draw_exp.run_folder import register_resolvers

register_resolvers()  # ${unique_folder:...} in hydra.run.dir
quiet_library_noise()


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    with expected_errors_in_one_line():
        run_sample(cfg)


if __name__ == "__main__":
    main()
