"""Everything Hydra must know before it composes: schemas, sweeper, logging, resolvers."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from harness.config import register_configs
from harness.main import register_resolvers
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
