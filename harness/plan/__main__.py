"""``python -m harness.plan``: will it fit, how fast, what will it cost, before anything runs.

    python -m harness.plan model=llama quant=4bit lora.r=16 train.batch_size=4 train.max_seq_len=2048
    python -m harness.plan -m model=llama,mistral,qwen quant=none,8bit,4bit lora.r=8,16,64
    python -m harness.plan --sweeps runs/my-sweep model=tiny-llama --device cpu     # calibrated on records
    python -m harness.plan -m lora.r=8,64 --html plan.html --records runs/my-sweep    # the capacity view

Takes the sweep's own config and overrides (same conf/, same validation), composes each
grid point with Hydra, and predicts without torch and without weights. Planner options
start with ``--`` and may come anywhere; everything else is a Hydra override.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.config.model import checkpoint_config
from harness.errors import ConfigError, HarnessError
from harness.plan.render import render, render_calibration, render_grid

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def parse_args(argv: List[str]) -> argparse.Namespace:
    """Planner options plus the Hydra overrides (positional)."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.plan", description=__doc__.split("\n\n")[0],
        epilog="Options and key=value overrides may come in any order, e.g. "
               "python -m harness.plan model=llama --gpu rtx-4090 quant=4bit --examples 10000")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m harness")
    parser.add_argument("-m", "--multirun", action="store_true", help="expand comma lists into a grid, as a sweep does")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--sweeps", action="append", default=[], metavar="DIR",
                        help="sweep folder(s) with records: calibrate on them and use their measured throughput (repeatable)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: predict torch peak allocated on the catalogue GPUs; cpu: the worker's peak RSS on this host")
    parser.add_argument("--gpu", action="append", default=[], metavar="NAME", help="only these catalogue entries (repeatable)")
    parser.add_argument("--hardware-dir", type=Path, default=None, help="catalogue folder (default hardware/)")
    parser.add_argument("--mfu", type=float, default=None, help="assumed MFU when no record gives throughput (default 0.35)")
    parser.add_argument("--attention", choices=("auto", "sdpa", "eager"), default="auto",
                        help="attention kernel: auto follows transformers' default per family")
    parser.add_argument("--head", choices=("fused", "full"), default="fused",
                        help="fused: trl's chunked LM head (what the hf backend runs); full: logits materialised")
    parser.add_argument("--dataset-tokens", type=float, default=None, help="tokens in the training split (overrides the estimate)")
    parser.add_argument("--examples", type=int, default=None, metavar="N",
                        help="time and cost for N training examples: tokens per example from data=synthetic, a record of "
                             "the same data (--sweeps) or data.path's files under the model's tokenizer (characters / 4 when it "
                             "cannot load here), else train.max_seq_len (stated in the output)")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="also write a self-contained HTML page: predicted peak vs each catalogue GPU's memory")
    parser.add_argument("--records", action="append", default=[], metavar="DIR",
                        help="with --html: sweep folder(s) whose measured peaks are drawn beside the prediction (repeatable)")
    # intermixed: overrides and options in any order (``model=llama --gpu rtx-4090 data.path=X``)
    return parser.parse_intermixed_args(argv)


def compose_jobs(overrides: List[str], multirun: bool) -> List[List[str]]:
    """The override list of every grid point (one list when not a multirun)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    if not multirun:
        sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
        if sweeps:
            raise ConfigError(f"{sweeps[0]}: a list of values needs -m (python -m harness.plan -m ...)")
        return [list(overrides)]
    batches = BasicSweeper.split_arguments(parsed, None)
    return [job for batch in batches for job in batch]


def load_configs(jobs: List[List[str]]) -> List[Any]:
    """Validated (typed config, plain dict) for each job, exactly as a sweep composes it (``compose_jobs``: Hydra
    composes once per combination of config groups, so a 1,000-point grid takes seconds, not minutes)."""
    from hydra.types import RunMode

    from harness.config.compose import register
    from harness.sweep.preflight import compose, compose_jobs, config_loader

    register()
    loader = config_loader(str(CONF_DIR), None)
    master = compose(loader, "config", [], RunMode.RUN)
    valid, problems = compose_jobs(loader, master, jobs)
    if problems:  # the one line python -m harness prints (options of a group listed)
        raise ConfigError(problems[0])
    return [(typed, plain) for _, typed, plain in valid]


def plan_one(typed: Any, plain: Dict[str, Any], args: argparse.Namespace, catalogue: Dict[str, Any],
             records: List[Dict[str, Any]], coeffs: Dict[str, Any], job: Optional[List[str]] = None) -> Dict[str, Any]:
    """The whole plan for one cell: breakdown, flops, per-GPU table (cuda) and dataset time; ``job`` (its overrides)
    lets ``--examples`` measure data.path under the cell's tokenizer (``harness.plan.lengths``)."""
    from harness.plan.dist import DistSetting, predict_dist
    from harness.plan.estimate import DEFAULT_MFU, dataset_plan, gpu_table, measured_throughput
    from harness.plan.lengths import measured_length
    from harness.plan.memory import predict
    from harness.plan.setting import Cell

    cell = Cell.of(typed)
    options = {"attention": args.attention, "head": args.head}
    counter = "cuda_peak_allocated" if args.device == "cuda" else "host_peak_rss"
    coeff = coeffs.get(counter)
    dist = DistSetting.of(typed.dist) if typed.dist.enabled() else None
    if dist is not None:
        prediction = predict_dist(cell, dist, args.device, coeff=coeff, **options)
    else:
        prediction = predict(cell, args.device, coeff=coeff, **options)
    lengths_key = [plain["model"], plain["data"], plain["framework"], typed.train.max_seq_len]
    dataset = dataset_plan(plain["data"], records, typed.model.name, typed.train.max_seq_len, args.examples,
                           args.dataset_tokens,
                           None if job is None else lambda: measured_length(job, typed.model, same=lengths_key))
    tokens = dataset["train_tokens"]
    epochs_tokens = tokens * typed.train.epochs if tokens else None
    out: Dict[str, Any] = {
        "cell": {"model": typed.model.name, "peft": typed.peft.method, "quant": typed.quant.mode,
                 "lora_r": typed.lora.r if typed.adapter() else None, "batch_size": typed.train.batch_size,
                 "max_seq_len": typed.train.max_seq_len, "grad_accum": typed.train.grad_accum,
                 "gradient_checkpointing": typed.train.gradient_checkpointing, "optimizer": typed.train.optimizer,
                 "dist": None if dist is None else {"strategy": dist.strategy, "label": dist.label, "k": dist.k,
                                                    "nodes": dist.nodes, "requested": dist.requested}},
        "coefficients": {"counter": counter, "calibrated": coeff is not None,
                         **({"act_scale": coeff.act_scale, "overhead_mib": coeff.overhead_mib} if coeff else {})},
        "memory": prediction.as_dict(),
        "dataset": {**dataset, "epochs": typed.train.epochs, "epochs_tokens": epochs_tokens},
    }
    shape_from = checkpoint_config(typed.model)
    if shape_from is not None:
        out["cell"]["shape_from"] = str(shape_from)
    if args.device == "cuda":
        throughput = measured_throughput(plain, records, catalogue)
        rate_seq = dataset.get("tokens_per_example")  # --examples: throughput at the data's own length
        out["gpus"] = gpu_table(cell, catalogue, coeff, epochs_tokens, throughput, args.mfu or DEFAULT_MFU, dist=dist,
                                rate_seq=rate_seq, **options)
        if dist is None:
            out["fit_options"] = _fit_options(cell, out["gpus"], catalogue, coeff, args, epochs_tokens, rate_seq, options)
    return out


def _fit_options(cell: Any, gpus: List[Dict[str, Any]], catalogue: Dict[str, Any], coeff: Any, args: argparse.Namespace,
                 tokens: Optional[float], rate_seq: Optional[float], options: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
    """GPU name -> the nearest configurations that fit it, for each --gpu the cell does not fit (without --gpu: the
    largest catalogue GPU, only when the cell fits none)."""
    from harness.plan.estimate import DEFAULT_MFU, assumed_rate
    from harness.plan.suggest import fit_options

    if args.gpu:
        names = [row["gpu"] for row in gpus if not row["fits"]]
    elif gpus and not any(row["fits"] for row in gpus):
        names = [max(gpus, key=lambda row: row["memory_gib"])["gpu"]]
    else:
        names = []
    mfu = args.mfu or DEFAULT_MFU
    return {name: fit_options(cell, catalogue[name], coeff, lambda c, hw=catalogue[name]: assumed_rate(c, hw, mfu, rate_seq),
                              tokens, options) for name in names}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: 0 on success, 2 on a rejected config."""
    from harness import require_installed

    require_installed()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        from harness.config.hardware import load_catalogue, lookup
        from harness.plan.calibrate import calibrate, fitted_coefficients, load_sweeps

        if args.mfu is not None and not 0 < args.mfu <= 1:
            raise ConfigError(f"--mfu={args.mfu}: must be in (0, 1]")
        if args.examples is not None and args.examples <= 0:
            raise ConfigError(f"--examples={args.examples}: must be a positive integer")
        if args.examples is not None and args.dataset_tokens is not None:
            raise ConfigError(f"--examples={args.examples}: give --examples or --dataset-tokens, not both")
        if args.records and args.html is None:
            raise ConfigError(f"--records={args.records[0]}: only used with --html FILE")
        catalogue = load_catalogue(args.hardware_dir)
        if args.gpu:
            catalogue = {name: lookup(name, catalogue) for name in args.gpu}
        for folder in args.sweeps:
            if not Path(folder).is_dir():
                raise ConfigError(f"--sweeps={folder}: no such folder")
        records = load_sweeps(Path(f) for f in args.sweeps)
        report = calibrate(records, attention=args.attention, head=args.head) if records else {}
        coeffs = fitted_coefficients(report)
        jobs = compose_jobs(args.overrides, args.multirun)
        plans = [{**plan_one(typed, plain, args, catalogue, records, coeffs, job), "overrides": job}
                 for job, (typed, plain) in zip(jobs, load_configs(jobs))]
        if args.html is not None:
            from harness.plan.html import load_record_views, write_plan_html

            views = load_record_views(Path(d) for d in args.records) if args.records else None
            write_plan_html(args.html, plans, catalogue, views, args.records)
            print(f"wrote {args.html}", file=sys.stderr)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"plans": plans, "calibration": report}, indent=2))
        return 0
    if len(plans) == 1:
        print(render(plans[0]))
    else:
        print(render_grid(plans))
    if report:
        print("\n" + render_calibration(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
