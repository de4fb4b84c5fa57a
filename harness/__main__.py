"""``python -m harness``: compose the grid with Hydra and run every cell.

    python -m harness                                   # one tiny cell
    python -m harness -m model=tiny-llama,tiny-mistral lora.r=8,16
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import require_installed

require_installed()  # before importing Hydra: outside .venv, say so instead of "No module named 'hydra'"

import hydra  # noqa: E402

from harness.config.compose import register  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.sweep.job import STATE, task  # noqa: E402
from harness.sweep.preflight import check_command_line  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
USAGE = "usage: python -m harness [-m] [-cn NAME] [--cfg job] [key=value ...]"


def main() -> None:
    """Entry point; exits 0 when every cell ended ok, 1 when one did not, 2 on bad config, 130 on Ctrl-C."""
    register()
    if "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:  # Hydra's help (conf/config.yaml) follows; it has no usage line
        print(USAGE, end="\n\n", flush=True)
    try:  # before hydra.main: Hydra reports composition errors in many lines and creates folders
        check_command_line(sys.argv[1:], CONF_DIR)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt:
        interrupted()
    sys.exit(STATE.exit_code())


def interrupted() -> None:
    """Ctrl-C: one line, the summary of what finished (the running cell's worker is already stopped), exit 130."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the summary short
    print("\ninterrupted (Ctrl-C): the running cell was stopped; finished cells are kept and the same command resumes",
          file=sys.stderr, flush=True)
    if STATE.sweep_dir is not None:
        from harness.sweep.callbacks import finish

        finish(STATE.sweep_dir, judge=False)  # no judge calls after a Ctrl-C; the next run judges what is stored
    sys.exit(130)


if __name__ == "__main__":
    main()
