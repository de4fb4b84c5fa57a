"""Build the report of one or many sweeps from their records (no training, no judging).

    python -m harness.report SWEEP_DIR [SWEEP_DIR ...] [report.KEY=VALUE ...] [logger=wandb logger.mode=offline]

e.g. ``report.rows=[model] report.cols=[lora_r] report.values=[peak_mem_mib,eval_loss]``,
``report.baseline=lora_r=8,quant=none``. A cell shared by several sweeps appears once;
several sweeps write a merged report beside the first (or into ``report.out``).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from harness.config.report import LoggerConfig, ReportConfig
from harness.errors import ConfigError, run_cli

USAGE = "usage: python -m harness.report SWEEP_DIR [SWEEP_DIR ...] [report.KEY=VALUE ...] [logger=wandb logger.KEY=VALUE ...]"


def _value(raw: str) -> Any:
    import yaml

    if raw.startswith("[") and raw.endswith("]"):  # Hydra's list syntax, unquoted items: [model,lora.r]
        return [item.strip() for item in raw[1:-1].split(",") if item.strip()]
    return yaml.safe_load(raw) if raw != "" else None


def parse(argv: List[str]) -> Tuple[List[Path], ReportConfig, LoggerConfig]:
    """(sweep folders, report settings, logger settings); a one-line ConfigError for anything else."""
    sweeps: List[Path] = []
    blocks: Dict[str, Dict[str, Any]] = {"report": {}, "logger": {}}
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        raise Help()
    for arg in argv[1:]:
        key, eq, raw = arg.partition("=")
        if not eq or Path(arg).is_dir():  # sweep folders named after their overrides contain "="
            sweeps.append(Path(arg))
        elif key == "logger":
            blocks["logger"]["name"] = raw
        elif key.count(".") == 1 and key.split(".")[0] in blocks:
            block, name = key.split(".")
            known = {f.name for f in dataclasses.fields(ReportConfig if block == "report" else LoggerConfig)}
            if name not in known:
                raise ConfigError(f"{key}: unknown; {block} has {', '.join(sorted(known))}")
            blocks[block][name] = _value(raw)
        else:
            raise ConfigError(f"{key}: only report.* and logger / logger.* can be set here ({USAGE})")
    if not sweeps:
        raise ConfigError(USAGE)
    for sweep in sweeps:
        if not (sweep / "manifest.json").is_file() and not any(sweep.glob("*/record.json")):
            raise ConfigError(f"{sweep}: not a sweep folder (no manifest.json, no cell records)")
    return sweeps, ReportConfig(**blocks["report"]), LoggerConfig(**blocks["logger"])


def _say_corrupt(sweeps: List[Path]) -> int:
    """One ``error:`` line per cell file that does not parse (the report shows such cells ``corrupt``); their count.
    A sweep that has not ended gets one line saying what is still running and not started (``harness.store.partial``)."""
    from harness.store.layout import load_sweep
    from harness.store.partial import partial_line

    views = {sweep: load_sweep(sweep) for sweep in sweeps}
    for sweep, shown in views.items():
        line = partial_line(shown)
        if line:
            print(f"{sweep.name}: {line}" if len(views) > 1 else line, flush=True)
    said = sorted({str(view.get("error")) for shown in views.values() for view in shown if view.get("status") == "corrupt"})
    for line in said:
        print(f"error: {line}", file=sys.stderr)
    return len(said)


class Help(Exception):
    """``-h`` / ``--help`` on the command line: print the usage and exit 0."""


def main(argv: List[str] = sys.argv) -> int:
    """Entry point: 0 when the report was written, 1 when a file of it could not be written or a cell's file is
    corrupt (the report is written, the cell marked ``corrupt``), 2 on bad input."""

    def body() -> int:
        try:
            sweeps, cfg, logger = parse(argv)
        except Help:
            print(f"{USAGE}\n\n{__doc__.strip()}")
            return 0
        from harness.report.build import report

        try:
            report(sweeps, cfg, logger)
        except OSError as exc:  # a full or read-only disk: one line naming the file, never exit 0 without the report
            where = exc.filename or f"the report beside {sweeps[0]}"
            print(f"error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 1 if _say_corrupt(sweeps) else 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
