"""The planner's printed output: one cell's breakdown and GPU table (with what fits when it does not), a grid's one
line per point (a column for every key the grid varies), and the calibration report. Light: no torch."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

COMPONENTS = ["weights", "adapter", "optimizer", "gradients", "activations", "recompute", "head", "step_temp", "overhead"]
"""Breakdown rows in print order: what is alive at the peak, so they add up to the predicted total."""


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f}"


def render(plan: Dict[str, Any]) -> str:
    """Human-readable breakdown and GPU table for one cell."""
    from harness.text import to_markdown

    mem, cell = plan["memory"], plan["cell"]
    dist = mem.get("dist") or {}
    from harness.plan.suggest import fit_lines

    lines = [
        f"# {cell['model']} {cell['peft']}" + (f" r={cell['lora_r']}" if cell["lora_r"] else "")
        + f" quant={cell['quant']}  batch {mem['batch']} x seq {mem['seq']}"
        + (" (grad ckpt)" if cell["gradient_checkpointing"] else "")
        + (f"  {dist['label']}, k={dist['k']} GPUs: every figure below is PER GPU" if dist else ""),
        f"params: {mem['params']['total']:,} total, {mem['params']['trainable']:,} trainable"
        + (f" (shape read from {cell['shape_from']})" if cell.get("shape_from") else ""),
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
        lines += fit_lines(plan.get("fit_options") or {})
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
    varied = varied_keys([plan.get("overrides", []) for plan in plans])
    for plan in plans:
        cell, mem = plan["cell"], plan["memory"]
        given = dict(o.partition("=")[::2] for o in plan.get("overrides", []))
        fitting = [g for g in plan.get("gpus", []) if g["fits"]]
        cheapest = min(fitting, key=lambda g: g["cost_usd"] if g["cost_usd"] is not None else float("inf"), default=None)
        rows.append({
            "model": cell["model"], "peft": cell["peft"], "quant": cell["quant"], "r": cell["lora_r"],
            **({"dist": _dist_name(cell["dist"])} if any(p["cell"].get("dist") for p in plans) else {}),
            "batch": mem["batch"], "seq": mem["seq"],
            **{key: given.get(key, "") for key in varied if key not in SHOWN},
            "trainable": mem["params"]["trainable"],
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


SHOWN = ("model", "peft", "quant", "lora.r", "train.batch_size", "train.max_seq_len")
"""Varied keys the grid table already has a column for (model, peft, quant, r, batch, seq)."""


def varied_keys(jobs: List[List[str]]) -> List[str]:
    """Override keys whose value differs between grid points, in the order given: each gets a grid column, so no two
    rows look the same."""
    values: Dict[str, set] = {}
    for job in jobs:
        for line in job:
            key, _, value = line.partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


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
