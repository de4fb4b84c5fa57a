"""Make named sweeps in ``sweeps/`` usable as primary configs: ``python -m harness -m -cn demo``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"


class HarnessSearchPathPlugin(SearchPathPlugin):
    """Appends the repository's sweeps/ folder (named experiments) to the search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if SWEEPS_DIR.is_dir():
            search_path.append(provider="harness-sweeps", path=f"file://{SWEEPS_DIR}")
