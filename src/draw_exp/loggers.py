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


def wandb_logger(offline: bool | None = None, **kwargs):
    """A Lightning ``WandbLogger``; ``offline=None`` means offline exactly when no credentials are found.

    An offline run is kept under ``save_dir/wandb/`` and can be uploaded later with ``wandb sync``.
    """
    from pytorch_lightning.loggers import WandbLogger  # wandb is imported only when this logger is chosen

    if kwargs.get("id"):
        kwargs.setdefault("resume", "allow")  # continue that run (a resumed checkpoint names it)
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_credentials_available()
    return WandbLogger(offline=offline, **kwargs)
