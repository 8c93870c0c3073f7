"""Which W&B host, and whether an API key is configured for it, as the wandb SDK resolves them.

A user who ran `wandb login` (or `wandb login --host https://wandb.mycorp.example`) has no
WANDB_API_KEY anywhere: the SDK keeps the host in its settings file and the key in netrc under
that host. Copying those rules (a hard-coded api.wandb.ai, our own netrc parse) made such a
user run offline without a word, so both answers come from the SDK itself.
"""
from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse


def sdk_base_url() -> str:
    """WANDB_BASE_URL, else the host `wandb login --host` saved, else the SDK's default."""
    import wandb

    base_url = wandb.setup().settings.base_url
    # The SDK's process-wide setup keeps the environment it saw; load_settings pins WANDB_MODE
    # right after this, and wandb.init would warn that the change is ignored. Torn down here,
    # the next wandb.init sets up again with the environment as it then is.
    wandb.teardown()
    return base_url


def netrc_api_key(base_url: str) -> str | None:
    """The key `wandb login` stored for this host.

    The SDK's reader (wandb.sdk.lib.wbauth.read_netrc_auth) is internal: probed here, with the
    standard netrc module on the same host as the fallback. tests/test_online_contract.py fails
    when the internal one goes away, which is the signal to look again.
    """
    reader = internal_netrc_reader()
    if reader is not None:
        try:
            return reader(host=base_url)
        except Exception:  # noqa: BLE001 - an internal that changed its behaviour: use the fallback
            pass
    host = urlparse(base_url).netloc  # as `wandb login` writes it: the host with its port, if any
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        auth = netrc.netrc(path).authenticators(host) if host else None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    return auth[2] if auth and auth[2] else None


def internal_netrc_reader():
    """wandb's own netrc reader, or None where this SDK has none by that name."""
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth
    except ImportError:
        return None
    return read_netrc_auth
