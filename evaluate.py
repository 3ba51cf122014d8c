"""Likelihood bounds of a checkpoint: `python evaluate.py ckpt_path=... [iw_samples=[100,5000]]`."""

import hydra
from omegaconf import DictConfig

from draw_exp.checkpoint_tasks import run_evaluate
from draw_exp.console import expected_errors_in_one_line, quiet_library_noise
from draw_exp.run_folder import register_resolvers

register_resolvers()  # ${unique_folder:...} in hydra.run.dir
quiet_library_noise()


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with expected_errors_in_one_line():
        run_evaluate(cfg)


if __name__ == "__main__":
    main()
