"""Logger factories: W&B that runs offline unless the user has an account set up."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse


def wandb_credentials_available() -> bool:
    """True when ``wandb login`` has been run (an entry in ~/.netrc) or WANDB_API_KEY is set."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _quiet_wandb_logger_class():
    from pytorch_lightning.loggers import WandbLogger

    class QuietWandbLogger(WandbLogger):
        """Lightning's WandbLogger, less the ``anonymous=None`` it always passes to ``wandb.init``: W&B has dropped
        that setting and warns about it on every run ("The anonymous setting has no effect"), a line the user cannot
        act on."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if self._wandb_init.get("anonymous") is None:
                self._wandb_init.pop("anonymous", None)

    return QuietWandbLogger


def wandb_logger(offline: bool | None = None, **kwargs):
    """A Lightning ``WandbLogger``; ``offline=None`` means offline exactly when no credentials are found.

    An offline run is kept under ``save_dir/wandb/`` and can be uploaded later with ``wandb sync``.
    """
    if kwargs.get("id"):
        kwargs.setdefault("resume", "allow")  # continue that run (a resumed checkpoint names it)
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_credentials_available()
    return _quiet_wandb_logger_class()(offline=offline, **kwargs)  # wandb is imported only when it is chosen
