"""The whole GPU check in one command: ``make gpu-check OUT=DIR [DEVICE=cuda|cpu] [BUDGET_S=780] [DRY_RUN=1]``.

    python tools/gpu_check.py --out DIR [--device cuda|cpu] [--budget-s S] [--dry-run]

1. the ``gpu`` test tier (pytest -m gpu; skips without CUDA);
2. a grid of cells on random-weight real architectures (no download: ``model.weights=random``) on fixed-length
   synthetic rows (``data=synthetic``), evaluators off, NVML on: Llama-3.1-8B LoRA r=16 bf16 and QLoRA 4-bit,
   batch 1 and 4 x 2048 tokens, gradient checkpointing off and on, a full fine-tune of Llama-3.2-1B; the same
   cells through Unsloth when ``.venvs/unsloth`` exists. ``--device cpu`` runs the same shapes on tiny models
   (seq 128), so the script is debugged on a CPU before the one GPU run is spent;
3. the planner calibrated on those records (``python -m harness.plan --sweeps``, leave-one-out errors);
4. ``table.md``: per cell measured vs predicted per counter, tokens/s, MFU, energy; ``gpu-check.tar.gz``: the
   records, logs, table and environment. Both are rewritten after every cell, so a run cut short by its budget
   still leaves everything it measured;
5. last, only when at least ``CLAIMS_MIN_LEFT_S`` (150 s) of the budget is left: the first cells of
   ``sweeps/seed-claims.yaml`` (as many as the rest allows at ~90 s a cell; ``--device cpu``: the first 2 of
   ``seed-claims-tiny``), through the harness's own sweep command into ``OUT/runs-claims/<sweep>/``, then
   ``python -m harness.claims --records OUT/runs-claims/<sweep> --out OUT/claims`` (a failure there is one line).

Cells run in order of value and only while the budget (``--budget-s``, default 780 s: a 15-minute device slot less
start-up) has room for the next one's estimate; ``--dry-run`` prints the plan and its time estimate. Runs with
whatever Python invokes it (``PY=python3`` on a device whose system Python holds the libraries).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
COMMON = ["data=synthetic", "data.examples=32", "train.max_steps=6", "train.measure_warmup_steps=2",
          "train.eval_every=0", "eval=[]", "lora.r=16"]
SHAPES = {"cuda": {"seq": 2048, "big": ["model=llama", "model.weights=random", "model.dtype=bfloat16"],
                   "small": ["model=llama-1b", "model.weights=random", "model.dtype=bfloat16"], "gpu": "h200"},
          "cpu": {"seq": 128, "big": ["model=tiny-llama"], "small": ["model=tiny-qwen"], "gpu": None}}
START_S = {"cuda": 40.0, "cpu": 15.0}
"""Per-cell cost besides the steps: worker start, random checkpoint build on first use, load."""
CLAIMS = {"cuda": {"sweep": "seed-claims", "per_cell_s": 90.0, "most": None},
          "cpu": {"sweep": "seed-claims-tiny", "per_cell_s": 30.0, "most": 2}}
"""The claims stage per device: the named sweep whose first cells it runs, the estimate per cell, at most how many."""
CLAIMS_MIN_LEFT_S = 150.0
"""The claims stage runs only when at least this much of the budget is left."""
CLAIMS_RESERVE_S = 30.0
"""Kept back from the claims cells for ``python -m harness.claims`` and the archive."""


def cells(device: str, unsloth: bool, gpus: int = 1) -> List[Dict[str, Any]]:
    """The grid, most valuable first: (name, overrides); ``gpus`` > 1 adds dist=ddp and dist=fsdp cells on two of them
    (on CPU: a dist=ddp cell of two processes, so the launcher path is tried before a GPU run is spent)."""
    shape = SHAPES[device]
    big, small, seq = shape["big"], shape["small"], shape["seq"]
    grid = []
    for batch, gc in ((1, False), (4, False), (4, True), (1, True)):
        for quant in ("none", "4bit"):
            name = f"{'lora' if quant == 'none' else 'qlora'}-b{batch}{'-gc' if gc else ''}"
            grid.append({"name": name, "overrides": [*big, f"quant={quant}", f"train.batch_size={batch}",
                                                     f"train.gradient_checkpointing={str(gc).lower()}"]})
    grid.insert(4, {"name": "full-small-b1", "overrides": [*small, "peft=full", "quant=none", "train.batch_size=1"]})
    # the first cell again, forked from the warm template (run.worker=warm; auto spawns CUDA cells until this
    # pair shows the same counters), in a run root of its own so that it trains rather than reuses the cell
    grid.insert(5, {**grid[0], "name": f"{grid[0]['name']}-warm", "root": "runs-warm",
                    "overrides": [*grid[0]["overrides"], "run.worker=warm"]})
    if unsloth:
        grid += [{"name": f"unsloth-{c['name']}", "overrides": [*c["overrides"], "framework=unsloth"]} for c in grid[:2]]
    # several ranks per cell, in a root of their own (per-GPU records stay out of the one-GPU calibration)
    for strategy in ("ddp", "fsdp") if gpus > 1 else ("ddp",) if device == "cpu" else ():
        grid.append({"name": f"{strategy}2-small-b4", "root": "runs-dist",
                     "overrides": [*small, "quant=none", "train.batch_size=4", f"dist={strategy}", "dist.processes=2"]})
    for cell in grid:
        cell["overrides"] = [*cell["overrides"], *COMMON, f"train.max_seq_len={seq}", f"run.device={device}"]
    return grid


def claims_cells(device: str) -> List[str]:
    """The cells of the claims sweep for this device (``hydra.sweeper.cells`` of sweeps/<sweep>.yaml), in order."""
    import yaml

    text = (REPO / "sweeps" / f"{CLAIMS[device]['sweep']}.yaml").read_text(encoding="utf-8")
    return [str(cell) for cell in yaml.safe_load(text)["hydra"]["sweeper"]["cells"]]


def claims_count(device: str, left_s: float, available: int) -> int:
    """How many of the claims sweep's first cells fit ``left_s`` seconds of budget: none under CLAIMS_MIN_LEFT_S,
    else (left - CLAIMS_RESERVE_S) at the device's estimate per cell, at most ``available`` (and 2 on a CPU)."""
    if left_s < CLAIMS_MIN_LEFT_S:
        return 0
    plan = CLAIMS[device]
    count = int((left_s - CLAIMS_RESERVE_S) // plan["per_cell_s"])
    return max(0, min(count, available, plan["most"] or available))


def claims_commands(device: str, count: int, out: Path, python: str) -> Dict[str, Any]:
    """The claims stage's two commands: the named sweep cut to its first ``count`` cells (``hydra.sweeper.cells``
    overridden on the command line; fixed settings and cell order are the sweep file's), and the claims check."""
    sweep = CLAIMS[device]["sweep"]
    chosen = claims_cells(device)[:count]
    quoted = ",".join("'" + cell.replace("\\", "\\\\").replace("'", "\\'") + "'" for cell in chosen)
    root = out / "runs-claims"
    return {"sweep": sweep, "cells": chosen, "dir": root / sweep,
            "run": [python, "-m", "harness", "-cn", sweep, f"hydra.sweeper.cells=[{quoted}]", f"run.root={root}",
                    f"run.device={device}"],
            "claims": [python, "-m", "harness.claims", "--records", str(root / sweep), "--out", str(out / "claims")]}


def sweep_statuses(sweep_dir: Path) -> Dict[str, int]:
    """status -> count over the cell records a sweep folder links to."""
    counts: Dict[str, int] = {}
    for path in sorted(sweep_dir.glob("*/record.json")) if sweep_dir.is_dir() else []:
        status = str(json.loads(path.read_text()).get("status"))
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_claims(device: str, left_s: float, out: Path, python: str) -> List[str]:
    """The claims stage (last): the claims sweep's first cells, then ``python -m harness.claims``; the notes' lines."""
    available = len(claims_cells(device))
    count = claims_count(device, left_s, available)
    sweep = CLAIMS[device]["sweep"]
    if not count:
        return [f"claims: not run, {left_s:.0f} s left of the budget (needs {CLAIMS_MIN_LEFT_S:.0f} s)"]
    plan = claims_commands(device, count, out, python)
    print(f"[gpu-check] claims: the first {count} of {available} cells of sweeps/{sweep}.yaml ({left_s:.0f} s left)",
          flush=True)
    stage_end = time.monotonic() + left_s
    code = _run(plan["run"], out / "claims-sweep.log", left_s - CLAIMS_RESERVE_S)
    counts = sweep_statuses(plan["dir"])
    said = ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "no records"
    notes = [f"claims sweep {sweep}: first {count} of {available} cells, {said}; exit {code} "
             f"(log claims-sweep.log; unsupported and oom are results)"]
    if not counts:
        return notes + ["claims: not checked, the claims sweep left no records"]
    left = max(30.0, stage_end - time.monotonic())
    try:
        check = subprocess.run(plan["claims"], capture_output=True, text=True, cwd=REPO, timeout=left,
                               env=dict(os.environ, HF_HUB_OFFLINE="1"))
    except subprocess.TimeoutExpired:
        return notes + [f"claims: python -m harness.claims stopped after {left:.0f} s (budget)"]
    (out / "claims.log").write_text(check.stdout + check.stderr)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or check.stdout.strip().splitlines() or ["?"])[-1]
        return notes + [f"claims: python -m harness.claims failed (exit {check.returncode}): {last[:300]} (log claims.log)"]
    return notes + [f"claims: checked against {plan['dir'].relative_to(out)}; results in claims/ (log claims.log)"]


def _run(command: List[str], log: Path, timeout: float) -> int:
    with log.open("ab") as handle:
        try:
            # random-weight cells need no hub (the device machine reaches none): offline, imports stay off the
            # network and the warm pair can fork (README, "Warm cells")
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                  timeout=max(1.0, timeout)).returncode
        except subprocess.TimeoutExpired:
            handle.write(f"\n[gpu-check] stopped after {timeout:.0f} s (budget)\n".encode())
            return 124


def predict(cell: Dict[str, Any], device: str, python: str) -> Dict[str, Any]:
    """The planner's prediction for a cell (uncalibrated): allocated / device total or host RSS, tokens/s."""
    gpu = SHAPES[device]["gpu"]
    command = [python, "-m", "harness.plan", *[o for o in cell["overrides"] if not o.startswith("run.")],
               "--json", "--device", device, *(["--gpu", gpu] if gpu else [])]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    plan = json.loads(out.stdout)["plans"][0]
    gpus = plan.get("gpus") or [{}]
    return {"total_mib": plan["memory"]["total_mib"], "device_total_mib": plan["memory"].get("device_total_mib"),
            "tokens_per_s": gpus[0].get("tokens_per_s")}


def estimate_s(cell: Dict[str, Any], prediction: Dict[str, Any], device: str) -> float:
    """Seconds the cell should take: start-up plus its tokens at the planner's tokens/s (else a CPU guess)."""
    ov = dict(o.split("=", 1) for o in cell["overrides"] if "=" in o)
    tokens = int(ov["train.max_steps"]) * int(ov["train.batch_size"]) * int(ov["train.max_seq_len"])
    rate = prediction.get("tokens_per_s") or (400.0 if device == "cpu" else 2000.0)
    return START_S[device] + tokens / rate


def record_of(sweep: Path) -> Optional[Dict[str, Any]]:
    """The one cell record of a one-cell sweep folder."""
    found = sorted(sweep.glob("*/record.json")) if sweep.is_dir() else []
    return json.loads(found[0].read_text()) if found else None


def _pct(pred: Optional[float], measured: Optional[float]) -> str:
    if pred is None or not measured:
        return "n/a"
    return f"{(pred - measured) / measured * 100:+.1f} %"


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "n/a"


def row(cell: Dict[str, Any], record: Optional[Dict[str, Any]], prediction: Dict[str, Any], device: str) -> str:
    """One table line: measured vs predicted per counter, speed, MFU, energy."""
    if record is None:
        return f"| {cell['name']} | not run (budget) |" + " |" * 9
    status = record.get("status")
    peak = (record.get("memory") or {}).get("train_peak") or {}
    train, eff = record.get("train") or {}, record.get("efficiency") or {}
    pred, pred_dev = prediction.get("total_mib"), prediction.get("device_total_mib")
    if device == "cuda":
        alloc, reserved, nvml = (peak.get("cuda_peak_allocated_mib"), peak.get("cuda_peak_reserved_mib"),
                                 peak.get("nvml_process_peak_mib"))
        memory = (f"{_num(alloc)} / {_num(pred)} ({_pct(pred, alloc)}) | {_num(reserved)} ({_pct(pred, reserved)}) | "
                  f"{_num(nvml)} / {_num(pred_dev)} ({_pct(pred_dev, nvml)})")
    else:
        rss = peak.get("host_peak_rss_mib")
        memory = f"{_num(rss)} / {_num(pred)} ({_pct(pred, rss)}) | n/a | n/a"
    speed = f"{_num(train.get('tokens_per_s'))} / {_num(prediction.get('tokens_per_s'))}"
    mfu = _num(eff.get("mfu") * 100 if isinstance(eff.get("mfu"), float) else None, "{:.1f} %")
    energy = _num(eff.get("energy_j_per_token"), "{:.3f}")
    error = f" ({record.get('error')})" if status != "ok" and record.get("error") else ""
    return f"| {cell['name']} | {status}{error} | {memory} | {speed} | {mfu} | {energy} |"


HEADER = {
    "cuda": ("| cell | status | allocated MiB: measured / predicted (err) | reserved MiB (err vs predicted allocated) | "
             "NVML process MiB / predicted device total (err) | tokens/s measured / planner | MFU | J per token |",
             "|---|---|---|---|---|---|---|---|"),
    "cpu": ("| cell | status | host peak RSS MiB: measured / predicted (err) | - | - | tokens/s measured / planner | MFU | "
            "J per token |", "|---|---|---|---|---|---|---|---|"),
}


def environment(python: str) -> Dict[str, Any]:
    """Versions and the device the figures come from."""
    code = """
import json, platform, shutil, subprocess, importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
import torch
cuda = torch.cuda.is_available()
smi = shutil.which("nvidia-smi")
driver = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                        text=True).stdout.strip() if smi else None
print(json.dumps({"python": platform.python_version(), "cuda": torch.version.cuda, "driver": driver,
                  "device": torch.cuda.get_device_name() if cuda else platform.machine(),
                  "libraries": {n: version(n) for n in ("torch", "transformers", "peft", "trl", "bitsandbytes",
                                                        "accelerate", "unsloth")}}))
"""
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr.strip()[-300:]}


def write_outputs(out: Path, device: str, grid: List[Dict[str, Any]], env: Dict[str, Any], notes: List[str]) -> None:
    """table.md and the archive, from what is on disk now."""
    lines = [f"# GPU check ({device})", "", f"environment: `{json.dumps(env)}`", "",
             "Random-weight real architectures on synthetic fixed-length rows (memory and speed do not depend on the "
             "weights' values); 6 steps, 2 warm-up steps excluded from tokens/s. Predicted = the planner, uncalibrated.",
             "", *HEADER[device]]
    for cell in grid:
        lines.append(row(cell, record_of(out / cell.get("root", "runs") / f"gc-{cell['name']}"), cell.get("prediction", {}), device))
    lines += ["", *notes]
    calibration = out / "calibration.txt"
    if calibration.exists():
        lines += ["", "## Planner calibrated on these records (leave-one-out)", "", "```",
                  calibration.read_text().strip(), "```"]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    with tarfile.open(out / "gpu-check.tar.gz", "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.name != "gpu-check.tar.gz" and "/model/" not in str(path) \
                    and "/adapter/" not in str(path) and path.suffix != ".safetensors":
                tar.add(path, arcname=str(path.relative_to(out)))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the check; 0 when every cell that ran ended ok (or oom, a measured outcome) and the tier passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget-s", type=float, default=780.0)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    started = time.monotonic()
    unsloth = args.device == "cuda" and (REPO / ".venvs" / "unsloth" / "bin" / "python").exists()
    from harness.store.identity import visible_gpu_count

    grid = cells(args.device, unsloth, visible_gpu_count() if args.device == "cuda" else 1)
    for cell in grid:
        cell["prediction"] = predict(cell, args.device, args.python)
        cell["estimate_s"] = estimate_s(cell, cell["prediction"], args.device)
    total = sum(c["estimate_s"] for c in grid)
    print(f"gpu-check on {args.device}: {len(grid)} cells, estimated {total:.0f} s (budget {args.budget_s:.0f} s)")
    for cell in grid:
        print(f"  {cell['name']:<22} ~{cell['estimate_s']:5.0f} s  {' '.join(cell['overrides'])}")
    claims_left = args.budget_s - total  # by the estimates; the run decides on the time really left
    count = claims_count(args.device, claims_left, len(claims_cells(args.device)))
    if count:
        plan = claims_commands(args.device, count, args.out.resolve(), args.python)
        print(f"  then, with >= {CLAIMS_MIN_LEFT_S:.0f} s left (~{claims_left:.0f} s by the estimates): the first {count} "
              f"cells of sweeps/{plan['sweep']}.yaml (~{CLAIMS[args.device]['per_cell_s']:.0f} s each), and the claims:")
        print(f"    {' '.join(plan['run'])}")
        print(f"    {' '.join(plan['claims'])}")
    else:
        print(f"  then the claims stage only with >= {CLAIMS_MIN_LEFT_S:.0f} s left (~{claims_left:.0f} s by the estimates: "
              f"not run)")
    if args.dry_run:
        return 0
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    env, notes, failed = environment(args.python), [], 0
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    tier = _run([args.python, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", f"--junitxml={out / 'gpu-tier.xml'}"],
                out / "gpu-tier.log", args.budget_s * 0.25)
    notes.append(f"gpu test tier: exit {tier} (log gpu-tier.log; 5 = no tests collected, e.g. none run without CUDA)")
    failed += tier not in (0, 5)
    for cell in grid:
        left = args.budget_s - (time.monotonic() - started)
        if left < cell["estimate_s"] * 1.2:
            notes.append(f"{cell['name']}: not run, {left:.0f} s left of the budget and it needs ~{cell['estimate_s']:.0f} s")
            continue
        print(f"[gpu-check] {cell['name']} (~{cell['estimate_s']:.0f} s, {left:.0f} s left)", flush=True)
        root = out / cell.get("root", "runs")
        code = _run([args.python, "-m", "harness", *cell["overrides"], f"run.root={root}",
                     f"run.sweep=gc-{cell['name']}"], out / f"{cell['name']}.log", left - 10)
        record = record_of(root / f"gc-{cell['name']}")
        failed += code != 0 and (record or {}).get("status") not in ("oom",)
        if cell.get("root") == "runs-dist" and record:  # per rank: the spread is what the row's max hides
            memory, train = record.get("memory") or {}, record.get("train") or {}
            notes.append(f"{cell['name']}: {train.get('ranks')} ranks, per-rank peak {memory.get('rank_peak_min_mib')}.."
                         f"{memory.get('rank_peak_max_mib')} MiB, {train.get('tokens_per_s')} tokens/s global, "
                         f"{(train.get('trainer_settings') or {}).get('dist')}")
        elif cell.get("root") and record:  # the warm pair: did it fork, and what did the counters read beside lora-b1
            peak = (record.get("memory") or {}).get("train_peak") or {}
            notes.append(f"{cell['name']}: worker {(record.get('environment') or {}).get('worker')}, "
                         f"{peak.get('counter')} {peak.get('peak_mib')} MiB (compare the row of {grid[0]['name']})")
        write_outputs(out, args.device, grid, env, notes)
    sweeps = [f"--sweeps={p}" for p in sorted((out / "runs").glob("gc-*"))]
    if sweeps:
        big = SHAPES[args.device]["big"]
        calib = subprocess.run([args.python, "-m", "harness.plan", *big, *sweeps, "--device", args.device],
                               capture_output=True, text=True, cwd=REPO, timeout=300)
        text = calib.stdout
        (out / "calibration.txt").write_text(text[text.find("# calibration"):] if "# calibration" in text else text + calib.stderr)
    write_outputs(out, args.device, grid, env, notes)
    # last: the claims sweep's first cells and the claims check, in what is left (its cells' statuses are results)
    notes += run_claims(args.device, args.budget_s - (time.monotonic() - started), out, args.python)
    write_outputs(out, args.device, grid, env, notes)
    print((out / "table.md").read_text())
    print(f"[gpu-check] {time.monotonic() - started:.0f} s; table: {out / 'table.md'}; archive: {out / 'gpu-check.tar.gz'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
