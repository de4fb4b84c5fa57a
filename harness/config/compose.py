"""Everything Hydra must know before it composes: schemas, sweeper, logging, resolvers; and ``compose``.

The sweep folder's name (``sweep_name``) is a resolver of ``conf/config.yaml``, so it lives here too.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from harness.config.names import path_segment
from harness.config.schema import register_configs
from harness.errors import ConfigError
from hydra_plugins.harness_searchpath.harness_searchpath import SWEEPS_DIR
from hydra_plugins.harness_sweeper.harness_sweeper import ValidatingSweeperConf

RUN_ONLY_PREFIXES = ("run.", "+run.", "++run.", "hydra.")
SWEEP_NAME_MAX = 80


def sweep_name(name: Optional[str], overrides: Sequence[str]) -> str:
    """Folder name of a sweep: ``run.sweep`` if given, else derived from the overrides.

    The same command line (in any order) gives the same folder, which is what makes
    resuming a sweep a matter of running the command again. Run-only keys (``run.*``)
    do not count, so ``run.force=true`` reruns into the same folder.
    """
    if name:
        path_segment("run.sweep", name)  # validated as RunConfig too; this guards paths that resolve first
        return str(name)
    kept = sorted(o for o in overrides if not o.startswith(RUN_ONLY_PREFIXES))
    if not kept:
        return "default"
    slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", "__".join(kept))
    if len(slug) <= SWEEP_NAME_MAX:
        return slug
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:10]
    return f"{slug[:SWEEP_NAME_MAX - 11]}-{digest}"


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/config.yaml."""
    OmegaConf.register_new_resolver(
        "harness_sweep_name", lambda name, overrides: sweep_name(name, list(overrides or [])), replace=True
    )


# Plain console output; no per-job log files (each cell keeps its own worker.log).
JOB_LOGGING = {
    "version": 1,
    "formatters": {"plain": {"format": "%(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "disable_existing_loggers": False,
}


def register() -> None:
    """Register schemas, the validating sweeper, the logging config and the resolvers."""
    register_configs()
    store = ConfigStore.instance()
    store.store(group="hydra/sweeper", name="harness", node=ValidatingSweeperConf)
    store.store(group="hydra/job_logging", name="harness", node=JOB_LOGGING)
    store.store(group="hydra/hydra_logging", name="harness", node=JOB_LOGGING)
    register_resolvers()
    OmegaConf.register_new_resolver("harness_named_sweeps", lambda: named_sweeps_help(), replace=True)
    from harness.config.help import config_keys_resolver  # after schema: it reads the schema's field docstrings

    OmegaConf.register_new_resolver("harness_config_keys", config_keys_resolver, replace=True)


def named_sweeps(folder: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """name -> {"about": first comment line, "grid": the swept keys} of every ``sweeps/*.yaml``."""
    import yaml

    found: Dict[str, Dict[str, str]] = {}
    for path in sorted(Path(folder or SWEEPS_DIR).glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        comments = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
        try:
            params = ((yaml.safe_load(text) or {}).get("hydra") or {}).get("sweeper", {}).get("params") or {}
        except (yaml.YAMLError, AttributeError):
            params = {}
        grid = " ".join(f"{key}={value}" for key, value in params.items())
        found[path.stem] = {"about": comments[0] if comments else "", "grid": grid}
    return found


def named_sweeps_help() -> str:
    """The ``--help`` lines for the named sweeps: name, what it is, its grid."""
    lines: List[str] = []
    for name, sweep in named_sweeps().items():
        lines.append(f"{name:<20} {sweep['about']}".rstrip())
        if sweep["grid"]:
            lines.append(f"{'':<20} grid: {sweep['grid']}")
    return "\n".join(lines) or "(none: sweeps/ has no .yaml files)"


CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
"""The primary config folder (conf/), as ``python -m harness`` uses it."""


def compose(overrides: List[str]) -> Any:
    """The validated HarnessConfig for these overrides (as ``python -m harness`` would build it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.config.keys import check_known_keys

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
        typed = OmegaConf.to_object(cfg)
        check_known_keys(OmegaConf.to_container(cfg))  # +data.fromat=x would otherwise be ignored
        return typed
    except ConfigError as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    except (OmegaConfBaseException, HydraException, ValueError, AssertionError) as exc:
        from harness.config.composition import composition_problem

        raise ConfigError(composition_problem(exc, overrides)) from None
