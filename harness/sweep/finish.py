"""End a sweep as its own step: judge what is pending, write the summary and the report, set the exit status.

    python -m harness.sweep.finish SWEEP_DIR

What the parent's end-of-sweep callback does (``harness.sweep.callbacks.finish``), for a sweep whose parent did not
wait: the dependent SLURM job of ``run.finish=slurm`` (harness.sweep.slurm_finish) runs it, and anyone may run it
by hand at any time (a partly finished sweep says what still runs). Report settings come from the sweep's
``multirun.yaml`` (the command's report/logger blocks), else the defaults.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

from harness.errors import ConfigError, run_cli

USAGE = "usage: python -m harness.sweep.finish SWEEP_DIR"


def _blocks(sweep_dir: Path) -> Any:
    """The command's config as the sweeper saved it (report and logger blocks), or None."""
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    try:
        return OmegaConf.load(path) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a default report beats none
        return None


def main(argv: List[str] = sys.argv) -> int:
    """Entry point: 0 when every cell ended ok, 1 when one did not (or still runs), 2 on bad input."""

    def body() -> int:
        if len(argv) != 2 or argv[1] in ("-h", "--help"):
            if len(argv) == 2:
                print(f"{USAGE}\n\n{__doc__.strip()}")
                return 0
            raise ConfigError(USAGE)
        sweep_dir = Path(argv[1])
        from harness.store.layout import MANIFEST

        if not (sweep_dir / MANIFEST).is_file():
            raise ConfigError(f"{sweep_dir}: not a sweep folder (no manifest.json)")
        from harness.store.layout import finish_run
        from harness.sweep.callbacks import finish
        from harness.sweep.job import STATE

        finish(sweep_dir, blocks=_blocks(sweep_dir))
        try:
            finish_run(sweep_dir)
        except OSError:
            pass
        return STATE.exit_code()

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
