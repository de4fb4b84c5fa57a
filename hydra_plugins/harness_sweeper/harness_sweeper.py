"""Hydra's basic sweeper, plus validation of every grid point before any cell starts.

A typo in one value of a sweep (``lora.r=0,8``) should fail the command at once, not
after the first cells have trained. Composing a config is cheap, so each job's config
is composed and validated up front; on error the command prints one line per problem
and exits with status 2, having computed nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from harness.errors import ConfigError


@dataclass
class ValidatingSweeperConf:
    """Hydra config node for this sweeper (``hydra/sweeper=harness``)."""

    _target_: str = "hydra_plugins.harness_sweeper.harness_sweeper.ValidatingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


class ValidatingSweeper(BasicSweeper):
    """BasicSweeper that refuses to launch a grid containing an invalid cell."""

    def _job_overrides(self, arguments: List[str]) -> List[List[str]]:
        params = [f"{k}={v}" for k, v in (self.params or {}).items()] + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        batches = self.split_arguments(parser.parse_overrides(params), None)
        return [job for batch in batches for job in batch]

    def sweep(self, arguments: List[str]) -> Any:
        from harness.main import validate

        problems: List[str] = []
        for overrides in self._job_overrides(arguments):
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            try:
                validate(job_cfg)
            except ConfigError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            sys.exit(2)
        # The sweep folder is derived from the sweep's overrides; a job composed with its
        # own overrides would derive another one, so pin every job to the sweep's folder.
        sweep_dir = str(self.config.hydra.sweep.dir).replace("\\", "\\\\").replace("'", "\\'")
        return super().sweep(list(arguments) + [f"hydra.sweep.dir='{sweep_dir}'"])
