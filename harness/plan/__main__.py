"""``python -m harness.plan``: will it fit, how fast, what will it cost, before anything runs.

    python -m harness.plan model=llama quant=4bit lora.r=16 train.batch_size=4 train.max_seq_len=2048
    python -m harness.plan -m model=llama,mistral,qwen quant=none,8bit,4bit lora.r=8,16,64
    python -m harness.plan --sweeps runs/my-sweep model=tiny-llama --device cpu     # calibrated on records
    python -m harness.plan -m lora.r=8,64 --html plan.html --records runs/my-sweep    # the capacity view

Takes the sweep's own config and overrides (same conf/, same validation), composes each
grid point with Hydra, and predicts without torch and without weights. Planner options
start with ``--``; everything else is a Hydra override.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import ConfigError, HarnessError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
COMPONENTS = ["weights", "adapter", "optimizer", "gradients", "activations", "recompute", "head", "step_temp", "overhead"]
"""Breakdown rows in print order: what is alive at the peak, so they add up to the predicted total."""


def parse_args(argv: List[str]) -> argparse.Namespace:
    """Planner options plus the Hydra overrides (positional)."""
    parser = argparse.ArgumentParser(prog="python -m harness.plan", description=__doc__.split("\n\n")[0])
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
                             "the same data (--sweeps) or data.path's files, else train.max_seq_len (stated in the output)")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE",
                        help="also write a self-contained HTML page: predicted peak vs each catalogue GPU's memory")
    parser.add_argument("--records", action="append", default=[], metavar="DIR",
                        help="with --html: sweep folder(s) whose measured peaks are drawn beside the prediction (repeatable)")
    return parser.parse_args(argv)


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
    """Validated (typed config, plain dict) for each job, composed exactly as a sweep composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.config.compose import register
    from harness.sweep.validate import validate

    register()
    GlobalHydra.instance().clear()
    configs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for job in jobs:
            try:
                cfg = compose(config_name="config", overrides=job)
            except Exception as exc:  # noqa: BLE001 - Hydra's own errors: keep their first line
                raise ConfigError(str(exc).strip().splitlines()[0]) from None
            configs.append(validate(cfg))
    GlobalHydra.instance().clear()
    return configs


def plan_one(typed: Any, plain: Dict[str, Any], args: argparse.Namespace, catalogue: Dict[str, Any],
             records: List[Dict[str, Any]], coeffs: Dict[str, Any]) -> Dict[str, Any]:
    """The whole plan for one cell: breakdown, flops, per-GPU table (cuda) and dataset time."""
    from harness.plan.dist import DistSetting, predict_dist
    from harness.plan.estimate import DEFAULT_MFU, dataset_plan, gpu_table, measured_throughput
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
    dataset = dataset_plan(plain["data"], records, typed.model.name, typed.train.max_seq_len, args.examples, args.dataset_tokens)
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
    if args.device == "cuda":
        throughput = measured_throughput(plain, records, catalogue)
        out["gpus"] = gpu_table(cell, catalogue, coeff, epochs_tokens, throughput, args.mfu or DEFAULT_MFU, dist=dist,
                                **options)
    return out


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f}"


def render(plan: Dict[str, Any]) -> str:
    """Human-readable breakdown and GPU table for one cell."""
    from harness.text import to_markdown

    mem, cell = plan["memory"], plan["cell"]
    dist = mem.get("dist") or {}
    lines = [
        f"# {cell['model']} {cell['peft']}" + (f" r={cell['lora_r']}" if cell["lora_r"] else "")
        + f" quant={cell['quant']}  batch {mem['batch']} x seq {mem['seq']}"
        + (" (grad ckpt)" if cell["gradient_checkpointing"] else "")
        + (f"  {dist['label']}, k={dist['k']} GPUs: every figure below is PER GPU" if dist else ""),
        f"params: {mem['params']['total']:,} total, {mem['params']['trainable']:,} trainable",
        f"predicted {mem['counter']}: {_gib(mem['total_mib'])} GiB (peak in the {mem['phase']} phase)"
        + (f"; device total incl. allocator slack + CUDA context: {_gib(mem['device_total_mib'])} GiB"
           if mem["counter"].startswith("cuda") else ""),
    ]
    coeff = plan["coefficients"]
    lines.append("coefficients: " + (f"calibrated act_scale={coeff['act_scale']:.2f} overhead={coeff['overhead_mib']:.0f} MiB"
                                     if coeff["calibrated"] else "analytic defaults (no --sweeps)"))
    lines.append("")
    if dist:
        lines += _dist_lines(plan)
    else:
        rows = [{"component": k, "GiB": mem["components"][k] / 1024} for k in COMPONENTS]
        rows.append({"component": f"total ({mem['phase']})", "GiB": mem["total_mib"] / 1024})
        lines.append(to_markdown(rows, ["component", "GiB"]))
    other = {name: mib for name, mib in mem["phases"].items() if name != mem["phase"]}
    lines.append(f"rows: what is alive at the peak ({mem['phase']} phase); "
                 + ", ".join(f"the {name} phase holds {_gib(mib)} GiB" for name, mib in other.items()))
    lines.append("assumptions: " + "; ".join(mem["assumptions"]))
    lines += [f"note: {caveat}" for caveat in mem["caveats"]]
    if "gpus" in plan:  # --device cpu predicts memory only: no time, no cost
        lines.append("")
        table = []
        for row in plan["gpus"] if not dist else []:
            table.append({
                "gpu": row["gpu"], "mem GiB": row["memory_gib"], "need GiB": row["predicted_gib"],
                "fits": "yes" if row["fits"] else "no", "headroom GiB": row["headroom_gib"],
                "max batch": row["max_batch"], "max seq": row["max_seq"], "tok/s": row["tokens_per_s"],
                "hours": row["hours"], "USD": row["cost_usd"], "throughput": row["throughput_source"],
            })
        lines.append(to_markdown(table, list(table[0]) if table else ["gpu"]) if not dist else _dist_table(plan))
        lines.append(_dataset_line(plan["dataset"]))
    return "\n".join(lines)


DIST_ROWS = ["weights", "adapter", "optimizer", "gradients", "buckets", "gathered", "activations", "recompute", "head",
             "step_temp", "overhead"]
"""Per-GPU breakdown rows of a dist plan in print order (COMPONENTS plus DDP/ZeRO buckets and FSDP's gathered units)."""


def _dist_lines(plan: Dict[str, Any]) -> List[str]:
    """A dist plan's per-GPU breakdown, with how each row is split, what moved to the CPU and the bytes sent."""
    from harness.text import to_markdown

    mem, dist = plan["memory"], plan["memory"]["dist"]
    moved = dist["offloaded_mib"]
    rows = []
    for name in DIST_ROWS:
        if name not in mem["components"] and name not in moved:
            continue
        how = dist["how"].get(name, "per GPU")
        if name in moved:
            how += f": {_gib(moved[name])} GiB per GPU held in host memory"
        rows.append({"component": name, "GiB per GPU": mem["components"].get(name, 0.0) / 1024, "how": how})
    rows.append({"component": f"total ({mem['phase']})", "GiB per GPU": mem["total_mib"] / 1024,
                 "how": f"x {dist['k']} GPUs"})
    comm = dist["comm_bytes"]
    lines = [to_markdown(rows, ["component", "GiB per GPU", "how"])]
    if not plan["cell"]["dist"]["requested"]:
        lines.append(f"dist.processes=null: the breakdown is for k={dist['k']} (one node); the GPU table plans each GPU "
                     "at the smallest k that holds the cell")
    lines.append("sent per GPU per optimizer step (ring collectives, f = (k-1)/k): "
                 + ", ".join(f"{name} {v / 1e9:,.2f} GB" for name, v in comm.items() if name != "pcie")
                 + (f"; over PCIe for the offload {comm['pcie'] / 1e9:,.2f} GB" if "pcie" in comm else ""))
    return lines


def _dist_table(plan: Dict[str, Any]) -> str:
    """The GPU table of a dist plan: how many of which GPU, and the time at that many."""
    from harness.text import to_markdown

    table = []
    for row in plan["gpus"]:
        table.append({
            "gpu": row["gpu"], "mem GiB": row["memory_gib"], "k": row["k"], "need GiB/GPU": row["predicted_gib"],
            "fits": "yes" if row["fits"] else "no", "smallest k": row["smallest_k"] or "none <= 64",
            "max batch/GPU": row["max_batch"], "max seq": row["max_seq"],
            "link GB/s": f"{row['link']} {row['link_gb_per_s']:g}" if row["link_gb_per_s"] else row["link"],
            "compute s": row["compute_s"], "comm s": row["comm_s"], "step s": row["step_s"],
            "tok/s": row["tokens_per_s"], "hours": row["hours"], "USD": row["cost_usd"],
        })
    notes = ("k: GPUs planned (dist.processes, else the smallest k); need: predicted device total per GPU; smallest k: "
             "fewest GPUs of that kind (1, 2, 4, ..., 64) that hold the cell; link: what the collectives cross, GB/s per "
             "direction (peak, from the catalogue: measured NCCL rates are lower); compute s, comm s: one optimizer step "
             "of grad_accum micro-batches per GPU; step s = max(compute, comm): communication assumed to overlap "
             "compute fully (their sum is the no-overlap bound); tok/s: all k GPUs together; USD: k GPUs x hours")
    return to_markdown(table, list(table[0]) if table else ["gpu"]) + "\n" + notes


def _dataset_line(data: Dict[str, Any]) -> str:
    """Which data the hours and USD are for, and how many epochs."""
    epochs = f", {data['epochs']:g} epoch{'s' * (data['epochs'] != 1)}" if data["train_tokens"] else ""
    return f"time and cost for: {data['for']}{epochs}" + (f"; {data['hint']}" if data.get("hint") else "")


def render_grid(plans: List[Dict[str, Any]]) -> str:
    """One line per grid point: predicted need and the smallest catalogue GPU that holds it."""
    from harness.text import to_markdown

    rows = []
    for plan in plans:
        cell, mem = plan["cell"], plan["memory"]
        fitting = [g for g in plan.get("gpus", []) if g["fits"]]
        cheapest = min(fitting, key=lambda g: g["cost_usd"] if g["cost_usd"] is not None else float("inf"), default=None)
        rows.append({
            "model": cell["model"], "peft": cell["peft"], "quant": cell["quant"], "r": cell["lora_r"],
            **({"dist": _dist_name(cell["dist"])} if any(p["cell"].get("dist") for p in plans) else {}),
            "batch": mem["batch"], "seq": mem["seq"], "trainable": mem["params"]["trainable"],
            "pred GiB": mem["total_mib"] / 1024,
            "device GiB": mem["device_total_mib"] / 1024,
            "smallest GPU": _gpus(fitting[0]) if fitting else "none",
            "cheapest GPU": _gpus(cheapest) if cheapest else "none",
            "USD": cheapest["cost_usd"] if cheapest else None,
        })
    lines = [to_markdown(rows, list(rows[0]) if rows else ["model"])]
    if any(p["cell"].get("dist") for p in plans):
        lines.append("pred GiB and device GiB of a dist row are per GPU at its k; its GPUs: device x count")
    lines += list(dict.fromkeys(_dataset_line(plan["dataset"]) for plan in plans if "gpus" in plan))
    lines += [f"note: {caveat}" for caveat in dict.fromkeys(c for plan in plans for c in plan["memory"]["caveats"])]
    return "\n".join(lines)


def _dist_name(dist: Optional[Dict[str, Any]]) -> str:
    """A grid row's strategy and rank count (``FSDP2 full shard k=4``; ``none`` for one device)."""
    if not dist:
        return "none"
    return f"{dist['label']} k={dist['k']}" + ("" if dist["requested"] else " (null; GPU columns: each GPU's smallest k)")


def _gpus(row: Dict[str, Any]) -> str:
    """A GPU-table row's device, with its count for a dist plan (``a100-80gb x4``)."""
    return f"{row['gpu']} x{row['k']}" if "k" in row else row["gpu"]


def render_calibration(report: Dict[str, Dict[str, Any]]) -> str:
    """Fitted coefficients and held-out error per counter."""
    lines = ["# calibration on measured records"]
    for counter, entry in report.items():
        d = entry["default"]
        error = (f"analytic defaults: median {d['median_abs_pct']:.1f} %, worst {d['worst_abs_pct']:.1f} % absolute error"
                 if entry["records"] else "nothing to compare")
        lines.append(
            f"{counter}: {entry['records']} ok records; {error}"
            + (f" ({entry['not_modelled']} more left out: quantized on CPU or 8-bit sharded, not modelled)"
               if entry.get("not_modelled") else "")
        )
        if "fitted" in entry:
            f, loo = entry["fitted"], entry["leave_one_out"]
            lines.append(
                f"  fitted act_scale={f['act_scale']:.2f} overhead={f['overhead_mib']:.0f} MiB; leave-one-out error: "
                f"median {loo['median_abs_pct']:.1f} %, worst {loo['worst_abs_pct']:.1f} %"
            )
        else:
            lines.append(f"  {entry['note']}")
    return "\n".join(lines)


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
        configs = load_configs(compose_jobs(args.overrides, args.multirun))
        plans = [plan_one(typed, plain, args, catalogue, records, coeffs) for typed, plain in configs]
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
