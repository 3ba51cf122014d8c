"""The optimiser of both LightningModules: Adam (AdamW with a weight decay) with an optional linear warm-up and
exponential decay of its rate."""

from __future__ import annotations

import functools

import torch

from draw_exp.errors import check_adam, check_int_range, check_number


def check_optimiser(lr, betas, lr_warmup_steps: int, lr_half_life_steps: int | None, weight_decay: float = 0.0) -> None:
    check_adam(lr, betas)
    check_number("model.weight_decay", weight_decay, 0, inclusive=True, why="AdamW's decoupled decay; 0: plain Adam")
    check_int_range("model.lr_warmup_steps", lr_warmup_steps, 0)
    if lr_half_life_steps is not None:
        check_int_range("model.lr_half_life_steps", lr_half_life_steps, 1)


def linear_warmup(step: int, warmup: int) -> float:
    """(step + 1) / ``warmup`` up to 1 at optimiser step ``step`` (0-based); 1 throughout when ``warmup`` is 0."""
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


def lr_factor(step: int, warmup: int, half_life: int | None) -> float:
    """The learning rate at optimiser step ``step`` over ``model.lr``: a linear warm-up over ``warmup`` steps, then
    halved every ``half_life`` steps (a function of the step alone, so a run stopped by time or resumed with other
    limits follows the same schedule)."""
    return linear_warmup(step, warmup) * (0.5 ** (step / half_life) if half_life else 1.0)


def adam(parameters, lr: float, betas, lr_warmup_steps: int, lr_half_life_steps: int | None, weight_decay: float = 0.0):
    """What ``configure_optimizers`` returns: Adam, and its schedule stepped every optimiser step when there is one.

    A ``weight_decay`` above 0 makes it AdamW (Loshchilov & Hutter): every step shrinks each weight by
    ``rate × weight_decay`` of itself, apart from Adam's normalised gradient step. Plain Adam at 0, so that runs and
    checkpoints from before the option keep their optimiser."""
    if weight_decay:
        optimizer = torch.optim.AdamW(parameters, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    else:
        optimizer = torch.optim.Adam(parameters, lr=lr, betas=tuple(betas))
    if not (lr_warmup_steps or lr_half_life_steps):
        return optimizer
    factor = functools.partial(lr_factor, warmup=lr_warmup_steps, half_life=lr_half_life_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
