"""A claim's overrides as validated harness configs, composed as a sweep composes them, but quickly.

Hydra composes a config in ~0.1 s; 29 claims need ~60 configs and the command has 5 s. The group choices
(``model=mistral quant=4bit``) are what needs Hydra's defaults list, so each distinct set of them is composed once;
every ``key=value`` override is then set on a copy with OmegaConf (typed by the schema, so a wrong type or an unknown
key still fails), and the result goes through the sweep's own ``validate``. A comma list expands into a grid exactly
as ``python -m harness -m`` expands it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

from harness.errors import ConfigError, HarnessError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = frozenset(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
"""Config groups (``conf/<group>/``): an override of one of these picks a file, the rest set keys."""


def _defaults() -> Dict[str, str]:
    """The group choices of conf/config.yaml's defaults list (``quant=none``): choosing one again changes nothing."""
    import yaml

    entries = yaml.safe_load((CONF_DIR / "config.yaml").read_text(encoding="utf-8")).get("defaults") or []
    return {f"{k}={v}": k for e in entries if isinstance(e, dict) for k, v in e.items() if isinstance(v, str)}


def grid(overrides: Sequence[str]) -> List[List[str]]:
    """The override list of every grid point (``lora.r=8,16`` gives two), in Hydra's sweep order."""
    from harness.plan.__main__ import compose_jobs

    try:
        return compose_jobs(list(overrides), multirun=True)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - Hydra's parser errors: keep their first line
        raise ConfigError(f"{' '.join(overrides)}: {str(exc).strip().splitlines()[0]}") from None


class Composer:
    """Composes override lists into (typed config, plain dict), one Hydra composition per group selection."""

    def __init__(self) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._parser = OverridesParser.create()
        self._default = _defaults()
        self._bases: Dict[Tuple[str, ...], Any] = {}
        self._done: Dict[Tuple[str, ...], Tuple[Any, Dict[str, Any]]] = {}

    def _base(self, groups: Tuple[str, ...]) -> Any:
        from hydra import compose

        if groups not in self._bases:
            try:
                self._bases[groups] = compose(config_name="config", overrides=list(groups))
            except Exception as exc:  # noqa: BLE001 - Hydra's own errors: keep their first line
                raise ConfigError(f"{' '.join(groups)}: {str(exc).strip().splitlines()[0]}") from None
        return self._bases[groups]

    def __call__(self, overrides: Sequence[str]) -> Tuple[Any, Dict[str, Any]]:
        """The validated config of one grid point (no comma lists); ConfigError in one line naming the override."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        from harness.sweep.validate import validate

        key = tuple(overrides)
        if key in self._done:
            return self._done[key]
        try:
            parsed = self._parser.parse_overrides(list(overrides))
        except Exception as exc:  # noqa: BLE001 - the parser's message names the bad override
            raise ConfigError(f"{' '.join(overrides)}: {str(exc).strip().splitlines()[0]}") from None
        # the last choice of a group wins, as on a command line
        groups = {o.key_or_group: o.input_line for o in parsed if o.key_or_group in GROUPS}
        chosen = tuple(sorted(line for line in groups.values() if line not in self._default))  # one composition each
        cfg = copy.deepcopy(self._base(chosen))
        for o in parsed:
            if o.key_or_group in GROUPS:
                continue
            try:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=False)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"{o.input_line}: {str(exc).strip().splitlines()[0]}") from None
        self._done[key] = validate(cfg)
        return self._done[key]


@contextmanager
def composer() -> Iterator[Composer]:
    """A Composer inside Hydra's config search path (conf/ and sweeps/), cleared on exit."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.config.compose import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield Composer()
    finally:
        GlobalHydra.instance().clear()
