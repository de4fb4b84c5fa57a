"""``python -m harness``: compose the grid with Hydra and run every cell.

    python -m harness                                   # one tiny cell
    python -m harness -m model=tiny-llama,tiny-mistral lora.r=8,16
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra

from harness.hydra_setup import register
from harness.main import STATE, task

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def main() -> None:
    """Entry point; exits 0 when every cell ended ok, 1 when one did not, 2 on bad config."""
    register()
    hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()
    sys.exit(STATE.exit_code())


if __name__ == "__main__":
    main()
