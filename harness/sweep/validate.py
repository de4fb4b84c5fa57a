"""Validate one grid point before any worker starts: the schema, unknown keys, the data's records."""

from __future__ import annotations

import copy
import sys
from typing import Any, Dict, Tuple

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from harness.config.keys import check_known_keys
from harness.config.model import ModelConfig
from harness.config.names import local_folder
from harness.config.schema import HarnessConfig
from harness.errors import ConfigError


def validate(cfg: DictConfig) -> Tuple[HarnessConfig, Dict[str, Any]]:
    """(validated dataclass config, resolved plain dict); raises ConfigError in one line."""
    if "hydra" in cfg:  # a sweeper-composed config still carries Hydra's own node
        cfg = copy.deepcopy(cfg)  # keep the root's schema type, so cross-field checks run
        with open_dict(cfg):
            del cfg["hydra"]
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        typed = OmegaConf.to_object(cfg)
    except ConfigError as exc:  # OmegaConf appends "full_key: ..." lines; keep ours
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    check_known_keys(plain)
    check_data(typed)
    warn_remote_code(typed.model)
    return typed, plain


_WARNED: set = set()


def warn_remote_code(model: ModelConfig) -> None:
    """One stderr line per model and process when ``model.trust_remote_code=true`` lets hub code run."""
    if model.tiny or not model.trust_remote_code:
        return
    where = str(model.hub_id) if local_folder(model.hub_id) else f"{model.hub_id}@{model.revision}"
    if where in _WARNED:
        return
    _WARNED.add(where)
    print(
        f"warning: model.trust_remote_code=true runs code from {where} in every worker of this model; "
        "review that commit's Python files first",
        file=sys.stderr,
    )


def check_data(typed: HarnessConfig) -> None:
    """Validate a local data source's records before any worker starts (memoised per file state).

    Pure Python (no torch, no datasets): with data.on_error=fail a bad record stops the
    whole sweep here, in one line naming file and line, instead of failing every cell.
    """
    from harness.data.load import check_source
    from harness.errors import DataError

    try:
        check_source(typed.data)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
