"""Judge (or re-judge) the stored answers of a sweep; never generates.

    python -m harness.judge SWEEP_DIR [eval.judge.KEY=VALUE ...] [--force]
    python -m harness.judge --help

Uses the judge settings the sweep's command gave (its manifest), with these overrides on
top: any ``eval.judge.*`` key (another judge model, more repeats, another server), the
judge-only files ``eval.mt_bench.judge_prompts`` / ``references`` and
``eval.alpaca_eval.judge_prompt`` / ``difficulty``, and ``run.cache_dir``. Every
successful judge call is cached, so judging again costs nothing and a run that failed
part-way makes exactly the calls that failed. ``--force`` rewrites results that are
already ok (from the cache). The sweep's summary is rewritten at the end.

Values are checked against the eval.judge schema the way ``python -m harness`` checks
them (``eval.judge.repeats=abc: must be an integer``), before any call is made.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from harness.errors import ConfigError, run_cli

USAGE = "usage: python -m harness.judge SWEEP_DIR [eval.judge.KEY=VALUE ...] [--force]"
BENCH_KEYS = {"eval.mt_bench.judge_prompts", "eval.mt_bench.references", "eval.alpaca_eval.judge_prompt",
              "eval.alpaca_eval.difficulty"}


HELP = ("-h", "--help")


def parse(argv: List[str]) -> Tuple[Path, Dict[str, str], bool]:
    """(sweep folder, key -> raw value, force); a one-line ConfigError for anything else."""
    args = [a for a in argv[1:] if a != "--force"]
    if not args or args[0].startswith("-"):
        raise ConfigError(USAGE)
    pairs: Dict[str, str] = {}
    for arg in args[1:]:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"{arg}: expected KEY=VALUE ({USAGE})")
        if not (key.startswith("eval.judge.") or key in BENCH_KEYS or key == "run.cache_dir"):
            raise ConfigError(f"{key}: only eval.judge.*, {', '.join(sorted(BENCH_KEYS))} and run.cache_dir can be set here "
                              "(answers are never regenerated: use python -m harness.evaluate for generation settings)")
        pairs[key] = value
    return Path(args[0]), pairs, "--force" in argv[1:]


def _value(raw: str) -> Any:
    import yaml

    return yaml.safe_load(raw) if raw != "" else None


def _judge_block(stored: Dict[str, Any], pairs: Dict[str, str]) -> Dict[str, Any]:
    """The stored eval.judge block with the command line's keys on top, typed and checked by the schema.

    The same OmegaConf structured-config merge and one-line messages as ``python -m harness``
    (harness.config.composition), so ``eval.judge.repeats=abc`` reads "must be an integer".
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from harness.config.composition import composition_problem
    from harness.config.generation import JudgeConfig

    known = {f.name for f in dataclasses.fields(JudgeConfig)}
    dotlist = [f"{key}={raw}" for key, raw in pairs.items() if key.startswith("eval.judge.")]
    try:
        # keys an older harness stored but this schema lacks are dropped, not an error: the stored block is ours
        base = OmegaConf.merge(OmegaConf.structured(JudgeConfig), {k: v for k, v in stored.items() if k in known})
        tree = OmegaConf.merge(OmegaConf.create({"eval": {"judge": base}}), OmegaConf.from_dotlist(dotlist))
        return dataclasses.asdict(OmegaConf.to_object(tree.eval.judge))
    except OmegaConfBaseException as exc:
        raise ConfigError(composition_problem(exc, dotlist)) from None


def settings_for(sweep_dir: Path, pairs: Dict[str, str]) -> Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]:
    """(judge settings, per-benchmark judge-only overrides): the manifest's settings with ``pairs`` on top, validated."""
    from harness.config.generation import JudgeConfig
    from harness.judge.prices import check_judge_settings
    from harness.store.layout import read_manifest

    manifest = read_manifest(sweep_dir)
    if manifest is None:
        raise ConfigError(f"{sweep_dir}: not a sweep folder with a manifest.json")
    stored = next((job.get("judge") for job in manifest["jobs"].values() if job.get("judges")), None)
    if stored is None:
        raise ConfigError(f"{sweep_dir}: no cell of this sweep has judged benchmarks (eval=[mt_bench] or [alpaca_eval]); "
                          "add them with python -m harness.evaluate first")
    known = {f.name for f in dataclasses.fields(JudgeConfig)}
    overrides: Dict[str, Dict[str, Any]] = {}
    cache_dir = stored.get("cache_dir")
    for key, raw in pairs.items():
        if key == "run.cache_dir":
            cache_dir = raw
        elif key.startswith("eval.judge.") and key[len("eval.judge."):] not in known:
            raise ConfigError(f"{key}: unknown; eval.judge has {', '.join(sorted(known))}")
        elif not key.startswith("eval.judge."):
            _, bench, name = key.split(".")
            overrides.setdefault(bench, {})[name] = _value(raw)
    judge = _judge_block(dict(stored["judge"]), pairs)
    check_judge_settings(judge)
    return {"judge": judge, "cache_dir": cache_dir}, overrides


def judge_command(argv: List[str]) -> int:
    """Judge what the sweep lacks under these settings, then rewrite and print its summary (--help: usage)."""
    if any(arg in HELP for arg in argv[1:]):
        print(f"{USAGE}\n\n{__doc__.strip()}")
        return 0
    sweep_dir, pairs, force = parse(argv)
    settings, overrides = settings_for(sweep_dir, pairs)
    from harness.judge.run import judge_sweep
    from harness.sweep.callbacks import finish
    from harness.sweep.job import STATE

    judge_sweep(sweep_dir, settings, overrides, force=force)
    finish(sweep_dir, judge=False)
    return STATE.exit_code()


def main(argv: List[str] = sys.argv) -> int:
    """Entry point: 0 when every cell and judgment is ok, 1 when one is not, 2 on bad input."""
    return run_cli(lambda: judge_command(argv))


if __name__ == "__main__":
    sys.exit(main())
