"""Parent-side preflight for hub models: fail a cell in one line, at once, when it cannot load.

Offline, transformers spends ~50 s in connection retries before it gives up on a hub
model. The parent instead checks, without torch, whether the model is a local folder or
already in the Hugging Face cache, and otherwise whether the hub answers at all (one TCP
connect per process, 3 s timeout). Only a definite "no" fails the cell; a hub that
answers leaves gated-model and revision errors to the worker, which reports them itself.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from harness.config.model import ModelConfig

CONNECT_TIMEOUT_S = 3.0


@lru_cache(maxsize=None)
def hub_reachable(endpoint: str) -> bool:
    """True when a TCP connection to the hub endpoint opens (cached for the process)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def in_local_cache(model: ModelConfig) -> bool:
    """True when the model's config is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model.hub_id, "config.json", revision=model.revision)
    return isinstance(cached, str)


def hub_problem(model: ModelConfig) -> Optional[str]:
    """One-line reason the model cannot be loaded here, or None when it may load."""
    if model.tiny or model.weights == "random" or Path(os.path.expanduser(str(model.hub_id))).exists():
        return None  # built here (tiny, model.weights=random) or a local folder: no hub involved
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if in_local_cache(model) or hub_reachable(endpoint):
        return None
    return (
        f"model={model.name}: {model.hub_id}@{model.revision} needs the Hugging Face hub, which is not reachable "
        f"from here ({endpoint}) and the model is not in the local cache; run where the hub is reachable "
        "(gated models also need HF_TOKEN) or point model.hub_id at a local folder"
    )
