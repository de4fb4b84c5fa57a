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


def main(argv: List[str] = sys.argv) -> int:
    """Entry point: 0 when the report was written, 2 on bad input."""
    from harness.report.build import report

    def body() -> int:
        sweeps, cfg, logger = parse(argv)
        report(sweeps, cfg, logger)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
