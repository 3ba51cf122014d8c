"""Errors raised before any work starts, worded for the person who typed the configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the key, the value and what is allowed."""


def check_int_range(key: str, value, low: int, high: int | None = None, why: str = "") -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise :class:`ConfigError` naming ``key``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise ConfigError(f"{key}={value!r} is not allowed: must be {allowed}{f' ({why})' if why else ''}")
    return value


def check_choice(key: str, value, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not allowed: must be one of {', '.join(map(repr, choices))}")
    return value


def check_number(key: str, value, low: float, inclusive: bool = False, why: str = "") -> float:
    """Return ``value`` if it is a number above ``low`` (or equal to it, if ``inclusive``), else raise
    :class:`ConfigError` naming ``key``."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and (value >= low if inclusive else value > low)):
        bound = f"{'>=' if inclusive else '>'} {low:g}"
        raise ConfigError(f"{key}={value!r} is not allowed: must be a number {bound}{f' ({why})' if why else ''}")
    return value


def check_adam(lr, betas) -> None:
    """Adam's ``model.lr`` (a number > 0) and ``model.betas`` (two numbers in [0, 1))."""
    check_number("model.lr", lr, 0)
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"model.betas={list(betas)!r} is not allowed: must be two numbers in [0, 1), Adam's β1, β2")


def instantiate_checked(node, **kwargs):
    """Hydra's ``instantiate``, with a :class:`ConfigError` raised inside the target passed on as it is: one
    message naming the key, not Hydra's wrapping of it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise
