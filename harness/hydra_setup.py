"""Everything Hydra must know before it composes: schemas, sweeper, logging, resolvers."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from harness.config import register_configs
from harness.main import register_resolvers
from hydra_plugins.harness_searchpath.harness_searchpath import SWEEPS_DIR
from hydra_plugins.harness_sweeper.harness_sweeper import ValidatingSweeperConf

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
